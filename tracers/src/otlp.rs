//! The OTLP tracer: finished spans, with their events, exported to an OpenTelemetry
//! collector (Grafana Tempo, the OTel Collector, Jaeger, ...) over gRPC or HTTP/protobuf,
//! with illumo's own trace and span ids so every backend shows the same tree.
//!
//! A collector that is down or slow never fails or hangs the flow: each export has a
//! deadline, a failed batch is tried a few times with exponential backoff, the end of the
//! run waits a bounded time, and then one warning says how many spans were dropped.

use crate::writer::{Flushed, Settings, Sink, Writer};
use illumo_engine::tracer::{EventData, SpanData, SpanId, SpanStatus, TracerDB, TracerError};
use opentelemetry::trace::{SpanContext, SpanKind, Status, TraceFlags, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue, Value as OtelValue};
use opentelemetry_otlp::{
    Protocol, RetryPolicy, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::trace::{SpanEvents, SpanExporter as _, SpanLinks};
use opentelemetry_sdk::Resource;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One export call may take this long before it counts as failed.
const EXPORT_DEADLINE: Duration = Duration::from_secs(2);
/// Tries per batch while the collector still answers; one once it has failed.
const TRIES: u32 = 2;
/// The end of a run waits at most this long for the collector.
const FLUSH_LIMIT: Duration = Duration::from_secs(3);
/// While the collector is down, batches are dropped without a try for this long, so a
/// collector that refuses connections costs the run no more than one that answers.
const DOWN_PAUSE: Duration = Duration::from_secs(1);
/// How long the check of a failed collector's address waits for a connection.
const PROBE: Duration = Duration::from_millis(500);
const BATCH: usize = 512;
const QUEUE: usize = 16_384;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    Http,
}

/// Where and how to export.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// `None`: the exporter's own default, or `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: Option<String>,
    pub protocol: OtlpProtocol,
    /// `service.name`; `None`: OTEL_SERVICE_NAME, else `illumo`.
    pub service_name: Option<String>,
}

impl OtlpConfig {
    /// From `--tracer-arg` values, falling back to the standard `OTEL_*` variables.
    pub fn from_args(
        endpoint: Option<String>,
        protocol: Option<String>,
    ) -> Result<OtlpConfig, String> {
        let protocol = match protocol
            .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").ok())
            .as_deref()
        {
            None | Some("grpc") => OtlpProtocol::Grpc,
            Some("http" | "http/protobuf") => OtlpProtocol::Http,
            Some(other) => {
                return Err(format!(
                    "unknown OTLP protocol `{other}`; use `grpc` or `http`"
                ))
            }
        };
        if let Some(e) = &endpoint {
            let scheme = e.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
            if !matches!(scheme.as_deref(), Some("http" | "https")) {
                return Err(format!(
                    "exporter_endpoint `{}` must be an http:// or https:// URL, like http://localhost:4317",
                    without_userinfo(e)
                ));
            }
        }
        Ok(OtlpConfig {
            endpoint,
            protocol,
            service_name: None,
        })
    }

    /// The endpoint exported to: the argument, `OTEL_EXPORTER_OTLP_ENDPOINT`, or the
    /// protocol's default port on localhost.
    fn endpoint(&self) -> String {
        let default = match self.protocol {
            OtlpProtocol::Grpc => "http://localhost:4317",
            OtlpProtocol::Http => "http://localhost:4318",
        };
        self.endpoint
            .clone()
            .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
            .unwrap_or_else(|| default.to_string())
    }

    fn describe(&self) -> String {
        let protocol = match self.protocol {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::Http => "http",
        };
        format!("{protocol} {}", without_userinfo(&self.endpoint()))
    }
}

