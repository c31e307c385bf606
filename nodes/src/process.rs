//! Child processes that never outlive their node: each runs in its own process group,
//! and the whole group is killed when the node ends, fails, times out or is cancelled.

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
