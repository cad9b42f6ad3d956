//! A person's preferences in the customer-success workspace: what they are,
//! their defaults, and how a partial update is checked and merged.
//!
//! The set is closed: a key this module does not know is refused, so a typo
//! never silently stores nothing. An update names only what changes; the
//! nested objects (`default_queue_filter`, `notifications`) merge member by
//! member too, and `null` puts a member back to its default:
//!
//! ```
//! use waymark_domain::preferences::{Preferences, Theme, apply};
//! let p = apply(&Preferences::default(), &serde_json::json!({
//!     "theme": "dark",
//!     "notifications": {"daily_digest": true},
//! }))
//! .unwrap();
//! assert_eq!(p.theme, Theme::Dark);
//! assert!(p.notifications.daily_digest && p.notifications.email);
//! // Unknown keys and wrong types are refused, each at its JSON Pointer.
//! let errors = apply(&p, &serde_json::json!({"colour": "red", "queue_page_size": 1})).unwrap_err();
//! assert_eq!(errors.len(), 2);
//! ```
//!
//! Whose preferences they are (a user, or a token without one) is the
//! caller's business; this module only knows the values.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::FieldError;

/// Fewest queue items on a page.
pub const MIN_QUEUE_PAGE_SIZE: u64 = 5;
/// Most queue items on a page.
pub const MAX_QUEUE_PAGE_SIZE: u64 = 200;
/// Longest time zone name accepted.
pub const MAX_TIMEZONE_CHARS: usize = 64;
/// Longest template name or stage id in the default queue filter.
pub const MAX_FILTER_CHARS: usize = 64;

/// The top-level keys, in the order messages list them.
const KEYS: [&str; 6] = [
    "queue_page_size",
    "default_queue_filter",
    "notifications",
    "timezone",
    "theme",
    "chat_streaming",
];
const FILTER_KEYS: [&str; 2] = ["template", "stage"];
const NOTIFICATION_KEYS: [&str; 3] = ["email", "escalations", "daily_digest"];

/// A person's preferences. Every member has a default ([`Preferences::default`]);
/// preferences stored before a member existed read it as its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Preferences {
    /// Queue items per page, 5 to 200 (default 25).
    #[schema(minimum = 5, maximum = 200)]
    pub queue_page_size: u32,
    /// What the queue shows when opened (default: everything).
    pub default_queue_filter: QueueFilter,
    pub notifications: Notifications,
    /// An IANA time zone name such as `Europe/Paris` (default `UTC`), checked
    /// loosely: its form, not the zone database.
    #[schema(
        max_length = 64,
        pattern = "^[A-Z][A-Za-z0-9_+-]{0,29}(/[A-Za-z0-9_+-]{1,30}){0,2}$"
    )]
    pub timezone: String,
    /// `system` (default), `light` or `dark`.
    pub theme: Theme,
    /// Whether chat answers stream as they are written (default `true`).
    pub chat_streaming: bool,
}

impl Default for Preferences {
    fn default() -> Self {
        Self {
            queue_page_size: 25,
            default_queue_filter: QueueFilter::default(),
            notifications: Notifications::default(),
            timezone: "UTC".into(),
            theme: Theme::System,
            chat_streaming: true,
        }
    }
}

/// The queue's filter when it opens: `null` is no filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct QueueFilter {
    /// A journey template's name, e.g. `renewal`.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub template: Option<String>,
    /// A stage id of that template, e.g. `kickoff`.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub stage: Option<String>,
}

/// Which notifications a person receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Notifications {
    /// Mail about what is assigned to them (default `true`).
    pub email: bool,
    /// Escalations to them (default `true`).
    pub escalations: bool,
    /// A morning summary of their desk (default `false`).
    pub daily_digest: bool,
}

impl Default for Notifications {
    fn default() -> Self {
        Self {
            email: true,
            escalations: true,
            daily_digest: false,
        }
    }
}

/// The colour scheme of the web pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Theme {
    /// Follow the browser's setting.
    #[default]
    System,
    Light,
    Dark,
}

impl Theme {
    pub const ALL: [Theme; 3] = [Theme::System, Theme::Light, Theme::Dark];

