//! Allocator settings for the daemon process.
//!
//! Every quinn endpoint allocates a zeroed receive buffer of a few MiB (see
//! `net::transport::MAX_UDP_PAYLOAD`). glibc serves large allocations from `mmap`, where
//! untouched zero pages cost nothing, but raises its mmap threshold each time such a block is
//! freed (a joining node's temporary endpoint does that); later buffers then come from the heap
//! and are cleared by hand, which makes every page resident. A process of a hundred hollow
//! workers measured 2.3 MiB resident per endpoint that way, 0.5 MiB with the threshold pinned.
//!
//! The pin sits below the endpoint buffer (3 MiB) but above Raft's largest append message
//! (1 MiB): a lower pin (glibc's default start, 128 KiB) made a busy manager map, fault in and
//! unmap every message buffer, which took half its CPU.

/// Bytes from which glibc always maps allocations.
pub const MMAP_THRESHOLD_BYTES: i32 = 2 * 1024 * 1024;

/// Pins glibc's mmap threshold at [`MMAP_THRESHOLD_BYTES`]; a no-op on other C libraries.
/// Call once, first thing in `main`.
pub fn pin_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a tuning parameter of the allocator; called before any
    // thread is started, it races with nothing.
    unsafe {
        if libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1 {
            tracing::warn!("cannot pin the allocator's mmap threshold");
        }
    }
}
