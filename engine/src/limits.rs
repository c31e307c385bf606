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
}

impl TooDeep {
    pub fn reason(&self) -> String {
        format!("it nests deeper than {MAX_EXPRESSION_NESTING} levels")
    }
}

/// Checks a template's nesting: blocks (`{{#each}}` ... `{{/each}}`) and, inside each
/// `{{ }}`, subexpressions `( )`.
pub fn template_nesting(text: &str) -> Result<(), TooDeep> {
    let chars: Vec<char> = text.chars().collect();
    let (mut blocks, mut i) = (0usize, 0usize);
    while i + 1 < chars.len() {
        if chars[i] != '{' || chars[i + 1] != '{' {
            i += 1;
            continue;
        }
        let open = i;
        i += 2;
        while i < chars.len() && chars[i] == '{' {
            i += 1;
        }
        match chars.get(i) {
            Some('#') => {
                blocks += 1;
                if blocks > MAX_EXPRESSION_NESTING {
                    return Err(TooDeep { offset: open });
                }
            }
            Some('/') => blocks = blocks.saturating_sub(1),
            _ => {}
        }
        // Inside the mustache, until `}}`: subexpressions add to the depth.
        let mut parens = 0usize;
        while i < chars.len() && !(chars[i] == '}' && chars.get(i + 1) == Some(&'}')) {
            match chars[i] {
                '(' => {
                    parens += 1;
                    if blocks + parens > MAX_EXPRESSION_NESTING {
                        return Err(TooDeep { offset: i });
                    }
                }
                ')' => parens = parens.saturating_sub(1),
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
    while i < chars.len() {
        let c = chars[i];
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
            return Err(TooDeep { offset: i });
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
        assert_eq!(template_nesting(&deep), Err(TooDeep { offset: 32 * 14 }));
        let parens = format!("{{{{ {}true{} }}}}", "(not ".repeat(40), ")".repeat(40));
        assert_eq!(
            template_nesting(&parens),
            Err(TooDeep { offset: 3 + 32 * 5 })
        );
        // Blocks that close do not add up.
        let flat = "{{#if $ctx.a}}x{{/if}}".repeat(100);
        assert_eq!(template_nesting(&flat), Ok(()));
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
            Err(TooDeep { offset: 32 })
        );
        assert_eq!(
            condition_nesting(&format!("{}true", "!".repeat(40))),
            Err(TooDeep { offset: 32 })
        );
        assert_eq!(condition_nesting("ctx.a != 1 && ctx.b - 1 > -2"), Ok(()));
        assert_eq!(
            condition_nesting(&format!("'{}' == ctx.a", "(".repeat(100))),
            Ok(())
        );
    }
}