/// A URL with any `user:password@` replaced by `***@`, for messages.
fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// `http://host:4317/v1/traces` -> `host:4317` (a missing port is the scheme's).
fn host_and_port(endpoint: &str) -> Option<String> {
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("http", endpoint));
    let authority = rest.split(['/', '?']).next()?.rsplit('@').next()?;
    if authority.is_empty() {
        return None;
    }
    // `[::1]:4317` keeps its brackets; a port follows the last `:` outside them.
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok() && !port.contains(']'));
    Some(if has_port {
        authority.to_string()
    } else {
        let port = if scheme == "https" { 443 } else { 80 };
        format!("{authority}:{port}")
    })
}

/// Why a collector at `address` could not be reached, when a plain connection says:
/// `None` when it accepts connections (the export failed for another reason).
fn probe(address: &str) -> Option<String> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<std::net::SocketAddr> = match address.to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return Some(format!("`{address}` does not resolve: {e}")),
    };
    let mut refused = false;
    for addr in &addrs {
        match std::net::TcpStream::connect_timeout(addr, PROBE) {
            Ok(_) => return None,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused = true,
            Err(_) => {}
        }
    }
    refused.then(|| format!("the connection to {address} was refused; is the collector running?"))
}

/// What the export thread knows that a flush reports.
#[derive(Default)]
struct ExportState {
    /// Spans given up on since the last flush.
    dropped: u64,
    last_error: Option<String>,
}

pub struct OtlpTracer {
    config: OtlpConfig,
    writer: Option<Writer<opentelemetry_sdk::trace::SpanData>>,
    /// Events wait here until their span ends.
    events: Mutex<HashMap<SpanId, Vec<opentelemetry::trace::Event>>>,
    state: Arc<Mutex<ExportState>>,
    /// Spans handed to the export thread, and spans it has delivered.
    sent: AtomicU64,
    delivered: Arc<AtomicU64>,
    /// Set when a flush gave up on the collector; closing then does not wait again.
    gave_up: std::sync::atomic::AtomicBool,
}

impl OtlpTracer {
    pub fn new(config: OtlpConfig) -> OtlpTracer {
        OtlpTracer {
            config,
            writer: None,
            events: Mutex::new(HashMap::new()),
            state: Arc::default(),
            sent: Default::default(),
            delivered: Default::default(),
            gave_up: Default::default(),
        }
    }

    fn backend(&self) -> String {
        format!("the otel tracer ({})", self.config.describe())
    }
}

/// `service.name` is `illumo` unless `OTEL_SERVICE_NAME` says otherwise;
/// `OTEL_RESOURCE_ATTRIBUTES` adds more.
fn resource(service_name: Option<&str>) -> Resource {
    let builder = Resource::builder();
    match service_name {
        Some(name) => builder.with_service_name(name.to_string()).build(),
        None if std::env::var_os("OTEL_SERVICE_NAME").is_some() => builder.build(),
        None => builder.with_service_name("illumo").build(),
    }
}

fn build_exporter(config: &OtlpConfig) -> Result<opentelemetry_otlp::SpanExporter, String> {
    // The HTTP client uses rustls, which needs a crypto provider before any client exists.
    static CRYPTO: std::sync::Once = std::sync::Once::new();
    CRYPTO.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    // Retries are the export thread's (TRIES, then DOWN_PAUSE), not the exporter's own.
    let exporter = match config.protocol {
        OtlpProtocol::Grpc => {
            let mut b = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_retry_policy(RetryPolicy::disabled())
                .with_timeout(EXPORT_DEADLINE);
            if let Some(e) = &config.endpoint {
                b = b.with_endpoint(e.clone());
            }
            b.build()
        }
        OtlpProtocol::Http => {
            let mut b = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_retry_policy(RetryPolicy::disabled())
                .with_timeout(EXPORT_DEADLINE);
            if let Some(e) = &config.endpoint {
                let e = e.trim_end_matches('/');
                let full = if e.ends_with("/v1/traces") {
                    e.to_string()
                } else {
                    format!("{e}/v1/traces")
                };
                b = b.with_endpoint(full);
            }
            b.build()
        }
    };
    let mut exporter = exporter.map_err(|e| e.to_string())?;
    exporter.set_resource(&resource(config.service_name.as_deref()));
    Ok(exporter)
}

