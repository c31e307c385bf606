//! `illumo test`: flow test cases in YAML, run in parallel, reported like pytest.
//!
//! ```yaml
//! flow: ../examples/basics/hello.yaml      # relative to this file
//! cases:
//!   - name: greets Ada
//!     context: {user: {name: Ada}}
//!     llm: scripted=replies.yaml            # or replay=FILE (relative to this file)
//!     expect:
//!       greeting: hello Ada                 # equal
//!       shouted: {contains: ADA}
//!       greeting2: {matches: "^hel+o"}
//!       score: {approx: 0.9, tolerance: 0.05}
//! ```
//!
//! Each case runs the real `illumo run` in a process of its own.

use crate::cli::TestArgs;
use crate::EXIT_USAGE;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Case {
    file: String,
    name: String,
    flow: PathBuf,
    dir: PathBuf,
    context: Value,
    llm: Option<String>,
    profile: Option<String>,
    exit_code: i32,
    expect: Vec<(String, Value)>,
}

struct Outcome {
    failures: Vec<String>,
    took: Duration,
}

/// The `*.test.yaml` files under a folder, or the file itself.
fn files_of(arg: &str) -> Result<Vec<PathBuf>, String> {
    let path = Path::new(arg);
    if path.is_dir() {
        let mut found = Vec::new();
        collect(path, &mut found);
        found.sort();
        if found.is_empty() {
            return Err(format!("no `*.test.yaml` files under `{arg}`"));
        }
        return Ok(found);
    }
    if !path.exists() {
        return Err(format!("no test file `{arg}`"));
    }
    Ok(vec![path.to_path_buf()])
}

fn collect(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, found);
        } else if path.to_string_lossy().ends_with(".test.yaml") {
            found.push(path);
        }
    }
}

/// Reads a test file: one case at the top level, or a list under `cases`.
fn cases_of(path: &Path) -> Result<Vec<Case>, String> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    let doc: Value =
        serde_yaml::from_str(&text).map_err(|e| format!("{shown}: not valid YAML: {e}"))?;
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let known = [
        "flow",
        "cases",
        "name",
        "context",
        "llm",
        "profile",
        "exit_code",
        "expect",
    ];
    let check_keys = |v: &Value, at: &str| -> Result<(), String> {
        if let Some(map) = v.as_object() {
            if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
                return Err(format!(
                    "{shown}: {at}unknown key `{k}`; a case has flow, {}",
                    known[2..].join(", ")
                ));
            }
        }
        Ok(())
    };
    check_keys(&doc, "")?;
    let default_flow = doc.get("flow").and_then(Value::as_str);
    let list: Vec<Value> = match doc.get("cases") {
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err(format!("{shown}: `cases` must be a list")),
        None => vec![doc.clone()],
    };
    let mut cases = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let at = format!("case {}: ", i + 1);
        check_keys(c, &at)?;
        let flow = c
            .get("flow")
            .and_then(Value::as_str)
            .or(default_flow)
            .ok_or_else(|| format!("{shown}: {at}no `flow`"))?;
        let expect = match c.get("expect") {
            Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            None => Vec::new(),
            Some(_) => return Err(format!("{shown}: {at}`expect` must be a map of ctx paths")),
        };
        for (path, _) in &expect {
            crate::inputs::ctx_path(path)
                .map_err(|e| format!("{shown}: {at}expect `{path}`: {e}"))?;
        }
        cases.push(Case {
            file: shown.clone(),
            name: c
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| format!("case {}", i + 1), str::to_string),
            flow: dir.join(flow),
            dir: dir.clone(),
            context: c.get("context").cloned().unwrap_or_else(|| json!({})),
            llm: c.get("llm").and_then(Value::as_str).map(str::to_string),
            profile: c.get("profile").and_then(Value::as_str).map(str::to_string),
            exit_code: c.get("exit_code").and_then(Value::as_i64).unwrap_or(0) as i32,
            expect,
        });
    }
    Ok(cases)
}

/// Why `actual` does not meet `expected`, if it does not.
fn mismatch(expected: &Value, actual: Option<&Value>) -> Option<String> {
    let shown = |v: Option<&Value>| v.map_or("nothing (not in ctx)".to_string(), |v| v.to_string());
    if let Value::Object(rule) = expected {
        if rule.len() <= 2 {
            if let Some(needle) = rule.get("contains") {
                let hay = actual.map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                let needle_text = needle
                    .as_str()
                    .map_or_else(|| needle.to_string(), str::to_string);
                let found = match actual {
                    Some(Value::Array(items)) => items.contains(needle),
                    _ => hay.as_deref().is_some_and(|h| h.contains(&needle_text)),
                };
                return (!found)
                    .then(|| format!("expected it to contain {needle}, got {}", shown(actual)));
            }
            if let Some(pattern) = rule.get("matches").and_then(Value::as_str) {
                let Ok(regex) = regex_lite::Regex::new(pattern) else {
                    return Some(format!("`matches: {pattern}` is not a regular expression"));
                };
                let ok = actual
                    .and_then(Value::as_str)
                    .is_some_and(|s| regex.is_match(s));
                return (!ok)
                    .then(|| format!("expected text matching /{pattern}/, got {}", shown(actual)));
            }
            if let Some(target) = rule.get("approx").and_then(Value::as_f64) {
                let tolerance = rule
                    .get("tolerance")
                    .and_then(Value::as_f64)
                    .unwrap_or(1e-6);
                let ok = actual
                    .and_then(Value::as_f64)
                    .is_some_and(|v| (v - target).abs() <= tolerance);
                return (!ok)
                    .then(|| format!("expected {target} ± {tolerance}, got {}", shown(actual)));
            }
        }
    }
    (actual != Some(expected)).then(|| format!("expected {expected}, got {}", shown(actual)))
}

