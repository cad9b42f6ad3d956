//! Plain text, Markdown and JSON.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::extract::{ExtractError, Extracted, Limits, TextOut, io_error};

/// The text itself, up to [`Limits::max_text_bytes`], without a byte order mark.
/// Invalid UTF-8 (which [`crate::detect`] does not let through) becomes U+FFFD.
pub(crate) fn extract_text(path: &Path, limits: &Limits) -> Result<Extracted, ExtractError> {
    let file = File::open(path).map_err(io_error)?;
    let mut bytes = Vec::new();
    // Room for a byte order mark and for one character past the limit, so that a
    // longer file is seen to be cut.
    let budget = limits.max_text_bytes as u64 + 3 + 4;
    file.take(budget)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let text = String::from_utf8_lossy(body);
    let mut out = TextOut::new(limits.max_text_bytes);
    out.push_str(&text);
    let (text, truncated) = out.finish();
    Ok(Extracted {
        text,
        truncated,
        pages: None,
        table: None,
        warnings: Vec::new(),
    })
}

/// A JSON document as `path: value` lines, one per string, number or boolean
/// (`customer.name: Ada`, `items[2].price: 9.5`), so its words can be searched.
/// The document is read as a stream, never held whole in memory, and reading
/// stops once the text is full.
pub(crate) fn extract_json(path: &Path, limits: &Limits) -> Result<Extracted, ExtractError> {
    let file = File::open(path).map_err(io_error)?;
    let mut reader = BufReader::new(file);
    let mut bom = [0u8; 3];
    let mut got = 0;
    while got < 3 {
        match reader.read(&mut bom[got..]).map_err(io_error)? {
            0 => break,
            n => got += n,
        }
    }
    let start: &[u8] = if bom[..got] == *b"\xEF\xBB\xBF" {
        &[]
    } else {
        &bom[..got]
    };
    let (text, truncated) = flatten_json(start.chain(reader), limits)?;
    Ok(Extracted {
        text,
        truncated,
        pages: None,
        table: None,
        warnings: Vec::new(),
    })
}

/// The `path: value` lines of the JSON document read from `input`.
fn flatten_json(input: impl Read, limits: &Limits) -> Result<(String, bool), ExtractError> {
    let mut sink = Sink {
        path: String::new(),
        out: TextOut::new(limits.max_text_bytes),
        limits,
        steps: 0,
        stop: None,
    };
    let mut de = serde_json::Deserializer::from_reader(input);
    let parsed = Leaves { sink: &mut sink }
        .deserialize(&mut de)
        .and_then(|()| de.end());
    match (parsed, sink.stop) {
        (_, Some(Stop::Full)) | (Ok(()), None) => Ok(sink.out.finish()),
        (_, Some(Stop::TimedOut)) => Err(ExtractError::TimedOut),
        (Err(e), None) => Err(ExtractError::Corrupt(format!("not valid JSON: {e}"))),
    }
}

/// Why reading stopped early.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Full,
    TimedOut,
}

/// Where the leaves go: the current path, the text, and why reading stopped.
struct Sink<'l> {
    path: String,
    out: TextOut,
    limits: &'l Limits,
    steps: u64,
    stop: Option<Stop>,
}

impl Sink<'_> {
    /// Called before each array element and object member: stops reading once
    /// the text is full or the deadline has passed.
    fn step<E: serde::de::Error>(&mut self) -> Result<(), E> {
        self.steps += 1;
        if self.out.is_full() {
            self.stop = Some(Stop::Full);
        } else if self.steps.is_multiple_of(1024) && self.limits.check_deadline().is_err() {
            self.stop = Some(Stop::TimedOut);
        }
        match self.stop {
            Some(_) => Err(E::custom("stopped")),
            None => Ok(()),
        }
    }

    fn leaf(&mut self, value: &str) {
        if !self.path.is_empty() {
            self.out.push_str(&self.path);
            self.out.push_str(": ");
        }
        // One leaf, one line: newlines inside a value would split it.
        if value.contains(['\n', '\r']) {
            self.out.push_str(&value.replace(['\n', '\r'], " "));
        } else {
            self.out.push_str(value);
        }
        self.out.push('\n');
    }
}

/// Reads one JSON value, writing its leaves to the sink.
struct Leaves<'s, 'l> {
    sink: &'s mut Sink<'l>,
}

impl<'de> DeserializeSeed<'de> for Leaves<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Leaves<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.sink.leaf(if v { "true" } else { "false" });
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.sink.leaf(&v.to_string());
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.sink.leaf(&v.to_string());
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        let text = serde_json::Number::from_f64(v).map_or_else(|| v.to_string(), |n| n.to_string());
        self.sink.leaf(&text);
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.sink.leaf(v);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let len = self.sink.path.len();
        for i in 0.. {
            self.sink.step()?;
            self.sink.path.push_str(&format!("[{i}]"));
            let more = seq.next_element_seed(Leaves {
                sink: &mut *self.sink,
            })?;
            self.sink.path.truncate(len);
            if more.is_none() {
                break;
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let len = self.sink.path.len();
        while let Some(key) = map.next_key::<String>()? {
            self.sink.step()?;
            if len > 0 {
                self.sink.path.push('.');
            }
            self.sink.path.push_str(&key);
            map.next_value_seed(Leaves {
                sink: &mut *self.sink,
            })?;
            self.sink.path.truncate(len);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(json: &str) -> String {
        flatten_json(json.as_bytes(), &Limits::default()).unwrap().0
    }

    #[test]
    fn json_leaves_become_path_value_lines() {
        assert_eq!(
            lines(
                r#"{"customer":{"name":"Ada","tags":["vip","early"]},"total":9.5,"big":1e300,"n":-3,"paid":true,"note":null,"text":"two\nlines","empty":{},"none":[]}"#
            ),
            "customer.name: Ada\ncustomer.tags[0]: vip\ncustomer.tags[1]: early\ntotal: 9.5\nbig: 1e+300\nn: -3\npaid: true\ntext: two lines\n"
        );
    }

    #[test]
    fn a_bare_json_value_has_no_path() {
        assert_eq!(lines(r#""hello""#), "hello\n");
        assert_eq!(lines("[[1],[2,3]]"), "[0][0]: 1\n[1][0]: 2\n[1][1]: 3\n");
    }

    #[test]
    fn invalid_json_is_corrupt_and_reading_stops_when_full() {
        let err = flatten_json(r#"{"a": 1,}"#.as_bytes(), &Limits::default()).unwrap_err();
        assert_eq!(err.code(), "corrupt");
        let err = flatten_json(r#"{"a": 1} extra"#.as_bytes(), &Limits::default()).unwrap_err();
        assert_eq!(err.code(), "corrupt");
        let small = Limits {
            max_text_bytes: 8,
            ..Limits::default()
        };
        // The broken end is never reached: reading stopped when the text was full.
        let (text, truncated) =
            flatten_json(r#"["aaaa", "bbbb", "cccc", oops"#.as_bytes(), &small).unwrap();
        assert!(truncated);
        assert_eq!(text, "[0]: aaa");
    }

    #[test]
    fn deep_json_is_corrupt_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = flatten_json(deep.as_bytes(), &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("recursion limit"), "{err}");
    }
}
