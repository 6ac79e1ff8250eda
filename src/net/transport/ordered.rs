//! The ordered channel: one long-lived unidirectional stream per peer whose frames arrive in
//! the order sent (Raft's appends must not overtake each other).

use std::net::SocketAddr;

use quinn::Connection;

use super::{Expect, Transport, TransportError};
use crate::net::message::Message;
use crate::net::stream::write_frame_open;

impl Transport {
    /// An ordered channel to `addr`: messages sent on it arrive in the order sent, as frames
    /// of one long-lived unidirectional stream (reopened after a failure). Raft needs this:
    /// appends that overtake each other are rejected and stall the follower until the next
    /// heartbeat. The queue holds [`ORDERED_QUEUE_MESSAGES`]; beyond that, messages are dropped
    /// (Raft retransmits).
    /// Only a server whose certificate `expect` admits gets the messages (checked on every
    /// connection the channel opens).
    pub fn ordered_sender(&self, addr: SocketAddr, expect: Expect) -> OrderedSender {
        let (sender, receiver) = tokio::sync::mpsc::channel(ORDERED_QUEUE_MESSAGES);
        tokio::spawn(ordered_writer(self.clone(), addr, expect, receiver));
        OrderedSender { sender }
    }
}

/// Messages queued on one ordered channel before new ones are dropped.
pub const ORDERED_QUEUE_MESSAGES: usize = 4096;

/// The sending half of an ordered channel (see [`Transport::ordered_sender`]).
#[derive(Clone)]
pub struct OrderedSender {
    sender: tokio::sync::mpsc::Sender<Message>,
}

impl OrderedSender {
    /// Queues `message`; `false` if the queue is full or the channel is gone (dropped).
    pub fn send(&self, message: Message) -> bool {
        self.sender.try_send(message).is_ok()
    }

    /// Whether the writer behind the channel has ended.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

async fn ordered_writer(
    transport: Transport,
    addr: SocketAddr,
    expect: Expect,
    mut queue: tokio::sync::mpsc::Receiver<Message>,
) {
    let mut stream: Option<(Connection, quinn::SendStream)> = None;
    while let Some(message) = queue.recv().await {
        // A connection found lost (closed, reset, timed out) is replaced before the write, and
        // a write that fails on a connection that looked alive is tried once more on a new
        // one: a vote answer lost this way would cost Raft a whole election timeout.
        for attempt in 0..2 {
            if stream
                .as_ref()
                .is_some_and(|(connection, _)| connection.close_reason().is_some())
            {
                stream = None;
            }
            if stream.is_none() {
                match open_ordered_stream(&transport, addr, &expect).await {
                    Ok(opened) => stream = Some(opened),
                    Err(error) => {
                        tracing::debug!(%addr, %error, "ordered channel: message dropped");
                        break;
                    }
                }
            }
            let Some((connection, send)) = stream.as_mut() else {
                break;
            };
            if transport
                .apply_outgoing_fault(addr, connection)
                .await
                .is_err()
            {
                break;
            }
            match write_frame_open(send, &message).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::debug!(%addr, %error, attempt, "ordered channel: stream failed; reopening");
                    stream = None;
                }
            }
        }
    }
}

async fn open_ordered_stream(
    transport: &Transport,
    addr: SocketAddr,
    expect: &Expect,
) -> Result<(Connection, quinn::SendStream), TransportError> {
    let connection = transport.connection_expecting(addr, expect).await?;
    let send = connection
        .open_uni()
        .await
        .map_err(|e| transport.connection_failed(addr, e))?;
    Ok((connection, send))
}
