//! `Retrieve`: ranks the entries of a knowledge base (a JSON array or JSONL file of
//! `{id, question, answer, tags}`) against a query with BM25, for English and Japanese
//! alike: words for scripts with spaces, overlapping character pairs for Chinese and
//! Japanese text, which has none.
//!
//! Output: `{query, matches: [{id, question, answer, score}], confidence}`. `confidence`
//! is the share of the query's weight (the inverse document frequency of its terms) that
//! the best entry contains, from 0 (nothing in common) to 1 (every term of the query).

use illumo_engine::node::{BuildCx, Node, NodeCx, NodeError, NodeFactory, Outcome};
use illumo_engine::template::Reads;
use illumo_engine::value::ValueSpec;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// the knowledge base: a JSON array or JSONL of {id, question, answer, tags}, relative to the flow file
    #[schemars(extend("x-kind" = "file"))]
    knowledge_base: String,
    /// what to look up (a template; default the input when it is text, else $ctx.chat.message)
    #[schemars(extend("x-kind" = "template"))]
    query: Option<String>,
    /// how many entries to return (default 3)
    #[schemars(extend("x-kind" = "number"))]
    top_k: Option<usize>,
    /// entries scoring below this are left out (default 0)
    #[schemars(extend("x-kind" = "number"))]
    min_score: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: Value,
    question: String,
    answer: String,
    #[serde(default)]
    tags: Vec<String>,
}

/// BM25's term-frequency saturation and length normalisation.
const K1: f64 = 1.2;
const B: f64 = 0.75;

struct Index {
    entries: Vec<Entry>,
    /// Per entry, its terms and how often each occurs.
    terms: Vec<HashMap<String, u32>>,
    lengths: Vec<f64>,
    average: f64,
    /// Per term, in how many entries it occurs.
    frequency: HashMap<String, u32>,
}

impl Index {
    fn new(entries: Vec<Entry>) -> Index {
        let mut terms = Vec::with_capacity(entries.len());
        let mut frequency: HashMap<String, u32> = HashMap::new();
        for e in &entries {
            // The question counts twice: it is what a user's message resembles most.
            let text = format!(
                "{} {} {} {}",
                e.question,
                e.question,
                e.tags.join(" "),
                e.answer
            );
            let mut counts: HashMap<String, u32> = HashMap::new();
            for t in tokens(&text) {
                *counts.entry(t).or_default() += 1;
            }
            for t in counts.keys() {
                *frequency.entry(t.clone()).or_default() += 1;
            }
            terms.push(counts);
        }
        let lengths: Vec<f64> = terms
            .iter()
            .map(|c| c.values().map(|n| f64::from(*n)).sum())
            .collect();
        let average = lengths.iter().sum::<f64>() / (lengths.len().max(1) as f64);
        Index {
            entries,
            terms,
            lengths,
            average: average.max(1.0),
            frequency,
        }
    }

    fn idf(&self, term: &str) -> f64 {
        let n = self.entries.len() as f64;
        let df = f64::from(self.frequency.get(term).copied().unwrap_or(0));
        ((n - df + 0.5) / (df + 0.5) + 1.0).ln()
    }

    /// Entries by score, best first, with the confidence of the best.
    fn search(&self, query: &str) -> (Vec<(usize, f64)>, f64) {
        let mut query_terms = tokens(query);
        query_terms.sort();
        query_terms.dedup();
        let weight: f64 = query_terms.iter().map(|t| self.idf(t)).sum();
        let mut scored: Vec<(usize, f64)> = (0..self.entries.len())
            .map(|i| {
                let score = query_terms
                    .iter()
                    .map(|t| {
                        let tf = f64::from(self.terms[i].get(t).copied().unwrap_or(0));
                        if tf == 0.0 {
                            return 0.0;
                        }
                        let norm = K1 * (1.0 - B + B * self.lengths[i] / self.average);
                        self.idf(t) * tf * (K1 + 1.0) / (tf + norm)
                    })
                    .sum::<f64>();
                (i, score)
            })
            .filter(|(_, s)| *s > 0.0)
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let confidence = match (scored.first(), weight > 0.0) {
            (Some(&(best, _)), true) => {
                let covered: f64 = query_terms
                    .iter()
                    .filter(|t| self.terms[best].contains_key(*t))
                    .map(|t| self.idf(t))
                    .sum();
                (covered / weight).clamp(0.0, 1.0)
            }
            _ => 0.0,
        };
        (scored, confidence)
    }
}

/// Is this a character of a script written without spaces (Chinese, Japanese)?
fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{3040}'..='\u{30ff}'   // hiragana, katakana
        | '\u{3400}'..='\u{4dbf}' // CJK extension A
        | '\u{4e00}'..='\u{9fff}' // CJK unified ideographs
        | '\u{f900}'..='\u{faff}' // compatibility ideographs
        | '\u{ff66}'..='\u{ff9f}' // half-width katakana
    )
}

