//! Child processes that never outlive their node. Each runs in its own process group, and
//! the whole group is killed when the node ends, fails, times out or is cancelled. Where
//! the kernel allows it (root, or CAP_SYS_ADMIN), the program also runs as the first
//! process of a new PID namespace: when it exits or is killed, the kernel kills every
//! process it started, even one that left the group (`setsid`, a daemon's double fork).

use std::io;

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
/// namespace when the kernel allows one; otherwise it runs as before. The process the
/// caller waits for is a small stand-in that waits for the program and exits as it did,
/// so exit codes, signals and pipes are unchanged.
pub fn contain(command: &mut tokio::process::Command) {
    // SAFETY: the hook runs in the forked child before exec and calls only
    // async-signal-safe functions (unshare, fork, close, waitpid, signal, kill, _exit).
    unsafe {
        command.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWPID) != 0 {
                // Not allowed here: the process group alone holds the children.
                return Ok(());
            }
            match libc::fork() {
                -1 => Err(io::Error::last_os_error()),
                // PID 1 of the new namespace: go on to exec the program.
                0 => Ok(()),
                program => stand_in(program),
            }
        });
    }
}

/// The stand-in: lets go of every descriptor but stdin, stdout and stderr (so the
/// parent's spawn, which waits for the exec to succeed, returns), waits for the program,
/// and ends the way it ended.
unsafe fn stand_in(program: libc::pid_t) -> ! {
    // SAFETY: see `contain`; only async-signal-safe calls.
    unsafe {
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
            for fd in 3..1024 {
                libc::close(fd);
            }
        }
        let mut status = 0;
        while libc::waitpid(program, &mut status, 0) != program {
            if *libc::__errno_location() != libc::EINTR {
                libc::_exit(127);
            }
        }
        if libc::WIFSIGNALED(status) {
            let signal = libc::WTERMSIG(status);
            libc::signal(signal, libc::SIG_DFL);
            libc::kill(libc::getpid(), signal);
            libc::_exit(128 + signal);
        }
        libc::_exit(libc::WEXITSTATUS(status))
    }
}
