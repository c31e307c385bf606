//! The `illumo` command line: parses arguments, wires the node registry and tracers to the
//! engine, and renders errors. Exit codes: 0 success, 1 the flow failed, 2 bad usage or an
//! invalid flow, 3 paused for an answer, 4 the flow succeeded but its output could not be written, 129/130/143
//! interrupted by SIGHUP/SIGINT/SIGTERM.

// Printing that never panics: a closed stderr is ignored, and a reader that closes stdout
// (`illumo trace list | head`) ends the process quietly, as SIGPIPE would, without SIGPIPE
// itself (which would also kill illumo when a child or a collector closes its end).
macro_rules! println {
    () => { $crate::emit::out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::emit::out(format_args!("{}\n", format_args!($($arg)*))) };
}
macro_rules! print {
    ($($arg:tt)*) => { $crate::emit::out(format_args!($($arg)*)) };
}
macro_rules! eprintln {
    () => { $crate::emit::err(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::emit::err(format_args!("{}\n", format_args!($($arg)*))) };
}
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::emit::err(format_args!($($arg)*)) };
}

mod batch;
mod chat_cmd;
mod cli;
mod emit;
mod graph;
mod inputs;
mod migrate_cmd;
mod nodes_cmd;
mod playbook;
mod report;
mod resume_cmd;
mod run_cmd;
mod schema_cmd;
mod signals;
mod test_cmd;
mod trace_cmd;
mod traceql;
mod validate_cmd;

use clap::Parser;
use cli::{Cli, Command};
use illumo_engine::{Flow, LoadError, NodeRegistry, Source};
use illumo_tracers::ColorChoice;
use std::ffi::OsString;

pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
/// The run paused for a person's answer (`illumo resume --input`).
pub const EXIT_PAUSED: i32 = 3;
/// The flow succeeded, but its result could not be printed or written (`--print` of a
/// path the ctx does not have, `-o` into a missing folder).
pub const EXIT_OUTPUT: i32 = 4;

/// Runs the CLI with these arguments and returns the exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { 0 };
        }
    };
    let _ = COLOR.set(match cli.color {
        cli::ColorArg::Auto => ColorChoice::Auto,
        cli::ColorArg::Always => ColorChoice::Always,
        cli::ColorArg::Never => ColorChoice::Never,
    });
    let mut registry = illumo_engine::NodeRegistry::new();
    let llm = match &cli.command {
        Command::Run(args) => args.llm.as_deref(),
        Command::Chat(args) => args.llm.as_deref(),
        _ => None,
    };
    let mode = match llm.map(illumo_nodes::llm::LlmMode::parse) {
        Some(Err(message)) => {
            eprintln!("error: {message}");
            return EXIT_USAGE;
        }
        Some(Ok(mode)) => mode,
        None => illumo_nodes::llm::LlmMode::Live,
    };
    illumo_nodes::register_builtins_with(&mut registry, mode);
    match cli.command {
        Command::Run(args) => run_cmd::run(*args, &registry),
        Command::Resume(args) => resume_cmd::run(*args),
        Command::Chat(args) => chat_cmd::run(*args, &registry),
        Command::Validate(args) => validate_cmd::run(&args, &registry),
        Command::Graph { flow, format } => match load(&flow, &registry, false) {
            Ok(f) => {
                print!("{}", graph::render(&f, format));
                0
            }
            Err(code) => code,
        },
        Command::Trace(command) => trace_cmd::run(command),
        Command::Migrate { flow, write } => migrate_cmd::run(&flow, write, &registry),
        Command::Test(args) => test_cmd::run(&args),
        Command::Schema => {
            schema_cmd::print(&registry);
            0
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let shell = match shell {
                cli::ShellArg::Bash => clap_complete::Shell::Bash,
                cli::ShellArg::Zsh => clap_complete::Shell::Zsh,
                cli::ShellArg::Fish => clap_complete::Shell::Fish,
                cli::ShellArg::Powershell => clap_complete::Shell::PowerShell,
            };
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "illumo", &mut script);
            print!("{}", String::from_utf8_lossy(&script));
            0
        }
        Command::Nodes { json } => {
            nodes_cmd::print(&registry, json);
            0
        }
    }
}

