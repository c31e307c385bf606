//! Where built-in nodes leave their results in ctx by default. A node that reads another
//! node's result takes the path as a setting whose default is the same constant, so the
//! two meet without configuration and either can be moved with one setting.

/// WorkspaceInspector's file list; Patch reads it.
pub const STRUCTURE: &str = "$ctx.workspace.structure";
/// WorkspaceInspector's excluded files.
pub const EXCLUDED: &str = "$ctx.workspace.structure_excluded";
/// Patch's original and patched contents; TestExecutor and Summary read them.
pub const FILES: &str = "$ctx.workspace.files";
/// DraftAgent's diff; Patch reads it.
pub const DIFF: &str = "$ctx.diff.proposed";
/// What Patch did; Summary reads it.
pub const APPLIED: &str = "$ctx.diff.applied";
/// TestExecutor's last run; Summary reads it.
pub const TEST_RESULTS: &str = "$ctx.tests.results";
/// TestExecutor's earlier runs.
pub const TEST_HISTORY: &str = "$ctx.tests.history";
/// ReviewAgent's verdict; Summary reads it.
pub const REVIEW: &str = "$ctx.review";
/// Summary's report.
pub const REPORT: &str = "$ctx.summary.report";
/// Summary's report as JSON.
pub const REPORT_JSON: &str = "$ctx.summary.json";