/// The export thread's end of the writer: batches of spans, exported with a deadline and
/// bounded retries; a collector that failed is tried once per batch until it answers.
struct Exporter {
    runtime: tokio::runtime::Runtime,
    exporter: opentelemetry_otlp::SpanExporter,
    batch: Vec<opentelemetry_sdk::trace::SpanData>,
    /// Since when the collector has failed every try, if it has.
    down_since: Option<std::time::Instant>,
    /// `host:port` of the endpoint, to say why it failed.
    address: Option<String>,
    state: Arc<Mutex<ExportState>>,
    delivered: Arc<AtomicU64>,
}

impl Exporter {
    /// Gives up on the batch, counting it; `why` replaces the reason reported.
    fn drop_batch(&mut self, why: Option<String>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.dropped += self.batch.len() as u64;
        if let Some(why) = why {
            state.last_error = Some(why);
        }
        self.batch.clear();
    }
}

impl Sink for Exporter {
    type Record = opentelemetry_sdk::trace::SpanData;

    fn add(&mut self, span: Self::Record) {
        self.batch.push(span);
    }

    fn len(&self) -> usize {
        self.batch.len()
    }

    fn write(&mut self) -> Result<(), String> {
        if self
            .down_since
            .is_some_and(|since| since.elapsed() < DOWN_PAUSE)
        {
            self.drop_batch(None);
            return Ok(());
        }
        let tries = if self.down_since.is_some() { 1 } else { TRIES };
        let mut wait = Duration::from_millis(100);
        let mut last_error = None;
        for attempt in 1..=tries {
            let batch = self.batch.clone();
            let result = self.runtime.block_on(async {
                tokio::time::timeout(EXPORT_DEADLINE, self.exporter.export(batch)).await
            });
            match result {
                Ok(Ok(())) => {
                    self.down_since = None;
                    self.delivered
                        .fetch_add(self.batch.len() as u64, Ordering::Relaxed);
                    self.batch.clear();
                    return Ok(());
                }
                Ok(Err(e)) => last_error = Some(e.to_string()),
                Err(_) => last_error = None,
            }
            if attempt < tries {
                std::thread::sleep(wait);
                wait *= 2;
            }
        }
        self.down_since = Some(std::time::Instant::now());
        // The exporters' own words hide a refused connection ("network error"): ask.
        let why = self
            .address
            .as_deref()
            .and_then(probe)
            .or(last_error)
            .unwrap_or_else(|| format!("no answer within {}s", EXPORT_DEADLINE.as_secs()));
        self.drop_batch(Some(why));
        // Not a failure of the writer: the flush reports the spans dropped.
        Ok(())
    }

    fn finish(&mut self) {
        if self.down_since.is_some() {
            // A last export to a collector that is down would only wait.
            return;
        }
        let _guard = self.runtime.enter();
        let _ = self.exporter.shutdown_with_timeout(Duration::from_secs(1));
    }
}

impl TracerDB for OtlpTracer {
    fn connect(&mut self) -> Result<(), TracerError> {
        let fail = |reason: String| TracerError::Connect {
            backend: self.backend(),
            reason,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(e.to_string()))?;
        // The gRPC client needs a runtime while it is built.
        let exporter = {
            let _guard = runtime.enter();
            build_exporter(&self.config).map_err(fail)?
        };
        let sink = Exporter {
            runtime,
            exporter,
            batch: Vec::with_capacity(BATCH),
            down_since: None,
            address: host_and_port(&self.config.endpoint()),
            state: self.state.clone(),
            delivered: self.delivered.clone(),
        };
        let settings = Settings {
            thread_name: "illumo-otlp",
            capacity: QUEUE,
            batch: BATCH,
            gather: Duration::from_millis(200),
        };
        self.writer = Some(
            Writer::start(sink, settings).map_err(|e| TracerError::Connect {
                backend: "the otel tracer".into(),
                reason: e.to_string(),
            })?,
        );
        Ok(())
    }

