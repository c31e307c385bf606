//! Server-sent events (the WHATWG rules the OpenAI streaming API follows): lines end with
//! `\n`, `\r\n` or `\r`; an event is the lines up to a blank line; its data is its `data:`
//! lines joined with `\n`; lines starting with `:` are comments. Each byte is looked at
//! once, however the stream is cut into chunks, and a character split across chunks
//! stays whole (lines are decoded only once complete).

#[derive(Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    /// How far `buffer` has been searched for a line end.
    scanned: usize,
    /// The data lines of the event being read.
    data: Vec<String>,
    /// The last byte was `\r`: a `\n` right after it ends nothing more.
    after_cr: bool,
}

impl SseParser {
    /// Takes the next chunk; returns the data of every event it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<String> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        let mut i = self.scanned;
        while i < self.buffer.len() {
            let byte = self.buffer[i];
            if byte == b'\n' && self.after_cr && i == start {
                // The `\n` of a `\r\n` pair whose `\r` already ended the line.
                self.after_cr = false;
                start = i + 1;
                i += 1;
                continue;
            }
            self.after_cr = false;
            if byte == b'\n' || byte == b'\r' {
                self.after_cr = byte == b'\r';
                let line = String::from_utf8_lossy(&self.buffer[start..i]).into_owned();
                if let Some(data) = self.line(&line) {
                    events.push(data);
                }
                start = i + 1;
            }
            i += 1;
        }
        self.buffer.drain(..start);
        self.scanned = self.buffer.len();
        events
    }

    /// The end of the stream: an event not closed by a blank line still counts.
    pub fn finish(&mut self) -> Option<String> {
        if !self.buffer.is_empty() {
            let line = String::from_utf8_lossy(&std::mem::take(&mut self.buffer)).into_owned();
            self.line(&line);
        }
        self.scanned = 0;
        (!self.data.is_empty()).then(|| std::mem::take(&mut self.data).join("\n"))
    }

    /// One complete line; a blank line ends the event and gives its data.
    fn line(&mut self, line: &str) -> Option<String> {
        if line.is_empty() {
            return (!self.data.is_empty()).then(|| std::mem::take(&mut self.data).join("\n"));
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        if field == "data" {
            self.data.push(value.to_string());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<String> {
        let mut p = SseParser::default();
        let mut out: Vec<String> = chunks.iter().flat_map(|c| p.feed(c)).collect();
        out.extend(p.finish());
        out
    }

    #[test]
    fn data_lines_of_one_event_are_joined() {
        assert_eq!(
            all(&[b"data: {\"a\":\ndata: 1}\n\ndata: [DONE]\n\n"]),
            ["{\"a\":\n1}", "[DONE]"]
        );
    }

    #[test]
    fn any_line_ending_and_comments_and_other_fields() {
        assert_eq!(
            all(&[b": keep-alive\r\nevent: delta\r\ndata:x\r\n\r\nid: 7\rdata: y\r\r"]),
            ["x", "y"]
        );
    }

    #[test]
    fn chunks_cut_anywhere_give_the_same_events() {
        let text = "data: h\u{e9}llo\n\ndata: a\ndata: b\n\n".as_bytes();
        for cut in 0..text.len() {
            assert_eq!(
                all(&[&text[..cut], &text[cut..]]),
                ["h\u{e9}llo", "a\nb"],
                "cut at {cut}"
            );
        }
        // A `\r\n` split between chunks is one line end.
        assert_eq!(all(&[b"data: x\r", b"\n\r\n"]), ["x"]);
    }

    #[test]
    fn a_long_line_in_many_chunks_is_scanned_once() {
        let mut p = SseParser::default();
        for _ in 0..10_000 {
            assert!(p.feed(b"xxxxxxxxxx").is_empty());
        }
        assert_eq!(p.scanned, 100_000);
        assert!(
            p.feed(b"\n\n").is_empty(),
            "a field named xxx... is not data"
        );
    }
}
