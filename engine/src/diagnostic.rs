//! Problems found while loading a flow, collected all at once and rendered like a compiler:
//!
//! ```text
//! error: node `apply_patch` has unknown goto target `drfat`
//!  --> flow.yaml:23:39
//!    |
//! 23 |       policy: {on_error: {action: goto, target: drfat}}
//!    |                                              ^^^^^ did you mean `draft`?
//! ```

use crate::yaml::{Parsed, YPath};
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in a flow file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    /// Where in the YAML tree; resolved to a line and column when rendered.
    pub path: Option<YPath>,
    /// Extra column offset inside the located scalar (e.g. a condition's syntax error).
    pub offset: usize,
    /// How many characters to underline.
    pub width: usize,
    /// Short text printed beside the underline.
    pub label: Option<String>,
    /// A longer suggestion printed after the snippet.
    pub help: Option<String>,
    /// A known line and column (YAML syntax errors), used instead of `path`.
    pub pos: Option<(usize, usize)>,
}

impl Diagnostic {
    pub fn error(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            path: None,
            offset: 0,
            width: 1,
            label: None,
            help: None,
            pos: None,
        }
    }

    pub fn warning(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(message)
        }
    }

    pub fn at(mut self, path: YPath, offending: &str) -> Self {
        self.path = Some(path);
        self.width = offending.chars().count().max(1);
        self
    }

    pub fn offset(mut self, offset: usize) -> Self {
        self.offset = offset;
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A flow file's name and text, for rendering diagnostics.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
    /// Where each line starts, found when the first diagnostic is rendered.
    line_starts: std::sync::OnceLock<Vec<usize>>,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            name: name.into(),
            text: text.into(),
            line_starts: std::sync::OnceLock::new(),
        }
    }

    /// The folder of the flow file; relative paths in settings start here.
    pub fn base_dir(&self) -> std::path::PathBuf {
        match std::path::Path::new(&self.name).parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        }
    }

    /// The text of a 1-based line, without its line break.
    pub fn line(&self, line: usize) -> &str {
        let starts = self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        });
        let Some(&start) = starts.get(line.wrapping_sub(1)) else {
            return "";
        };
        let end = starts.get(line).map_or(self.text.len(), |&next| next - 1);
        self.text[start..end].trim_end_matches('\r')
    }

    /// The 1-based line and column of a diagnostic (after [`resolve`]), if it has one.
    pub fn position(&self, diagnostic: &Diagnostic) -> Option<(usize, usize)> {
        diagnostic
            .pos
            .map(|(line, column)| (line, column + diagnostic.offset))
    }

    /// Renders one diagnostic; `color` adds ANSI colours.
    pub fn render(&self, d: &Diagnostic, color: bool) -> String {
        let paint = |code: &str, text: &str| {
            if color {
                format!("\x1b[{code}m{text}\x1b[0m")
            } else {
                text.to_string()
            }
        };
        let (word, code) = match d.severity {
            Severity::Error => ("error", "1;31"),
            Severity::Warning => ("warning", "1;33"),
        };
        let mut out = format!("{}: {}\n", paint(code, word), paint("1", &d.message));
        match self.position(d) {
            Some((line, column)) => {
                let number = line.to_string();
                let pad = " ".repeat(number.len());
                let (text, shown_column, width) = window(self.line(line), column, d.width);
                let _ = writeln!(
                    out,
                    "{pad}{} {}:{line}:{column}",
                    paint("34", "-->"),
                    self.name
                );
                let _ = writeln!(out, "{pad} {}", paint("34", "|"));
                let _ = writeln!(
                    out,
                    "{} {} {}",
                    paint("34", &number),
                    paint("34", "|"),
                    expand_tabs(&text)
                );
                let (indent, width) = caret_span(&text, shown_column, width);
                let under = format!("{}{}", " ".repeat(indent), "^".repeat(width));
                let label = d
                    .label
                    .as_deref()
                    .map(|l| format!(" {l}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{pad} {} {}",
                    paint("34", "|"),
                    paint(code, &format!("{under}{label}"))
                );
            }
            None => {
                let _ = writeln!(out, " {} {}", paint("34", "-->"), self.name);
                if let Some(label) = &d.label {
                    let _ = writeln!(out, "  = {label}");
                }
            }
        }
        if let Some(help) = &d.help {
            // Under the snippet's bar, as rustc does.
            let pad = self
                .position(d)
                .map_or(1, |(line, _)| line.to_string().len());
            let _ = writeln!(out, "{} = help: {help}", " ".repeat(pad));
        }
        out
    }

    /// Renders every diagnostic, errors first in file order, then a count line.
    pub fn render_all(&self, diagnostics: &[Diagnostic], color: bool) -> String {
        // Each position is found once, then sorted on.
        let mut sorted: Vec<(SortKey, &Diagnostic)> = diagnostics
            .iter()
            .map(|d| ((d.severity, self.position(d)), d))
            .collect();
        sorted.sort_by_key(|(key, _)| *key);
        let mut out = String::new();
        for (_, d) in &sorted {
            out.push_str(&self.render(d, color));
            out.push('\n');
        }
        let errors = diagnostics.iter().filter(|d| d.is_error()).count();
        let warnings = diagnostics.len() - errors;
        if errors > 0 {
            let _ = writeln!(
                out,
                "error: {} has {}{}",
                self.name,
                plural(errors, "error"),
                match warnings {
                    0 => String::new(),
                    n => format!(" and {}", plural(n, "warning")),
                }
            );
        }
        out
    }
}

