//! How deep expressions may nest. Templates and conditions are compiled and evaluated by
//! recursive code (handlebars, CEL), so nesting is checked on the text first, the same way
//! in debug and release builds, before either library sees it: deeper input is a load
//! error with its place, never a stack overflow at run time.

/// How deeply `{{#if}}` blocks, `( )` subexpressions, brackets and `!` may nest in one
/// template or condition.
pub const MAX_EXPRESSION_NESTING: usize = 32;

/// Where an expression nests too deeply: the character offset of the opening that goes
/// past the limit.
#[derive(Debug, Clone, PartialEq)]
pub struct TooDeep {
    pub offset: usize,
    /// Too many operators in a row rather than brackets too deep.
    pub operators: bool,
}

/// How many arithmetic and comparison operators, member accesses and indexes one
/// condition may hold: CEL nests each in the one before (`a + 1 + 1 ...` is as deep as
/// it is long). `&&` and `||` do not count.
pub const MAX_CONDITION_OPERATORS: usize = 256;

impl TooDeep {
    pub fn at(offset: usize) -> TooDeep {
        TooDeep {
            offset,
            operators: false,
        }
    }

    pub fn reason(&self) -> String {
        if self.operators {
            format!("it holds more than {MAX_CONDITION_OPERATORS} operators")
        } else {
            format!("it nests deeper than {MAX_EXPRESSION_NESTING} levels")
        }
    }
}

/// Checks a template's nesting: blocks (`{{#each}}` ... `{{/each}}`, each `{{else if}}`
/// one deeper) and, inside each `{{ }}`, subexpressions `( )`. Comments, raw blocks and
/// escaped `\{{` are text. A fast check on the text, so absurd input never reaches the
/// compiler; the compiled tree is measured too.
pub fn template_nesting(text: &str) -> Result<(), TooDeep> {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize, s: &str| {
        s.chars()
            .enumerate()
            .all(|(k, c)| chars.get(i + k) == Some(&c))
    };
    // Per open block: how many `{{else if}}` it has (each nests one deeper).
    let mut frames: Vec<usize> = Vec::new();
    let depth = |frames: &Vec<usize>| frames.iter().map(|e| 1 + e).sum::<usize>();
    let mut i = 0usize;
    while i + 1 < chars.len() {
        if chars[i] == '\\' && at(i + 1, "{{") {
            i += 3;
            continue;
        }
        if !at(i, "{{") {
            i += 1;
            continue;
        }
        let open = i;
        // `{{{{raw}}}} ... {{{{/raw}}}}`: text until its end.
        if at(i, "{{{{") {
            let close = (i + 4..chars.len()).find(|&k| at(k, "{{{{/"));
            i = close.map_or(chars.len(), |k| k + 5);
            continue;
        }
        i += 2;
        while i < chars.len() && chars[i] == '{' {
            i += 1;
        }
        if chars.get(i) == Some(&'~') {
            i += 1;
        }
        if chars.get(i) == Some(&'!') {
            let end = if at(i, "!--") { "--}}" } else { "}}" };
            let close = (i..chars.len()).find(|&k| at(k, end));
            i = close.map_or(chars.len(), |k| k + end.len());
            continue;
        }
        match chars.get(i) {
            Some('#') => {
                frames.push(0);
                if depth(&frames) > MAX_EXPRESSION_NESTING {
                    return Err(TooDeep::at(open));
                }
            }
            Some('/') => {
                frames.pop();
            }
            _ if at(i, "else") && chars.get(i + 4).is_some_and(|c| c.is_whitespace()) => {
                let rest = chars[i + 4..].iter().skip_while(|c| c.is_whitespace());
                let chained = !matches!(rest.clone().next(), Some('}') | Some('~'));
                if chained {
                    if let Some(top) = frames.last_mut() {
                        *top += 1;
                    }
                    if depth(&frames) > MAX_EXPRESSION_NESTING {
                        return Err(TooDeep::at(open));
                    }
                }
            }
            _ => {}
        }
        // Inside the mustache, until `}}`: subexpressions add to the depth.
        let mut parens = 0usize;
        while i < chars.len() && !at(i, "}}") {
            match chars[i] {
                '(' => {
                    parens += 1;
                    if depth(&frames) + parens > MAX_EXPRESSION_NESTING {
                        return Err(TooDeep::at(i));
                    }
                }
                ')' => parens = parens.saturating_sub(1),
                // A `[segment]` of a path is literal, quotes included.
                '[' => {
                    while i < chars.len() && chars[i] != ']' {
                        i += 1;
                    }
                }
                '"' | '\'' => i = skip_string(&chars, i),
                _ => {}
            }
            i += 1;
        }
        i += 2;
    }
    Ok(())
}

