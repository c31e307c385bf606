//! `Set`: its output is `value`, rendered (references and templates inside).

use illumo_engine::node::{BuildCx, Node, NodeCx, NodeError, NodeFactory, Outcome};
use illumo_engine::template::Reads;
use illumo_engine::value::ValueSpec;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct SetConfig {
    /// the output; strings may be paths or templates
    #[schemars(extend("x-kind" = "any"))]
    value: Value,
}

pub struct Set {
    value: ValueSpec,
}

pub struct SetFactory;

impl NodeFactory for SetFactory {
    fn type_name(&self) -> &'static str {
        "Set"
    }
    fn summary(&self) -> &'static str {
        "outputs `value`, with `$ctx...` references and `{{ }}` templates rendered"
    }
    fn settings_schema(&self) -> serde_json::Value {
        crate::settings::schema_of::<SetConfig>()
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let config: SetConfig = cx.config()?;
        let value = cx.value(cx.at(&["value"]), &config.value)?;
        Some(Box::new(Set { value }))
    }
}

#[illumo_engine::async_trait]
impl Node for Set {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        let value = self
            .value
            .render(cx.ctx)
            .map_err(|e| NodeError::fatal(e.to_string()))?;
        Ok(Outcome::value(value))
    }

    fn reads(&self) -> Reads {
        self.value.reads()
    }
}