/// Errors before warnings, then by line and column.
type SortKey = (Severity, Option<(usize, usize)>);

/// Gives each diagnostic that names a place in the tree its line and column. A quoted
/// scalar's text starts one column after its quote.
pub fn resolve(diagnostics: &mut [Diagnostic], parsed: &Parsed) {
    resolve_in(diagnostics, parsed, None);
}

/// The same, with the file's `text`: an offset inside a value is then found where the
/// text has it, across escapes (`''`, `\"`), folded lines and a block's lines.
pub fn resolve_in(diagnostics: &mut [Diagnostic], parsed: &Parsed, text: Option<&str>) {
    for d in diagnostics.iter_mut().filter(|d| d.pos.is_none()) {
        let Some(path) = &d.path else { continue };
        if let Some((mark, quoted)) = parsed.locate(path) {
            // A quoted scalar's text starts after its quote: that is what carets underline.
            let shift = usize::from(quoted && !path.at_key);
            d.pos = Some((mark.line as usize, mark.column as usize + shift));
            if let (Some(text), true, false) = (text, d.offset > 0, path.at_key) {
                let found = parsed
                    .locate_styled(path)
                    .and_then(|(mark, style)| char_position(text, mark, style, d.offset));
                if let Some(found) = found {
                    d.pos = Some(found);
                    d.offset = 0;
                }
            }
        }
    }
}

