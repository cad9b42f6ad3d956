//! Validated inputs for clients and engagements.

use serde_json::Value;

use crate::FieldError;

/// Longest client or engagement name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// A non-empty, trimmed name of at most [`MAX_NAME_CHARS`] characters.
pub fn parse_name(value: &str, pointer: &str) -> Result<String, FieldError> {
    let t = value.trim();
    if t.is_empty() {
        return Err(FieldError::new(pointer, "must not be empty"));
    }
    if t.chars().count() > MAX_NAME_CHARS {
        return Err(FieldError::new(
            pointer,
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(FieldError::new(
            pointer,
            "must not contain control characters",
        ));
    }
    Ok(t.to_owned())
}

/// A pack name such as `marketing-engagement`: lowercase letters, digits and `-`,
/// starting with a letter, at most 64 characters.
pub fn parse_pack_name(value: &str, pointer: &str) -> Result<String, FieldError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.as_bytes()[0].is_ascii_lowercase()
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(value.to_owned())
    } else {
        Err(FieldError::new(
            pointer,
            "must be a pack name: lowercase letters, digits and -, starting with a letter (e.g. `marketing-engagement`)",
        ))
    }
}

/// A score signal (`health_score`, `risk_score`, `opportunity_score`): 0 to 100.
pub fn check_score(value: f64, pointer: &str) -> Result<(), FieldError> {
    if value.is_finite() && (0.0..=100.0).contains(&value) {
        Ok(())
    } else {
        Err(FieldError::new(pointer, "must be a number from 0 to 100"))
    }
}

/// Annual recurring revenue: a finite, non-negative amount.
pub fn check_arr(value: f64, pointer: &str) -> Result<(), FieldError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(FieldError::new(pointer, "must be a non-negative amount"))
    }
}

/// Free attributes must be a JSON object.
pub fn check_attributes(value: &Value, pointer: &str) -> Result<(), FieldError> {
    if value.is_object() {
        Ok(())
    } else {
        Err(FieldError::new(pointer, "must be a JSON object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_name(" Acme ", "/name").unwrap(), "Acme");
        assert!(parse_name("", "/name").is_err());
        assert!(parse_name(&"a".repeat(201), "/name").is_err());
    }

    #[test]
    fn packs_and_signals() {
        assert!(parse_pack_name("marketing-engagement", "/pack").is_ok());
        assert!(parse_pack_name("Marketing", "/pack").is_err());
        assert!(check_score(100.0, "/s").is_ok());
        assert!(check_score(100.5, "/s").is_err());
        assert!(check_score(f64::NAN, "/s").is_err());
        assert!(check_arr(-1.0, "/arr").is_err());
        assert!(check_attributes(&serde_json::json!([]), "/a").is_err());
    }
}
