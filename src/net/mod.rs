//! The wire: codec, cluster PKI and join tokens, and the QUIC transport.
