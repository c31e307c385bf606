//! `Http`: one HTTP request, with the retry rules a webhook needs. Connection errors,
//! timeouts, 429 (waiting at least its `Retry-After`) and 5xx are retryable; any other
//! status outside `expect` is fatal with the server's message. Every request carries an
//! `Idempotency-Key` derived from the trace, the node and the step, the same for each
//! retry of a step and for its rerun after `illumo resume`, so a server that saw the
//! request once can tell the repeat.
//!
//! Output: `{status, headers, json | text, duration_ms}`.

use illumo_engine::duration::duration_from_json;
use illumo_engine::node::{BuildCx, Node, NodeCx, NodeError, NodeFactory, Outcome};
use illumo_engine::template::Reads;
use illumo_engine::value::ValueSpec;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// GET, POST, PUT, PATCH or DELETE (default GET, or POST with `json` or `body`)
    method: Option<String>,
    /// where to send it (a template)
    #[schemars(extend("x-kind" = "template"))]
    url: String,
    /// header values (templates); values read from $env are secrets, redacted in traces
    #[schemars(extend("x-kind" = "map"))]
    headers: Option<Map<String, Value>>,
    /// query parameters (templates)
    #[schemars(extend("x-kind" = "map"))]
    query: Option<Map<String, Value>>,
    /// a JSON body (references and templates rendered)
    #[schemars(extend("x-kind" = "any"))]
    json: Option<Value>,
    /// a text body (a template)
    #[schemars(extend("x-kind" = "template"))]
    body: Option<String>,
    /// how long the request may take (default 10s)
    #[schemars(extend("x-kind" = "duration"))]
    timeout: Option<Value>,
    /// status codes that count as success (default any 2xx)
    #[schemars(extend("x-kind" = "list"))]
    expect: Option<Vec<u16>>,
}

/// A request's settings, compiled; `Handoff` sends with the same rules.
pub(crate) struct Request {
    pub method: reqwest::Method,
    pub url: ValueSpec,
    pub headers: Vec<(String, ValueSpec)>,
    pub query: Vec<(String, ValueSpec)>,
    pub body: Body,
    pub timeout: Duration,
    pub expect: Option<Vec<u16>>,
}

pub(crate) enum Body {
    None,
    Json(ValueSpec),
    Text(ValueSpec),
}

pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

fn client() -> Result<&'static reqwest::Client, NodeError> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            crate::llm::install_crypto();
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| NodeError::fatal(format!("cannot create the HTTP client: {e}")))
}

