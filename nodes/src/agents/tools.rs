//! Tools an agent may call (`tools:`): `python` (the PythonExec sandbox), any node of the
//! flow (`{node: ID, description, parameters}`), and `{name: read_file, root: DIR}`. The
//! model asks for calls; they run (those of one reply at once), and their results go
//! back to it until it answers without a call, or `max_tool_rounds` is passed.

use crate::llm::ToolCall;
use crate::python::exec::PythonExec;
use illumo_engine::node::{BuildCx, NodeCx, NodeRef, RefRole};
use serde_json::{json, Map, Value};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

/// Rounds of tool calls an agent may make unless it says otherwise.
pub const DEFAULT_MAX_ROUNDS: u64 = 8;
/// The most of a tool's result the model is shown, and a trace keeps.
const RESULT_CHARS: usize = 16_000;

pub(crate) enum Tool {
    Python(Arc<PythonExec>),
    Node {
        id: String,
        description: String,
        parameters: Value,
    },
    ReadFile {
        root: PathBuf,
    },
}

impl Tool {
    pub(crate) fn name(&self) -> &str {
        match self {
            Tool::Python(_) => "python",
            Tool::Node { id, .. } => id,
            Tool::ReadFile { .. } => "read_file",
        }
    }

    /// The function definition the model sees.
    fn definition(&self) -> Value {
        let (name, description, parameters) = match self {
            Tool::Python(_) => (
                "python",
                format!(
                    "Run Python code in a sandbox (no network, no files outside its folder; imports: {}). Returns stdout, stderr, `result` (the variable `result`, else the last expression's value) and any error with its traceback.",
                    crate::python::exec::DEFAULT_IMPORTS.join(", ")
                ),
                json!({"type": "object", "properties": {"code": {"type": "string", "description": "the Python code"}}, "required": ["code"]}),
            ),
            Tool::Node { id, description, parameters } => {
                (id.as_str(), description.clone(), parameters.clone())
            }
            Tool::ReadFile { .. } => (
                "read_file",
                "Read a text file of the project, by its path relative to the project folder.".to_string(),
                json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
            ),
        };
        json!({"type": "function", "function": {"name": name, "description": description, "parameters": parameters}})
    }
}

pub(crate) struct Tools {
    pub(crate) list: Vec<Tool>,
    pub(crate) max_rounds: u64,
    pub(crate) choice: Option<Value>,
    pub(crate) refs: Vec<NodeRef>,
}

