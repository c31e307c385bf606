//! Policies: retry, timeout, fail_fast and on_error, layered from weakest to strongest:
//! built-in defaults, flow `policy`, `--profile`, `--policy`, node `policy`.

use crate::decode::{Decoder, Entry};
use crate::diagnostic::Diagnostic;
use crate::duration::duration_text;
use crate::yaml::{YPath, Yaml};
use serde_json::{json, Value};
use std::time::Duration;

pub const MAX_ATTEMPTS: i64 = 100;
const MAX_DELAY: Duration = Duration::from_secs(3600);
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    Fixed,
    Exponential,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnError {
    Stop,
    Continue,
    Goto(String),
}

/// A policy as written: every field optional, so layers can be stacked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicySpec {
    pub fail_fast: Option<bool>,
    pub timeout: Option<Duration>,
    pub max_attempts: Option<u32>,
    pub delay: Option<Duration>,
    pub mode: Option<Backoff>,
    pub max_delay: Option<Duration>,
    pub jitter: Option<bool>,
    pub on_error: Option<OnError>,
    /// Where a goto target was written, for validation.
    pub goto_at: Option<YPath>,
}

/// The effective policy of one node.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub fail_fast: bool,
    /// `None` means no timeout.
    pub timeout: Option<Duration>,
    pub max_attempts: u32,
    pub delay: Duration,
    pub mode: Backoff,
    pub max_delay: Duration,
    pub jitter: bool,
    pub on_error: OnError,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            fail_fast: true,
            timeout: None,
            max_attempts: 1,
            delay: Duration::ZERO,
            mode: Backoff::Fixed,
            max_delay: Duration::from_secs(30),
            jitter: false,
            on_error: OnError::Stop,
        }
    }
}

impl PolicySpec {
    /// `self` with every field that `over` sets replaced.
    pub fn overlay(&self, over: &PolicySpec) -> PolicySpec {
        PolicySpec {
            fail_fast: over.fail_fast.or(self.fail_fast),
            timeout: over.timeout.or(self.timeout),
            max_attempts: over.max_attempts.or(self.max_attempts),
            delay: over.delay.or(self.delay),
            mode: over.mode.or(self.mode),
            max_delay: over.max_delay.or(self.max_delay),
            jitter: over.jitter.or(self.jitter),
            on_error: over.on_error.clone().or_else(|| self.on_error.clone()),
            goto_at: over.goto_at.clone().or_else(|| self.goto_at.clone()),
        }
    }

    /// Applies this spec over the built-in defaults.
    pub fn resolve(&self) -> Policy {
        let d = Policy::default();
        Policy {
            fail_fast: self.fail_fast.unwrap_or(d.fail_fast),
            timeout: self.timeout.filter(|t| !t.is_zero()),
            max_attempts: self.max_attempts.unwrap_or(d.max_attempts),
            delay: self.delay.unwrap_or(d.delay),
            mode: self.mode.unwrap_or(d.mode),
            max_delay: self.max_delay.unwrap_or(d.max_delay),
            jitter: self.jitter.unwrap_or(d.jitter),
            on_error: self.on_error.clone().unwrap_or(d.on_error),
        }
    }

    /// Reads a `policy:` map, reporting every bad field.
    pub fn decode(dec: &mut Decoder, y: &Yaml, path: &YPath) -> PolicySpec {
        let mut spec = PolicySpec::default();
        let Some(entries) = dec.map(y, path, "`policy`") else {
            return spec;
        };
        dec.known_keys(
            &entries,
            &["fail_fast", "timeout", "retry", "on_error"],
            "`policy`",
        );
        for e in &entries {
            match e.key {
                "fail_fast" => spec.fail_fast = dec.bool(e, "`fail_fast`"),
                "timeout" => spec.timeout = dec.duration(e, "`timeout`", MAX_TIMEOUT),
                "retry" => spec.decode_retry(dec, e),
                "on_error" => spec.decode_on_error(dec, e),
                _ => {}
            }
        }
        spec
    }

