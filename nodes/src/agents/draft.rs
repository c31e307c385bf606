//! `DraftAgent`: an agent whose reply must hold a unified diff. The diff is taken out of
//! code fences or prose, checked to parse, and written to `ctx.diff.proposed`.

use super::{check_keys, clip, AgentConfig, AgentCore, ReplyFormat, COMMON};
use crate::llm::Llm;
use diffy::patch_set::{ParseOptions, PatchSet};
use illumo_engine::node::{BuildCx, Node, NodeCx, NodeError, NodeFactory, Outcome};
use illumo_engine::path::CtxPath;
use illumo_engine::template::Reads;
use serde_json::Value;
use std::sync::Arc;

pub struct DraftAgentFactory(pub Arc<Llm>);

pub struct DraftAgent {
    core: AgentCore,
    path: CtxPath,
}

impl NodeFactory for DraftAgentFactory {
    fn type_name(&self) -> &'static str {
        "DraftAgent"
    }
    fn summary(&self) -> &'static str {
        "the model drafts a change as a unified diff, checked to parse, into ctx.diff.proposed"
    }
    fn settings_schema(&self) -> Value {
        super::agent_schema(true, &["diff_path"], &["prompt"])
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let allowed: Vec<&str> = COMMON.iter().chain(["diff_path"].iter()).copied().collect();
        if !check_keys(cx, "DraftAgent", &allowed) {
            return None;
        }
        let config: AgentConfig = cx.config()?;
        let plain = config.response_format.is_none();
        if !plain {
            cx.error(
                cx.at(&["response_format"]).as_key(),
                "response_format",
                "`DraftAgent` replies with a diff, not JSON",
            );
        }
        let path = cx.ctx_path("diff_path", config.diff_path.as_deref(), crate::paths::DIFF);
        let core = AgentCore::build(cx, &self.0, &config);
        let (core, path) = (core?, path?);
        plain.then(|| Box::new(DraftAgent { core, path }) as Box<dyn Node>)
    }
}

/// The diff in a reply: every fenced block that holds one (models often use one fence
/// per file), or the text from the first `diff --git` / `--- ` line. Hunk counts are
/// repaired first, as `Patch` does; the result must parse and change at least one file.
pub fn extract_diff(reply: &str) -> Result<String, String> {
    let mut fenced = Vec::new();
    let mut rest = reply;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let Some(newline) = after.find('\n') else {
            break;
        };
        let body = &after[newline + 1..];
        let end = body.find("```").unwrap_or(body.len());
        if body[..end].contains("\n+++ ")
            || body[..end].starts_with("+++ ")
            || body[..end].contains("\n--- ")
            || body[..end].starts_with("--- ")
        {
            fenced.push(body[..end].to_string());
        }
        rest = &body[(end + 3).min(body.len())..];
    }
    let mut candidates = Vec::new();
    if !fenced.is_empty() {
        candidates.push(
            fenced
                .iter()
                .map(|f| {
                    if f.ends_with('\n') {
                        f.clone()
                    } else {
                        format!("{f}\n")
                    }
                })
                .collect::<String>(),
        );
    }
    if let Some(start) = reply
        .lines()
        .position(|l| l.starts_with("diff --git") || l.starts_with("--- "))
    {
        candidates.push(
            reply
                .lines()
                .skip(start)
                .take_while(|l| !l.starts_with("```"))
                .collect::<Vec<_>>()
                .join("\n")
                + "\n",
        );
    }
    let mut why =
        "no unified diff in the reply (expected `--- a/file`, `+++ b/file` and `@@` hunks)"
            .to_string();
    for candidate in candidates {
        if !candidate.contains("\n+++ ") && !candidate.starts_with("+++ ") {
            continue;
        }
        let candidate = crate::coding::fix_hunk_counts(&candidate);
        let opts = if candidate.contains("diff --git") {
            ParseOptions::gitdiff()
        } else {
            ParseOptions::unidiff()
        };
        let mut files = 0;
        let mut error = None;
        for patch in PatchSet::parse(&candidate, opts) {
            match patch {
                Ok(_) => files += 1,
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
        }
        match (files, error) {
            (n, None) if n > 0 => return Ok(candidate),
            (_, Some(e)) => {
                let first = e.split(": ").take(2).collect::<Vec<_>>().join(": ");
                why = format!("the diff in the reply does not parse ({first})");
            }
            _ => {}
        }
    }
    Err(why)
}

#[illumo_engine::async_trait]
impl Node for DraftAgent {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        let answer = self.core.ask(&cx, None, &ReplyFormat::Text).await?;
        let diff = extract_diff(&answer.text)
            .map_err(|why| NodeError::retryable(format!("{why}: {}", clip(&answer.text))))?;
        let mut outcome = Outcome::value(Value::String(diff.clone()))
            .with_write(self.path.clone(), Value::String(diff));
        if let Some(path) = &self.core.metadata {
            outcome = outcome.with_write(path.clone(), answer.metadata);
        }
        Ok(outcome)
    }

    /// Nodes offered as tools run under this one.
    fn references(&self) -> Vec<illumo_engine::node::NodeRef> {
        self.core.tools.refs.clone()
    }

    fn reads(&self) -> Reads {
        self.core.reads()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIFF: &str = "--- a/app/calc.py\n+++ b/app/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n";

    #[test]
    fn every_fenced_diff_is_kept_and_counts_are_repaired() {
        let other = "--- a/app/text.py\n+++ b/app/text.py\n@@ -1 +1 @@\n-x\n+y\n";
        let repaired = other.replace("@@ -1 +1 @@", "@@ -1,1 +1,1 @@");
        assert_eq!(
            extract_diff(&format!("```diff\n{DIFF}```\nand\n```diff\n{other}```\n")),
            Ok(format!("{DIFF}{repaired}"))
        );
        let too_big = DIFF.replace("@@ -1,2 +1,2 @@", "@@ -1,3 +1,3 @@");
        assert_eq!(extract_diff(&too_big), Ok(DIFF.to_string()));
    }

    #[test]
    fn diffs_come_out_of_fences_and_prose() {
        assert_eq!(
            extract_diff(&format!("Here is the fix:\n```diff\n{DIFF}```\nDone.")),
            Ok(DIFF.to_string())
        );
        assert_eq!(
            extract_diff(&format!("Fix below.\n{DIFF}")),
            Ok(DIFF.to_string())
        );
        assert_eq!(
            extract_diff("I think the bug is in add()."),
            Err(
                "no unified diff in the reply (expected `--- a/file`, `+++ b/file` and `@@` hunks)"
                    .to_string()
            )
        );
    }
}
