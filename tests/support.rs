//! A small builder for running `illumo` the way a user does.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The repository root (where `examples/` lives).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh folder under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "illumo-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` (which may have folders, created as needed).
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create temp folders");
        }
        std::fs::write(&path, text).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Illumo {
    args: Vec<String>,
    dir: TempDir,
    stdin: Option<String>,
    env: Vec<(String, String)>,
    /// Where illumo runs (default: the repository root).
    cwd: Option<PathBuf>,
}

/// Copies a folder tree, leaving Python caches out.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "__pycache__" || name == ".pytest_cache" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The test's folder lives as long as its output, so files written there can be read.
    _dir: TempDir,
}

impl Illumo {
    pub fn new() -> Illumo {
        Illumo {
            args: vec![],
            dir: TempDir::new(),
            stdin: None,
            env: vec![],
            cwd: None,
        }
    }

    /// Runs illumo in `dir` instead of the repository root.
    pub fn in_dir(mut self, dir: &Path) -> Illumo {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    /// `illumo ARGS...`
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Illumo {
        self.args
            .extend(args.into_iter().map(|s| s.as_ref().to_string()));
        self
    }

    /// Writes `text` as `flow.yaml` in the test's folder and returns its path.
    pub fn flow_file(&self, text: &str) -> String {
        self.dir.write("flow.yaml", text).display().to_string()
    }

    /// `illumo run <flow.yaml from text> --tracer none` plus extra args.
    pub fn run_flow(self, text: &str) -> Illumo {
        let path = self.flow_file(text);
        self.args(["run", path.as_str(), "--tracer", "none"])
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn stdin(mut self, text: &str) -> Illumo {
        self.stdin = Some(text.to_string());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Illumo {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn run(self) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_illumo"));
        cmd.args(&self.args)
            .current_dir(self.cwd.clone().unwrap_or_else(root))
            .env_remove("NO_COLOR")
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start illumo");
        if let Some(text) = &self.stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write stdin");
        }
        let out = child.wait_with_output().expect("wait for illumo");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            _dir: self.dir,
        }
    }
}

impl Output {
    #[track_caller]
    pub fn code(self, expected: i32) -> Output {
        assert_eq!(
            self.code, expected,
            "exit code; stderr:\n{}\nstdout:\n{}",
            self.stderr, self.stdout
        );
        self
    }

    #[track_caller]
    pub fn success(self) -> Output {
        self.code(0)
    }

    /// The final ctx printed on stdout.
    #[track_caller]
    pub fn ctx(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    #[track_caller]
    pub fn stderr(self, expected: &str) -> Output {
        assert_eq!(self.stderr, expected);
        self
    }
}

/// Replaces durations (`12.3ms`, `850µs`, `1.20s`) and hex ids so console text compares exactly.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let starts_word = i == 0 || !chars[i - 1].is_alphanumeric();
        if c.is_ascii_digit() && starts_word {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
                j += 1;
            }
            let unit: String = chars[j..]
                .iter()
                .take_while(|c| c.is_alphabetic())
                .collect();
            if ["ms", "µs", "s"].contains(&unit.as_str()) {
                out.push_str("<dur>");
                i = j + unit.chars().count();
                continue;
            }
        }
        if c.is_ascii_digit() && starts_word && is_timestamp(&chars[i..]) {
            out.push_str("<time>");
            i += 27;
            continue;
        }
        if c.is_ascii_hexdigit() && starts_word {
            let j = (i..chars.len())
                .find(|&j| !chars[j].is_ascii_hexdigit())
                .unwrap_or(chars.len());
            if j - i == 32 {
                out.push_str("<trace_id>");
                i = j;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// `2026-11-21T06:13:30.448620Z`
fn is_timestamp(chars: &[char]) -> bool {
    const SHAPE: &str = "dddd-dd-ddTdd:dd:dd.ddddddZ";
    chars.len() >= SHAPE.len()
        && SHAPE.chars().zip(chars).all(|(s, c)| {
            if s == 'd' {
                c.is_ascii_digit()
            } else {
                s == *c
            }
        })
}

/// Like [`sqlite3`], but `None` when the query fails (a database still being created).
pub fn sqlite3_try(db: &Path, sql: &str) -> Option<String> {
    let out = Command::new("sqlite3").arg(db).arg(sql).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs the `sqlite3` CLI on a database, as a user would, and returns its stdout.
#[track_caller]
pub fn sqlite3(db: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("the sqlite3 CLI is installed");
    assert!(
        out.status.success(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Processes (not zombies) whose command line holds `token`: how a test finds the
/// processes it started, whatever PID namespace they run in (their own pid numbers may
/// be the namespace's).
pub fn processes_with(token: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat.rsplit(") ").next().is_some_and(|s| s.starts_with('Z'));
            !zombie
                && String::from_utf8_lossy(&cmdline)
                    .replace('\0', " ")
                    .contains(token)
        })
        .collect()
}

/// Waits (at most five seconds: SIGKILL is delivered at once, the teardown takes a
/// moment) until no process holds `token`; returns those still alive.
pub fn gone(token: &str) -> Vec<u32> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let left = processes_with(token);
        if left.is_empty() || std::time::Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A number no other test uses, to mark processes.
pub fn unique() -> u64 {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::process::id() as u64 * 1000 + N.fetch_add(1, Ordering::Relaxed) as u64
}

/// A ctx's `steps` list as `"node status"` lines (illumo's `node` or illumo-flow's
/// `node_id`), to compare the order things happened in.
pub fn step_lines(steps: &serde_json::Value) -> Vec<String> {
    steps
        .as_array()
        .map(|list| {
            list.iter()
                .map(|s| {
                    let node = s.get("node_id").or_else(|| s.get("node"));
                    format!(
                        "{} {}",
                        node.and_then(|n| n.as_str()).unwrap_or("?"),
                        s["status"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