impl Tools {
    /// Reads `tools:`, `tool_choice:` and `max_tool_rounds:`; every problem reported.
    pub(crate) fn build(
        cx: &mut BuildCx,
        tools: Option<&Value>,
        choice: Option<&Value>,
        max_rounds: Option<u64>,
    ) -> Option<Tools> {
        let mut list = Vec::new();
        let mut refs = Vec::new();
        let mut ok = true;
        let items = match tools {
            None => &[][..],
            Some(Value::Array(items)) => items.as_slice(),
            Some(other) => {
                cx.error(
                    cx.at(&["tools"]),
                    &other.to_string(),
                    "`tools` is a list: `python`, `{node: ID}`, `{name: read_file, root: DIR}`",
                );
                return None;
            }
        };
        for (i, item) in items.iter().enumerate() {
            let at = cx.at(&["tools", &i.to_string()]);
            match item {
                Value::String(s) if s == "python" => {
                    list.push(Tool::Python(Arc::new(PythonExec::for_tool())))
                }
                Value::Object(m) if m.contains_key("node") => {
                    let Some(id) = m["node"].as_str() else {
                        cx.error(
                            at,
                            &m["node"].to_string(),
                            "`node` names a node of the flow",
                        );
                        ok = false;
                        continue;
                    };
                    if let Some(key) = m
                        .keys()
                        .find(|k| !["node", "description", "parameters"].contains(&k.as_str()))
                    {
                        cx.error(cx.at(&["tools", &i.to_string(), key]).as_key(), key, format!("unknown key `{key}`; a node tool has `node`, `description`, `parameters`"));
                        ok = false;
                        continue;
                    }
                    refs.push(NodeRef {
                        id: id.to_string(),
                        at: cx.at(&["tools", &i.to_string(), "node"]),
                        role: RefRole::Invoke,
                        label: Some("tool".into()),
                    });
                    list.push(Tool::Node {
                        id: id.to_string(),
                        description: m
                            .get("description")
                            .and_then(Value::as_str)
                            .unwrap_or("Run this step of the flow with the given input.")
                            .to_string(),
                        parameters: m
                            .get("parameters")
                            .cloned()
                            .unwrap_or_else(|| json!({"type": "object"})),
                    });
                }
                Value::Object(m) if m.get("name").and_then(Value::as_str) == Some("read_file") => {
                    let Some(root) = m.get("root").and_then(Value::as_str) else {
                        cx.error(
                            at,
                            "read_file",
                            "`read_file` needs `root: DIR`, the folder it may read",
                        );
                        ok = false;
                        continue;
                    };
                    list.push(Tool::ReadFile {
                        root: cx.base_dir.join(root),
                    });
                }
                other => {
                    cx.error(at, &other.to_string(), "a tool is `python`, `{node: ID, description, parameters}` or `{name: read_file, root: DIR}`");
                    ok = false;
                }
            }
        }
        let mut names: Vec<&str> = list.iter().map(Tool::name).collect();
        names.sort();
        if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
            cx.error(
                cx.at(&["tools"]),
                twice[0],
                format!("the tool `{}` is listed twice", twice[0]),
            );
            ok = false;
        }
        let choice = match choice {
            None => None,
            Some(Value::String(s)) if ["auto", "required", "none"].contains(&s.as_str()) => {
                Some(json!(s))
            }
            Some(Value::Object(m))
                if m.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| list.iter().any(|t| t.name() == n)) =>
            {
                Some(json!({"type": "function", "function": {"name": m["name"]}}))
            }
            Some(other) => {
                cx.error(cx.at(&["tool_choice"]), &other.to_string(), "`tool_choice` is `auto`, `required`, `none` or `{name: TOOL}` of a listed tool");
                ok = false;
                None
            }
        };
        let rounds_ok = max_rounds.is_none_or(|n| cx.check_range("max_tool_rounds", n, 1, 100));
        (ok && rounds_ok).then_some(Tools {
            list,
            max_rounds: max_rounds.unwrap_or(DEFAULT_MAX_ROUNDS),
            choice,
            refs,
        })
    }

    pub(crate) fn definitions(&self) -> Vec<Value> {
        self.list.iter().map(Tool::definition).collect()
    }

    /// Runs the calls of one reply at once; each result as the model will read it.
    pub(crate) async fn run_all(&self, cx: &NodeCx<'_>, calls: &[ToolCall]) -> Vec<Value> {
        let futures: Vec<Pin<Box<dyn Future<Output = Value> + Send + '_>>> = calls
            .iter()
            .map(|c| Box::pin(self.run(cx, c)) as Pin<Box<dyn Future<Output = Value> + Send + '_>>)
            .collect();
        join_all(futures).await
    }

    async fn run(&self, cx: &NodeCx<'_>, call: &ToolCall) -> Value {
        let mut event = Map::new();
        event.insert("id".into(), json!(call.id));
        event.insert("name".into(), json!(call.name));
        event.insert(
            "arguments".into(),
            json!(cx.preview(&call.arguments, cx.max_text())),
        );
        cx.event("agent.tool_call", event);
        let started = std::time::SystemTime::now();
        let result = match self.list.iter().find(|t| t.name() == call.name) {
            None => {
                json!({"error": format!("there is no tool `{}`; the tools are {}", call.name, self.list.iter().map(Tool::name).collect::<Vec<_>>().join(", "))})
            }
            Some(Tool::Python(exec)) => match call.arguments.get("code").and_then(Value::as_str) {
                // What the model needs, without what changes from run to run (the
                // duration), so a recorded conversation replays.
                Some(code) => {
                    let mut out = exec.run_code(code).await;
                    if let Value::Object(m) = &mut out {
                        m.retain(|k, _| {
                            ["success", "stdout", "stderr", "result", "error", "files"]
                                .contains(&k.as_str())
                        });
                    }
                    out
                }
                None => json!({"error": "the python tool needs `code`"}),
            },
            Some(Tool::Node { id, .. }) => match cx.invoke(id, cx.ctx, &call.arguments).await {
                Ok(outcome) => outcome.output,
                Err(e) => json!({"error": e.to_string()}),
            },
            Some(Tool::ReadFile { root }) => read_file(root, &call.arguments),
        };
        let mut event = Map::new();
        event.insert("id".into(), json!(call.id));
        event.insert("name".into(), json!(call.name));
        event.insert("result".into(), json!(cx.preview(&result, cx.max_text())));
        cx.event("agent.tool_result", event);
        // A node tool has its own span already (it ran as a node).
        if !matches!(
            self.list.iter().find(|t| t.name() == call.name),
            Some(Tool::Node { .. })
        ) {
            let failed = result.get("error").is_some_and(|e| !e.is_null())
                || result.get("success") == Some(&json!(false));
            let mut attributes = Map::new();
            attributes.insert("tool".into(), json!({"name": call.name, "id": call.id}));
            attributes.insert(
                "input".into(),
                json!({"preview": cx.preview(&call.arguments, cx.max_text())}),
            );
            attributes.insert(
                "output".into(),
                json!({"preview": cx.preview(&result, cx.max_text())}),
            );
            cx.child_span(&format!("tool {}", call.name), started, attributes, !failed);
        }
        result
    }
}

/// `read_file`: a file inside `root`, with Patch's path guards and the bounded reader.
fn read_file(root: &std::path::Path, arguments: &Value) -> Value {
    let Some(path) = arguments.get("path").and_then(Value::as_str) else {
        return json!({"error": "read_file needs `path`"});
    };
    let target = match crate::coding::patch::check_path(root, path, &["**".to_string()]) {
        Ok(t) => t,
        Err(why) => return json!({"error": format!("`{path}` cannot be read: {why}")}),
    };
    match crate::files::read_text(&target) {
        Ok(text) => json!({"path": path, "content": text}),
        Err(why) => json!({"error": format!("`{path}` cannot be read: {why}")}),
    }
}

/// A tool result as the text of a `tool` message.
pub(crate) fn result_text(result: &Value) -> String {
    let text = match result {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > RESULT_CHARS {
        format!(
            "{}… [cut at {RESULT_CHARS} characters]",
            text.chars().take(RESULT_CHARS).collect::<String>()
        )
    } else {
        text
    }
}

/// Waits for every future, polling each in turn, and returns their outputs in order.
async fn join_all<T>(mut futures: Vec<Pin<Box<dyn Future<Output = T> + Send + '_>>>) -> Vec<T> {
    let mut done: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|task| {
        let mut pending = false;
        for (i, f) in futures.iter_mut().enumerate() {
            if done[i].is_none() {
                match f.as_mut().poll(task) {
                    Poll::Ready(v) => done[i] = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    done.into_iter()
        .map(|v| v.expect("every future finished"))
        .collect()
}
