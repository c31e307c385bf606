//! The console tracer: a readable tree on stderr.
//!
//! ```text
//! ▶ flow retry_demo  trace 4bf92f3577b34da6a3ce929d0e0e4736
//!   ✗ flaky (Command) attempt 1/3  12.1ms  `python3` exited with code 1: not yet
//!     ↻ retry 2/3 in 100ms
//!   ✓ flaky (Command) attempt 2/3  11.8ms
//!   ✓ route (Router)  85µs
//!     → done  (ctx.flaky.ok == true)
//! ✓ flow retry_demo ok in 140.2ms
//! ```

use illumo_engine::duration::format_duration;
use illumo_engine::tracer::{EventData, SpanData, SpanId, SpanKind, SpanStatus, Tracer};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A node running longer than this gets a live spinner (on a terminal).
const SPIN_AFTER: Duration = Duration::from_secs(1);
const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

pub struct ConsoleTracer {
    /// ANSI colours in the text.
    color: bool,
    /// A terminal that redraws lines: the spinner and streamed replies are shown.
    live: bool,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

/// When the console uses colour (`--color`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorChoice {
    /// Colour on a terminal, unless `NO_COLOR` is set or `TERM` is `dumb`.
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    pub fn parse(text: &str) -> Option<ColorChoice> {
        match text {
            "auto" => Some(ColorChoice::Auto),
            "always" => Some(ColorChoice::Always),
            "never" => Some(ColorChoice::Never),
            _ => None,
        }
    }

