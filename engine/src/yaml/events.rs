//! libyaml's event parser, wrapped: one event at a time, each with the line and column
//! where it starts. The unsafe code is confined to this file (the same use of `libyaml-rs`
//! that `yaml_serde` makes internally).

use libyaml_rs as sys;
use std::mem::MaybeUninit;

/// A 1-based line and column (in characters), where something starts in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Mark {
    pub line: u32,
    pub column: u32,
}

impl Mark {
    fn of(mark: sys::yaml_mark_t) -> Mark {
        Mark {
            line: u32::try_from(mark.line + 1).unwrap_or(u32::MAX),
            column: u32::try_from(mark.column + 1).unwrap_or(u32::MAX),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Quoted,
    /// `|` and `>` blocks.
    Block,
}

#[derive(Debug)]
pub enum Event {
    StreamStart,
    StreamEnd,
    DocumentStart,
    DocumentEnd,
    Alias(String),
    Scalar {
        anchor: Option<String>,
        tag: Option<String>,
        value: String,
        style: Style,
    },
    SequenceStart {
        anchor: Option<String>,
        tag: Option<String>,
    },
    SequenceEnd,
    MappingStart {
        anchor: Option<String>,
        tag: Option<String>,
    },
    MappingEnd,
}

/// A syntax error, as libyaml words it.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub problem: String,
    pub at: Option<Mark>,
    /// What the parser was doing (`while parsing a flow mapping`), and where that began.
    pub context: Option<(String, Option<Mark>)>,
}

pub struct Parser<'input> {
    sys: Box<MaybeUninit<sys::yaml_parser_t>>,
    /// The parser reads from this buffer; it must live as long as the parser.
    _input: &'input [u8],
    done: bool,
}

impl<'input> Parser<'input> {
    pub fn new(input: &'input str) -> Parser<'input> {
        let mut sys = Box::new(MaybeUninit::<sys::yaml_parser_t>::uninit());
        let bytes = input.as_bytes();
        // SAFETY: the parser lives in a box that never moves, and the input it points at
        // is borrowed for the parser's lifetime.
        unsafe {
            let parser = sys.as_mut_ptr();
            if sys::yaml_parser_initialize(parser).fail {
                // Only an allocation failure makes initialisation fail.
                std::alloc::handle_alloc_error(std::alloc::Layout::new::<sys::yaml_parser_t>());
            }
            sys::yaml_parser_set_encoding(parser, sys::YAML_UTF8_ENCODING);
            sys::yaml_parser_set_input_string(parser, bytes.as_ptr(), bytes.len() as u64);
        }
        Parser {
            sys,
            _input: bytes,
            done: false,
        }
    }

    /// The next event and where it starts.
    pub fn next_event(&mut self) -> Result<(Event, Mark), SyntaxError> {
        let mut event = MaybeUninit::<sys::yaml_event_t>::uninit();
        // SAFETY: the parser was initialised in `new`; an event filled by a successful
        // `yaml_parser_parse` is read once, then freed with `yaml_event_delete`.
        unsafe {
            let parser = self.sys.as_mut_ptr();
            if self.done || (&*parser).error != sys::YAML_NO_ERROR {
                return Err(self.error());
            }
            let event = event.as_mut_ptr();
            if sys::yaml_parser_parse(parser, event).fail {
                self.done = true;
                return Err(self.error());
            }
            let converted = convert(&*event);
            let mark = Mark::of((*event).start_mark);
            sys::yaml_event_delete(event);
            Ok((converted, mark))
        }
    }

    fn error(&self) -> SyntaxError {
        // SAFETY: the parser is initialised; libyaml's messages are static C strings.
        unsafe {
            let parser = &*self.sys.as_ptr();
            let mark = |m: sys::yaml_mark_t| (m.line != 0 || m.column != 0).then(|| Mark::of(m));
            let problem = c_text(parser.problem as *const u8)
                .unwrap_or_else(|| "the YAML parser failed without saying why".into());
            let at = mark(parser.problem_mark);
            let context = c_text(parser.context as *const u8).map(|c| {
                let context_at = mark(parser.context_mark).filter(|m| Some(*m) != at);
                (c, context_at)
            });
            SyntaxError {
                problem,
                at,
                context,
            }
        }
    }
}

impl Drop for Parser<'_> {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, deleted once.
        unsafe { sys::yaml_parser_delete(self.sys.as_mut_ptr()) }
    }
}

/// A NUL-terminated C string as text, `None` for a null pointer.
unsafe fn c_text(ptr: *const u8) -> Option<String> {
    if ptr.is_null() {
        return None;
    }
    let mut len = 0;
    // SAFETY: libyaml's strings end with NUL.
    unsafe {
        while *ptr.add(len) != 0 {
            len += 1;
        }
        Some(String::from_utf8_lossy(std::slice::from_raw_parts(ptr, len)).into_owned())
    }
}

unsafe fn convert(event: &sys::yaml_event_t) -> Event {
    // SAFETY: the union field read is the one the event type says is set.
    unsafe {
        match event.type_ {
            sys::YAML_STREAM_START_EVENT => Event::StreamStart,
            sys::YAML_STREAM_END_EVENT => Event::StreamEnd,
            sys::YAML_DOCUMENT_START_EVENT => Event::DocumentStart,
            sys::YAML_DOCUMENT_END_EVENT => Event::DocumentEnd,
            sys::YAML_ALIAS_EVENT => {
                Event::Alias(c_text(event.data.alias.anchor).unwrap_or_default())
            }
            sys::YAML_SCALAR_EVENT => {
                let s = event.data.scalar;
                let bytes = std::slice::from_raw_parts(s.value, s.length as usize);
                Event::Scalar {
                    anchor: c_text(s.anchor),
                    tag: c_text(s.tag),
                    value: String::from_utf8_lossy(bytes).into_owned(),
                    style: match s.style {
                        sys::YAML_SINGLE_QUOTED_SCALAR_STYLE
                        | sys::YAML_DOUBLE_QUOTED_SCALAR_STYLE => Style::Quoted,
                        sys::YAML_LITERAL_SCALAR_STYLE | sys::YAML_FOLDED_SCALAR_STYLE => {
                            Style::Block
                        }
                        _ => Style::Plain,
                    },
                }
            }
            sys::YAML_SEQUENCE_START_EVENT => Event::SequenceStart {
                anchor: c_text(event.data.sequence_start.anchor),
                tag: c_text(event.data.sequence_start.tag),
            },
            sys::YAML_SEQUENCE_END_EVENT => Event::SequenceEnd,
            sys::YAML_MAPPING_START_EVENT => Event::MappingStart {
                anchor: c_text(event.data.mapping_start.anchor),
                tag: c_text(event.data.mapping_start.tag),
            },
            sys::YAML_MAPPING_END_EVENT => Event::MappingEnd,
            // YAML_NO_EVENT: libyaml sends it only after the stream has ended.
            _ => Event::StreamEnd,
        }
    }
}
