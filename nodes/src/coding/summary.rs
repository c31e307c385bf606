//! `Summary`: a report of the run (changes, tests, review, next actions) as markdown and
//! JSON, from whatever the run produced. A missing part gives a fallback line.

use crate::paths;
use illumo_engine::node::{BuildCx, Node, NodeCx, NodeError, NodeFactory, Outcome};
use illumo_engine::path::{CtxPath, Step};
use illumo_engine::template::Reads;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// the report's title (default: the request summary)
    #[schemars(extend("x-kind" = "text"))]
    title: Option<String>,
    /// markdown (default $ctx.summary.report)
    #[schemars(extend("x-kind" = "$ctx path"))]
    report_path: Option<String>,
    /// JSON (default $ctx.summary.json)
    #[schemars(extend("x-kind" = "$ctx path"))]
    json_path: Option<String>,
    /// the files Patch recorded (default $ctx.workspace.files)
    #[schemars(extend("x-kind" = "$ctx path"))]
    files_path: Option<String>,
    /// what Patch did (default $ctx.diff.applied)
    #[schemars(extend("x-kind" = "$ctx path"))]
    applied_path: Option<String>,
    /// TestExecutor's results (default $ctx.tests.results)
    #[schemars(extend("x-kind" = "$ctx path"))]
    tests_path: Option<String>,
    /// ReviewAgent's verdict (default $ctx.review)
    #[schemars(extend("x-kind" = "$ctx path"))]
    review_path: Option<String>,
}

pub struct Summary {
    /// An illumo-flow flow: SummaryAgent's report and shapes.
    illumo_flow: bool,
    /// `json_path` (illumo-flow's `structured_path`) was given.
    json_given: bool,
    title: Option<String>,
    report: CtxPath,
    json: CtxPath,
    files: CtxPath,
    applied: CtxPath,
    tests: CtxPath,
    review: CtxPath,
}

pub struct SummaryFactory;

impl NodeFactory for SummaryFactory {
    fn type_name(&self) -> &'static str {
        "Summary"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &[
            "illumo_flow.nodes.SummaryAgent",
            "illumo_flow.nodes.summary.SummaryAgent",
        ]
    }
    fn summary(&self) -> &'static str {
        "a report of the run: changes, tests, review, next actions, as markdown and JSON"
    }
    fn settings_schema(&self) -> serde_json::Value {
        crate::settings::schema_of::<Config>()
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let config: Config = cx.config()?;
        let report = cx.ctx_path("report_path", config.report_path.as_deref(), paths::REPORT);
        let json = cx.ctx_path("json_path", config.json_path.as_deref(), paths::REPORT_JSON);
        let files = cx.ctx_path("files_path", config.files_path.as_deref(), paths::FILES);
        let applied = cx.ctx_path(
            "applied_path",
            config.applied_path.as_deref(),
            paths::APPLIED,
        );
        let tests = cx.ctx_path(
            "tests_path",
            config.tests_path.as_deref(),
            paths::TEST_RESULTS,
        );
        let review = cx.ctx_path("review_path", config.review_path.as_deref(), paths::REVIEW);
        Some(Box::new(Summary {
            illumo_flow: cx.dialect == illumo_engine::dialect::Dialect::IllumoFlow,
            json_given: config.json_path.is_some(),
            title: config.title,
            report: report?,
            json: json?,
            files: files?,
            applied: applied?,
            tests: tests?,
            review: review?,
        }))
    }
}

/// Lines added and removed by a patched file.
fn line_counts(original: &str, patched: &str) -> (usize, usize) {
    let patch = diffy::create_patch(original, patched);
    let mut counts = (0, 0);
    for hunk in patch.hunks() {
        for line in hunk.lines() {
            match line {
                diffy::Line::Insert(_) => counts.0 += 1,
                diffy::Line::Delete(_) => counts.1 += 1,
                diffy::Line::Context(_) => {}
            }
        }
    }
    counts
}

/// Where illumo-flow's SummaryAgent keeps what it read.
const STRUCTURED: &str = "$ctx.summary.structured";