    /// Does stderr get colour?
    pub fn stderr_color(self) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                stderr_is_live() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

/// Is stderr a terminal that can redraw a line (not `TERM=dumb`)?
pub fn stderr_is_live() -> bool {
    std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

#[derive(Default)]
struct State {
    depth: HashMap<SpanId, usize>,
    pending: HashMap<SpanId, Vec<String>>,
    /// Node attempts still running: what to show, and since when.
    running: HashMap<SpanId, (String, Instant)>,
    /// A spinner line is on screen and must be cleared before other output.
    spinner_shown: bool,
    /// A node whose reply is being streamed on screen; the spinner waits meanwhile.
    streaming: Option<SpanId>,
    /// LLM tokens used in this run: (calls, input, output).
    tokens: (u64, u64, u64),
}

impl Default for ConsoleTracer {
    fn default() -> Self {
        ConsoleTracer::new(ColorChoice::Auto)
    }
}

impl ConsoleTracer {
    /// On a terminal that redraws lines, a spinner for slow nodes and streamed replies;
    /// colour as `color` says (`NO_COLOR` turns off colour only).
    pub fn new(color: ColorChoice) -> ConsoleTracer {
        let live = stderr_is_live();
        let tracer = ConsoleTracer {
            color: color.stderr_color(),
            live,
            state: Default::default(),
            stop: Default::default(),
        };
        if live {
            let (state, stop, color) = (tracer.state.clone(), tracer.stop.clone(), tracer.color);
            let _ = std::thread::Builder::new()
                .name("illumo-spinner".into())
                .spawn(move || spin(&state, &stop, color));
        }
        tracer
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn write(&self, text: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        if std::mem::take(&mut state.spinner_shown) {
            let _ = err.write_all(CLEAR_LINE);
        }
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    }

    fn event_line(&self, event: &EventData) -> Option<String> {
        let a = &event.attributes;
        let text = |key: &str| a.get(key).map(value_text).unwrap_or_default();
        Some(match event.name.as_str() {
            "node.retry" => self.paint(
                "33",
                &format!(
                    "↻ retry {}/{} in {}",
                    text("next_attempt"),
                    text("max_attempts"),
                    ms(a.get("delay_ms"))
                ),
            ),
            "node.timeout" => self.paint("33", &format!("⏱ timed out after {}", text("timeout"))),
            "node.goto" => self.paint("35", &format!("↪ goto {}", text("target"))),
            "node.error" if text("action") == "continue" => {
                self.paint("33", "↷ continue with the node's input")
            }
            "routing.decision" => {
                let targets: Vec<String> = match a.get("targets") {
                    Some(Value::Array(t)) => t.iter().map(value_text).collect(),
                    _ => vec![],
                };
                let reason = text("reason");
                let reason = if reason.is_empty() {
                    String::new()
                } else {
                    format!("  ({reason})")
                };
                self.paint("36", &format!("→ {}{reason}", targets.join(", ")))
            }
            "routing.empty" => self.paint("33", "→ no route matched; this branch ends"),
            _ => return None,
        })
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn ms(v: Option<&Value>) -> String {
    let millis = v.and_then(Value::as_u64).unwrap_or(0);
    illumo_engine::duration::duration_text(Duration::from_millis(millis))
}

fn elapsed(span: &SpanData) -> String {
    let end = span.end_time.unwrap_or(span.start_time);
    format_duration(end.duration_since(span.start_time).unwrap_or_default())
}

impl Tracer for ConsoleTracer {
    fn span_start(&self, span: &SpanData) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let depth = span
            .parent_id
            .and_then(|p| state.depth.get(&p).copied())
            .map_or(0, |d| d + 1);
        state.depth.insert(span.span_id, depth);
        if span.kind == SpanKind::Node {
            let node_type = span
                .attribute("node")
                .and_then(|n| n.get("type"))
                .map(value_text)
                .unwrap_or_default();
            state.running.insert(
                span.span_id,
                (format!("{} ({node_type})", span.name), Instant::now()),
            );
        }
        drop(state);
        if span.kind == SpanKind::Flow {
            let line = format!(
                "▶ {}  {}\n",
                self.paint("1", &span.name),
                self.paint("2", &format!("trace {}", span.trace_id))
            );
            self.write(&line);
        }
    }

    fn streams(&self) -> bool {
        self.live
    }

    fn stream(&self, span: &SpanData, text: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        if std::mem::take(&mut state.spinner_shown) {
            let _ = err.write_all(CLEAR_LINE);
        }
        if state.streaming != Some(span.span_id) {
            state.streaming = Some(span.span_id);
            let _ = write!(err, "  {} ", self.paint("36", &format!("⋯ {}", span.name)));
        }
        let _ = write!(err, "{}", self.paint("2", text));
        let _ = err.flush();
    }

    fn event(&self, span: &SpanData, event: &EventData) {
        let Some(line) = self.event_line(event) else {
            return;
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.pending.entry(span.span_id).or_default().push(line);
    }

    fn span_end(&self, span: &SpanData) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let depth = state.depth.remove(&span.span_id).unwrap_or(0);
        let pending = state.pending.remove(&span.span_id).unwrap_or_default();
        state.running.remove(&span.span_id);
        let streamed = state.streaming == Some(span.span_id);
        if streamed {
            state.streaming = None;
        }
        if let Some(usage) = span.attribute("gen_ai").and_then(|g| g.get("usage")) {
            let count = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
            state.tokens.0 += 1;
            state.tokens.1 += count("input_tokens");
            state.tokens.2 += count("output_tokens");
        }
        drop(state);
        if streamed {
            self.write("\n");
        }
        let ok = span.status != SpanStatus::Error;
        let mark = if ok {
            self.paint("32", "✓")
        } else {
            self.paint("31", "✗")
        };
        let attr = |key: &str| span.attribute(key);
        let mut out = String::new();
        if span.kind == SpanKind::Flow {
            let word = if ok { "ok" } else { "failed" };
            out.push_str(&format!(
                "{mark} {} {word} in {}\n",
                span.name,
                elapsed(span)
            ));
            let (calls, input, output) =
                self.state.lock().unwrap_or_else(|e| e.into_inner()).tokens;
            if calls > 0 {
                let line = format!(
                    "tokens: {input} in, {output} out ({calls} LLM {})",
                    if calls == 1 { "call" } else { "calls" }
                );
                out.push_str(&self.paint("2", &line));
                out.push('\n');
            }
        } else {
            let pad = "  ".repeat(depth);
            let node_type = attr("node")
                .and_then(|n| n.get("type"))
                .map(value_text)
                .unwrap_or_default();
            let attempt = attr("attempt").and_then(Value::as_u64).unwrap_or(1);
            let max = attr("max_attempts").and_then(Value::as_u64).unwrap_or(1);
            let attempts = if max > 1 {
                format!(" attempt {attempt}/{max}")
            } else {
                String::new()
            };
            let mut line = format!(
                "{pad}{mark} {} ({node_type}){attempts}  {}",
                span.name,
                self.paint("2", &elapsed(span))
            );
            if let Some(message) = attr("error").and_then(|e| e.get("message")) {
                line.push_str("  ");
                line.push_str(&self.paint("31", &value_text(message)));
            }
            out.push_str(&line);
            out.push('\n');
            for p in pending {
                out.push_str(&format!("{pad}  {p}\n"));
            }
        }
        self.write(&out);
    }
}

impl Drop for ConsoleTracer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if std::mem::take(&mut state.spinner_shown) {
            let _ = std::io::stderr().write_all(CLEAR_LINE);
        }
    }
}

/// Back to the start of the line, and clear it (for the spinner; live terminals only).
const CLEAR_LINE: &[u8] = b"\r\x1b[2K";

/// Redraws one line for the longest-running node, once it has run over [`SPIN_AFTER`].
fn spin(state: &Mutex<State>, stop: &AtomicBool, color: bool) {
    let mut frame = 0;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = state
            .running
            .values()
            .min_by_key(|(_, since)| *since)
            .cloned();
        let mut err = std::io::stderr().lock();
        match oldest {
            _ if state.streaming.is_some() => {}
            Some((label, since)) if since.elapsed() >= SPIN_AFTER => {
                frame = (frame + 1) % FRAMES.len();
                let line = spinner_line(FRAMES[frame], &label, since.elapsed(), color);
                let _ = err.write_all(CLEAR_LINE);
                let _ = err.write_all(line.as_bytes());
                state.spinner_shown = true;
            }
            _ if state.spinner_shown => {
                let _ = err.write_all(CLEAR_LINE);
                state.spinner_shown = false;
            }
            _ => {}
        }
        let _ = err.flush();
    }
}

fn spinner_line(frame: &str, label: &str, elapsed: Duration, color: bool) -> String {
    let time = format_duration(elapsed);
    if color {
        format!("  \x1b[36m{frame}\x1b[0m {label}  \x1b[2m{time}\x1b[0m")
    } else {
        format!("  {frame} {label}  {time}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spinner_line_names_the_node_and_its_time() {
        assert_eq!(
            spinner_line("⠋", "draft (Agent)", Duration::from_millis(3200), true),
            "  \x1b[36m⠋\x1b[0m draft (Agent)  \x1b[2m3.20s\x1b[0m"
        );
        assert_eq!(
            spinner_line("⠋", "draft (Agent)", Duration::from_millis(3200), false),
            "  ⠋ draft (Agent)  3.20s"
        );
    }
}
