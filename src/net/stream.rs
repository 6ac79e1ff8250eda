//! Reading and writing whole frames on QUIC streams (the codec does the byte work).
//!
//! A frame's buffer grows with the bytes that arrive, never from its length prefix alone: a
//! reader reserves at most [`READ_CHUNK_BYTES`] (or, past that, as much again as it already
//! holds) before the bytes to fill it have come, so a prefix announcing 16 MiB followed by
//! nothing costs 64 KiB, not 16 MiB. Doubling keeps a 16 MiB snapshot at about eight
//! reallocations instead of 256.

use std::sync::Arc;
use std::time::Duration;

use quinn::{RecvStream, SendStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::net::codec::{self, CodecError, LENGTH_PREFIX_BYTES};
use crate::net::message::Message;

/// Largest buffer reserved for a frame before any of its payload has arrived; past it the
/// buffer at most doubles, and only when full.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Why a frame could not be read or written on a stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The bytes were not a valid frame: the connection is closed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The frame is larger than this connection may send (see [`ReadBounds::max_frame_bytes`]).
    #[error(
        "frame of {length_bytes} bytes exceeds this connection's limit of {limit_bytes} bytes"
    )]
    TooLargeHere {
        /// The announced length.
        length_bytes: usize,
        /// The limit in force on the connection.
        limit_bytes: usize,
    },
    /// No frame started within the stream's idle timeout.
    #[error("no frame started within {timeout_ms} ms")]
    IdleTimeout {
        /// The timeout that expired.
        timeout_ms: u64,
    },
    /// A frame started but did not finish within the frame timeout.
    #[error("frame not complete within {timeout_ms} ms")]
    FrameTimeout {
        /// The timeout that expired.
        timeout_ms: u64,
    },
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

impl StreamError {
    /// Whether the peer sent bytes that are not a frame it may send (the connection should be
    /// closed), as opposed to a stream that failed or timed out.
    pub fn is_malformed(&self) -> bool {
        matches!(self, Self::Codec(_) | Self::TooLargeHere { .. })
    }

    /// Whether the stream timed out (the stream should be reset, the connection may live).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::IdleTimeout { .. } | Self::FrameTimeout { .. })
    }
}

/// The limits a server applies while reading frames a peer sends.
#[derive(Debug, Clone)]
pub struct ReadBounds {
    /// Longest wait for the first byte of the next frame.
    pub idle_timeout: Duration,
    /// Longest time from a frame's first byte to its last.
    pub frame_timeout: Duration,
    /// Largest frame accepted on this connection (at most [`codec::MAX_FRAME_BYTES`]).
    pub max_frame_bytes: usize,
    /// The connection's budget of buffered frame bytes, shared by all its streams: a reader
    /// takes permits (bytes) before it grows a buffer and keeps them until the frame has been
    /// handled, and waits (stops reading, so QUIC flow control stops the peer) when the budget
    /// is spent. It must hold at least `max_frame_bytes` permits.
    pub budget: Arc<Semaphore>,
}

/// A frame read under [`ReadBounds`]: the message and the budget it holds until dropped.
#[derive(Debug)]
pub struct BoundedFrame {
    /// The message.
    pub message: Message,
    /// The connection budget this frame's bytes took.
    pub held: HeldBudget,
}

/// Connection budget taken by one frame; given back when dropped (after the frame has been
/// handled, so decoded messages waiting for their handler count too).
#[derive(Debug)]
pub struct HeldBudget(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

/// Reads one frame: the length first, checked against the limit; the buffer grows as the
/// bytes arrive.
pub async fn read_frame(recv: &mut RecvStream) -> Result<Message, StreamError> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    recv.read_exact(&mut prefix).await?;
    let length_bytes = codec::decode_length(prefix)?;
    let (payload, _) = read_payload(recv, length_bytes, None).await?;
    Ok(codec::decode_payload(&payload)?)
}

