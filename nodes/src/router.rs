//! `Router`: the first route whose `when` holds wins; `default` otherwise; `to` may name
//! several nodes (fan-out). No match and no default ends the branch.

use illumo_engine::condition::Condition;
use illumo_engine::node::{
    BuildCx, Node, NodeCx, NodeError, NodeFactory, NodeRef, Outcome, RefRole, Route,
};
use illumo_engine::template::Reads;
use illumo_engine::yaml::YPath;
use serde::Deserialize;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum Targets {
    One(String),
    Many(Vec<String>),
}

impl Targets {
    fn list(self) -> Vec<String> {
        match self {
            Targets::One(t) => vec![t],
            Targets::Many(ts) => ts,
        }
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RouteConfig {
    when: Option<String>,
    to: Option<Targets>,
    default: Option<Targets>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RouterConfig {
    /// `{when: CONDITION, to: NODE|[NODES]}` items, optionally ending with `{default: NODE|[NODES]}`
    #[schemars(extend("x-kind" = "list"))]
    routes: Vec<RouteConfig>,
}

struct Rule {
    when: Option<Condition>,
    targets: Vec<String>,
}

pub struct Router {
    rules: Vec<Rule>,
    refs: Vec<NodeRef>,
    reads: Reads,
}

pub struct RouterFactory;

impl NodeFactory for RouterFactory {
    fn type_name(&self) -> &'static str {
        "Router"
    }
    fn summary(&self) -> &'static str {
        "routes by rules: the first `when` that holds wins, `default` otherwise"
    }
    fn settings_schema(&self) -> serde_json::Value {
        crate::settings::schema_of::<RouterConfig>()
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let config: RouterConfig = cx.config()?;
        let mut rules = Vec::new();
        let mut refs = Vec::new();
        let mut reads = Reads::default();
        let mut ok = true;
        let count = config.routes.len();
        for (i, route) in config.routes.into_iter().enumerate() {
            let at = cx.at(&["routes", &i.to_string()]);
            let (when, key, targets) = match (route.when, route.to, route.default) {
                (Some(w), Some(to), None) => (Some(w), "to", to),
                (None, None, Some(d)) => {
                    if i + 1 != count {
                        cx.error(
                            at.key("default").as_key(),
                            "default",
                            "`default` must be the last route",
                        );
                        ok = false;
                    }
                    (None, "default", d)
                }
                _ => {
                    cx.error(
                        at.clone(),
                        "{",
                        "each route needs `when` and `to`, or only `default`",
                    );
                    ok = false;
                    continue;
                }
            };
            let when = match when {
                Some(source) => match cx.condition(at.key("when"), &source) {
                    Some(c) => {
                        reads.merge(c.reads());
                        Some(c)
                    }
                    None => {
                        ok = false;
                        None
                    }
                },
                None => None,
            };
            let targets = targets.list();
            let label = when
                .as_ref()
                .map_or("default".to_string(), |c| c.source().to_string());
            for (j, t) in targets.iter().enumerate() {
                let path: YPath = if targets.len() == 1 {
                    at.key(key)
                } else {
                    at.key(key).index(j)
                };
                refs.push(NodeRef {
                    id: t.clone(),
                    at: path,
                    role: RefRole::Route,
                    label: Some(label.clone()),
                });
            }
            rules.push(Rule { when, targets });
        }
        ok.then(|| Box::new(Router { rules, refs, reads }) as Box<dyn Node>)
    }
}

#[illumo_engine::async_trait]
impl Node for Router {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        for rule in &self.rules {
            let (hit, reason) = match &rule.when {
                None => (true, "default".to_string()),
                Some(c) => (
                    c.eval(cx.ctx, cx.input)
                        .map_err(|e| NodeError::fatal(e.to_string()))?,
                    c.source().to_string(),
                ),
            };
            if hit {
                let route = Route {
                    targets: rule.targets.clone(),
                    confidence: Some(1.0),
                    reason: Some(reason),
                    ..Route::default()
                };
                return Ok(Outcome {
                    writes: Vec::new(),
                    output: cx.input.clone(),
                    route: Some(route),
                });
            }
        }
        let route = Route {
            targets: vec![],
            confidence: None,
            reason: Some("no route matched".into()),
            ..Route::default()
        };
        Ok(Outcome {
            writes: Vec::new(),
            output: cx.input.clone(),
            route: Some(route),
        })
    }

    fn reads(&self) -> Reads {
        self.reads.clone()
    }

    fn routes(&self) -> bool {
        true
    }

    fn references(&self) -> Vec<NodeRef> {
        self.refs.clone()
    }

    fn fan_outs(&self) -> Vec<Vec<String>> {
        self.rules
            .iter()
            .filter(|r| r.targets.len() > 1)
            .map(|r| r.targets.clone())
            .collect()
    }
}