fn run_case(case: &Case) -> Outcome {
    let started = Instant::now();
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("illumo"));
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("run")
        .arg(&case.flow)
        .args(["--tracer", "none", "-q", "--no-input"])
        .arg("--context")
        .arg(case.context.to_string());
    if let Some(llm) = &case.llm {
        // A file named in `llm` is relative to the test file.
        let (mode, file) = llm.split_once('=').unwrap_or((llm, ""));
        cmd.arg("--llm")
            .arg(format!("{mode}={}", case.dir.join(file).display()));
    }
    if let Some(profile) = &case.profile {
        cmd.args(["--profile", profile]);
    }
    let mut failures = Vec::new();
    match cmd.stdin(std::process::Stdio::null()).output() {
        Err(e) => failures.push(format!("cannot run illumo: {e}")),
        Ok(out) => {
            let code = out.status.code().unwrap_or(-1);
            if code != case.exit_code {
                let stderr = String::from_utf8_lossy(&out.stderr);
                failures.push(format!(
                    "exit code {code}, expected {}{}",
                    case.exit_code,
                    stderr
                        .lines()
                        .next()
                        .map(|l| format!(": {l}"))
                        .unwrap_or_default()
                ));
            }
            match serde_json::from_slice::<Value>(&out.stdout) {
                Ok(ctx) => {
                    for (path, expected) in &case.expect {
                        let Ok(p) = crate::inputs::ctx_path(path) else {
                            continue;
                        };
                        if let Some(why) = mismatch(expected, p.get(&ctx)) {
                            failures.push(format!("{p}: {why}"));
                        }
                    }
                }
                Err(_) if case.expect.is_empty() => {}
                Err(e) => failures.push(format!("the run printed no ctx ({e})")),
            }
        }
    }
    Outcome {
        failures,
        took: started.elapsed(),
    }
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn run(args: &TestArgs) -> i32 {
    let started = Instant::now();
    let mut cases = Vec::new();
    let inputs = if args.files.is_empty() {
        vec!["tests/flows".to_string()]
    } else {
        args.files.clone()
    };
    for arg in &inputs {
        let files = match files_of(arg) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_USAGE;
            }
        };
        for file in files {
            match cases_of(&file) {
                Ok(c) => cases.extend(c),
                Err(e) => {
                    eprintln!("error: {e}");
                    return EXIT_USAGE;
                }
            }
        }
    }
    let cases = Arc::new(cases);
    let results: Arc<Mutex<Vec<Option<Outcome>>>> =
        Arc::new(Mutex::new((0..cases.len()).map(|_| None).collect()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = args
        .parallel
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .clamp(1, 64);
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let (cases, results, next) = (cases.clone(), results.clone(), next.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(case) = cases.get(i) else { return };
                let outcome = run_case(case);
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(outcome);
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let results: Vec<Outcome> =
        std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .map(|o| {
                o.unwrap_or(Outcome {
                    failures: vec!["the case did not run".into()],
                    took: Duration::ZERO,
                })
            })
            .collect();
    let failed = results.iter().filter(|r| !r.failures.is_empty()).count();
    for (case, result) in cases.iter().zip(&results) {
        let verdict = if result.failures.is_empty() {
            "PASSED"
        } else {
            "FAILED"
        };
        println!("{}::{} {verdict}", case.file, case.name);
    }
    if failed > 0 {
        println!(
            "\n=================================== FAILURES ==================================="
        );
        for (case, result) in cases
            .iter()
            .zip(&results)
            .filter(|(_, r)| !r.failures.is_empty())
        {
            println!("___ {}::{} ___", case.file, case.name);
            for f in &result.failures {
                println!("  {f}");
            }
        }
    }
    let passed = cases.len() - failed;
    let mut summary = vec![];
    if failed > 0 {
        summary.push(format!("{failed} failed"));
    }
    summary.push(format!("{passed} passed"));
    println!(
        "{} in {:.2}s",
        summary.join(", "),
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &args.junit {
        let mut out = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"illumo\" tests=\"{}\" failures=\"{failed}\" time=\"{:.3}\">\n",
            cases.len(),
            started.elapsed().as_secs_f64()
        );
        for (case, result) in cases.iter().zip(&results) {
            out.push_str(&format!(
                "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                xml(&case.file),
                xml(&case.name),
                result.took.as_secs_f64()
            ));
            if result.failures.is_empty() {
                out.push_str("/>\n");
            } else {
                out.push_str(&format!(
                    ">\n    <failure message=\"{}\">{}</failure>\n  </testcase>\n",
                    xml(&result.failures[0]),
                    xml(&result.failures.join("\n"))
                ));
            }
        }
        out.push_str("</testsuite>\n");
        if let Err(e) = std::fs::write(path, out) {
            eprintln!("error: --junit: cannot write `{path}`: {e}");
            return EXIT_USAGE;
        }
    }
    if failed > 0 {
        1
    } else {
        0
    }
}