    fn decode_retry(&mut self, dec: &mut Decoder, e: &Entry) {
        let Some(entries) = dec.map(e.value, &e.path, "`retry`") else {
            return;
        };
        dec.known_keys(
            &entries,
            &["max_attempts", "delay", "mode", "max_delay", "jitter"],
            "`retry`",
        );
        for r in &entries {
            match r.key {
                "max_attempts" => {
                    self.max_attempts = dec
                        .integer(r, "`retry.max_attempts`", 1, MAX_ATTEMPTS)
                        .map(|n| n as u32)
                }
                "delay" => self.delay = dec.duration(r, "`retry.delay`", MAX_DELAY),
                "max_delay" => self.max_delay = dec.duration(r, "`retry.max_delay`", MAX_DELAY),
                "jitter" => self.jitter = dec.bool(r, "`retry.jitter`"),
                "mode" => {
                    self.mode = match r.value.as_str() {
                        Some("fixed") => Some(Backoff::Fixed),
                        Some("exponential") => Some(Backoff::Exponential),
                        _ => {
                            let text = r.value.display();
                            dec.push(
                                Diagnostic::error(format!("unknown retry mode `{text}`"))
                                    .at(r.path.clone(), &text)
                                    .label("expected `fixed` or `exponential`"),
                            );
                            None
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn decode_on_error(&mut self, dec: &mut Decoder, e: &Entry) {
        let bad = |dec: &mut Decoder, path: YPath, text: String| {
            dec.push(
                Diagnostic::error(format!("unknown on_error action `{text}`"))
                    .at(path, &text)
                    .label("expected `stop`, `continue` or `{action: goto, target: NODE}`"),
            );
        };
        match e.value {
            Yaml::Scalar(Value::String(s)) => match s.as_str() {
                "stop" => self.on_error = Some(OnError::Stop),
                "continue" => self.on_error = Some(OnError::Continue),
                _ => bad(dec, e.path.clone(), s.clone()),
            },
            Yaml::Map(_) => {
                let Some(entries) = dec.map(e.value, &e.path, "`on_error`") else {
                    return;
                };
                dec.known_keys(&entries, &["action", "target"], "`on_error`");
                let action = entries.iter().find(|x| x.key == "action");
                let target = entries.iter().find(|x| x.key == "target");
                match (action.and_then(|a| a.value.as_str()), target) {
                    (Some("goto"), Some(t)) => {
                        if let Some(name) = dec.string(t, "goto `target`") {
                            self.on_error = Some(OnError::Goto(name));
                            self.goto_at = Some(t.path.clone());
                        }
                    }
                    (Some("goto"), None) => dec.push(
                        Diagnostic::error("`on_error: {action: goto}` needs a `target` node").at(
                            action.map(|a| a.path.clone()).unwrap_or(e.path.clone()),
                            "goto",
                        ),
                    ),
                    (Some("stop"), _) => self.on_error = Some(OnError::Stop),
                    (Some("continue"), _) => self.on_error = Some(OnError::Continue),
                    (_, _) => {
                        let (path, text) = match action {
                            Some(a) => (a.path.clone(), a.value.display()),
                            None => (e.path.clone(), e.value.display()),
                        };
                        bad(dec, path, text)
                    }
                }
            }
            other => bad(dec, e.path.clone(), other.display()),
        }
    }
}

impl Policy {
    /// The wait before attempt `next` (2 for the first retry).
    pub fn delay_before(&self, next: u32) -> Duration {
        let base = match self.mode {
            Backoff::Fixed => self.delay,
            Backoff::Exponential => {
                let factor = 2u32.saturating_pow(next.saturating_sub(2).min(30));
                self.delay.saturating_mul(factor).min(self.max_delay)
            }
        };
        if self.jitter {
            base.mul_f64(0.5 + crate::ids::random_unit() * 0.5)
        } else {
            base
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "fail_fast": self.fail_fast,
            "timeout": self.timeout.map_or("0".to_string(), duration_text),
            "retry": {
                "max_attempts": self.max_attempts,
                "delay": duration_text(self.delay),
                "mode": match self.mode { Backoff::Fixed => "fixed", Backoff::Exponential => "exponential" },
                "max_delay": duration_text(self.max_delay),
                "jitter": self.jitter,
            },
            "on_error": match &self.on_error {
                OnError::Stop => json!("stop"),
                OnError::Continue => json!("continue"),
                OnError::Goto(t) => json!({"action": "goto", "target": t}),
            },
        })
    }

    /// One line for error messages: `max_attempts 3 (exponential from 200ms), timeout 30s, on_error stop`.
    pub fn summary(&self) -> String {
        let retry = match (self.max_attempts, self.mode) {
            (1, _) => "max_attempts 1".to_string(),
            (n, Backoff::Fixed) => {
                format!("max_attempts {n} (fixed {})", duration_text(self.delay))
            }
            (n, Backoff::Exponential) => format!(
                "max_attempts {n} (exponential from {})",
                duration_text(self.delay)
            ),
        };
        let timeout = self.timeout.map_or("none".to_string(), duration_text);
        let on_error = match &self.on_error {
            OnError::Stop => "stop".to_string(),
            OnError::Continue => "continue".to_string(),
            OnError::Goto(t) => format!("goto `{t}`"),
        };
        format!(
            "{retry}, timeout {timeout}, on_error {on_error}, fail_fast {}",
            self.fail_fast
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> (PolicySpec, Vec<String>) {
        let y = Yaml::parse(text).unwrap();
        let mut dec = Decoder::default();
        let spec = PolicySpec::decode(&mut dec, &y, &YPath::root());
        (spec, dec.diags.into_iter().map(|d| d.message).collect())
    }

    #[test]
    fn layers_override_field_by_field() {
        let (flow, _) = decode("{timeout: 30s, retry: {max_attempts: 3, delay: 200ms}}");
        let (node, _) =
            decode("{retry: {max_attempts: 2}, on_error: {action: goto, target: draft}}");
        let p = flow.overlay(&node).resolve();
        assert_eq!(p.max_attempts, 2);
        assert_eq!(p.delay, Duration::from_millis(200));
        assert_eq!(p.timeout, Some(Duration::from_secs(30)));
        assert_eq!(p.on_error, OnError::Goto("draft".into()));
    }

    #[test]
    fn exponential_backoff_doubles_up_to_max_delay() {
        let (spec, _) =
            decode("{retry: {max_attempts: 5, delay: 100ms, mode: exponential, max_delay: 300ms}}");
        let p = spec.resolve();
        let waits: Vec<u128> = (2..=5).map(|n| p.delay_before(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 300, 300]);
    }

    #[test]
    fn reports_every_bad_field() {
        let (_, errors) = decode("{timeout: 5 sec, retry: {max_attempts: -1, delay: 2h, mode: linear}, on_error: explode, fail_fats: true}");
        assert_eq!(
            errors,
            [
                "unknown key `fail_fats` in `policy`",
                "invalid duration `5 sec` for `timeout`",
                "`retry.max_attempts` must be between 1 and 100, not -1",
                "`retry.delay` `2h` is too long; at most 1h",
                "unknown retry mode `linear`",
                "unknown on_error action `explode`",
            ]
        );
    }
}
