//! The providers' streams, parsed as they arrive: Ollama's NDJSON (one JSON
//! object per line) and OpenAI's server-sent events. Both buffer across
//! network chunks, so a line or an event may arrive in any number of pieces.

use serde_json::Value;

use crate::{ProviderKind, quote};

/// One thing a provider's stream said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamEvent {
    /// A piece of the answer.
    Text(String),
    /// The answer is complete.
    Done,
    /// The provider reported an error; the raw JSON it sent.
    Error(String),
}

/// The stream parser for a provider.
pub(crate) enum StreamParser {
    Ndjson(NdjsonParser),
    Sse(SseParser),
}

impl StreamParser {
    pub(crate) fn new(provider: ProviderKind) -> Self {
        match provider {
            ProviderKind::Ollama => StreamParser::Ndjson(NdjsonParser::default()),
            ProviderKind::OpenAi => StreamParser::Sse(SseParser::default()),
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<Vec<StreamEvent>, String> {
        match self {
            StreamParser::Ndjson(p) => p.push(bytes),
            StreamParser::Sse(p) => p.push(bytes),
        }
    }

    pub(crate) fn finish(&mut self) -> Result<Vec<StreamEvent>, String> {
        match self {
            StreamParser::Ndjson(p) => p.finish(),
            StreamParser::Sse(p) => p.finish(),
        }
    }

    /// How many messages (lines, events with data) were read so far.
    pub(crate) fn messages(&self) -> usize {
        match self {
            StreamParser::Ndjson(p) => p.messages,
            StreamParser::Sse(p) => p.messages,
        }
    }
}

/// Splits bytes into lines across chunk boundaries. Lines end with `\n` or
/// `\r\n`, and with a lone `\r` too when `cr_ends_line` (as in server-sent
/// events). Lines are decoded as UTF-8 once whole, so a character split across
/// chunks is fine.
#[derive(Default)]
pub(crate) struct Lines {
    buf: Vec<u8>,
    cr_ends_line: bool,
    /// The last byte was a `\r` that ended a line; a `\n` right after it
    /// belongs to the same line end.
    after_cr: bool,
}

impl Lines {
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, String> {
        let mut lines = Vec::new();
        for &b in bytes {
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            match b {
                b'\n' => lines.push(self.take_line()?),
                b'\r' if self.cr_ends_line => {
                    lines.push(self.take_line()?);
                    self.after_cr = true;
                }
                _ => self.buf.push(b),
            }
        }
        Ok(lines)
    }

    /// The last line, if the stream ended without a line end.
    pub(crate) fn finish(&mut self) -> Result<Option<String>, String> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        self.take_line().map(Some)
    }

    fn take_line(&mut self) -> Result<String, String> {
        let mut line = std::mem::take(&mut self.buf);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        String::from_utf8(line).map_err(|_| "a line is not UTF-8 text".to_owned())
    }
}

/// Ollama's stream: one JSON object per line (`application/x-ndjson`).
#[derive(Default)]
pub(crate) struct NdjsonParser {
    lines: Lines,
    /// Lines read that were not blank.
    messages: usize,
}

impl NdjsonParser {
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<Vec<StreamEvent>, String> {
        let mut events = Vec::new();
        for line in self.lines.push(bytes)? {
            self.line(&line, &mut events)?;
        }
        Ok(events)
    }

    pub(crate) fn finish(&mut self) -> Result<Vec<StreamEvent>, String> {
        let mut events = Vec::new();
        if let Some(line) = self.lines.finish()? {
            self.line(&line, &mut events)?;
        }
        Ok(events)
    }

    fn line(&mut self, line: &str, events: &mut Vec<StreamEvent>) -> Result<(), String> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(());
        }
        self.messages += 1;
        let value: Value = serde_json::from_str(line)
            .map_err(|e| format!("a stream line is not JSON ({e}): {}", quote(line)))?;
        if value.get("error").is_some_and(|e| !e.is_null()) {
            events.push(StreamEvent::Error(line.to_owned()));
            return Ok(());
        }
        let Some(done) = value.get("done").and_then(Value::as_bool) else {
            return Err(format!(
                "a stream line is not a chat answer (no \"done\"): {}",
                quote(line)
            ));
        };
        match value.pointer("/message/content") {
            Some(Value::String(piece)) if !piece.is_empty() => {
                events.push(StreamEvent::Text(piece.clone()));
            }
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(_) => return Err(format!("message.content is not text: {}", quote(line))),
        }
        if done {
            events.push(StreamEvent::Done);
        }
        Ok(())
    }
}

/// OpenAI's stream: server-sent events whose data is a chat completion chunk,
/// ending with `data: [DONE]`. Comments (`:` lines) and fields other than
/// `data` are ignored; multi-line data is joined with `\n`.
pub(crate) struct SseParser {
    lines: Lines,
    data: String,
    has_data: bool,
    /// Events with data read so far.
    messages: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self {
            lines: Lines {
                cr_ends_line: true,
                ..Lines::default()
            },
            data: String::new(),
            has_data: false,
            messages: 0,
        }
    }
}

impl SseParser {
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<Vec<StreamEvent>, String> {
        let mut events = Vec::new();
        for line in self.lines.push(bytes)? {
            self.line(&line, &mut events)?;
        }
        Ok(events)
    }

    /// At the end of the body, a last event without its blank line still counts.
    pub(crate) fn finish(&mut self) -> Result<Vec<StreamEvent>, String> {
        let mut events = Vec::new();
        if let Some(line) = self.lines.finish()? {
            self.line(&line, &mut events)?;
        }
        self.dispatch(&mut events)?;
        Ok(events)
    }

    fn line(&mut self, line: &str, events: &mut Vec<StreamEvent>) -> Result<(), String> {
        if line.is_empty() {
            return self.dispatch(events);
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        if field == "data" {
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(value.strip_prefix(' ').unwrap_or(value));
            self.has_data = true;
        }
        Ok(())
    }

    fn dispatch(&mut self, events: &mut Vec<StreamEvent>) -> Result<(), String> {
        if !std::mem::take(&mut self.has_data) {
            return Ok(());
        }
        self.messages += 1;
        let data = std::mem::take(&mut self.data);
        let data = data.trim();
        if data == "[DONE]" {
            events.push(StreamEvent::Done);
            return Ok(());
        }
        let value: Value = serde_json::from_str(data)
            .map_err(|e| format!("an event's data is not JSON ({e}): {}", quote(data)))?;
        if value.get("error").is_some_and(|e| !e.is_null()) {
            events.push(StreamEvent::Error(data.to_owned()));
            return Ok(());
        }
        let Some(choices) = value.get("choices").and_then(Value::as_array) else {
            return Err(format!(
                "an event is not a chat completion chunk (no \"choices\"): {}",
                quote(data)
            ));
        };
        for choice in choices {
            if choice.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 {
                continue;
            }
            match choice.pointer("/delta/content") {
                Some(Value::String(piece)) if !piece.is_empty() => {
                    events.push(StreamEvent::Text(piece.clone()));
                }
                None | Some(Value::Null) | Some(Value::String(_)) => {}
                Some(_) => return Err(format!("delta.content is not text: {}", quote(data))),
            }
        }
        Ok(())
    }
}
