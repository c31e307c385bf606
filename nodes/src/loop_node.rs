//! `Loop`: runs its `body` node once per item of `items`, with `ctx.loop.item` and
//! `ctx.loop.index`; its output is the list of the body's outputs, in item order. With
//! `parallel: N`, up to N items run at once (a map-reduce: the flow's next node reduces
//! the list); the first failure stops the others.

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
    /// how many items run at once (default 1: one after another)
    #[schemars(extend("x-kind" = "number"))]
    parallel: Option<usize>,
}

pub struct Loop {
    items: ValueSpec,
    body: String,
    body_ref: NodeRef,
    parallel: usize,
}

type Pending<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = (usize, Result<Outcome, NodeError>)> + Send + 'a>,
>;

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
        let parallel = config.parallel.unwrap_or(1);
        if !(1..=1024).contains(&parallel) {
            cx.error(
                cx.at(&["parallel"]),
                &parallel.to_string(),
                format!("`parallel` must be between 1 and 1024, not {parallel}"),
            );
            return None;
        }
        Some(Box::new(Loop {
            items,
            body: config.body,
            body_ref,
            parallel,
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
        let mut done: Vec<Option<Outcome>> = (0..items.len()).map(|_| None).collect();
        let mut running: Vec<Pending<'_>> = Vec::new();
        let mut next = 0;
        let cx = &cx;
        while next < items.len() || !running.is_empty() {
            while next < items.len() && running.len() < self.parallel {
                let index = next;
                let item = &items[index];
                let mut item_ctx = ctx.clone();
                item_ctx["loop"] = json!({"item": item, "index": index});
                let body = self.body.as_str();
                running.push(Box::pin(async move {
                    (index, cx.invoke(body, &item_ctx, item).await)
                }));
                next += 1;
            }
            // The first of the running items to finish.
            let (index, result) = std::future::poll_fn(|task| {
                for i in 0..running.len() {
                    if let std::task::Poll::Ready(r) = running[i].as_mut().poll(task) {
                        drop(running.swap_remove(i));
                        return std::task::Poll::Ready(r);
                    }
                }
                std::task::Poll::Pending
            })
            .await;
            // A failure stops the loop; the items still running are cancelled.
            done[index] = Some(result?);
        }
        let mut results = Vec::with_capacity(items.len());
        let mut writes = Vec::new();
        for outcome in done.into_iter().flatten() {
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

/// `LoopNode`: illumo-flow's loop, one item per visit. It routes the item to `body_route`
/// and, while items remain, itself (or `loop_route`) with the rest as
/// `{"__loop_state__": {items, index}}`; its output is `{<body>: item}`, and `[]` once the
/// items are done. What a flow
/// written for illumo-flow gets for `illumo_flow.core.LoopNode`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct FlowLoopConfig {
    /// the node each item goes to
    #[schemars(extend("x-kind" = "node id"))]
    body_route: String,
    /// where the rest of the items go (default: this node)
    #[schemars(extend("x-kind" = "node id"))]
    loop_route: Option<String>,
    /// for a map payload, the key that holds the items
    #[schemars(extend("x-kind" = "text"))]
    items_key: Option<String>,
    /// send `{item, index}` instead of the item
    #[serde(default)]
    #[schemars(extend("x-kind" = "bool"))]
    enumerate_items: bool,
}

pub struct FlowLoop {
    id: String,
    body: String,
    again: String,
    items_key: Option<String>,
    enumerate: bool,
    refs: Vec<NodeRef>,
}

pub struct FlowLoopFactory;

impl NodeFactory for FlowLoopFactory {
    fn type_name(&self) -> &'static str {
        "LoopNode"
    }
    fn summary(&self) -> &'static str {
        "illumo-flow's loop: routes one item to `body_route` per visit, and the rest back to itself"
    }
    fn settings_schema(&self) -> serde_json::Value {
        crate::settings::schema_of::<FlowLoopConfig>()
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let config: FlowLoopConfig = cx.config()?;
        let again = config
            .loop_route
            .clone()
            .unwrap_or_else(|| cx.node_id.to_string());
        let mut refs = vec![NodeRef {
            id: config.body_route.clone(),
            at: cx.at(&["body_route"]),
            role: RefRole::Route,
            label: Some("item".into()),
        }];
        let at = match config.loop_route {
            Some(_) => cx.at(&["loop_route"]),
            None => cx.at(&["body_route"]),
        };
        refs.push(NodeRef {
            id: again.clone(),
            at,
            role: RefRole::Route,
            label: Some("rest".into()),
        });
        Some(Box::new(FlowLoop {
            id: cx.node_id.to_string(),
            body: config.body_route,
            again,
            items_key: config.items_key,
            enumerate: config.enumerate_items,
            refs,
        }))
    }
}

impl FlowLoop {
    /// The items and where this visit is: from the state the previous visit passed on
    /// (`{"__loop_state__": {items, index}}`, also under this node's id), or from the
    /// payload on the first visit.
    fn state(&self, input: &Value) -> Result<(Vec<Value>, usize), NodeError> {
        let state = input
            .get("__loop_state__")
            .or_else(|| input.get(&self.id).and_then(|v| v.get("__loop_state__")));
        if let Some(state) = state {
            // illumo-flow's own words, as they end up in ctx.errors.
            let items = state["items"]
                .as_array()
                .cloned()
                .ok_or_else(|| NodeError::fatal("Invalid loop state payload"))?;
            let index = state["index"].as_u64().unwrap_or(0) as usize;
            if index > items.len() {
                return Err(NodeError::fatal("Loop state index is out of range"));
            }
            return Ok((items, index));
        }
        let source = match (&self.items_key, input) {
            (Some(key), Value::Object(map)) => map.get(key).cloned().unwrap_or(Value::Null),
            (_, other) => other.clone(),
        };
        match source {
            Value::Null => Ok((Vec::new(), 0)),
            Value::Array(items) => Ok((items, 0)),
            Value::Object(_) => Err(NodeError::fatal(
                "LoopNode payload must be a sequence, not a mapping",
            )),
            Value::String(_) => Err(NodeError::fatal(
                "LoopNode does not iterate over plain strings; provide a list instead",
            )),
            _ => Err(NodeError::fatal("LoopNode payload must be iterable")),
        }
    }
}

#[illumo_engine::async_trait]
impl Node for FlowLoop {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        let (items, index) = self.state(cx.input)?;
        let Some(item) = items.get(index) else {
            // A routing node's output is its `{target: payload}` map: none here.
            return Ok(Outcome::routed(json!({}), illumo_engine::Route::default()));
        };
        let sent = match (self.enumerate, item) {
            (true, item) => json!({"item": item, "index": index}),
            // A null payload is no payload there: the body gets the loop's own input.
            (false, Value::Null) => cx.input.clone(),
            (false, item) => item.clone(),
        };
        let mut targets = vec![self.body.clone()];
        let mut inputs = vec![Some(sent.clone())];
        let mut output = serde_json::Map::new();
        output.insert(self.body.clone(), sent);
        if index + 1 < items.len() {
            let state = json!({"__loop_state__": {"items": items, "index": index + 1}});
            targets.push(self.again.clone());
            inputs.push(Some(state.clone()));
            output.insert(self.again.clone(), state);
        }
        let route = illumo_engine::Route {
            targets,
            confidence: None,
            // illumo-flow's ctx.routing records no reason for a loop's routes.
            reason: None,
            inputs,
            each: Vec::new(),
        };
        Ok(Outcome::routed(Value::Object(output), route))
    }

    fn routes(&self) -> bool {
        true
    }

    fn references(&self) -> Vec<NodeRef> {
        self.refs.clone()
    }

    fn fan_outs(&self) -> Vec<Vec<String>> {
        vec![vec![self.body.clone(), self.again.clone()]]
    }
}