/// A value as Python's `str()` prints it, for SummaryAgent's report.
fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        other => other.to_string(),
    }
}

/// Python's truth of a ctx value: not null, false, 0, "", [] or {}.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Bool(true)) => true,
    }
}

impl Summary {
    /// illumo-flow's SummaryAgent: a short report of the files, the tests and the review,
    /// in `ctx.summary.report`, the parts it read in `ctx.summary.structured`, output
    /// `{report, structured}`; `output_path` and `structured_path` get the same values.
    fn as_illumo_flow(&self, ctx: &Value) -> Outcome {
        let files = self.files.get(ctx).cloned().unwrap_or(json!([]));
        let tests = self.tests.get(ctx).cloned().unwrap_or(json!({}));
        let review = self.review.get(ctx).cloned().unwrap_or(json!({}));
        let mut lines: Vec<String> = Vec::new();
        if truthy(Some(&files)) {
            lines.push("### Files".into());
            for entry in files.as_array().into_iter().flatten() {
                let field = |k: &str| py_str(entry.get(k).unwrap_or(&Value::Null));
                lines.push(format!("- {}: {}", field("path"), field("status")));
            }
        }
        if truthy(Some(&tests)) {
            let pass = tests.get("returncode").and_then(Value::as_i64) == Some(0);
            lines.push("### Tests".into());
            lines.push(format!("- Status: {}", if pass { "PASS" } else { "FAIL" }));
            if let Some(command) = tests.get("command") {
                let parts: Vec<String> = match command {
                    Value::Array(items) => items.iter().map(py_str).collect(),
                    Value::String(s) => s.chars().map(String::from).collect(),
                    other => vec![py_str(other)],
                };
                lines.push(format!("- Command: {}", parts.join(" ")));
            }
            for (key, label) in [("stdout", "Stdout"), ("stderr", "Stderr")] {
                if truthy(tests.get(key)) {
                    let text = py_str(&tests[key]);
                    let snippet: String = text.trim().chars().take(200).collect();
                    lines.push(format!("- {label} snippet:\n{snippet}"));
                }
            }
        }
        if truthy(Some(&review)) {
            lines.push("### Review".into());
            if truthy(review.get("status")) {
                lines.push(format!("- Status: {}", py_str(&review["status"])));
            }
            if truthy(review.get("summary")) {
                lines.push(format!("- Notes: {}", py_str(&review["summary"])));
            }
        }
        if lines.is_empty() {
            lines.push("No updates were recorded.".into());
        }
        let report = Value::String(lines.join("\n"));
        let structured = json!({"files": files, "tests": tests, "review": review});
        let outcome = Outcome::value(json!({"report": report, "structured": structured}));
        let outcome = super::at_both(outcome, &self.report, paths::REPORT, &report);
        match self.json_given {
            true => super::at_both(outcome, &self.json, STRUCTURED, &structured),
            false => match CtxPath::parse(STRUCTURED) {
                Ok(path) => outcome.with_write(path, structured),
                Err(_) => outcome,
            },
        }
    }
}

#[illumo_engine::async_trait]
impl Node for Summary {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        let ctx = cx.ctx;
        if self.illumo_flow {
            return Ok(self.as_illumo_flow(ctx));
        }
        let request = ctx.pointer("/request/summary").and_then(Value::as_str);
        let title = self
            .title
            .clone()
            .or(request.map(str::to_string))
            .unwrap_or_else(|| "Run report".into());
        let mut md = format!("# {title}\n\n## Changes\n\n");

