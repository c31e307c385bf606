//! Child processes that never outlive their node. Each runs in its own process group, and
//! the whole group is killed when the node ends, fails, times out or is cancelled. Where
//! the kernel allows it (root, or CAP_SYS_ADMIN), the program also runs as the first
//! process of a new PID namespace: when it exits or is killed, the kernel kills every
//! process it started, even one that left the group (`setsid`, a daemon's double fork).

/// Kills a process group when dropped.
pub struct GroupGuard {
    pgid: i32,
}

impl GroupGuard {
    /// Guards the group led by `pid` (a child started with `process_group(0)`).
    pub fn new(pid: u32) -> GroupGuard {
        GroupGuard { pgid: pid as i32 }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.pgid > 0 {
            // SAFETY: kill(2) has no memory effects; a group that is gone gives ESRCH.
            unsafe {
                libc::kill(-self.pgid, libc::SIGKILL);
            }
        }
    }
}

/// Makes `command` (already given its own process group) run as PID 1 of a new PID
/// namespace when the kernel allows one, so every process it starts dies with it; no
/// other limit. Code an LLM wrote runs under [`crate::sandbox`] instead.
pub fn contain(command: &mut tokio::process::Command) {
    crate::sandbox::confine(command, crate::sandbox::Limits::NONE);
}