    pub fn as_str(self) -> &'static str {
        match self {
            Theme::System => "system",
            Theme::Light => "light",
            Theme::Dark => "dark",
        }
    }
}

/// Applies a partial update to `current`: every member of `patch` replaces
/// the current value (nested objects member by member); `null` puts the
/// member back to its default (for a filter: no filter). Refused whole, with
/// every problem at its JSON Pointer, when a key is unknown or a value has
/// the wrong type or is out of range; `current` is then unchanged.
///
/// Whether a patch is valid does not depend on `current`, so a caller may
/// check it against the defaults before reading the stored preferences.
pub fn apply(current: &Preferences, patch: &Value) -> Result<Preferences, Vec<FieldError>> {
    let Some(members) = patch.as_object() else {
        return Err(vec![FieldError::new(
            "",
            "must be an object of the preferences to change, e.g. {\"theme\": \"dark\"}",
        )]);
    };
    let mut next = current.clone();
    let mut errors = Vec::new();
    let defaults = Preferences::default();
    for (key, value) in members {
        let pointer = format!("/{}", escape(key));
        if value.is_null() && KEYS.contains(&key.as_str()) {
            match key.as_str() {
                "queue_page_size" => next.queue_page_size = defaults.queue_page_size,
                "default_queue_filter" => {
                    next.default_queue_filter = defaults.default_queue_filter.clone();
                }
                "notifications" => next.notifications = defaults.notifications.clone(),
                "timezone" => next.timezone = defaults.timezone.clone(),
                "theme" => next.theme = defaults.theme,
                _ => next.chat_streaming = defaults.chat_streaming,
            }
            continue;
        }
        let result = match key.as_str() {
            "queue_page_size" => page_size(value, &pointer).map(|n| next.queue_page_size = n),
            "default_queue_filter" => {
                merge_filter(&mut next.default_queue_filter, value, &pointer, &mut errors);
                Ok(())
            }
            "notifications" => {
                merge_notifications(&mut next.notifications, value, &pointer, &mut errors);
                Ok(())
            }
            "timezone" => value
                .as_str()
                .ok_or_else(|| FieldError::new(&pointer, "must be a string such as `Europe/Paris`"))
                .and_then(|s| check_timezone(s, &pointer))
                .map(|tz| next.timezone = tz),
            "theme" => theme(value, &pointer).map(|t| next.theme = t),
            "chat_streaming" => boolean(value, &pointer).map(|b| next.chat_streaming = b),
            other => Err(unknown(other, &pointer, &KEYS)),
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(next)
    } else {
        Err(errors)
    }
}

/// A time zone name in the form of the IANA database's: `UTC`, `Japan`,
/// `Europe/Paris`, `America/Argentina/Salta`, `Etc/GMT+5` — one to three
/// parts of letters, digits, `_`, `+` and `-` separated by `/`, the first
/// starting with a capital letter, at most [`MAX_TIMEZONE_CHARS`]. Whether the
/// zone exists is not checked.
pub fn check_timezone(value: &str, pointer: &str) -> Result<String, FieldError> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 30
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-'))
    };
    let parts: Vec<&str> = value.split('/').collect();
    let ok = value.len() <= MAX_TIMEZONE_CHARS
        && parts.len() <= 3
        && parts.iter().all(|p| part_ok(p))
        && value.as_bytes().first().is_some_and(u8::is_ascii_uppercase);
    if ok {
        Ok(value.to_owned())
    } else {
        Err(FieldError::new(
            pointer,
            "must be an IANA time zone name such as `UTC` or `Europe/Paris`",
        ))
    }
}

fn page_size(value: &Value, pointer: &str) -> Result<u32, FieldError> {
    // JSON Schema counts `25.0` as an integer too.
    let n = value
        .as_u64()
        .or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= MAX_QUEUE_PAGE_SIZE as f64)
                .map(|f| f as u64)
        })
        .filter(|n| (MIN_QUEUE_PAGE_SIZE..=MAX_QUEUE_PAGE_SIZE).contains(n));
    n.map(|n| n as u32).ok_or_else(|| {
        FieldError::new(
            pointer,
            format!("must be a whole number from {MIN_QUEUE_PAGE_SIZE} to {MAX_QUEUE_PAGE_SIZE}"),
        )
    })
}