    /// Only finished spans are exported; the call at a span's start is ignored.
    fn record_span(&self, span: &SpanData) -> Result<(), TracerError> {
        let Some(end_time) = span.end_time else {
            return Ok(());
        };
        let events = self
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&span.span_id)
            .unwrap_or_default();
        let otel = opentelemetry_sdk::trace::SpanData {
            span_context: SpanContext::new(
                opentelemetry::trace::TraceId::from_bytes(span.trace_id.0.to_be_bytes()),
                opentelemetry::trace::SpanId::from_bytes(span.span_id.0.to_be_bytes()),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: span
                .parent_id
                .map_or(opentelemetry::trace::SpanId::INVALID, |p| {
                    opentelemetry::trace::SpanId::from_bytes(p.0.to_be_bytes())
                }),
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: span.name.clone().into(),
            start_time: span.start_time,
            end_time,
            attributes: key_values(&span.attributes_json(), Some(span.kind.as_str())),
            dropped_attributes_count: 0,
            events: {
                let mut all = SpanEvents::default();
                all.events = events;
                all
            },
            links: SpanLinks::default(),
            status: match span.status {
                SpanStatus::Ok => Status::Ok,
                SpanStatus::Error => Status::error(
                    span.attributes
                        .get("error")
                        .and_then(|e| e.get("message"))
                        .and_then(Value::as_str)
                        .unwrap_or("error")
                        .to_string(),
                ),
                SpanStatus::Unset => Status::Unset,
            },
            instrumentation_scope: InstrumentationScope::builder("illumo")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        };
        let Some(writer) = &self.writer else {
            return Ok(());
        };
        self.sent.fetch_add(1, Ordering::Relaxed);
        writer.send(otel).map_err(|reason| TracerError::Write {
            backend: self.backend(),
            reason,
        })
    }

    fn record_event(&self, span_id: &SpanId, event: &EventData) -> Result<(), TracerError> {
        let mut attributes = key_values(&event.attributes, None);
        attributes.push(KeyValue::new("level", event.level.as_str()));
        let otel =
            opentelemetry::trace::Event::new(event.name.clone(), event.timestamp, attributes, 0);
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(*span_id)
            .or_default()
            .push(otel);
        Ok(())
    }

    /// Waits (at most a few seconds) until the spans so far are exported or given up.
    fn flush(&self) -> Result<(), TracerError> {
        let Some(writer) = &self.writer else {
            return Ok(());
        };
        if self.gave_up.load(Ordering::Relaxed) {
            // Already reported; a second wait on a dead collector would only delay the exit.
            return Ok(());
        }
        let fail = |reason: String| TracerError::Write {
            backend: self.backend(),
            reason,
        };
        let take_state = || {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            (std::mem::take(&mut state.dropped), state.last_error.clone())
        };
        match writer.flush(Some(FLUSH_LIMIT)) {
            Flushed::Done { queue_full, .. } => match (take_state(), queue_full) {
                ((0, _), 0) => Ok(()),
                ((dropped, error), queue_full) => Err(fail(format!(
                    "{} spans were dropped ({})",
                    dropped + queue_full,
                    error.unwrap_or_else(|| "the export queue was full".into())
                ))),
            },
            Flushed::TimedOut { .. } => {
                self.gave_up.store(true, Ordering::Relaxed);
                let waiting =
                    self.sent.load(Ordering::Relaxed) - self.delivered.load(Ordering::Relaxed);
                // Say what the last try met when it was more than silence.
                let why = match take_state().1 {
                    Some(e) if !e.starts_with("no answer") => format!("; last error: {e}"),
                    _ => String::new(),
                };
                Err(fail(format!(
                    "{} spans were dropped (the collector did not answer within {}s{why})",
                    waiting,
                    FLUSH_LIMIT.as_secs()
                )))
            }
            Flushed::Stopped { failure } => Err(fail(failure)),
        }
    }

