//! An incremental Server-Sent Events parser, fed the bytes of a response as they arrive.
//!
//! It follows the WHATWG event-stream rules that matter for LLM servers: lines end in `\n`,
//! `\r\n` or `\r` (also when the pair is split across reads); a blank line dispatches the event;
//! `:` starts a comment (keep-alives); `data:` lines of one event join with `\n`; one space after
//! the colon is dropped; `event:` names the event. Bytes are kept only until their line ends, so
//! memory stays bounded by the longest line, which is itself capped.

/// One dispatched event. `data` has its lines joined with `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` field, when the server named the event (`error`, for instance).
    pub event: Option<&'a str>,
    pub data: &'a str,
}

/// Why a stream could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    #[error("a line of the event stream is not UTF-8")]
    NotUtf8,
    #[error("an event-stream line is longer than {0} bytes")]
    LineTooLong(usize),
}

/// Longest line accepted: far above any chunk an LLM server sends, low enough to bound memory.
pub const MAX_LINE: usize = 8 << 20;

/// Incremental SSE parser state.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of an unfinished line.
    pending: Vec<u8>,
    /// The previous read ended in `\r`: a `\n` starting the next read belongs to it.
    skip_lf: bool,
    data: String,
    has_data: bool,
    event: String,
    has_event: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes of the stream, calling `on_event` for every event they complete.
    ///
    /// # Errors
    /// When a line is not UTF-8 or exceeds [`MAX_LINE`]; the stream is then malformed.
    pub fn feed(
        &mut self,
        mut bytes: &[u8],
        mut on_event: impl FnMut(SseEvent<'_>),
    ) -> Result<(), SseError> {
        if self.skip_lf {
            self.skip_lf = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        // memchr2 scans a word (or a vector) at a time: a byte-by-byte search for the two line
        // ends was a tenth of the agent's user-space instructions per token.
        while let Some(end) = memchr::memchr2(b'\n', b'\r', bytes) {
            let line_end = bytes[end];
            if self.pending.is_empty() {
                self.line(&bytes[..end], &mut on_event)?;
            } else {
                self.pending.extend_from_slice(&bytes[..end]);
                let line = std::mem::take(&mut self.pending);
                let result = self.line(&line, &mut on_event);
                self.pending = line;
                self.pending.clear();
                result?;
            }
            bytes = &bytes[end + 1..];
            if line_end == b'\r' {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    None => self.skip_lf = true,
                    Some(_) => {}
                }
            }
        }
        if self.pending.len() + bytes.len() > MAX_LINE {
            return Err(SseError::LineTooLong(MAX_LINE));
        }
        self.pending.extend_from_slice(bytes);
        Ok(())
    }

    /// Ends the stream: an event whose blank line never came is dispatched all the same, since
    /// some servers close right after the last `data:` line.
    ///
    /// # Errors
    /// When the unfinished line is not UTF-8.
    pub fn finish(&mut self, mut on_event: impl FnMut(SseEvent<'_>)) -> Result<(), SseError> {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.line(&line, &mut on_event)?;
        }
        self.dispatch(&mut on_event);
        Ok(())
    }

    fn line(
        &mut self,
        line: &[u8],
        on_event: &mut impl FnMut(SseEvent<'_>),
    ) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch(on_event);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => {
                self.event.clear();
                self.event.push_str(value);
                self.has_event = true;
            }
            // `id` and `retry` steer reconnection, which a one-shot completion does not do.
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(SseEvent<'_>)) {
        if self.has_data {
            on_event(SseEvent {
                event: self.has_event.then_some(self.event.as_str()),
                data: &self.data,
            });
        }
        self.data.clear();
        self.has_data = false;
        self.event.clear();
        self.has_event = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` split at every given cut, returning `(event, data)` pairs.
    fn parse_split(input: &[u8], cuts: &[usize]) -> Vec<(Option<String>, String)> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        let mut push =
            |e: SseEvent<'_>| out.push((e.event.map(str::to_string), e.data.to_string()));
        let mut last = 0;
        for &cut in cuts {
            p.feed(&input[last..cut], &mut push).unwrap();
            last = cut;
        }
        p.feed(&input[last..], &mut push).unwrap();
        p.finish(&mut push).unwrap();
        out
    }

    fn data(items: &[&str]) -> Vec<(Option<String>, String)> {
        items.iter().map(|d| (None, d.to_string())).collect()
    }

    const VLLM: &[u8] = b": ping\n\ndata: {\"choices\":[{\"delta\":{\"content\":\" a\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\" b\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";

    #[test]
    fn every_split_of_a_stream_gives_the_same_events() {
        let whole = parse_split(VLLM, &[]);
        assert_eq!(whole.len(), 4);
        assert_eq!(whole[3].1, "[DONE]");
        assert!(whole[2].1.contains("usage"));
        for cut in 0..=VLLM.len() {
            assert_eq!(parse_split(VLLM, &[cut]), whole, "cut at {cut}");
        }
        let every_byte: Vec<usize> = (1..VLLM.len()).collect();
        assert_eq!(parse_split(VLLM, &every_byte), whole);
    }

    #[test]
    fn several_events_in_one_read() {
        let got = parse_split(b"data: 1\n\ndata: 2\n\ndata: 3\n\n", &[]);
        assert_eq!(got, data(&["1", "2", "3"]));
    }

    #[test]
    fn crlf_and_cr_line_endings_even_split_between_reads() {
        let input = b"data: a\r\n\r\ndata: b\r\rdata: c\n\n";
        let want = data(&["a", "b", "c"]);
        for cut in 0..=input.len() {
            assert_eq!(parse_split(input, &[cut]), want, "cut at {cut}");
        }
    }

    #[test]
    fn comments_and_keep_alives_are_ignored() {
        let got = parse_split(
            b":keep-alive\n\n: another\ndata: x\n:mid-event comment\n\n\n\n",
            &[],
        );
        assert_eq!(got, data(&["x"]));
    }

    #[test]
    fn multi_line_data_joins_with_newline_and_one_space_is_dropped() {
        let got = parse_split(b"data:first\ndata:  second\n\n", &[]);
        assert_eq!(got, data(&["first\n second"]));
    }

    #[test]
    fn named_error_events_carry_their_name() {
        let got = parse_split(
            b"event: error\ndata: {\"error\":{\"message\":\"boom\"}}\n\ndata: next\n\n",
            &[],
        );
        assert_eq!(
            got[0],
            (
                Some("error".into()),
                "{\"error\":{\"message\":\"boom\"}}".into()
            )
        );
        assert_eq!(got[1], (None, "next".into()));
    }

    #[test]
    fn an_event_cut_off_by_the_end_of_stream_is_still_delivered() {
        assert_eq!(parse_split(b"data: [DONE]", &[]), data(&["[DONE]"]));
        assert_eq!(parse_split(b"data: x\n", &[3]), data(&["x"]));
    }

    #[test]
    fn non_utf8_is_an_error() {
        let mut p = SseParser::new();
        let err = p.feed(b"data: \xff\xfe\n\n", |_| {}).unwrap_err();
        assert_eq!(err, SseError::NotUtf8);
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut p = SseParser::new();
        let chunk = vec![b'a'; 1 << 20];
        let mut result = Ok(());
        for _ in 0..9 {
            result = p.feed(&chunk, |_| {});
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(SseError::LineTooLong(MAX_LINE)));
    }
}
