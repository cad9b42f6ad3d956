//! XML parts read within limits: element depth, event size, the deadline, and no
//! document type declarations (so no entity can expand).

use std::io::BufRead;

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};

use crate::extract::{ExtractError, Limits};

/// Events between two looks at the deadline.
const DEADLINE_EVERY: u64 = 4096;

/// A stream of XML events from one part of a document, checked as it is read.
pub(crate) struct XmlStream<'a, R: BufRead> {
    reader: Reader<R>,
    buf: Vec<u8>,
    depth: usize,
    events: u64,
    limits: &'a Limits,
    /// The part's name, for messages.
    part: &'a str,
    /// The largest event allowed, in bytes.
    max_event: usize,
}

impl<'a, R: BufRead> XmlStream<'a, R> {
    pub(crate) fn new(input: R, part: &'a str, limits: &'a Limits) -> Self {
        let mut reader = Reader::from_reader(input);
        let config = reader.config_mut();
        config.expand_empty_elements = false;
        config.check_end_names = true;
        config.trim_text(false);
        XmlStream {
            reader,
            buf: Vec::new(),
            depth: 0,
            events: 0,
            limits,
            part,
            max_event: limits.max_text_bytes.max(1 << 20),
        }
    }

    /// The next event. Refuses a document type declaration, an element deeper
    /// than [`Limits::max_xml_depth`] and one event larger than the text limit.
    pub(crate) fn next(&mut self) -> Result<Event<'_>, ExtractError> {
        self.events += 1;
        if self.events.is_multiple_of(DEADLINE_EVERY) {
            self.limits.check_deadline()?;
        }
        self.buf.clear();
        let start = self.reader.buffer_position();
        let event = self.reader.read_event_into(&mut self.buf).map_err(|e| {
            ExtractError::Corrupt(format!("{} is not well-formed XML: {e}", self.part))
        })?;
        if self.reader.buffer_position().saturating_sub(start) > self.max_event as u64 {
            return Err(ExtractError::TooLarge(format!(
                "{} has an XML element of more than {} bytes",
                self.part, self.max_event
            )));
        }
        match &event {
            Event::Start(_) => {
                self.depth += 1;
                if self.depth > self.limits.max_xml_depth {
                    return Err(ExtractError::TooDeep(self.limits.max_xml_depth));
                }
            }
            Event::Empty(_) if self.depth + 1 > self.limits.max_xml_depth => {
                return Err(ExtractError::TooDeep(self.limits.max_xml_depth));
            }
            Event::End(_) => self.depth = self.depth.saturating_sub(1),
            Event::DocType(_) => {
                return Err(ExtractError::Corrupt(format!(
                    "{} declares entities or a document type (DTD), which Office documents never do",
                    self.part
                )));
            }
            _ => {}
        }
        Ok(event)
    }
}

/// The text an entity or character reference stands for: one of the five
/// predefined entities or `&#...;`. Anything else (undeclared) gives nothing.
pub(crate) fn reference_text(r: &BytesRef<'_>) -> Option<String> {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        return Some(c.to_string());
    }
    let name = r.xml10_content();
    resolve_predefined_entity(&name).map(str::to_owned)
}

/// The value of the attribute whose local name is `local`, unescaped.
pub(crate) fn attribute(e: &BytesStart<'_>, local: &str) -> Option<String> {
    e.attributes()
        .with_checks(false)
        .flatten()
        .find(|a| a.key.local_name().as_ref() == local)
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(xml: &str, limits: &Limits) -> Result<usize, ExtractError> {
        let mut stream = XmlStream::new(xml.as_bytes(), "test.xml", limits);
        let mut n = 0;
        loop {
            if let Event::Eof = stream.next()? {
                return Ok(n);
            }
            n += 1;
        }
    }

    #[test]
    fn depth_is_limited() {
        let limits = Limits {
            max_xml_depth: 3,
            ..Limits::default()
        };
        assert!(drain("<a><b><c/></b></a>", &limits).is_ok());
        assert_eq!(
            drain("<a><b><c><d/></c></b></a>", &limits),
            Err(ExtractError::TooDeep(3))
        );
        assert_eq!(
            drain("<a><b><c><d>", &limits),
            Err(ExtractError::TooDeep(3))
        );
    }

    #[test]
    fn entity_declarations_are_refused() {
        let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<lolz>&lol2;</lolz>"#;
        let err = drain(laughs, &Limits::default()).unwrap_err();
        assert!(
            matches!(&err, ExtractError::Corrupt(m) if m.contains("declares entities")),
            "{err:?}"
        );
    }

    #[test]
    fn malformed_xml_is_corrupt() {
        let err = drain("<a><b></a>", &Limits::default()).unwrap_err();
        assert_eq!(err.code(), "corrupt");
    }
}