    fn close(&mut self) -> Result<(), TracerError> {
        if let Some(mut writer) = self.writer.take() {
            // The thread ends after a last bounded export; do not wait on a dead collector.
            let limit = if self.gave_up.load(Ordering::Relaxed) {
                Duration::ZERO
            } else {
                Duration::from_secs(1)
            };
            writer.close(Some(limit));
        }
        Ok(())
    }
}

/// Flattens JSON attributes to OTel key/values: `{"node": {"id": "a"}}` -> `node.id = "a"`.
fn key_values(attributes: &Map<String, Value>, kind: Option<&str>) -> Vec<KeyValue> {
    let mut out = Vec::with_capacity(attributes.len() + 1);
    if let Some(kind) = kind {
        out.push(KeyValue::new("illumo.span.kind", kind.to_string()));
    }
    flatten("", attributes, &mut out);
    out
}

fn flatten(prefix: &str, map: &Map<String, Value>, out: &mut Vec<KeyValue>) {
    for (key, value) in map {
        let key = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let value = match value {
            Value::Null => continue,
            Value::Bool(b) => OtelValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => OtelValue::I64(i),
                None => OtelValue::F64(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => OtelValue::String(s.clone().into()),
            Value::Object(inner) => {
                flatten(&key, inner, out);
                continue;
            }
            Value::Array(_) => OtelValue::String(value.to_string().into()),
        };
        out.push(KeyValue::new(key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credentials_in_an_endpoint_never_reach_a_message() {
        assert_eq!(
            without_userinfo("http://user:hunter2pw@host:4317/v1"),
            "http://***@host:4317/v1"
        );
        assert_eq!(
            without_userinfo("http://host:4317/a@b"),
            "http://host:4317/a@b"
        );
        assert_eq!(
            OtlpConfig::from_args(Some("ftp://u:pw@h:21".into()), None).err(),
            Some("exporter_endpoint `ftp://***@h:21` must be an http:// or https:// URL, like http://localhost:4317".into())
        );
    }

    #[test]
    fn endpoints_give_the_address_to_check() {
        assert_eq!(
            host_and_port("http://127.0.0.1:4317").as_deref(),
            Some("127.0.0.1:4317")
        );
        assert_eq!(
            host_and_port("https://tempo.example/v1/traces").as_deref(),
            Some("tempo.example:443")
        );
        assert_eq!(
            host_and_port("http://[::1]:4318/").as_deref(),
            Some("[::1]:4318")
        );
        assert_eq!(host_and_port("http://[::1]/").as_deref(), Some("[::1]:80"));
        assert_eq!(
            host_and_port("localhost:4317").as_deref(),
            Some("localhost:4317")
        );
        assert_eq!(host_and_port("http:///x"), None);
    }

    #[test]
    fn a_closed_port_is_told_apart_from_one_that_listens() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().to_string();
        assert_eq!(probe(&open), None);
        drop(listener);
        assert_eq!(
            probe(&open),
            Some(format!(
                "the connection to {open} was refused; is the collector running?"
            ))
        );
    }

    #[test]
    fn attributes_flatten_to_dotted_keys() {
        let Value::Object(map) = json!({"node": {"id": "a", "type": "Set"}, "attempt": 2, "ok": true, "list": [1], "gone": null})
        else {
            unreachable!()
        };
        let kv: Vec<String> = key_values(&map, Some("node"))
            .iter()
            .map(|k| format!("{}={}", k.key, k.value))
            .collect();
        assert_eq!(
            kv,
            [
                "illumo.span.kind=node",
                "node.id=a",
                "node.type=Set",
                "attempt=2",
                "ok=true",
                "list=[1]"
            ]
        );
    }
}