/// The 1-based line and column of the `offset`-th character of a scalar's value, the
/// scalar starting at `at` (its quote, or its `|`/`>`) and written in `style`. A folded
/// line break counts as one character, as YAML reads it. `None` when the text ends first.
fn char_position(
    text: &str,
    at: crate::yaml::Mark,
    style: crate::yaml::Style,
    offset: usize,
) -> Option<(usize, usize)> {
    let lines: Vec<Vec<char>> = text
        .split('\n')
        .map(|l| l.trim_end_matches('\r').chars().collect())
        .collect();
    let first = (at.line as usize).checked_sub(1)?;
    let column = (at.column as usize).checked_sub(1)?;
    let mut remaining = offset;
    if style == crate::yaml::Style::Block {
        // The content starts on the next line, indented as its first non-blank line.
        let content = lines.get(first + 1..)?;
        let indent = content
            .iter()
            .find(|l| l.iter().any(|c| !c.is_whitespace()))
            .map_or(0, |l| l.iter().take_while(|c| **c == ' ').count());
        for (n, line) in content.iter().enumerate() {
            let len = line.len().saturating_sub(indent);
            if remaining <= len {
                return Some((first + 2 + n, indent + remaining + 1));
            }
            remaining -= len + 1;
        }
        return None;
    }
    let quote = match style {
        crate::yaml::Style::Quoted => lines.get(first)?.get(column).copied(),
        _ => None,
    };
    let (mut line, mut c) = (first, column + usize::from(quote.is_some()));
    loop {
        let chars = lines.get(line)?;
        let mut continued = false;
        while c < chars.len() {
            if remaining == 0 {
                return Some((line + 1, c + 1));
            }
            let step = match (quote, chars[c], chars.get(c + 1)) {
                (Some('\''), '\'', Some('\'')) => 2,
                // A line that ends in `\` goes on without a space.
                (Some('"'), '\\', None) => 0,
                (Some('"'), '\\', Some('x')) => 4,
                (Some('"'), '\\', Some('u')) => 6,
                (Some('"'), '\\', Some('U')) => 10,
                (Some('"'), '\\', Some(_)) => 2,
                _ => 1,
            };
            if step == 0 {
                continued = true;
                c = chars.len();
                break;
            }
            c += step;
            remaining -= 1;
        }
        if remaining == 0 {
            return Some((line + 1, c.min(chars.len()) + 1));
        }
        if !continued {
            remaining -= 1;
        }
        line += 1;
        c = lines
            .get(line)?
            .iter()
            .take_while(|ch| ch.is_whitespace())
            .count();
    }
}

/// How tabs show in a snippet.
const TAB: &str = "    ";

fn expand_tabs(line: &str) -> String {
    line.replace('\t', TAB)
}

/// How many screen columns of a line a snippet shows: a longer line is cut around the
/// caret, with `...` where text was left out.
const MAX_SHOWN: usize = 100;
/// How many columns before the caret a cut line keeps.
const SHOWN_BEFORE: usize = 40;

/// The part of `line` a snippet shows, with the caret's `column` and `width` moved to
/// match.
fn window(line: &str, column: usize, width: usize) -> (String, usize, usize) {
    let cells = |c: &char| match c {
        '\t' => TAB.len(),
        c => unicode_width::UnicodeWidthChar::width(*c).unwrap_or(0),
    };
    if line.chars().map(|c| cells(&c)).sum::<usize>() <= MAX_SHOWN {
        return (line.to_string(), column, width);
    }
    let chars: Vec<char> = line.chars().collect();
    let first = column.saturating_sub(1);
    // Back from the caret, SHOWN_BEFORE columns' worth of characters.
    let (mut start, mut before) = (first.min(chars.len()), 0);
    while start > 0 && before + cells(&chars[start - 1]) <= SHOWN_BEFORE {
        before += cells(&chars[start - 1]);
        start -= 1;
    }
    let (mut end, mut shown) = (start, 0);
    while end < chars.len() && shown + cells(&chars[end]) <= MAX_SHOWN {
        shown += cells(&chars[end]);
        end += 1;
    }
    let mut text = String::new();
    if start > 0 {
        text.push_str("...");
    }
    text.extend(&chars[start..end]);
    if end < chars.len() {
        text.push_str("...");
    }
    let shift = if start > 0 { 3 } else { 0 };
    let width = if first < end {
        width.min(end - first)
    } else {
        width
    };
    (text, column - start + shift, width)
}

/// Where the carets of a 1-based character `column` start on the screen, and how many
/// there are for `width` characters: a tab shows as four columns, a wide character as two.
fn caret_span(line: &str, column: usize, width: usize) -> (usize, usize) {
    let cells = |c: char| match c {
        '\t' => TAB.len(),
        c => unicode_width::UnicodeWidthChar::width(c).unwrap_or(0),
    };
    // Past the end of the line (a missing closing bracket, a value that goes on), each
    // character counts one column.
    let before: Vec<char> = line.chars().take(column.saturating_sub(1)).collect();
    let indent =
        before.iter().copied().map(cells).sum::<usize>() + column.saturating_sub(1) - before.len();
    let under: Vec<char> = line.chars().skip(before.len()).take(width).collect();
    let shown = under.iter().copied().map(cells).sum::<usize>() + width - under.len();
    (indent, shown.max(1))
}

