//! foca's wire format for Flotilla: headers and member updates in bincode 2 (serde), the
//! encoding every other message of the project uses, bounded to one gossip packet.

use bytes::{Buf, BufMut};
use foca::{Header, Member};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::identity::GossipId;

/// The most bytes one gossip packet may hold; the decoder never allocates past it.
pub const MAX_PACKET_BYTES: usize = 64 * 1024;

/// Why a piece of a gossip packet could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum GossipCodecError {
    /// bincode refused to encode the value.
    #[error("cannot encode gossip data: {0}")]
    Encode(String),
    /// The bytes are not a valid header or member update.
    #[error("malformed gossip data: {0}")]
    Decode(String),
    /// The value does not fit the buffer foca gave.
    #[error("gossip data does not fit the packet")]
    NoRoom,
}

/// foca's `Codec` over bincode 2.
#[derive(Debug, Default, Clone, Copy)]
pub struct GossipCodec;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_PACKET_BYTES>()
}

fn encode<T: Serialize>(value: &T, mut buf: impl BufMut) -> Result<(), GossipCodecError> {
    let bytes = bincode::serde::encode_to_vec(value, config())
        .map_err(|e| GossipCodecError::Encode(e.to_string()))?;
    if buf.remaining_mut() < bytes.len() {
        return Err(GossipCodecError::NoRoom);
    }
    buf.put_slice(&bytes);
    Ok(())
}

fn decode<T: DeserializeOwned>(mut buf: impl Buf) -> Result<T, GossipCodecError> {
    // foca hands in slices, whose first chunk is all of it.
    let (value, used) = bincode::serde::decode_from_slice::<T, _>(buf.chunk(), config())
        .map_err(|e| GossipCodecError::Decode(e.to_string()))?;
    buf.advance(used);
    Ok(value)
}

impl foca::Codec<GossipId> for GossipCodec {
    type Error = GossipCodecError;

    fn encode_header(
        &mut self,
        header: &Header<GossipId>,
        buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        encode(header, buf)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<GossipId>, Self::Error> {
        decode(buf)
    }

    fn encode_member(
        &mut self,
        member: &Member<GossipId>,
        buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        encode(member, buf)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<GossipId>, Self::Error> {
        decode(buf)
    }
}

/// The header of a packet, read without touching any state (the claimed sender is checked
/// against the certificate before foca sees the packet).
pub fn peek_header(packet: &[u8]) -> Result<Header<GossipId>, GossipCodecError> {
    decode(packet)
}

#[cfg(test)]
mod tests {
    use foca::{Codec, Message, State};

    use super::*;

    fn id(name: &str) -> GossipId {
        GossipId::new(name, "127.0.0.1:4240".parse().expect("addr"), 1)
    }

    #[test]
    fn headers_and_members_round_trip_and_consume_only_their_bytes() {
        let mut codec = GossipCodec;
        let header = Header {
            src: id("a"),
            src_incarnation: 3,
            dst: id("b"),
            message: Message::PingReq {
                target: id("c"),
                probe_number: 9,
            },
        };
        let member = Member::new(id("c"), 2, State::Suspect);
        let mut bytes = Vec::new();
        codec.encode_header(&header, &mut bytes).expect("header");
        codec.encode_member(&member, &mut bytes).expect("member");
        bytes.push(0xAB);
        let mut rest = &bytes[..];
        assert_eq!(codec.decode_header(&mut rest).expect("header"), header);
        assert_eq!(codec.decode_member(&mut rest).expect("member"), member);
        assert_eq!(rest, &[0xAB]);
        assert_eq!(peek_header(&bytes).expect("peek"), header);
    }

    #[test]
    fn garbage_and_short_buffers_are_errors() {
        let mut codec = GossipCodec;
        assert!(codec.decode_header(&[0xFF, 0xFF, 0xFF][..]).is_err());
        assert!(peek_header(&[]).is_err());
        let mut small = [0u8; 4];
        let header = Header {
            src: id("a"),
            src_incarnation: 0,
            dst: id("b"),
            message: Message::Ping(1),
        };
        assert!(matches!(
            codec.encode_header(&header, &mut small[..]),
            Err(GossipCodecError::NoRoom)
        ));
    }
}
