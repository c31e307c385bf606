//! `Command`: runs a program from an argv list (never a shell), with optional JSON on
//! stdin; its output is stdout, as text or parsed JSON. Runs in the flow file's folder
//! unless `cwd` says otherwise; the whole process group dies with the node.

use crate::process::GroupGuard;
use illumo_engine::node::{BuildCx, Node, NodeCx, NodeError, NodeFactory, Outcome};
use illumo_engine::template::Reads;
use illumo_engine::value::ValueSpec;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

#[derive(Deserialize, Clone, Copy, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Parse {
    Text,
    Json,
}

fn default_ok_codes() -> Vec<i32> {
    vec![0]
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct CommandConfig {
    /// program and arguments; items may be templates
    #[schemars(extend("x-kind" = "list"))]
    argv: Vec<Value>,
    /// a value written to stdin as JSON (a string is written as is)
    #[schemars(extend("x-kind" = "any"))]
    stdin: Option<Value>,
    #[serde(default = "default_parse")]
    /// how to read stdout (default text)
    #[schemars(extend("x-kind" = "text|json"))]
    parse: Parse,
    /// working folder, relative to the flow file (default: its folder)
    #[schemars(extend("x-kind" = "path"))]
    cwd: Option<String>,
    #[serde(default)]
    /// extra environment variables; values may be templates
    #[schemars(extend("x-kind" = "map"))]
    env: BTreeMap<String, Value>,
    #[serde(default = "default_ok_codes")]
    /// exit codes that count as success (default [0])
    #[schemars(extend("x-kind" = "list"))]
    ok_codes: Vec<i32>,
}

fn default_parse() -> Parse {
    Parse::Text
}

pub struct Command {
    argv: ValueSpec,
    stdin: Option<ValueSpec>,
    parse: Parse,
    cwd: PathBuf,
    env: Vec<(String, ValueSpec)>,
    ok_codes: Vec<i32>,
}

pub struct CommandFactory;

impl NodeFactory for CommandFactory {
    fn type_name(&self) -> &'static str {
        "Command"
    }
    fn summary(&self) -> &'static str {
        "runs a program (argv, no shell); output is stdout as text or JSON"
    }
    fn settings_schema(&self) -> serde_json::Value {
        crate::settings::schema_of::<CommandConfig>()
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let config: CommandConfig = cx.config()?;
        let has_program = !config.argv.is_empty();
        if !has_program {
            cx.error(
                cx.at(&["argv"]),
                "[]",
                "`argv` needs at least the program to run",
            );
        }
        // Every part is compiled, so each bad template is reported, not only the first.
        let argv = cx.value(cx.at(&["argv"]), &Value::Array(config.argv));
        let stdin = match &config.stdin {
            Some(v) => cx.value(cx.at(&["stdin"]), v).map(Some),
            None => Some(None),
        };
        let env: Vec<Option<(String, ValueSpec)>> = config
            .env
            .iter()
            .map(|(k, v)| {
                cx.value(cx.at(&["env", k]), v)
                    .map(|spec| (k.clone(), spec))
            })
            .collect();
        let (argv, stdin) = (argv?, stdin?);
        let env: Vec<(String, ValueSpec)> = env.into_iter().collect::<Option<_>>()?;
        if !has_program {
            return None;
        }
        let cwd = match config.cwd {
            Some(c) => cx.base_dir.join(c),
            None => cx.base_dir.to_path_buf(),
        };
        Some(Box::new(Command {
            argv,
            stdin,
            parse: config.parse,
            cwd,
            env,
            ok_codes: config.ok_codes,
        }))
    }
}

fn text_of(value: Value) -> String {
    match value {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// The last `max` characters of a text, for error messages.
fn tail(text: &str, max: usize) -> String {
    let text = text.trim_end();
    let count = text.chars().count();
    if count <= max {
        text.to_string()
    } else {
        format!("…{}", text.chars().skip(count - max).collect::<String>())
    }
}

#[illumo_engine::async_trait]
impl Node for Command {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        let render = |spec: &ValueSpec| {
            spec.render(cx.ctx)
                .map_err(|e| NodeError::fatal(e.to_string()))
        };
        let Value::Array(argv) = render(&self.argv)? else {
            return Err(NodeError::fatal("`argv` must render to a list"));
        };
        let argv: Vec<String> = argv.into_iter().map(text_of).collect();
        let mut command = tokio::process::Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .current_dir(&self.cwd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        crate::process::contain(&mut command);
        for (name, spec) in &self.env {
            command.env(name, text_of(render(spec)?));
        }
        let stdin = match &self.stdin {
            Some(spec) => Some(match render(spec)? {
                Value::String(s) => s,
                other => other.to_string(),
            }),
            None => None,
        };
        command.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = command.spawn().map_err(|e| {
            NodeError::fatal(format!(
                "cannot start `{}` in `{}`: {e}",
                argv[0],
                self.cwd.display()
            ))
        })?;
        let _group = child.id().map(GroupGuard::new);
        let pipe = child.stdin.take();
        let feed = async move {
            if let (Some(mut pipe), Some(text)) = (pipe, stdin) {
                // A program that exits without reading stdin closes the pipe; that is its choice.
                let _ = pipe.write_all(text.as_bytes()).await;
            }
        };
        let (output, ()) = tokio::join!(child.wait_with_output(), feed);
        let output = output.map_err(|e| NodeError::fatal(format!("`{}` failed: {e}", argv[0])))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let code = output.status.code();
        if !code.is_some_and(|c| self.ok_codes.contains(&c)) {
            let how = code.map_or("was killed by a signal".to_string(), |c| {
                format!("exited with code {c}")
            });
            let detail = if stderr.trim().is_empty() {
                tail(&stdout, 300)
            } else {
                tail(&stderr, 300)
            };
            let detail = match detail.trim() {
                "" => String::new(),
                text => format!(": {text}"),
            };
            return Err(NodeError::retryable(format!("`{}` {how}{detail}", argv[0])));
        }
        let value = match self.parse {
            Parse::Text => Value::String(stdout.strip_suffix('\n').unwrap_or(&stdout).to_string()),
            Parse::Json => serde_json::from_str(&stdout).map_err(|e| {
                NodeError::fatal(format!(
                    "`{}` did not print JSON ({e}): {}",
                    argv[0],
                    tail(&stdout, 200)
                ))
            })?,
        };
        Ok(Outcome::value(value))
    }

    fn reads(&self) -> Reads {
        let mut reads = self.argv.reads();
        if let Some(s) = &self.stdin {
            reads.merge(&s.reads());
        }
        for (_, spec) in &self.env {
            reads.merge(&spec.reads());
        }
        reads
    }
}