fn boolean(value: &Value, pointer: &str) -> Result<bool, FieldError> {
    value
        .as_bool()
        .ok_or_else(|| FieldError::new(pointer, "must be true or false"))
}

fn theme(value: &Value, pointer: &str) -> Result<Theme, FieldError> {
    value
        .as_str()
        .and_then(|s| Theme::ALL.into_iter().find(|t| t.as_str() == s))
        .ok_or_else(|| FieldError::new(pointer, "must be one of system, light, dark"))
}

/// A template name or stage id: lowercase letters, digits, `_` and `-`,
/// starting with a letter or digit; or `null`, no filter.
fn filter_value(value: &Value, pointer: &str) -> Result<Option<String>, FieldError> {
    let bad = || {
        FieldError::new(
            pointer,
            format!(
                "must be null or a name of lowercase letters, digits, _ and - (at most {MAX_FILTER_CHARS})"
            ),
        )
    };
    match value {
        Value::Null => Ok(None),
        Value::String(s) => {
            let ok = !s.is_empty()
                && s.len() <= MAX_FILTER_CHARS
                && s.as_bytes()[0].is_ascii_alphanumeric()
                && s.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if ok { Ok(Some(s.clone())) } else { Err(bad()) }
        }
        _ => Err(bad()),
    }
}

fn members<'a>(
    value: &'a Value,
    pointer: &str,
    errors: &mut Vec<FieldError>,
) -> Option<&'a Map<String, Value>> {
    let found = value.as_object();
    if found.is_none() {
        errors.push(FieldError::new(
            pointer,
            "must be an object of the members to change",
        ));
    }
    found
}