/// How many characters of a value a message quotes.
const BRIEF: usize = 60;

/// `text` as a message quotes it: whole when short, else its start and `…`.
pub fn brief(text: &str) -> std::borrow::Cow<'_, str> {
    // A text of several lines (a block scalar) is shown on one.
    let text: std::borrow::Cow<'_, str> = if text.contains('\n') {
        text.split_whitespace().collect::<Vec<_>>().join(" ").into()
    } else {
        text.into()
    };
    match text.char_indices().nth(BRIEF) {
        Some((at, _)) => format!("{}…", &text[..at]).into(),
        None => text,
    }
}

pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1) || c.to_lowercase() == lower)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: edits, with a swap of neighbours counting as one.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("Agnet", ["Agent", "Set", "Loop"]),
            Some("Agent")
        );
        assert_eq!(did_you_mean("drfat", ["draft", "review"]), Some("draft"));
        assert_eq!(did_you_mean("zzzzzz", ["draft", "review"]), None);
    }

    #[test]
    fn renders_a_snippet_with_caret_and_label() {
        let text = "flow:\n  entry: strat\n";
        let src = Source::new("flow.yaml", text);
        let path = YPath::root().key("flow").key("entry");
        let mut d = vec![Diagnostic::error("entry names unknown node `strat`")
            .at(path, "strat")
            .label("did you mean `start`?")];
        resolve(&mut d, &crate::yaml::parse(text).unwrap());
        assert_eq!(
            src.render(&d[0], false),
            "error: entry names unknown node `strat`\n --> flow.yaml:2:10\n  |\n2 |   entry: strat\n  |          ^^^^^ did you mean `start`?\n"
        );
    }

    #[test]
    fn carets_line_up_under_tabs_and_wide_characters() {
        // A tab inside a quoted value, and a name in wide characters after it.
        let text = "flow: {name: \"\tx\", entry: ノード}\n";
        let src = Source::new("f.yaml", text);
        let mut d = vec![
            Diagnostic::error("wide").at(YPath::root().key("flow").key("entry"), "ノード"),
            Diagnostic::error("tab")
                .at(YPath::root().key("flow").key("name"), "x")
                .offset(1),
        ];
        resolve(&mut d, &crate::yaml::parse(text).unwrap());
        assert_eq!(
            src.render(&d[0], false),
            "error: wide\n --> f.yaml:1:27\n  |\n1 | flow: {name: \"    x\", entry: ノード}\n  |                              ^^^^^^\n"
        );
        assert_eq!(
            src.render(&d[1], false),
            "error: tab\n --> f.yaml:1:16\n  |\n1 | flow: {name: \"    x\", entry: ノード}\n  |                   ^\n"
        );
    }

    #[test]
    fn long_lines_are_cut_around_the_caret() {
        let text = format!("flow: {{name: {}, entry: bad}}\n", "n".repeat(300));
        let src = Source::new("f.yaml", &text);
        let mut d = vec![Diagnostic::error("e").at(YPath::root().key("flow").key("entry"), "bad")];
        resolve(&mut d, &crate::yaml::parse(&text).unwrap());
        let shown = format!("...{}, entry: bad}}", "n".repeat(31));
        assert_eq!(
            src.render(&d[0], false),
            format!(
                "error: e\n --> f.yaml:1:323\n  |\n1 | {shown}\n  |    {}^^^\n",
                " ".repeat(40)
            )
        );
        // A short line is shown whole; a long one cut at both ends keeps the caret in view.
        assert_eq!(window("abc", 2, 1), ("abc".to_string(), 2, 1));
        let long = "x".repeat(500);
        let (cut, column, width) = window(&long, 250, 400);
        assert_eq!(cut, format!("...{}...", "x".repeat(100)));
        assert_eq!((column, width), (44, 60));
    }

    #[test]
    fn brief_quotes_keep_the_start_of_long_text() {
        assert_eq!(brief("short"), "short");
        assert_eq!(brief(&"(".repeat(100)), format!("{}…", "(".repeat(60)));
    }
}