        let changes: Vec<Value> = match self.files.get(ctx) {
            Some(Value::Array(files)) => files
                .iter()
                .filter(|f| f.get("status").and_then(Value::as_str).is_some_and(|s| s != "original"))
                .map(|f| {
                    let text = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("");
                    let (added, removed) = line_counts(text("original_content"), text("patched_content"));
                    json!({"path": text("path"), "status": text("status"), "added": added, "removed": removed})
                })
                .collect(),
            _ => Vec::new(),
        };
        let written = self
            .applied
            .get(ctx)
            .and_then(|a| a.get("written"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if changes.is_empty() {
            md.push_str("No changes were applied.\n");
        } else {
            for c in &changes {
                md.push_str(&format!(
                    "- `{}`: {} (+{} -{})\n",
                    c["path"].as_str().unwrap_or(""),
                    c["status"].as_str().unwrap_or(""),
                    c["added"],
                    c["removed"]
                ));
            }
            md.push_str(if written {
                "\nThe files were written to disk.\n"
            } else {
                "\nDry run: the files on disk are unchanged (run with --write to apply).\n"
            });
        }

        md.push_str("\n## Tests\n\n");
        let tests = self.tests.get(ctx).filter(|t| t.is_object()).cloned();
        match &tests {
            Some(t) => {
                let command: Vec<String> = t["command"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                md.push_str(&format!(
                    "`{}`: {} passed, {} failed (exit code {}, {}s)\n",
                    command.join(" "),
                    t["passed"].as_u64().map_or("?".into(), |n| n.to_string()),
                    t["failed"].as_u64().map_or("?".into(), |n| n.to_string()),
                    t["returncode"]
                        .as_i64()
                        .map_or("none".into(), |n| n.to_string()),
                    t["duration"]
                ));
            }
            None => md.push_str("The tests were not run.\n"),
        }

        md.push_str("\n## Review\n\n");
        let review = self.review.get(ctx).filter(|r| r.is_object()).cloned();
        match &review {
            Some(r) => {
                let score = r["score"]
                    .as_f64()
                    .map(|s| format!(" (score {s})"))
                    .unwrap_or_default();
                md.push_str(&format!(
                    "{}{score}: {}\n",
                    r["status"].as_str().unwrap_or("?"),
                    r["summary"].as_str().unwrap_or("")
                ));
                for reason in r["reasons"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    md.push_str(&format!("- {reason}\n"));
                }
            }
            None => md.push_str("No review.\n"),
        }

        let mut next = Vec::new();
        let failed = tests
            .as_ref()
            .and_then(|t| t["failed"].as_u64())
            .unwrap_or(0);
        let ok = review.as_ref().and_then(|r| r["status"].as_str()) == Some("OK");
        if tests.is_none() {
            next.push("Run the tests.".to_string());
        } else if failed > 0 {
            next.push(format!(
                "Fix the {failed} failing test{}.",
                if failed == 1 { "" } else { "s" }
            ));
        }
        if let Some(r) = review.as_ref().filter(|_| !ok) {
            next.push(format!(
                "Address the review: {}",
                r["summary"].as_str().unwrap_or("")
            ));
        }
        if changes.is_empty() {
            next.push("Draft a change: nothing was applied.".into());
        } else if next.is_empty() {
            next.push(if written {
                "Commit the change.".to_string()
            } else {
                "Apply the change with `illumo run --write`, then commit it.".to_string()
            });
        }
        let errors = ctx
            .get("errors")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        md.push_str("\n## Next actions\n\n");
        for n in &next {
            md.push_str(&format!("- {n}\n"));
        }
        if errors > 0 {
            md.push_str(&format!(
                "\n{errors} step{} failed along the way; see `ctx.errors` or the trace.\n",
                if errors == 1 { "" } else { "s" }
            ));
        }
        let report = json!({
            "title": title, "changes": changes, "written": written, "tests": tests.map(|t| json!({
                "command": t["command"], "returncode": t["returncode"], "passed": t["passed"], "failed": t["failed"], "duration": t["duration"],
            })),
            "review": review, "next_actions": next, "errors": errors,
        });
        Ok(Outcome::value(Value::String(md.clone()))
            .with_write(self.report.clone(), Value::String(md))
            .with_write(self.json.clone(), report))
    }

    fn reads(&self) -> Reads {
        let key = |parts: &[&str]| {
            parts
                .iter()
                .map(|p| Step::Key(p.to_string()))
                .collect::<Vec<_>>()
        };
        Reads {
            paths: vec![
                key(&["request", "summary"]),
                self.files.steps.clone(),
                self.applied.steps.clone(),
                self.tests.steps.clone(),
                self.review.steps.clone(),
                key(&["errors"]),
            ],
            ..Reads::default()
        }
    }
}
