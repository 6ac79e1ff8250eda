//! Reading and writing whole frames on QUIC streams (the codec does the byte work).

use quinn::{RecvStream, SendStream};

use crate::net::codec::{self, CodecError, LENGTH_PREFIX_BYTES};
use crate::net::message::Message;

/// Why a frame could not be read or written on a stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The bytes were not a valid frame: the connection is closed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The stream ended or failed before a whole frame arrived.
    #[error("stream read failed: {0}")]
    Read(#[from] quinn::ReadExactError),
    /// The frame could not be written.
    #[error("stream write failed: {0}")]
    Write(#[from] quinn::WriteError),
    /// The stream was already closed.
    #[error("stream closed: {0}")]
    Closed(#[from] quinn::ClosedStream),
}

/// Reads one frame: the length first, checked against the limit before allocating.
pub async fn read_frame(recv: &mut RecvStream) -> Result<Message, StreamError> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    recv.read_exact(&mut prefix).await?;
    let length_bytes = codec::decode_length(prefix)?;
    let mut payload = vec![0u8; length_bytes];
    recv.read_exact(&mut payload).await?;
    Ok(codec::decode_payload(&payload)?)
}

/// Writes one frame and leaves the stream open for more (ordered channels).
pub async fn write_frame_open(send: &mut SendStream, message: &Message) -> Result<(), StreamError> {
    let frame = codec::encode(message)?;
    send.write_all(&frame).await?;
    Ok(())
}

/// Reads the next frame of a stream that carries several; `Ok(None)` when it ended cleanly
/// between frames.
pub async fn read_next_frame(recv: &mut RecvStream) -> Result<Option<Message>, StreamError> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    let length_bytes = codec::decode_length(prefix)?;
    let mut payload = vec![0u8; length_bytes];
    recv.read_exact(&mut payload).await?;
    Ok(Some(codec::decode_payload(&payload)?))
}

/// Writes one frame and finishes the stream.
pub async fn write_frame(send: &mut SendStream, message: &Message) -> Result<(), StreamError> {
    let frame = codec::encode(message)?;
    send.write_all(&frame).await?;
    send.finish()?;
    Ok(())
}
