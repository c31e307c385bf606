//! Command-line arguments.

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "illumo",
    version,
    about = "Run declarative YAML flows of nodes and LLM agents that share one context tree",
    after_help = "Examples:\n  illumo run examples/basics/hello.yaml --context '{\"user\": {\"name\": \"Ada\"}}'\n  illumo validate flow.yaml\n  illumo graph flow.yaml --format mermaid\n  illumo nodes\n\nExit codes: 0 ok, 1 the flow failed, 2 bad usage or invalid flow, 3 paused for an answer, 130 interrupted."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// When to use colour on stderr: auto (a terminal, unless NO_COLOR is set or TERM is dumb), always or never
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "auto",
        value_name = "WHEN"
    )]
    pub color: ColorArg,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ColorArg {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a flow and print the final ctx as JSON on stdout
    #[command(
        after_help = "Examples:\n  illumo run flow.yaml --context '{\"request\": {\"summary\": \"fix the bug\"}}'\n  illumo run flow.yaml -c @context.json --set request.user=ada --pretty\n  illumo run flow.yaml --policy '{\"retry\": {\"max_attempts\": 3}}' --profile prod\n  illumo run flow.yaml --tracer none -o result.json\n  illumo run flow.yaml --tracer sqlite --from review --trace 4bf92f35 --set request.tone=formal\n  illumo run flow.yaml --events - -o result.json | jq -c 'select(.event == \"node.end\")'\n  illumo run flow.yaml --data rows.csv --data-path row --parallel 8 -o results.jsonl\n\nThe final ctx goes to stdout (or -o); the console trace, warnings and errors go to stderr.\nWith the sqlite tracer (or --state PATH) every finished step is journaled: `illumo resume` continues a run that failed, was killed or paused.\nExit codes: 0 ok, 1 the flow failed (the partial ctx is still written), 2 bad usage or invalid flow, 3 paused for an answer (see `illumo resume`), 129/130/143 interrupted by SIGHUP/SIGINT/SIGTERM."
    )]
    Run(Box<RunArgs>),
    /// Continue a journaled run that failed, was interrupted or killed, or paused for an answer
    #[command(
        after_help = "Examples:\n  illumo resume 4bf92f35 --db trace.db\n  illumo resume 4bf92f35 --db trace.db --input '{\"choice\": \"approve\"}'\n  illumo resume 4bf92f35 --db trace.db --input @answer.json --write\n\nFinished steps are not run again (no model call repeated, no program run again); the step that failed or was running runs again.\nThe run continues in the working folder it started in, with its flow file, ctx, profile, --policy and --llm; --write and --redact must be given again.\nIf the flow file changed a node that already ran, resume refuses (naming the node) unless --force.\nExit codes as for `illumo run`: 0 ok, 1 failed, 2 bad usage, a changed flow or an answer that does not fit (the run stays paused), 3 paused again."
    )]
    Resume(Box<ResumeArgs>),
    /// Talk with a flow: each line you type runs it once and prints its reply
    #[command(
        after_help = "Examples:\n  illumo chat examples/multi_agent/chat_bot/faq_flow.yaml --session s-1001\n  printf 'hello\\nHow do I reset my password?\\n' | illumo chat faq_flow.yaml --session s-1 -q\n\nEach line runs the flow with ctx.chat.message set to it and ctx.chat.history to the conversation so far ([{role, content}]), and prints ctx.chat.answer (or --reply-path).\nSessions (the history, and the ctx the flow keeps from turn to turn) are stored in --db (default chat.db): --session ID continues one after a restart.\nCommands: /history, /reset, /exit. Ctrl-D ends the chat; Ctrl-C stops it (exit 130) and keeps the turns before.\nPiped stdin is read one turn per line. Exit 1 if a turn failed (it is not kept), 0 otherwise."
    )]
    Chat(Box<ChatArgs>),
    /// Check flows and report every problem with file:line:column
    #[command(
        after_help = "Examples:\n  illumo validate flow.yaml\n  illumo validate 'examples/**/*.yaml' --deny-warnings\n  illumo validate a.yaml b.yaml --format json | jq '.diagnostics[] | select(.severity == \"error\")'\n\nA quoted pattern is expanded by illumo (`*`, `?`, `**` for any folders); files it finds that are not flows (no `flow:` key, like scripted replies) are skipped.\nExit code 2 when there are errors (or warnings, with --deny-warnings); warnings alone exit 0."
    )]
    Validate(ValidateArgs),
    /// Print the flow's graph as Mermaid or Graphviz dot
    #[command(
        after_help = "Examples:\n  illumo graph flow.yaml --format mermaid\n  illumo graph flow.yaml --format dot | dot -Tsvg > flow.svg"
    )]
    Graph {
        /// The flow file
        flow: String,
        /// Output format
        #[arg(long, value_enum, default_value = "mermaid")]
        format: GraphFormat,
    },
    /// Rewrite a flow written for illumo-flow in illumo's own spelling
    #[command(
        after_help = "Examples:\n  illumo migrate flow.yaml > flow.native.yaml\n  illumo migrate flow.yaml --write\n\nThe result goes to stdout (or, with --write, replaces the file); every change is listed on stderr.\nThe migrated flow behaves the same, with illumo-flow's meanings written out (retries counted as attempts, `|` joins as one edge per parent);\nctx.steps, ctx.errors and ctx.routing take illumo's shapes. Comments are not kept."
    )]
    Migrate {
        /// The flow file
        flow: String,
        /// Replace the file instead of printing the result
        #[arg(long)]
        write: bool,
    },
    /// Read traces recorded by the sqlite tracer
    #[command(subcommand)]
    Trace(TraceCommand),
    /// Run flow test cases (`*.test.yaml`) and report like pytest
    #[command(
        after_help = "Examples:\n  illumo test                       # every *.test.yaml under tests/flows\n  illumo test tests/flows/chat_bot.test.yaml --junit report.xml\n\nA test file names a `flow` and its `cases`: `context`, `llm` (scripted=FILE or replay=FILE), `profile`, `exit_code` (default 0) and `expect`, a map of ctx paths to a value or to {contains}, {matches: REGEX} or {approx, tolerance}.\nPaths in a test file are relative to it. Exit 1 if a case failed, 2 for a bad test file."
    )]
    Test(TestArgs),
    /// Print a JSON Schema (draft 2020-12) of the flow format, for editors
    #[command(
        after_help = "Examples:\n  illumo schema > flow.schema.json\n  # then, as a flow file's first line:\n  # yaml-language-server: $schema=flow.schema.json\n\nEvery node type's settings are included; see docs/editors.md for VS Code and Neovim."
    )]
    Schema,
    /// Print a shell completion script
    #[command(
        after_help = "Examples:\n  illumo completions bash > ~/.local/share/bash-completion/completions/illumo\n  illumo completions zsh > \"${fpath[1]}/_illumo\"\n  illumo completions fish > ~/.config/fish/completions/illumo.fish\n  illumo completions powershell >> $PROFILE"
    )]
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: ShellArg,
    },
    /// List the node types and their settings
    #[command(after_help = "Example:\n  illumo nodes --json | jq '.[].type'")]
    Nodes {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct TestArgs {
    /// Test files or folders (default: tests/flows)
    #[arg(value_name = "FILE|DIR")]
    pub files: Vec<String>,
    /// Write a JUnit XML report here (for CI)
    #[arg(long, value_name = "FILE")]
    pub junit: Option<String>,
    /// How many cases run at once (default: one per core)
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
}

#[derive(Args)]
pub struct ValidateArgs {
    /// Flow files or quoted patterns (`'flows/**/*.yaml'`)
    #[arg(required = true, value_name = "FLOW")]
    pub flows: Vec<String>,
    /// `text` (as a compiler prints) or `json` (file, line, column, severity, message, hint per diagnostic)
    #[arg(long, value_enum, default_value = "text")]
    pub format: ValidateFormat,
    /// Warnings fail too (exit 2)
    #[arg(long)]
    pub deny_warnings: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum ValidateFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ShellArg {
    Bash,
    Zsh,
    Fish,
    Powershell,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

#[derive(Args)]
pub struct RunArgs {
    /// The flow file
    pub flow: String,
    /// Initial ctx: JSON text, @FILE, or - for stdin
    #[arg(short = 'c', long, value_name = "JSON|@FILE|-")]
    pub context: Option<String>,
    /// Set one ctx value: `path=value` (value is JSON, or else text); repeatable
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub sets: Vec<String>,
    /// Policy override for every node (above the flow and profile, below node policies)
    #[arg(long, value_name = "JSON|@FILE")]
    pub policy: Option<String>,
    /// Apply one of the flow's `profiles`
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Tracer to report to: console, sqlite, otel or none; repeatable (default: console)
    #[arg(long = "tracer", value_name = "NAME")]
    pub tracers: Vec<String>,
    /// Tracer setting `key=value`: `db_path=./trace.db` (sqlite), `exporter_endpoint=URL`, `protocol=grpc|http` (otel), `max_text=N` (any: characters of prompts, replies and ctx kept, default 16384), `prices=FILE` (any: USD per million tokens by model, for costs); repeatable
    #[arg(long = "tracer-arg", value_name = "KEY=VALUE")]
    pub tracer_args: Vec<String>,
    /// A text that must never reach a tracer (replaced by ***); repeatable
    #[arg(long = "redact", value_name = "TEXT")]
    pub redact: Vec<String>,
    /// How agents reach LLMs: `scripted=FILE` (replies from a file), `record=FILE` (live,
    /// and every exchange saved), `replay=FILE` (answers from a recording, no network)
    #[arg(long, value_name = "MODE=FILE")]
    pub llm: Option<String>,
    /// Let nodes change files on disk (Patch writes the patched files; without it, a dry run)
    #[arg(long)]
    pub write: bool,
    /// Print only this part of the final ctx, e.g. `$ctx.summary.report` (text is printed as is)
    #[arg(long, value_name = "PATH")]
    pub print: Option<String>,
    /// Write the final ctx to FILE instead of stdout
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<String>,
    /// Pretty-print the final ctx
    #[arg(long)]
    pub pretty: bool,
    /// No console trace, warnings or trailer on stderr (errors are still printed)
    #[arg(short, long)]
    pub quiet: bool,
    /// The sqlite tracer's database (`--tracer-arg db_path=PATH`); adds `--tracer sqlite`
    /// when no tracer names it (illumo-flow's flag)
    #[arg(long, value_name = "PATH")]
    pub trace_db: Option<String>,
    /// The `service.name` the otel tracer reports (default: OTEL_SERVICE_NAME, else illumo)
    #[arg(long, value_name = "NAME")]
    pub service_name: Option<String>,
    /// When the run fails, write a failure report here: trace id, failed node, reason,
    /// policy and a digest of ctx (illumo-flow's report)
    #[arg(long, value_name = "FILE")]
    pub report_path: Option<String>,
    /// The failure report's format
    #[arg(long, value_enum, default_value = "json", requires = "report_path")]
    pub report_format: ReportFormat,
    /// When the run fails, append the same report as one JSON line to
    /// DIR/runtime_execution.log (illumo-flow's execution log)
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<String>,
    /// Batch: run the flow once per row of this JSONL or CSV file (each row's fields on
    /// top of the ctx, or at --data-path); results as JSON lines on stdout or -o
    #[arg(long, value_name = "FILE")]
    pub data: Option<String>,
    /// Where each row goes in ctx (default: its fields at the top level)
    #[arg(long, value_name = "PATH", requires = "data")]
    pub data_path: Option<String>,
    /// With --data: how many rows run at once (default 4)
    #[arg(long, value_name = "N", requires = "data")]
    pub parallel: Option<usize>,
    /// Write one JSON line per run event as it happens (run and node start and end,
    /// routing, retries, streamed tokens, ...) to FILE, or `-` for stdout (docs/events.md)
    #[arg(long, value_name = "FILE|-")]
    pub events: Option<String>,
    /// Journal the run in this SQLite file (without the sqlite tracer), so `illumo resume
    /// --db PATH` can continue it
    #[arg(long, value_name = "PATH")]
    pub state: Option<String>,
    /// When a finished step is safe on disk: `batch` (committed every few milliseconds;
    /// a SIGKILL may lose the last few, which then run again), `sync` (before the next
    /// node starts), or `off` (no journal: the run cannot be resumed)
    #[arg(long, value_enum, default_value = "batch")]
    pub durability: DurabilityArg,
    /// Never ask on the terminal: an `Approval` node pauses the run (exit 3) instead
    #[arg(long)]
    pub no_input: bool,
    /// Fork: start at this node, with ctx as it was just before it first ran in `--trace`
    #[arg(long, value_name = "NODE", requires = "trace")]
    pub from: Option<String>,
    /// The run to fork from (its id or a unique prefix), in the sqlite tracer's database
    /// or `--state`
    #[arg(long, value_name = "TRACE_ID", requires = "from")]
    pub trace: Option<String>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum DurabilityArg {
    Batch,
    Sync,
    Off,
}

#[derive(Args)]
pub struct ChatArgs {
    /// The flow file
    pub flow: String,
    /// The conversation to continue or start (default: a new one, named on stderr)
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// Where sessions are kept
    #[arg(long, default_value = "chat.db", value_name = "PATH")]
    pub db: String,
    /// A new session's initial ctx: JSON text, @FILE (not stdin: that carries the turns)
    #[arg(short = 'c', long, value_name = "JSON|@FILE")]
    pub context: Option<String>,
    /// Set one value of a new session's ctx: `path=value`; repeatable
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub sets: Vec<String>,
    /// Where the reply is in the final ctx
    #[arg(long, value_name = "PATH")]
    pub reply_path: Option<String>,
    /// How agents reach LLMs: `scripted=FILE`, `record=FILE`, `replay=FILE` (as for run)
    #[arg(long, value_name = "MODE=FILE")]
    pub llm: Option<String>,
    /// Apply one of the flow's `profiles`
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Policy override for every node
    #[arg(long, value_name = "JSON|@FILE")]
    pub policy: Option<String>,
    /// Tracer to report to: console, sqlite, otel or none (default none); one trace per turn
    #[arg(long = "tracer", value_name = "NAME")]
    pub tracers: Vec<String>,
    /// Tracer setting `key=value` (as for run)
    #[arg(long = "tracer-arg", value_name = "KEY=VALUE")]
    pub tracer_args: Vec<String>,
    /// A text that must never reach a tracer or the session file; repeatable
    #[arg(long = "redact", value_name = "TEXT")]
    pub redact: Vec<String>,
    /// Only replies on stdout and errors on stderr
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct ResumeArgs {
    /// The run's trace id, or a unique prefix of one
    pub trace_id: String,
    /// The database the run was journaled in
    #[arg(long, default_value = "trace.db")]
    pub db: String,
    /// The answer for the node the run paused at: JSON text or @FILE, e.g. '{"choice": "approve"}'
    #[arg(long, value_name = "JSON|@FILE")]
    pub input: Option<String>,
    /// Resume even though the flow file changed a node that already ran (the journal is
    /// followed as far as it fits the flow, then dropped)
    #[arg(long)]
    pub force: bool,
    /// Let nodes change files on disk (needed again if the run was started with it)
    #[arg(long)]
    pub write: bool,
    /// A text that must never reach a tracer (replaced by ***); repeatable
    #[arg(long = "redact", value_name = "TEXT")]
    pub redact: Vec<String>,
    /// When a finished step is safe on disk (as for `illumo run`)
    #[arg(long, value_enum, default_value = "batch")]
    pub durability: DurabilityArg,
    /// Never ask on the terminal: an `Approval` node pauses the run (exit 3) instead
    #[arg(long)]
    pub no_input: bool,
    /// Print only this part of the final ctx, e.g. `$ctx.summary.report`
    #[arg(long, value_name = "PATH")]
    pub print: Option<String>,
    /// Write the final ctx to FILE instead of stdout
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<String>,
    /// Pretty-print the final ctx
    #[arg(long)]
    pub pretty: bool,
    /// No console trace, warnings or trailer on stderr (errors are still printed)
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum ReportFormat {
    Json,
    Markdown,
}

#[derive(Subcommand)]
pub enum TraceCommand {
    /// List runs, newest first: flow, start, duration, status (ok, failed, interrupted,
    /// paused, running), node count, and whether `illumo resume` can continue it
    #[command(after_help = "Example:\n  illumo trace list --db trace.db --limit 5")]
    List {
        /// The trace database
        #[arg(long, default_value = "trace.db")]
        db: String,
        /// How many runs
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Output format
        #[arg(long, value_enum, default_value = "table")]
        format: ListFormat,
        /// Filters in illumo-flow's TraceQL subset: `trace_id="..."`, `span.name=="FLOW"`, `limit N`
        #[arg(long, value_name = "QUERY")]
        traceql: Option<String>,
        /// Only runs of this flow
        #[arg(long, value_name = "NAME")]
        flow: Option<String>,
        /// Only runs in this state: ok, failed, interrupted, paused or running
        #[arg(long, value_name = "STATE")]
        status: Option<String>,
        /// Only runs started since: a duration back from now (`30m`, `2h`) or a time (`2026-12-01T09:00`)
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
    },
    /// Show one run as a tree of node attempts with durations, statuses and events
    #[command(
        after_help = "Examples:\n  illumo trace show 4bf92f35 --db trace.db\n  illumo trace show 4bf92f3577b34da6a3ce929d0e0e4736 --format json | jq '.spans[].name'"
    )]
    Show {
        /// A trace id, or a unique prefix of one (default: the latest run)
        trace_id: Option<String>,
        /// The trace database
        #[arg(long, default_value = "trace.db")]
        db: String,
        /// Output format
        #[arg(long, value_enum, default_value = "tree")]
        format: ShowFormat,
        /// The trace, as illumo-flow's TraceQL subset gives it: `trace_id="..."`
        #[arg(long, value_name = "QUERY")]
        traceql: Option<String>,
        /// Under each node attempt, its input and output (as the trace keeps them)
        #[arg(long)]
        io: bool,
        /// Leave out the events under each span (illumo-flow's flag)
        #[arg(long)]
        no_events: bool,
        /// Show the events under each span (the default; illumo-flow's flag)
        #[arg(long, conflicts_with = "no_events")]
        include_events: bool,
    },
    /// Find node attempts by status, node, attribute or timeout
    #[command(
        after_help = "Examples:\n  illumo trace search --db trace.db --status error\n  illumo trace search --db trace.db --node draft --attr node.type=Command\n  illumo trace search --db trace.db --timeouts"
    )]
    Search {
        /// The trace database
        #[arg(long, default_value = "trace.db")]
        db: String,
        /// OK or ERROR
        #[arg(long)]
        status: Option<String>,
        /// A node id
        #[arg(long)]
        node: Option<String>,
        /// An attribute `path=value`, e.g. `node.type=Command`; repeatable
        #[arg(long = "attr", value_name = "PATH=VALUE")]
        attrs: Vec<String>,
        /// Only attempts that timed out
        #[arg(long, alias = "timeout-only")]
        timeouts: bool,
        /// Only this trace (id or prefix)
        #[arg(long)]
        trace: Option<String>,
        /// How many results
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Output format
        #[arg(long, value_enum, default_value = "table")]
        format: ListFormat,
        /// Filters in illumo-flow's TraceQL subset: `span.name=="draft"`, `span.kind=="flow"`,
        /// `span.status=="ERROR"`, `span.attributes["node.type"]=="Agent"`, `trace_id="..."`, `limit N`
        #[arg(long, value_name = "QUERY")]
        traceql: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
    Markdown,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ShowFormat {
    Tree,
    Table,
    Json,
}