/// `--color`, set once at start-up.
static COLOR: std::sync::OnceLock<ColorChoice> = std::sync::OnceLock::new();

pub(crate) fn color_choice() -> ColorChoice {
    COLOR.get().copied().unwrap_or_default()
}

/// Loads a flow file's text: a flow, or a playbook loaded as the flow it stands for (its
/// problems shown at the playbook's own lines).
pub(crate) fn load_text(
    path: &str,
    text: String,
    registry: &NodeRegistry,
    profile: Option<&str>,
) -> Result<Flow, LoadError> {
    load_text_with(path, text, registry, profile, None)
}

/// [`load_text`] with a goto the command line adds (see [`Flow::load_with`]).
pub(crate) fn load_text_with(
    path: &str,
    text: String,
    registry: &NodeRegistry,
    profile: Option<&str>,
    extra_goto: Option<&str>,
) -> Result<Flow, LoadError> {
    // Parsed once: a flow file goes on to the loader as it is (parsing it twice cost a
    // 50,000-node file half its memory and a third of its load time).
    let parsed = match illumo_engine::yaml::parse(&text) {
        Ok(parsed) if playbook::is_playbook(&parsed.yaml) => parsed,
        other => {
            return Flow::load_parsed(
                Source::new(path, text),
                other,
                registry,
                profile,
                extra_goto,
            )
        }
    };
    let source = Source::new(path, text);
    let translated = match playbook::translate(&parsed.yaml) {
        Ok(t) => t,
        Err(mut diagnostics) => {
            playbook::resolve(&mut diagnostics, &parsed);
            return Err(LoadError {
                source,
                diagnostics,
            });
        }
    };
    let generated = Source::new(path, translated.text);
    match Flow::load_with(generated.clone(), registry, None, extra_goto) {
        Ok(mut flow) => {
            playbook::map_back(&mut flow.warnings, &generated, &translated.lines);
            playbook::resolve(&mut flow.warnings, &parsed);
            flow.source = source;
            Ok(flow)
        }
        Err(LoadError {
            mut diagnostics, ..
        }) => {
            playbook::map_back(&mut diagnostics, &generated, &translated.lines);
            playbook::resolve(&mut diagnostics, &parsed);
            Err(LoadError {
                source,
                diagnostics,
            })
        }
    }
}

fn stderr_color() -> bool {
    color_choice().stderr_color()
}

/// Reads and loads a flow; on failure prints every diagnostic and returns the exit code.
pub(crate) fn load(path: &str, registry: &NodeRegistry, quiet: bool) -> Result<Flow, i32> {
    load_for(path, registry, quiet, None)
}

/// The same for a run that chose a profile (whose `llm:` defaults apply to the agents).
pub(crate) fn load_for(
    path: &str,
    registry: &NodeRegistry,
    quiet: bool,
    profile: Option<&str>,
) -> Result<Flow, i32> {
    let text = match std::fs::File::open(path)
        .map_err(|e| e.to_string())
        .and_then(|file| inputs::read_limited(file, "the flow file", &format!("`{path}`")))
    {
        Ok(text) => text,
        Err(e) if e.starts_with("the flow file: ") => {
            eprintln!("error: {e}");
            return Err(EXIT_USAGE);
        }
        Err(e) => {
            eprintln!("error: cannot read flow file `{path}`: {e}");
            return Err(EXIT_USAGE);
        }
    };
    match load_text(path, text, registry, profile) {
        Ok(flow) => {
            if !quiet && !flow.warnings.is_empty() {
                eprint!("{}", flow.source.render_all(&flow.warnings, stderr_color()));
            }
            Ok(flow)
        }
        Err(LoadError {
            source,
            diagnostics,
        }) => {
            eprint!("{}", source.render_all(&diagnostics, stderr_color()));
            Err(EXIT_USAGE)
        }
    }
}

/// The process ends right after: freeing a big flow or ctx piece by piece would only
/// delay the exit (several milliseconds for 10,000 nodes), so the OS takes it back whole.
pub(crate) fn leak_at_exit<T>(value: T) {
    std::mem::forget(value);
}
