//! `Loop`: runs its `body` node once per item of `items`, with `ctx.loop.item` and
//! `ctx.loop.index`; its output is the list of the body's outputs.

use illumo_engine::node::{
    BuildCx, Node, NodeCx, NodeError, NodeFactory, NodeRef, Outcome, RefRole,
};
use illumo_engine::path::kind_of;
use illumo_engine::template::Reads;
use illumo_engine::value::ValueSpec;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct LoopConfig {
    /// the items, e.g. `$ctx.files`
    #[schemars(extend("x-kind" = "list or path"))]
    items: Value,
    /// the node run for each item
    #[schemars(extend("x-kind" = "node id"))]
    body: String,
}

pub struct Loop {
    items: ValueSpec,
    body: String,
    body_ref: NodeRef,
}

pub struct LoopFactory;

impl NodeFactory for LoopFactory {
    fn type_name(&self) -> &'static str {
        "Loop"
    }
    fn summary(&self) -> &'static str {
        "runs `body` once per item, with ctx.loop.item and ctx.loop.index; outputs the list of results"
    }
    fn settings_schema(&self) -> serde_json::Value {
        crate::settings::schema_of::<LoopConfig>()
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let config: LoopConfig = cx.config()?;
        let items = cx.value(cx.at(&["items"]), &config.items)?;
        let body_ref = NodeRef {
            id: config.body.clone(),
            at: cx.at(&["body"]),
            role: RefRole::Invoke,
            label: Some("each".into()),
        };
        if config.body == cx.node_id {
            cx.error(
                cx.at(&["body"]),
                &config.body,
                "a loop cannot run itself as its body",
            );
            return None;
        }
        Some(Box::new(Loop {
            items,
            body: config.body,
            body_ref,
        }))
    }
}

#[illumo_engine::async_trait]
impl Node for Loop {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        let items = self
            .items
            .render(cx.ctx)
            .map_err(|e| NodeError::fatal(e.to_string()))?;
        let Value::Array(items) = items else {
            return Err(NodeError::fatal(format!(
                "`items` is {}, not a list",
                kind_of(&items)
            )));
        };
        let mut ctx = cx.ctx.clone();
        if !ctx.is_object() {
            ctx = json!({});
        }
        let mut results = Vec::with_capacity(items.len());
        let mut writes = Vec::new();
        for (index, item) in items.iter().enumerate() {
            ctx["loop"] = json!({"item": item, "index": index});
            let outcome = cx.invoke(&self.body, &ctx, item).await?;
            results.push(outcome.output);
            // What the body writes besides its output (an agent's `metadata_path`) is
            // applied after the loop, in item order: the last item's value stays.
            writes.extend(outcome.writes);
        }
        let mut outcome = Outcome::value(Value::Array(results));
        outcome.writes = writes;
        Ok(outcome)
    }

    fn reads(&self) -> Reads {
        self.items.reads()
    }

    fn references(&self) -> Vec<NodeRef> {
        vec![self.body_ref.clone()]
    }
}
