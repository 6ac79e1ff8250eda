//! What a peer may cost this node: the limits applied to what arrives (SPEC §4, "nothing a
//! peer sends can grow its memory without bound"). The reasons for each value are in
//! `docs/wire.md` ("Limits on what peers send").

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::net::codec::MAX_FRAME_BYTES;

/// Longest time from a frame's first byte to its last.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the next frame to start on an incoming stream (a request's only frame,
/// or the next frame of an ordered channel).
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Frame bytes one connection may have buffered or in handling at once, over all its
/// streams: room for one largest frame (a Raft snapshot) and a second one beside it.
pub const CONNECTION_BUFFER_BYTES: usize = 2 * MAX_FRAME_BYTES + 8 * 1024 * 1024;
/// Certificate-less (joining) connections a node serves at once; more are closed at once.
pub const MAX_UNAUTHENTICATED_CONNECTIONS: usize = 32;
/// How long a certificate-less connection lives, whatever it does.
pub const UNAUTHENTICATED_DEADLINE: Duration = Duration::from_secs(10);
/// Largest frame a certificate-less connection may send (a `Join` is about 1 KiB).
pub const UNAUTHENTICATED_MAX_FRAME_BYTES: usize = 64 * 1024;

/// The limits a node's transport applies to incoming connections; [`Default`] is the
/// production setting, tests shorten the timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundLimits {
    /// See [`FRAME_TIMEOUT`].
    pub frame_timeout: Duration,
    /// See [`STREAM_IDLE_TIMEOUT`].
    pub stream_idle_timeout: Duration,
    /// See [`CONNECTION_BUFFER_BYTES`]; at least [`MAX_FRAME_BYTES`].
    pub connection_buffer_bytes: usize,
    /// See [`MAX_UNAUTHENTICATED_CONNECTIONS`].
    pub max_unauthenticated_connections: usize,
    /// See [`UNAUTHENTICATED_DEADLINE`].
    pub unauthenticated_deadline: Duration,
}

impl Default for InboundLimits {
    fn default() -> Self {
        Self {
            frame_timeout: FRAME_TIMEOUT,
            stream_idle_timeout: STREAM_IDLE_TIMEOUT,
            connection_buffer_bytes: CONNECTION_BUFFER_BYTES,
            max_unauthenticated_connections: MAX_UNAUTHENTICATED_CONNECTIONS,
            unauthenticated_deadline: UNAUTHENTICATED_DEADLINE,
        }
    }
}

/// Counts the certificate-less connections being served.
#[derive(Debug, Default)]
pub(super) struct UnauthenticatedCount(Arc<AtomicUsize>);

/// One admitted certificate-less connection; dropping it frees its place.
#[derive(Debug)]
pub(super) struct UnauthenticatedSlot(Arc<AtomicUsize>);

impl UnauthenticatedCount {
    /// A place for one more connection, or `None` when `max` are already served.
    pub(super) fn admit(&self, max: usize) -> Option<UnauthenticatedSlot> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                (count < max).then_some(count + 1)
            })
            .ok()
            .map(|_| UnauthenticatedSlot(self.0.clone()))
    }
}

impl Drop for UnauthenticatedSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_counted_and_freed() {
        let count = UnauthenticatedCount::default();
        let first = count.admit(2).expect("first place");
        let second = count.admit(2).expect("second place");
        assert!(count.admit(2).is_none(), "a third is refused");
        drop(first);
        let third = count.admit(2).expect("a freed place is given again");
        drop((second, third));
        assert_eq!(count.0.load(Ordering::Acquire), 0);
    }

    #[test]
    fn defaults_leave_room_for_the_largest_frame() {
        let limits = InboundLimits::default();
        assert!(limits.connection_buffer_bytes >= MAX_FRAME_BYTES);
        assert!(limits.frame_timeout <= limits.stream_idle_timeout);
    }
}
