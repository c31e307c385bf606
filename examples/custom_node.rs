//! A custom node type in Rust: `WordCount` counts the words of its input text.
//!
//!     cargo run --example custom_node
//!
//! A node type is a factory (reads and checks `setting:`, once, at load) that builds a
//! node (runs per attempt, takes `&self`, returns a value). Register it next to the
//! built-ins and load flows as usual; the engine adds policies, tracing and validation.

use illumo_engine::node::{BuildCx, Node, NodeCx, NodeError, NodeFactory, Outcome};
use illumo_engine::runner::{run, RunOptions};
use illumo_engine::tracer::Fanout;
use illumo_engine::{Flow, NodeRegistry, Source};
use serde_json::{json, Value};
use std::sync::Arc;

/// The settings, checked at load; unknown keys are reported with their line and column.
/// The doc comments document them in `illumo nodes` (through the derived JSON Schema).
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct WordCountConfig {
    /// ignore shorter words
    #[serde(default)]
    min_length: usize,
}

struct WordCount {
    min_length: usize,
}

#[illumo_engine::async_trait]
impl Node for WordCount {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        let Some(text) = cx.input.as_str() else {
            return Err(NodeError::fatal(format!(
                "`{}` needs text as input, got {}",
                cx.id, cx.input
            )));
        };
        let words = text
            .split_whitespace()
            .filter(|w| w.chars().count() >= self.min_length)
            .count();
        Ok(Outcome::value(json!({"words": words})))
    }
}

struct WordCountFactory;

impl NodeFactory for WordCountFactory {
    fn type_name(&self) -> &'static str {
        "WordCount"
    }
    fn summary(&self) -> &'static str {
        "counts the words of its input text"
    }
    fn settings_schema(&self) -> Value {
        serde_json::to_value(schemars::schema_for!(WordCountConfig)).unwrap_or_default()
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let config: WordCountConfig = cx.config()?;
        Some(Box::new(WordCount {
            min_length: config.min_length,
        }))
    }
}

const FLOW: &str = r#"
flow:
  name: custom
  nodes:
    text:
      type: Set
      setting: {value: "{{ $ctx.text }}"}
    count:
      type: WordCount
      setting: {min_length: 3}
      outputs: $ctx.count
  edges:
    - text >> count
"#;

fn registry() -> NodeRegistry {
    let mut registry = NodeRegistry::new();
    illumo_nodes::register_builtins(&mut registry);
    registry.register(WordCountFactory);
    registry
}

async fn count_words(text: &str) -> Value {
    let flow =
        Flow::load(Source::new("custom.yaml", FLOW), &registry()).unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions::new(Arc::new(Fanout::default()));
    let out = run(Arc::new(flow), json!({"text": text}), options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    out.ctx["count"].clone()
}

#[tokio::main]
async fn main() {
    println!("{}", count_words("the quick brown fox is here").await);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn counts_words_through_a_flow() {
        assert_eq!(
            count_words("the quick brown fox is here").await,
            json!({"words": 5})
        );
    }

    #[test]
    fn bad_settings_are_reported_with_their_place() {
        let text = FLOW.replace("min_length: 3", "min_lenght: 3");
        let err = Flow::load(Source::new("custom.yaml", text), &registry())
            .err()
            .expect("an error");
        assert_eq!(
            err.to_string(),
            "error: node `count`: unknown setting `min_lenght`, expected `min_length`\n  --> custom.yaml:10:17\n   |\n10 |       setting: {min_lenght: 3}\n   |                 ^^^^^^^^^^\n\nerror: custom.yaml has 1 error\n"
        );
    }

    #[test]
    fn settings_are_documented_from_the_config_type() {
        assert_eq!(
            WordCountFactory.settings(),
            [illumo_engine::node::SettingDoc {
                name: "min_length".into(),
                kind: "number".into(),
                required: false,
                about: "ignore shorter words".into(),
            }]
        );
    }
}