/// The text of a rendered value (a template's text, or JSON).
fn text(value: Value) -> String {
    match value {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Compiles `{name: template}` maps; variables read from `$env` become secrets.
pub(crate) fn templates(
    cx: &mut BuildCx,
    field: &str,
    map: Option<&Map<String, Value>>,
    secret: bool,
) -> Option<Vec<(String, ValueSpec)>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (name, value) in map.into_iter().flatten() {
        match cx.value(cx.at(&[field, name]), value) {
            Some(spec) => {
                if secret {
                    for var in spec.reads().env {
                        cx.secret_env(&var);
                    }
                }
                out.push((name.clone(), spec));
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

pub(crate) fn parse_timeout(cx: &mut BuildCx, value: Option<&Value>) -> Option<Duration> {
    match value {
        None => Some(DEFAULT_TIMEOUT),
        Some(v) => match duration_from_json(v).filter(|d| !d.is_zero()) {
            Some(d) => Some(d),
            None => {
                cx.error(
                    cx.at(&["timeout"]),
                    &v.to_string(),
                    format!("invalid duration `{v}`; use 10s, 500ms, ..."),
                );
                None
            }
        },
    }
}

impl Request {
    pub fn reads(&self) -> Reads {
        let mut reads = self.url.reads();
        for (_, spec) in self.headers.iter().chain(&self.query) {
            reads.merge(&spec.reads());
        }
        match &self.body {
            Body::Json(spec) | Body::Text(spec) => reads.merge(&spec.reads()),
            Body::None => {}
        }
        reads
    }

    /// Sends it; the JSON body given here replaces the configured one (`Handoff`'s ticket).
    pub async fn send(
        &self,
        cx: &NodeCx<'_>,
        json_body: Option<Value>,
    ) -> Result<Value, NodeError> {
        let render = |spec: &ValueSpec| {
            spec.render(cx.ctx)
                .map_err(|e| NodeError::fatal(e.to_string()))
        };
        let mut url = text(render(&self.url)?);
        if !self.query.is_empty() {
            let mut pairs = Vec::new();
            for (name, spec) in &self.query {
                pairs.push(format!("{}={}", encode(name), encode(&text(render(spec)?))));
            }
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&pairs.join("&"));
        }
        let mut request = client()?
            .request(self.method.clone(), &url)
            .timeout(self.timeout)
            .header(
                "Idempotency-Key",
                idempotency_key(cx.trace_id, cx.id, cx.step),
            );
        for (name, spec) in &self.headers {
            request = request.header(name.as_str(), text(render(spec)?));
        }
        request = match (&self.body, json_body) {
            (_, Some(body)) => request
                .header("Content-Type", "application/json")
                .body(body.to_string()),
            (Body::Json(spec), None) => request
                .header("Content-Type", "application/json")
                .body(render(spec)?.to_string()),
            (Body::Text(spec), None) => request.body(text(render(spec)?)),
            (Body::None, None) => request,
        };
        let started = Instant::now();
        let response = request.send().await.map_err(|e| {
            let what = if e.is_timeout() {
                format!(
                    "timed out after {}",
                    illumo_engine::duration::duration_text(self.timeout)
                )
            } else if e.is_connect() {
                "cannot connect".to_string()
            } else {
                "the request failed".to_string()
            };
            let error = NodeError::retryable(format!(
                "{} {url}: {what}: {}",
                self.method,
                source_text(&e)
            ));
            if e.is_timeout() {
                error.as_timeout()
            } else {
                error
            }
        })?;
        let status = response.status().as_u16();
        let retry_after = crate::llm::retry_after(
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
        );
        let mut headers = Map::new();
        for (name, value) in response.headers() {
            if let Ok(v) = value.to_str() {
                headers.insert(name.as_str().to_string(), json!(v));
            }
        }
        let bytes = response.bytes().await.map_err(|e| {
            NodeError::retryable(format!(
                "{} {url}: the answer was cut off: {}",
                self.method,
                source_text(&e)
            ))
        })?;
        let duration_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
        let body_text = String::from_utf8_lossy(&bytes).into_owned();
        let ok = match &self.expect {
            Some(codes) => codes.contains(&status),
            None => (200..300).contains(&status),
        };
        if !ok {
            let shown: String = body_text.chars().take(500).collect();
            let message = format!("{} {url} answered {status}: {}", self.method, shown.trim());
            return Err(match status {
                429 => match retry_after {
                    Some(wait) => NodeError::retry_after(message, wait),
                    None => NodeError::retryable(message),
                },
                500..=599 => NodeError::retryable(message),
                _ => NodeError::fatal(message),
            });
        }
        let mut output = json!({"status": status, "headers": headers, "duration_ms": duration_ms});
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) if !bytes.is_empty() => output["json"] = v,
            _ => output["text"] = json!(body_text),
        }
        Ok(output)
    }
}

/// Percent-encodes a query component (RFC 3986 unreserved characters stay).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// What went wrong at the bottom of a reqwest error (its sources).
fn source_text(e: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    if text.is_empty() {
        e.to_string()
    } else {
        text
    }
}

/// The same for every retry of a step and for its rerun after a resume.
pub(crate) fn idempotency_key(
    trace: illumo_engine::tracer::TraceId,
    node: &str,
    step: u64,
) -> String {
    format!(
        "{trace}-{}",
        illumo_engine::journal::digest(format!("{node}\n{step}").as_bytes())
    )
}

pub struct Http {
    request: Request,
}

pub struct HttpFactory;

/// A request's settings as written, shared with `Handoff`.
pub(crate) struct Settings<'a> {
    pub method: Option<&'a str>,
    pub url: &'a str,
    pub headers: Option<&'a Map<String, Value>>,
    pub query: Option<&'a Map<String, Value>>,
    pub body: Body,
    pub timeout: Option<&'a Value>,
    pub expect: Option<Vec<u16>>,
}

/// Compiles a request's settings.
pub(crate) fn request(cx: &mut BuildCx, settings: Settings<'_>) -> Option<Request> {
    let Settings {
        method,
        url,
        headers,
        query,
        body,
        timeout,
        expect,
    } = settings;
    let default = match body {
        Body::None => "GET",
        _ => "POST",
    };
    let name = method.unwrap_or(default).to_uppercase();
    let method = match name.as_str() {
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" => {
            reqwest::Method::from_bytes(name.as_bytes()).ok()
        }
        _ => None,
    };
    if method.is_none() {
        cx.error(
            cx.at(&["method"]),
            &name,
            format!("unknown method `{name}`; use GET, POST, PUT, PATCH, DELETE or HEAD"),
        );
    }
    let url = cx.value(cx.at(&["url"]), &Value::String(url.to_string()));
    let headers = templates(cx, "headers", headers, true);
    let query = templates(cx, "query", query, false);
    let timeout = parse_timeout(cx, timeout);
    Some(Request {
        method: method?,
        url: url?,
        headers: headers?,
        query: query?,
        body,
        timeout: timeout?,
        expect,
    })
}

impl NodeFactory for HttpFactory {
    fn type_name(&self) -> &'static str {
        "Http"
    }
    fn summary(&self) -> &'static str {
        "one HTTP request; connection errors, timeouts, 429 and 5xx are retryable, other 4xx fatal"
    }
    fn settings_schema(&self) -> Value {
        crate::settings::schema_of::<Config>()
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let config: Config = cx.config()?;
        let body = match (&config.json, &config.body) {
            (Some(_), Some(_)) => {
                cx.error(cx.at(&["body"]), "body", "give `json` or `body`, not both");
                return None;
            }
            (Some(v), None) => Body::Json(cx.value(cx.at(&["json"]), v)?),
            (None, Some(t)) => Body::Text(cx.value(cx.at(&["body"]), &Value::String(t.clone()))?),
            (None, None) => Body::None,
        };
        let request = request(
            cx,
            Settings {
                method: config.method.as_deref(),
                url: &config.url,
                headers: config.headers.as_ref(),
                query: config.query.as_ref(),
                body,
                timeout: config.timeout.as_ref(),
                expect: config.expect,
            },
        )?;
        Some(Box::new(Http { request }))
    }
}

#[illumo_engine::async_trait]
impl Node for Http {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        self.request.send(&cx, None).await.map(Outcome::value)
    }

    fn reads(&self) -> Reads {
        self.request.reads()
    }
}