/// Lower-cased words, and for CJK runs their overlapping character pairs (a single
/// character alone). Punctuation separates.
pub(crate) fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut run: Vec<char> = Vec::new();
    let flush_run = |run: &mut Vec<char>, out: &mut Vec<String>| {
        match run.len() {
            0 => {}
            1 => out.push(run[0].to_string()),
            _ => out.extend(run.windows(2).map(|w| w.iter().collect::<String>())),
        }
        run.clear();
    };
    for c in text.chars() {
        if is_cjk(c) {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            run.push(c);
        } else if c.is_alphanumeric() {
            flush_run(&mut run, &mut out);
            word.extend(c.to_lowercase());
        } else {
            flush_run(&mut run, &mut out);
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
        }
    }
    flush_run(&mut run, &mut out);
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// Reads a knowledge base; an error names the file and, for bad JSON or a bad entry, its
/// line and column.
fn load(path: &std::path::Path, shown: &str) -> Result<Vec<Entry>, String> {
    let text = crate::files::read_text(path)
        .map_err(|e| format!("cannot read the knowledge base `{shown}`: {e}"))?;
    let entries: Vec<Entry> = if text.trim_start().starts_with('[') {
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "the knowledge base `{shown}`:{}:{}: {}",
                e.line(),
                e.column(),
                without_place(&e)
            )
        })?
    } else {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let entry = serde_json::from_str(line).map_err(|e| {
                format!(
                    "the knowledge base `{shown}`:{}:{}: {}",
                    i + 1,
                    e.column(),
                    without_place(&e)
                )
            })?;
            entries.push(entry);
        }
        entries
    };
    if entries.is_empty() {
        return Err(format!("the knowledge base `{shown}` has no entries"));
    }
    Ok(entries)
}

/// serde's message without its own ` at line L column C` (the caller names the place).
fn without_place(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once(" at line ") {
        Some((message, _)) => message.to_string(),
        None => text,
    }
}

pub struct Retrieve {
    index: Index,
    query: Option<ValueSpec>,
    top_k: usize,
    min_score: f64,
}

pub struct RetrieveFactory;

impl NodeFactory for RetrieveFactory {
    fn type_name(&self) -> &'static str {
        "Retrieve"
    }
    fn summary(&self) -> &'static str {
        "ranks a knowledge base's entries against a query with BM25 (English and Japanese)"
    }
    fn settings_schema(&self) -> Value {
        crate::settings::schema_of::<Config>()
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let config: Config = cx.config()?;
        let path = crate::llm::resolve(cx.base_dir, &config.knowledge_base);
        let entries = match load(&path, &config.knowledge_base) {
            Ok(e) => e,
            Err(e) => {
                cx.error(cx.at(&["knowledge_base"]), &config.knowledge_base, e);
                return None;
            }
        };
        let query = match &config.query {
            Some(q) => Some(cx.value(cx.at(&["query"]), &Value::String(q.clone()))?),
            None => None,
        };
        let top_k = config.top_k.unwrap_or(3);
        if top_k == 0 {
            cx.error(cx.at(&["top_k"]), "0", "`top_k` must be at least 1");
        }
        Some(Box::new(Retrieve {
            index: Index::new(entries),
            query,
            top_k,
            min_score: config.min_score.unwrap_or(0.0),
        }))
    }
}

#[illumo_engine::async_trait]
impl Node for Retrieve {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        let query = match &self.query {
            Some(spec) => spec
                .render(cx.ctx)
                .map_err(|e| NodeError::fatal(e.to_string()))?,
            None => match cx.input {
                Value::String(_) => cx.input.clone(),
                _ => cx.ctx["chat"]["message"].clone(),
            },
        };
        let query =
            match query {
                Value::String(s) => s,
                Value::Null => return Err(NodeError::fatal(
                    "there is nothing to look up: give `query`, a text input, or ctx.chat.message",
                )),
                other => other.to_string(),
            };
        let (scored, confidence) = self.index.search(&query);
        let matches: Vec<Value> = scored
            .into_iter()
            .filter(|(_, s)| *s >= self.min_score)
            .take(self.top_k)
            .map(|(i, score)| {
                let e = &self.index.entries[i];
                json!({"id": e.id, "question": e.question, "answer": e.answer, "score": (score * 1000.0).round() / 1000.0})
            })
            .collect();
        let confidence = if matches.is_empty() { 0.0 } else { confidence };
        Ok(Outcome::value(json!({
            "query": query,
            "matches": matches,
            "confidence": (confidence * 1000.0).round() / 1000.0,
        })))
    }

    fn reads(&self) -> Reads {
        match &self.query {
            Some(q) => q.reads(),
            None => Reads::path(vec![
                illumo_engine::path::Step::Key("chat".into()),
                illumo_engine::path::Step::Key("message".into()),
            ]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn japanese_is_split_in_character_pairs_and_english_in_words() {
        assert_eq!(
            tokens("Reset my パスワード, please!"),
            ["reset", "my", "パス", "スワ", "ワー", "ード", "please"]
        );
        assert_eq!(tokens("返品"), ["返品"]);
        assert_eq!(tokens("本"), ["本"]);
    }

    fn entry(id: &str, question: &str, answer: &str) -> Entry {
        Entry {
            id: json!(id),
            question: question.into(),
            answer: answer.into(),
            tags: vec![],
        }
    }

    #[test]
    fn the_entry_sharing_the_rare_words_ranks_first_with_its_confidence() {
        let index = Index::new(vec![
            entry("a", "How do I reset my password?", "Use the reset link."),
            entry("b", "How do I change my email?", "Open the settings."),
            entry(
                "c",
                "パスワードを忘れました",
                "再設定リンクを使ってください。",
            ),
        ]);
        let (scored, confidence) = index.search("reset password");
        assert_eq!(scored[0].0, 0);
        assert_eq!(confidence, 1.0, "both words are in the best entry");
        let (scored, _) = index.search("パスワードを再設定したい");
        assert_eq!(scored[0].0, 2);
        let (scored, confidence) = index.search("weather tomorrow");
        assert!(scored.is_empty());
        assert_eq!(confidence, 0.0);
    }
}
