//! Linux process identity and exit notification: `/proc/<pid>/stat` and pidfds.
//!
//! A PID alone does not name a process: after it exits the kernel may hand the number to
//! another one. A process is identified by (PID, start time in clock ticks since boot, field 22
//! of `/proc/<pid>/stat`), which no two processes share.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// What `/proc/<pid>/stat` says about a live (or zombie) process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z` (zombie), ...
    pub(crate) state: char,
    /// Field 22: start time in clock ticks after boot.
    pub(crate) start_time_ticks: u64,
}

/// Read `/proc/<pid>/stat`; `None` if there is no such process (or it cannot be parsed).
pub(crate) fn read_stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parse the text of `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may
/// itself contain spaces and parentheses, so fields are counted after the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    let after_name = &text[text.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3) come fields 4..; field 22 is the 19th of them.
    let start_time_ticks = fields.nth(18)?.parse().ok()?;
    Some(ProcStat {
        state,
        start_time_ticks,
    })
}

/// True when `pid` is the process that started at `start_time_ticks` and has not exited
/// (a zombie has exited).
pub(crate) fn is_same_live_process(pid: i32, start_time_ticks: u64) -> bool {
    read_stat(pid)
        .is_some_and(|stat| stat.start_time_ticks == start_time_ticks && stat.state != 'Z')
}

/// A pidfd: becomes readable when the process exits, whoever its parent is.
pub(crate) struct PidFd {
    fd: AsyncFd<OwnedFd>,
}

impl PidFd {
    /// `pidfd_open(pid, 0)`. Fails with ESRCH when there is no such process, ENOSYS on kernels
    /// before 5.3. Must be called inside a tokio runtime.
    pub(crate) fn open(pid: i32) -> io::Result<Self> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no pointers.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        let raw = i32::try_from(raw).map_err(|_| io::Error::other("pidfd out of range"))?;
        // SAFETY: the kernel just returned this fd to us and nobody else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the AsyncFd owns the OwnedFd, which keeps this one fd open and unchanged
        // until the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }
            .map_err(|error| error.into_parts().1)?;
        Ok(Self { fd })
    }

    /// Resolve once the process has exited.
    pub(crate) async fn exited(&self) -> io::Result<()> {
        let _ready = self.fd.readable().await?;
        Ok(())
    }
}

/// Send `signal` to process group `pgid`. `Ok(false)` when the group no longer exists.
pub(crate) fn signal_group(pgid: i32, signal: i32) -> io::Result<bool> {
    if pgid <= 1 {
        // killpg(0 or 1) would signal our own group or everything: never do that.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal process group {pgid}"),
        ));
    }
    // SAFETY: killpg takes two integers and touches no memory of ours.
    let result = unsafe { libc::killpg(pgid, signal) };
    if result == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ESRCH) {
        Ok(false)
    } else {
        Err(error)
    }
}

/// After the leader `pid` of a task's process group exited, SIGKILL whatever it left in its
/// group, as Docker kills a container's other processes when its PID 1 ends. Skipped when the
/// PID already names another process (reused), so the signal can only reach the old group.
/// Best effort: a group that is already empty is the normal case.
pub(crate) fn kill_group_leftovers(pid: i32, start_time_ticks: u64) {
    if read_stat(pid).is_some_and(|stat| stat.start_time_ticks != start_time_ticks) {
        return;
    }
    if let Err(error) = signal_group(pid, libc::SIGKILL) {
        tracing::warn!(%error, pid, "could not kill the leftovers of a task's process group");
    }
}

/// The kernel release, for `version()`.
pub(crate) fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parentheses() {
        let text = "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000000 200 18446744073709551615";
        let stat = parse_stat(text).expect("parses");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.start_time_ticks, 987654);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn our_own_process_is_live_and_identified() {
        let pid = i32::try_from(std::process::id()).expect("pid fits i32");
        let stat = read_stat(pid).expect("own stat readable");
        assert!(is_same_live_process(pid, stat.start_time_ticks));
        assert!(!is_same_live_process(pid, stat.start_time_ticks + 1));
    }

    #[test]
    fn refuses_to_signal_group_zero_or_one() {
        assert!(signal_group(0, 0).is_err());
        assert!(signal_group(1, 0).is_err());
    }
}
