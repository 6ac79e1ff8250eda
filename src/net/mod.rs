//! The wire: codec, admin protocol, cluster PKI and join tokens, and the QUIC transport.
//!
//! `codec` is pure over bytes; `stream` reads and writes frames on QUIC streams; `transport`
//! owns the endpoint and connections; `tls` and `token` are the cluster's PKI.
//! `mesh` is the routing mesh's ingress proxy (plain tokio, fed routing tables).

pub mod admin;
pub mod codec;
pub mod control_proof;
pub mod fault;
pub mod mesh;
pub mod message;
pub mod stream;
pub mod tls;
pub mod token;
pub mod transport;