/// Reads the next frame of a stream that may carry several, under `bounds`; `Ok(None)` when
/// the stream ended cleanly between frames. The idle timeout runs until the frame's first
/// byte, the frame timeout from there to its last, so a long-lived stream (an ordered
/// channel) may wait between frames but no frame may trickle in forever.
pub async fn read_next_frame_bounded(
    recv: &mut RecvStream,
    bounds: &ReadBounds,
) -> Result<Option<BoundedFrame>, StreamError> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    match tokio::time::timeout(bounds.idle_timeout, recv.read_exact(&mut prefix[..1])).await {
        Err(_) => {
            return Err(StreamError::IdleTimeout {
                timeout_ms: bounds.idle_timeout.as_millis() as u64,
            })
        }
        Ok(Err(quinn::ReadExactError::FinishedEarly(0))) => return Ok(None),
        Ok(Err(error)) => return Err(error.into()),
        Ok(Ok(())) => {}
    }
    let rest = async {
        recv.read_exact(&mut prefix[1..]).await?;
        let length_bytes = codec::decode_length(prefix)?;
        if length_bytes > bounds.max_frame_bytes {
            return Err(StreamError::TooLargeHere {
                length_bytes,
                limit_bytes: bounds.max_frame_bytes,
            });
        }
        let (payload, held) = read_payload(recv, length_bytes, Some(&bounds.budget)).await?;
        let message = codec::decode_payload(&payload)?;
        Ok(BoundedFrame {
            message,
            held: HeldBudget(held),
        })
    };
    match tokio::time::timeout(bounds.frame_timeout, rest).await {
        Ok(frame) => frame.map(Some),
        Err(_) => Err(StreamError::FrameTimeout {
            timeout_ms: bounds.frame_timeout.as_millis() as u64,
        }),
    }
}

/// Reads `length_bytes` of payload, growing the buffer only when it is full (by
/// [`READ_CHUNK_BYTES`] or by its own size, never past `length_bytes`), taking the growth from
/// `budget` first when there is one.
async fn read_payload(
    recv: &mut RecvStream,
    length_bytes: usize,
    budget: Option<&Arc<Semaphore>>,
) -> Result<(Vec<u8>, Option<OwnedSemaphorePermit>), StreamError> {
    let mut payload: Vec<u8> = Vec::new();
    let mut held: Option<OwnedSemaphorePermit> = None;
    let mut reserved_bytes = 0usize;
    while payload.len() < length_bytes {
        if payload.len() == reserved_bytes {
            let grow_bytes = payload
                .len()
                .max(READ_CHUNK_BYTES)
                .min(length_bytes - payload.len());
            if let Some(budget) = budget {
                // grow_bytes <= MAX_FRAME_BYTES (16 MiB), which fits a u32.
                let permits = u32::try_from(grow_bytes).unwrap_or(u32::MAX);
                let permit = budget
                    .clone()
                    .acquire_many_owned(permits)
                    .await
                    .map_err(|_| quinn::ReadExactError::FinishedEarly(payload.len()))?;
                match held.as_mut() {
                    Some(held) => held.merge(permit),
                    None => held = Some(permit),
                }
            }
            payload.reserve_exact(grow_bytes);
            reserved_bytes += grow_bytes;
        }
        let room_bytes = reserved_bytes - payload.len();
        match recv
            .read_chunk(room_bytes, true)
            .await
            .map_err(quinn::ReadExactError::ReadError)?
        {
            Some(chunk) => payload.extend_from_slice(&chunk.bytes),
            None => return Err(quinn::ReadExactError::FinishedEarly(payload.len()).into()),
        }
    }
    Ok((payload, held))
}

/// Writes one frame and leaves the stream open for more (ordered channels).
pub async fn write_frame_open(send: &mut SendStream, message: &Message) -> Result<(), StreamError> {
    let frame = codec::encode(message)?;
    send.write_all(&frame).await?;
    Ok(())
}

/// Writes one frame and finishes the stream.
pub async fn write_frame(send: &mut SendStream, message: &Message) -> Result<(), StreamError> {
    let frame = codec::encode(message)?;
    send.write_all(&frame).await?;
    send.finish()?;
    Ok(())
}
