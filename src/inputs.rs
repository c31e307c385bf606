//! Reading `--context`, `--set` and `--policy`.

use illumo_engine::decode::Decoder;
use illumo_engine::path::{set_steps, CtxPath};
use illumo_engine::policy::PolicySpec;
use illumo_engine::yaml::YPath;
use illumo_engine::Source;
use serde_json::{Map, Value};
use std::io::Read;

/// Text given inline, as `@FILE`, or `-` for stdin.
pub fn read_arg(flag: &str, arg: &str) -> Result<(String, String), String> {
    if arg == "-" {
        return read_limited(std::io::stdin(), flag, "stdin").map(|t| ("<stdin>".into(), t));
    }
    match arg.strip_prefix('@') {
        Some(path) => std::fs::File::open(path)
            .map_err(|e| format!("{flag}: cannot read `{path}`: {e}"))
            .and_then(|f| read_limited(f, flag, &format!("`{path}`")))
            .map(|t| (path.to_string(), t)),
        None => Ok((flag.to_string(), arg.to_string())),
    }
}

/// The most illumo reads from a file or stdin given on the command line.
pub const MAX_INPUT: u64 = 64 * 1024 * 1024;

/// Reads at most [`MAX_INPUT`] bytes; more is an error (a device like `/dev/zero` never
/// ends).
pub fn read_limited(reader: impl Read, flag: &str, what: &str) -> Result<String, String> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_INPUT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{flag}: cannot read {what}: {e}"))?;
    if bytes.len() as u64 > MAX_INPUT {
        return Err(format!(
            "{flag}: {what} is larger than {} MiB, the most illumo reads",
            MAX_INPUT / (1024 * 1024)
        ));
    }
    String::from_utf8(bytes).map_err(|e| format!("{flag}: {what} is not UTF-8 text: {e}"))
}

/// How messages name what a flag read: the file, stdin, or the flag's own text.
fn what(flag: &str, name: &str) -> String {
    match name {
        n if n == flag => "the text".to_string(),
        "<stdin>" => "stdin".to_string(),
        path => format!("`{path}`"),
    }
}

/// The initial ctx: `--context`, then each `--set` on top.
pub fn context(context: Option<&str>, sets: &[String]) -> Result<Value, String> {
    let mut ctx = match context {
        None => Value::Object(Map::new()),
        Some(arg) => {
            let (name, text) = read_arg("--context", arg)?;
            let value: Value = serde_json::from_str(&text).map_err(|e| {
                format!(
                    "--context: {} is not valid JSON: {e}",
                    what("--context", &name)
                )
            })?;
            if !value.is_object() {
                return Err(format!(
                    "--context: {} must be a JSON object, like '{{\"request\": {{}}}}'",
                    what("--context", &name)
                ));
            }
            value
        }
    };
    for set in sets {
        let Some((path, raw)) = set.split_once('=') else {
            return Err(format!(
                "--set `{set}`: expected PATH=VALUE, like `request.user=ada`"
            ));
        };
        let path = if path.starts_with('$') {
            path.to_string()
        } else {
            format!("$ctx.{path}")
        };
        let parsed = CtxPath::parse(&path).map_err(|e| format!("--set `{set}`: {e}"))?;
        if parsed.root != illumo_engine::path::Root::Ctx || parsed.steps.is_empty() {
            return Err(format!("--set `{set}`: the path must be inside ctx"));
        }
        // JSON, else `true`/`false`/`null` in any case (as illumo-flow reads them), else text.
        let value =
            serde_json::from_str(raw).unwrap_or_else(|_| match raw.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => Value::String(raw.to_string()),
            });
        set_steps(&mut ctx, &parsed.steps, value).map_err(|e| format!("--set `{set}`: {e}"))?;
    }
    Ok(ctx)
}

/// A ctx path given on the command line: `summary.report` or `$ctx.summary.report`.
pub fn ctx_path(text: &str) -> Result<CtxPath, String> {
    let full = if text.starts_with('$') {
        text.to_string()
    } else {
        format!("$ctx.{text}")
    };
    let path = CtxPath::parse(&full).map_err(|e| e.to_string())?;
    if path.root != illumo_engine::path::Root::Ctx {
        return Err(format!("`{text}` is not a ctx path"));
    }
    Ok(path)
}

/// `--policy JSON|@FILE`; errors are rendered with their place in that text and printed
/// here (`Err(None)`), or returned as one message.
/// For a flow in illumo-flow's vocabulary (`dialect`), the policy means what illumo-flow's
/// `--policy` means: `retry.max_attempts` counts retries, `fail_fast: false` goes on.
pub fn policy(arg: &str, flow: &illumo_engine::flow::Flow) -> Result<PolicySpec, Option<String>> {
    let dialect = flow.dialect;
    let (name, text) = read_arg("--policy", arg)?;
    let source = Source::new(name, text);
    let parsed = illumo_engine::yaml::parse(&source.text)
        .map_err(|e| format!("--policy: not valid JSON or YAML: {e}"))?;
    let mut dec = Decoder::default();
    let spec = match dialect {
        illumo_engine::dialect::Dialect::IllumoFlow => {
            illumo_engine::dialect::decode_policy(&mut dec, &parsed.yaml, &YPath::root())
        }
        illumo_engine::dialect::Dialect::Native => {
            PolicySpec::decode(&mut dec, &parsed.yaml, &YPath::root())
        }
    };
    illumo_engine::diagnostic::resolve(&mut dec.diags, &parsed);
    if let Some(illumo_engine::policy::OnError::Goto(target)) = &spec.on_error {
        if !flow.index.contains_key(target) {
            let mut ids: Vec<&str> = flow.nodes.iter().map(|n| n.id.as_str()).collect();
            ids.sort_unstable();
            return Err(Some(format!(
                "--policy: `on_error: goto` names `{target}`, which is not a node of the flow (its nodes: {})",
                ids.join(", ")
            )));
        }
    }
    if dec.has_errors() {
        eprint!("{}", source.render_all(&dec.diags, crate::stderr_color()));
        return Err(None);
    }
    Ok(spec)
}
