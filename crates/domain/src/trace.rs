//! W3C Trace Context: reading the trace id (and the caller's span id) of an
//! incoming `traceparent`.
//!
//! ```
//! use waymark_domain::trace::{parse_traceparent, read_traceparent};
//! let id = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
//! assert_eq!(id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
//! assert_eq!(parse_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), None);
//! let ids = read_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
//! assert_eq!(ids.parent_id, "00f067aa0ba902b7");
//! ```

/// The ids a valid `traceparent` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace: 32 lowercase hex digits, not all zero.
    pub trace_id: String,
    /// The caller's span in that trace: 16 lowercase hex digits, not all zero.
    pub parent_id: String,
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The trace id of a valid `traceparent` value (version 00, or a later version
/// read as far as version 00 defines), or `None` when the value must be ignored
/// and a new trace started.
pub fn parse_traceparent(value: &str) -> Option<String> {
    read_traceparent(value).map(|ids| ids.trace_id)
}

/// The trace id and parent id of a valid `traceparent`, under the rules of
/// [`parse_traceparent`].
pub fn read_traceparent(value: &str) -> Option<TraceParent> {
    let value = value.trim_matches([' ', '\t']);
    if value.len() < 55 || !value.is_ascii() {
        return None;
    }
    let (version, rest) = value.split_at(2);
    if !is_lower_hex(version) || version == "ff" {
        return None;
    }
    let bytes = rest.as_bytes();
    if bytes[0] != b'-' || bytes[33] != b'-' || bytes[50] != b'-' {
        return None;
    }
    let trace_id = &rest[1..33];
    let parent_id = &rest[34..50];
    let flags = &rest[51..53];
    let tail = &rest[53..];
    if !is_lower_hex(trace_id) || !is_lower_hex(parent_id) || !is_lower_hex(flags) {
        return None;
    }
    if trace_id.bytes().all(|b| b == b'0') || parent_id.bytes().all(|b| b == b'0') {
        return None;
    }
    // Version 00 is exactly 55 characters; later versions may append fields
    // after a dash.
    if version == "00" {
        if !tail.is_empty() {
            return None;
        }
    } else if !tail.is_empty() && !tail.starts_with('-') {
        return None;
    }
    Some(TraceParent {
        trace_id: trace_id.to_owned(),
        parent_id: parent_id.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_malformed_values() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(parse_traceparent(good).is_some());
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
        assert!(
            parse_traceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later")
                .is_some()
        );
    }
}