/// Checks a condition's nesting: `( [ {` and runs of the unary `!` and `-`, outside
/// string literals.
pub fn condition_nesting(text: &str) -> Result<(), TooDeep> {
    let chars: Vec<char> = text.chars().collect();
    let (mut depth, mut unary, mut i) = (0usize, 0usize, 0usize);
    let mut operators = 0usize;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        // One per operator (`==` and `<=` once), member access and index.
        let operator = match c {
            '+' | '*' | '/' | '%' => true,
            '-' => !is_prefix(&chars, i),
            '<' | '>' => true,
            '=' | '!' => next == Some('='),
            '.' => next.is_some_and(|n| n.is_alphabetic() || n == '_'),
            '[' => true,
            _ => false,
        };
        if operator {
            operators += 1;
            if operators > MAX_CONDITION_OPERATORS {
                return Err(TooDeep {
                    offset: i,
                    operators: true,
                });
            }
            if next == Some('=') && "=!<>".contains(c) {
                i += 1;
            }
        }
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                unary = 0;
            }
            ')' | ']' | '}' => {
                depth = depth.saturating_sub(1);
                unary = 0;
            }
            '!' if chars.get(i + 1) != Some(&'=') => unary += 1,
            '-' if is_prefix(&chars, i) => unary += 1,
            '"' | '\'' => {
                i = skip_string(&chars, i);
                unary = 0;
            }
            c if c.is_whitespace() => {}
            _ => unary = 0,
        }
        if depth + unary > MAX_EXPRESSION_NESTING {
            return Err(TooDeep::at(i));
        }
        i += 1;
    }
    Ok(())
}

/// Is the `-` at `i` a prefix (negation) rather than a subtraction?
fn is_prefix(chars: &[char], i: usize) -> bool {
    let before = chars[..i].iter().rev().find(|c| !c.is_whitespace());
    before.is_none_or(|c| "([{,!-+*/%<>=&|?:".contains(*c))
}

/// The index of the quote that closes the string opened at `start` (or the end).
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' {
            i += 1;
        }
        i += 1;
    }
    i.min(chars.len().saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_nest_blocks_and_subexpressions_up_to_the_limit() {
        let ok = format!("{}x{}", "{{#if $ctx.a}}".repeat(32), "{{/if}}".repeat(32));
        assert_eq!(template_nesting(&ok), Ok(()));
        let deep = format!("{}x{}", "{{#if $ctx.a}}".repeat(33), "{{/if}}".repeat(33));
        assert_eq!(template_nesting(&deep), Err(TooDeep::at(32 * 14)));
        let parens = format!("{{{{ {}true{} }}}}", "(not ".repeat(40), ")".repeat(40));
        assert_eq!(template_nesting(&parens), Err(TooDeep::at(3 + 32 * 5)));
        // Blocks that close do not add up.
        let flat = "{{#if $ctx.a}}x{{/if}}".repeat(100);
        assert_eq!(template_nesting(&flat), Ok(()));
        // Whitespace control, else-if chains, comments, raw blocks, escapes and brackets.
        let nested =
            |open: &str, close: &str, n: usize| format!("{}x{}", open.repeat(n), close.repeat(n));
        assert!(template_nesting(&nested("{{~#if $ctx.a}}", "{{~/if}}", 40)).is_err());
        let chain = format!(
            "{{{{#if $ctx.b}}}}{}{{{{/if}}}}",
            "{{else if $ctx.b}}b".repeat(40)
        );
        assert!(template_nesting(&chain).is_err());
        let siblings = "{{#if $ctx.b}}a{{else if $ctx.c}}b{{else}}c{{/if}}".repeat(100);
        assert_eq!(template_nesting(&siblings), Ok(()));
        assert!(template_nesting(&"{{#if $ctx.a}}{{!-- }}{{/if}} --}}".repeat(40)).is_err());
        assert!(template_nesting(&"{{#if $ctx.a}}\\{{/if}}".repeat(40)).is_err());
        let quoted = format!(
            "{{{{ eq $ctx.[a'] {}true{} }}}}",
            "(not ".repeat(40),
            ")".repeat(40)
        );
        assert!(template_nesting(&quoted).is_err());
        // Parentheses inside a string are text.
        assert_eq!(
            template_nesting(&format!("{{{{ \"{}\" }}}}", "(".repeat(100))),
            Ok(())
        );
    }

    #[test]
    fn conditions_nest_brackets_and_negations_up_to_the_limit() {
        assert_eq!(
            condition_nesting(&format!("{}true{}", "(".repeat(32), ")".repeat(32))),
            Ok(())
        );
        assert_eq!(
            condition_nesting(&format!("{}true{}", "(".repeat(100), ")".repeat(100))),
            Err(TooDeep::at(32))
        );
        assert_eq!(
            condition_nesting(&format!("{}true", "!".repeat(40))),
            Err(TooDeep::at(32))
        );
        assert_eq!(condition_nesting("ctx.a != 1 && ctx.b - 1 > -2"), Ok(()));
        let long = format!("ctx.n{} > 0", " + 1".repeat(300));
        assert_eq!(
            condition_nesting(&long).map_err(|e| (e.operators, e.reason())),
            Err((true, "it holds more than 256 operators".to_string()))
        );
        let members = format!("ctx{} == 1", ".a".repeat(300));
        assert!(condition_nesting(&members).is_err());
        let booleans = vec!["ctx.a == 1"; 100].join(" && ");
        assert_eq!(condition_nesting(&booleans), Ok(()));
        assert_eq!(
            condition_nesting(&format!("'{}' == ctx.a", "(".repeat(100))),
            Ok(())
        );
    }
}