fn merge_filter(
    filter: &mut QueueFilter,
    value: &Value,
    pointer: &str,
    errors: &mut Vec<FieldError>,
) {
    let Some(map) = members(value, pointer, errors) else {
        return;
    };
    for (key, v) in map {
        let p = format!("{pointer}/{}", escape(key));
        let result = match key.as_str() {
            "template" => filter_value(v, &p).map(|t| filter.template = t),
            "stage" => filter_value(v, &p).map(|s| filter.stage = s),
            other => Err(unknown(other, &p, &FILTER_KEYS)),
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
}

fn merge_notifications(
    n: &mut Notifications,
    value: &Value,
    pointer: &str,
    errors: &mut Vec<FieldError>,
) {
    let Some(map) = members(value, pointer, errors) else {
        return;
    };
    let defaults = Notifications::default();
    for (key, v) in map {
        let p = format!("{pointer}/{}", escape(key));
        let v = if v.is_null() {
            // Back to the default.
            match key.as_str() {
                "email" => &Value::Bool(defaults.email),
                "escalations" => &Value::Bool(defaults.escalations),
                "daily_digest" => &Value::Bool(defaults.daily_digest),
                _ => v,
            }
        } else {
            v
        };
        let result = match key.as_str() {
            "email" => boolean(v, &p).map(|b| n.email = b),
            "escalations" => boolean(v, &p).map(|b| n.escalations = b),
            "daily_digest" => boolean(v, &p).map(|b| n.daily_digest = b),
            other => Err(unknown(other, &p, &NOTIFICATION_KEYS)),
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
}

fn unknown(key: &str, pointer: &str, known: &[&str]) -> FieldError {
    let shown: String = key.chars().take(64).collect();
    FieldError::new(
        pointer,
        format!(
            "`{shown}` is not a preference; the known ones here are {}",
            known.join(", ")
        ),
    )
}

/// A key as a JSON Pointer token (RFC 6901).
fn escape(key: &str) -> String {
    let short: String = key.chars().take(64).collect();
    short.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pointers(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.pointer.as_str()).collect()
    }

    #[test]
    fn the_defaults_are_documented_and_round_trip() {
        let d = Preferences::default();
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(
            v,
            json!({
                "queue_page_size": 25,
                "default_queue_filter": {"template": null, "stage": null},
                "notifications": {"email": true, "escalations": true, "daily_digest": false},
                "timezone": "UTC",
                "theme": "system",
                "chat_streaming": true,
            })
        );
        assert_eq!(serde_json::from_value::<Preferences>(v).unwrap(), d);
        // Stored before a member existed: it reads as its default.
        let old: Preferences = serde_json::from_value(json!({"theme": "dark"})).unwrap();
        assert_eq!(old.theme, Theme::Dark);
        assert_eq!(old.queue_page_size, 25);
    }

    #[test]
    fn a_partial_update_changes_only_what_it_names() {
        let d = Preferences::default();
        let p = apply(
            &d,
            &json!({
                "queue_page_size": 50,
                "default_queue_filter": {"template": "renewal"},
                "notifications": {"escalations": false},
                "timezone": "America/Argentina/Salta",
            }),
        )
        .unwrap();
        assert_eq!(p.queue_page_size, 50);
        assert_eq!(p.default_queue_filter.template.as_deref(), Some("renewal"));
        assert_eq!(p.default_queue_filter.stage, None);
        assert!(p.notifications.email && !p.notifications.escalations);
        assert_eq!(p.timezone, "America/Argentina/Salta");
        assert_eq!(p.theme, Theme::System);
        // null clears a filter; an empty update changes nothing.
        let q = apply(&p, &json!({"default_queue_filter": {"template": null}})).unwrap();
        assert_eq!(q.default_queue_filter.template, None);
        assert_eq!(apply(&q, &json!({})).unwrap(), q);
        // null puts a member back to its default.
        let r = apply(
            &p,
            &json!({"queue_page_size": null, "notifications": {"escalations": null}, "timezone": null}),
        )
        .unwrap();
        assert_eq!(r.queue_page_size, 25);
        assert!(r.notifications.escalations);
        assert_eq!(r.timezone, "UTC");
        assert_eq!(r.default_queue_filter, p.default_queue_filter);
        let all = apply(
            &p,
            &json!({"default_queue_filter": null, "notifications": null}),
        )
        .unwrap();
        assert_eq!(all.default_queue_filter, QueueFilter::default());
        assert_eq!(all.notifications, Notifications::default());
        // 25.0 is a whole number.
        assert_eq!(
            apply(&d, &json!({"queue_page_size": 25.0}))
                .unwrap()
                .queue_page_size,
            25
        );
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_named_each() {
        let d = Preferences::default();
        let errors = apply(
            &d,
            &json!({
                "colour": "red",
                "queue_page_size": 4,
                "notifications": {"sms": true, "email": "yes"},
                "default_queue_filter": {"template": "Renewal Plays"},
                "theme": "blue",
                "chat_streaming": 1,
                "timezone": "not a zone",
                "a/b~c": 1,
            }),
        )
        .unwrap_err();
        let mut p = pointers(&errors);
        p.sort();
        assert_eq!(
            p,
            [
                "/a~1b~0c",
                "/chat_streaming",
                "/colour",
                "/default_queue_filter/template",
                "/notifications/email",
                "/notifications/sms",
                "/queue_page_size",
                "/theme",
                "/timezone",
            ]
        );
        let colour = errors.iter().find(|e| e.pointer == "/colour").unwrap();
        assert!(colour.message.contains("`colour`"), "{}", colour.message);
        assert!(colour.message.contains("queue_page_size"));
        for bad in [json!([]), json!("dark"), json!(null)] {
            assert_eq!(pointers(&apply(&d, &bad).unwrap_err()), [""]);
        }
        assert_eq!(
            pointers(&apply(&d, &json!({"notifications": true})).unwrap_err()),
            ["/notifications"]
        );
        for n in [json!(201), json!(-1), json!(5.5), json!("25"), json!(true)] {
            assert!(apply(&d, &json!({ "queue_page_size": n })).is_err(), "{n}");
        }
    }

    #[test]
    fn time_zones_are_checked_by_their_form() {
        for ok in [
            "UTC",
            "Japan",
            "Europe/Paris",
            "Etc/GMT+5",
            "America/Port-au-Prince",
        ] {
            assert_eq!(check_timezone(ok, "/timezone").unwrap(), ok);
        }
        for bad in [
            "",
            "utc",
            "Europe/",
            "/Paris",
            "Europe Paris",
            "A/B/C/D",
            "<script>alert(1)</script>",
            &"A".repeat(65),
        ] {
            assert!(check_timezone(bad, "/timezone").is_err(), "{bad}");
        }
    }
}
