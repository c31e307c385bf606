//! Running code an LLM wrote: the operating-system limits shared by every node that runs
//! such code (TestExecutor today; the Python executor builds on the same).
//!
//! - **The program**: a bare name from an allow-list, found on illumo's own `PATH`
//!   (relative entries such as `.` skipped), so a `./pytest` or a `pytest` link in the
//!   workspace is never what runs; interpreter flags that run inline code (`python -c`,
//!   `sh -c`, `node -e`, ...) are refused unless allowed.
//! - **The environment**: cleared, then a short list of harmless variables (`PATH`,
//!   `HOME`, locale, ...) and what the node's settings add. API keys never reach it.
//! - **Limits** (`setrlimit`): address space, CPU seconds, the size of any file written,
//!   no core files.
//! - **Namespaces**, where the kernel allows them (root, or unprivileged user namespaces):
//!   a new network namespace (no network, only its own loopback) and a new PID
//!   namespace, so every process the code starts dies with it.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Variables the code under test keeps from illumo's environment.
pub const KEPT_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TERM",
    "TMPDIR",
    "VIRTUAL_ENV",
    "PYENV_ROOT",
    "PYENV_VERSION",
];

/// The environment for code under test: [`KEPT_ENV`] and `LC_*` from illumo's own, then
/// `extra`.
pub fn clean_env(extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = std::env::vars()
        .filter(|(name, _)| KEPT_ENV.contains(&name.as_str()) || name.starts_with("LC_"))
        .collect();
    env.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// Where `program` (a bare name) is on `PATH`'s absolute folders: the first executable
/// file of that name.
pub fn find_on_path(program: &str) -> Result<PathBuf, String> {
    if program.contains('/') {
        return Err(format!(
            "`{program}` is a path; name the program (it is looked up on PATH)"
        ));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).filter(|d| d.is_absolute()) {
        let candidate = dir.join(program);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(format!("`{program}` is not on PATH"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The flag by which `argv` would run inline code, if it would: `python -c`, `sh -c`,
/// `node -e`, `perl -e`, `ruby -e` (also inside a cluster such as `-Sc`), or `-` (a
/// program on stdin). Options after the script or module belong to it.
pub fn inline_code_flag(argv: &[String]) -> Option<String> {
    let program = argv.first()?;
    let name = program.rsplit('/').next().unwrap_or(program);
    let family = if name.starts_with("python") || name.starts_with("pypy") {
        "python"
    } else {
        name
    };
    // Short letters that take inline code, long flags that do, and the options whose
    // value is the next argument (so it is not taken for the script).
    let (letters, long, with_value): (&str, &[&str], &[&str]) = match family {
        "python" => ("c", &[], &["-W", "-X", "-Q"]),
        "sh" | "bash" | "dash" | "zsh" | "ksh" => ("c", &[], &["-o", "-O"]),
        "node" | "nodejs" | "deno" | "bun" => ("ep", &["--eval", "--print"], &["-r", "--require"]),
        "perl" => ("eE", &[], &[]),
        "ruby" => ("e", &[], &[]),
        _ => return None,
    };
    let mut args = argv[1..].iter();
    while let Some(arg) = args.next() {
        if arg == "-" {
            return Some("-".into());
        }
        if arg == "--" || !arg.starts_with('-') || (family == "python" && arg == "-m") {
            return None;
        }
        if long
            .iter()
            .any(|l| arg == l || arg.starts_with(&format!("{l}=")))
        {
            return Some(arg.clone());
        }
        if with_value.contains(&arg.as_str()) {
            args.next();
            continue;
        }
        if !arg.starts_with("--") && arg[1..].chars().any(|c| letters.contains(c)) {
            return Some(arg.clone());
        }
    }
    None
}

/// The module `python -m MODULE` runs, with its argument's index, if argv runs one.
pub fn python_module(argv: &[String]) -> Option<(usize, &str)> {
    let program = argv.first()?;
    let name = program.rsplit('/').next().unwrap_or(program);
    if !(name.starts_with("python") || name.starts_with("pypy")) {
        return None;
    }
    let mut i = 1;
    while i < argv.len() {
        let arg = argv[i].as_str();
        if arg == "-m" {
            return argv.get(i + 1).map(|m| (i + 1, m.as_str()));
        }
        if let Some(module) = arg.strip_prefix("-m").filter(|m| !m.is_empty()) {
            return Some((i, module));
        }
        if arg == "--" || !arg.starts_with('-') {
            return None;
        }
        if ["-W", "-X", "-Q"].contains(&arg) {
            i += 1;
        }
        i += 1;
    }
    None
}

/// Operating-system limits for one child process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Bytes of address space.
    pub memory: Option<u64>,
    /// Seconds of CPU time.
    pub cpu_seconds: Option<u64>,
    /// Bytes any one file written may reach.
    pub file_size: Option<u64>,
    /// A network namespace of its own (no network) when the kernel allows it.
    pub isolate_network: bool,
    /// Files open at once.
    pub open_files: Option<u64>,
    /// A mount namespace with its own `/proc`, so the code sees only its own processes
    /// (not illumo's environment in `/proc/PID/environ`), when the kernel allows it.
    pub private_proc: bool,
    /// Processes (threads count) the code may start beyond those its user runs already
    /// (`RLIMIT_NPROC`, which counts per user): a fork bomb stops there. Root is exempt.
    pub processes: Option<u64>,
}

impl Limits {
    /// No limits, no isolation: only a PID namespace for the process tree.
    pub const NONE: Limits = Limits {
        memory: None,
        cpu_seconds: None,
        file_size: None,
        isolate_network: false,
        open_files: None,
        private_proc: false,
        processes: None,
    };
}

/// The tasks (processes and threads) the current user runs now, as `RLIMIT_NPROC`
/// counts them.
fn user_tasks() -> u64 {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| e.metadata().is_ok_and(|m| m.uid() == uid))
        .map(|e| std::fs::read_dir(e.path().join("task")).map_or(1, |t| t.count() as u64))
        .sum()
}

/// Makes `command` (already in its own process group) run under `limits`, as PID 1 of a
/// new PID namespace (and in a new network namespace when asked) where the kernel allows
/// it. The process the caller waits for is then a small stand-in that waits for the
/// program and exits as it did, so exit codes, signals and pipes are unchanged.
pub fn confine(command: &mut tokio::process::Command, limits: Limits) {
    // `RLIMIT_NPROC` counts every task of the user: the allowance is added to those.
    let mut limits = limits;
    if let Some(extra) = limits.processes {
        limits.processes = Some(user_tasks() + extra);
    }
    // SAFETY: the hook runs in the forked child before exec and calls only
    // async-signal-safe functions (setrlimit, unshare, open, write, close, socket,
    // ioctl, fork, waitpid, signal, kill, _exit), with no allocation.
    unsafe {
        command.pre_exec(move || {
            set_limits(&limits)?;
            if limits.isolate_network {
                // A network namespace leaves the file system's Unix sockets (a Docker or
                // D-Bus socket) reachable: creating one is refused instead, when the
                // kernel has seccomp (as with namespaces, the most isolation it gives).
                let _ = deny_unix_sockets();
            }
            let pid = libc::CLONE_NEWPID;
            let net = if limits.isolate_network {
                libc::CLONE_NEWNET
            } else {
                0
            };
            let mount = if limits.private_proc {
                libc::CLONE_NEWNS
            } else {
                0
            };
            // The most isolation the kernel gives, then less.
            let Some(joined) = [pid | net | mount, pid | net, pid]
                .into_iter()
                .find(|&flags| enter_namespaces(flags))
            else {
                // Not allowed here: the process group alone holds the children.
                return Ok(());
            };
            if joined & libc::CLONE_NEWNET != 0 {
                loopback_up();
            }
            match libc::fork() {
                -1 => Err(io::Error::last_os_error()),
                // PID 1 of the new namespace: its own /proc, then exec the program.
                0 => {
                    if joined & libc::CLONE_NEWNS != 0 {
                        private_proc();
                    }
                    Ok(())
                }
                program => stand_in(program),
            }
        });
    }
}

/// Installs a seccomp filter that makes `socket(AF_UNIX, ...)` fail with `EACCES` (pairs
/// from `socketpair`, which reach nothing outside, still work), refuses `io_uring_setup`
/// (its socket operation would go around the filter) and x32 system calls, and kills a
/// process that makes a system call of another architecture's.
/// Async-signal-safe: two `prctl` calls on a filter on the stack.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
unsafe fn deny_unix_sockets() -> io::Result<()> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const ALLOW: u32 = 0x7fff_0000;
    const KILL_PROCESS: u32 = 0x8000_0000;
    const ERRNO: u32 = 0x0005_0000;
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64
                                   // x32 system calls share x86_64's architecture with this bit set in their number.
    const X32: u32 = 0x4000_0000;
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    // Jumps count the instructions to skip after this one.
    let filter = [
        op(LD_W_ABS, 0, 0, 4),                            // 0: seccomp_data.arch
        op(JEQ_K, 1, 0, ARCH),                            // 1: this architecture: 3
        op(RET_K, 0, 0, KILL_PROCESS),                    // 2
        op(LD_W_ABS, 0, 0, 0),                            // 3: seccomp_data.nr
        op(JGE_K, 5, 0, X32),                             // 4: x32: refused (10)
        op(JEQ_K, 4, 0, libc::SYS_io_uring_setup as u32), // 5: refused (10)
        op(JEQ_K, 0, 2, libc::SYS_socket as u32),         // 6: socket: 7, else allowed (9)
        op(LD_W_ABS, 0, 0, 16),                           // 7: seccomp_data.args[0], its low half
        op(JEQ_K, 1, 0, libc::AF_UNIX as u32),            // 8: AF_UNIX: refused (10)
        op(RET_K, 0, 0, ALLOW),                           // 9
        op(RET_K, 0, 0, ERRNO | libc::EACCES as u32),     // 10
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl reads the filter, which outlives the call.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &program as *const libc::sock_fprog,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn deny_unix_sockets() -> io::Result<()> {
    Ok(())
}

/// What [`confine`] gets from this kernel, found once by trying it on `true`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Support {
    pub pid_namespace: bool,
    pub network_namespace: bool,
    pub mount_namespace: bool,
}

pub fn support() -> Support {
    static SUPPORT: std::sync::OnceLock<Support> = std::sync::OnceLock::new();
    *SUPPORT.get_or_init(|| {
        let works = |flags: libc::c_int| {
            let mut command = std::process::Command::new("/bin/sh");
            command.args(["-c", "exit 0"]);
            // SAFETY: as in `confine`: only async-signal-safe calls.
            unsafe {
                use std::os::unix::process::CommandExt;
                command.pre_exec(move || {
                    if enter_namespaces(flags) {
                        Ok(())
                    } else {
                        Err(io::Error::from_raw_os_error(libc::EPERM))
                    }
                });
            }
            command.status().is_ok_and(|s| s.success())
        };
        Support {
            pid_namespace: works(libc::CLONE_NEWPID),
            network_namespace: works(libc::CLONE_NEWNET),
            mount_namespace: works(libc::CLONE_NEWNS | libc::CLONE_NEWPID),
        }
    })
}

unsafe fn set_limits(limits: &Limits) -> io::Result<()> {
    let set = |resource, value: u64| {
        let limit = libc::rlimit {
            rlim_cur: value as libc::rlim_t,
            rlim_max: value as libc::rlim_t,
        };
        // SAFETY: setrlimit reads the struct only.
        if unsafe { libc::setrlimit(resource, &limit) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    if let Some(bytes) = limits.memory {
        set(libc::RLIMIT_AS, bytes)?;
    }
    if let Some(seconds) = limits.cpu_seconds {
        set(libc::RLIMIT_CPU, seconds)?;
    }
    if let Some(bytes) = limits.file_size {
        set(libc::RLIMIT_FSIZE, bytes)?;
    }
    if let Some(n) = limits.open_files {
        set(libc::RLIMIT_NOFILE, n)?;
    }
    if let Some(n) = limits.processes {
        set(libc::RLIMIT_NPROC, n)?;
    }
    if *limits != Limits::NONE {
        set(libc::RLIMIT_CORE, 0)?;
    }
    Ok(())
}

/// Enters new namespaces of `flags`: directly (root), or inside a new user namespace
/// that maps the caller's own uid and gid (unprivileged). False when neither is allowed.
unsafe fn enter_namespaces(flags: libc::c_int) -> bool {
    // SAFETY: see `confine`.
    unsafe {
        if libc::unshare(flags) == 0 {
            return true;
        }
        let (uid, gid) = (libc::getuid(), libc::getgid());
        if libc::unshare(libc::CLONE_NEWUSER | flags) != 0 {
            return false;
        }
        write_file(c"/proc/self/setgroups", b"deny")
            && write_id_map(c"/proc/self/uid_map", uid)
            && write_id_map(c"/proc/self/gid_map", gid)
    }
}

/// Writes `id id 1` to an id map: the caller keeps its own identity.
unsafe fn write_id_map(path: &std::ffi::CStr, id: u32) -> bool {
    let mut buf = [0u8; 40];
    let mut len = 0;
    for _ in 0..2 {
        len += write_number(&mut buf[len..], id);
        buf[len] = b' ';
        len += 1;
    }
    buf[len] = b'1';
    len += 1;
    // SAFETY: see `confine`.
    unsafe { write_file(path, &buf[..len]) }
}

/// Writes `n` in decimal at the start of `buf`; returns the digits written.
fn write_number(buf: &mut [u8], mut n: u32) -> usize {
    let mut digits = [0u8; 10];
    let mut count = 0;
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..count {
        buf[i] = digits[count - 1 - i];
    }
    count
}

unsafe fn write_file(path: &std::ffi::CStr, bytes: &[u8]) -> bool {
    // SAFETY: see `confine`.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        libc::close(fd);
        written == bytes.len() as isize
    }
}

/// In a new mount namespace: nothing mounted here reaches the host's, and `/proc` is a
/// new one that shows this PID namespace only.
unsafe fn private_proc() {
    // SAFETY: see `confine`; mount(2) with constant C strings.
    unsafe {
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) == 0
        {
            libc::mount(
                c"proc".as_ptr(),
                c"/proc".as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            );
        }
    }
}

/// Brings up `lo` in a new network namespace, so code that talks to itself on
/// 127.0.0.1 still works; nothing else is reachable.
unsafe fn loopback_up() {
    // SAFETY: see `confine`; `ifreq` is plain data.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return;
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (slot, byte) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *slot = *byte as libc::c_char;
        }
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        libc::close(fd);
    }
}

/// The stand-in: lets go of every descriptor but stdin, stdout and stderr (so the
/// parent's spawn, which waits for the exec to succeed, returns), waits for the program,
/// and ends the way it ended.
unsafe fn stand_in(program: libc::pid_t) -> ! {
    // SAFETY: see `confine`; only async-signal-safe calls.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn inline_code_flags_are_found_before_the_script_only() {
        let flag = |words: &[&str]| inline_code_flag(&argv(words));
        assert_eq!(flag(&["python3", "-c", "print(1)"]), Some("-c".into()));
        assert_eq!(flag(&["python3", "-Sc", "print(1)"]), Some("-Sc".into()));
        assert_eq!(flag(&["python3.12", "-I", "-c", "x"]), Some("-c".into()));
        assert_eq!(flag(&["python", "-"]), Some("-".into()));
        assert_eq!(flag(&["python3", "-m", "pytest", "-c", "setup.cfg"]), None);
        assert_eq!(flag(&["python3", "-W", "-c", "t.py"]), None);
        assert_eq!(flag(&["python3", "run.py", "-c"]), None);
        assert_eq!(flag(&["pytest", "-q", "-c", "pytest.ini"]), None);
        assert_eq!(flag(&["bash", "-ec", "id"]), Some("-ec".into()));
        assert_eq!(flag(&["node", "--eval=1"]), Some("--eval=1".into()));
        assert_eq!(flag(&["node", "-p", "1"]), Some("-p".into()));
        assert_eq!(flag(&["perl", "-E", "say 1"]), Some("-E".into()));
    }

    #[test]
    fn programs_are_bare_names_found_on_absolute_path_entries() {
        assert_eq!(
            find_on_path("./pytest"),
            Err("`./pytest` is a path; name the program (it is looked up on PATH)".into())
        );
        assert!(find_on_path("sh").unwrap().is_absolute());
        assert_eq!(
            find_on_path("no-such-program-xyz"),
            Err("`no-such-program-xyz` is not on PATH".into())
        );
    }

    #[test]
    fn numbers_are_written_without_allocating() {
        let mut buf = [0u8; 10];
        let n = write_number(&mut buf, 4_294_967_295);
        assert_eq!(&buf[..n], b"4294967295");
        assert_eq!(write_number(&mut buf, 0), 1);
        assert_eq!(buf[0], b'0');
    }
}
