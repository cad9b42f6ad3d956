//! Identifiers that print with the prefix of their kind.
//!
//! Every id is a UUIDv7 underneath (time-ordered, so keyset pagination by id is
//! creation order) and `<prefix>_<32 hex digits>` at the API edge:
//!
//! ```
//! use waymark_domain::{ArtifactId, ClientId};
//! let id = ArtifactId::new();
//! let text = id.to_string();
//! assert!(text.starts_with("art_"));
//! assert_eq!(text.parse::<ArtifactId>().unwrap(), id);
//! // An id of another kind is refused with a sentence naming both kinds.
//! assert!(text.parse::<ClientId>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// Why a string is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The prefix names another kind of record.
    #[error("`{value}` is a {found} id, not a {expected} id ({prefix}_...)")]
    WrongKind {
        value: String,
        expected: &'static str,
        prefix: &'static str,
        found: &'static str,
    },
    /// The string is not an id at all.
    #[error("`{value}` is not a valid {expected} id: expected {prefix}_ followed by 32 hex digits")]
    Malformed {
        value: String,
        expected: &'static str,
        prefix: &'static str,
    },
}

/// Every kind of id the API knows: (prefix, name). Used to name the kind of a
/// wrongly-prefixed id in error messages.
pub const KINDS: &[(&str, &str)] = &[
    ("cli", "client"),
    ("eng", "engagement"),
    ("art", "artifact"),
    ("jrn", "journey"),
    ("uow", "unit of work"),
    ("tsk", "task"),
    ("usr", "user"),
    ("tok", "token"),
    ("fil", "file"),
    ("exp", "export"),
    ("cmt", "comment"),
    ("whk", "webhook"),
    ("evt", "event"),
    ("rvl", "review link"),
    ("inc", "incident"),
];

fn parse_prefixed(
    value: &str,
    prefix: &'static str,
    expected: &'static str,
) -> Result<Uuid, IdError> {
    let malformed = || IdError::Malformed {
        value: truncate(value),
        expected,
        prefix,
    };
    let Some((p, rest)) = value.split_once('_') else {
        return Err(malformed());
    };
    if p != prefix {
        if let Some((_, found)) = KINDS.iter().find(|(k, _)| *k == p) {
            return Err(IdError::WrongKind {
                value: truncate(value),
                expected,
                prefix,
                found,
            });
        }
        return Err(malformed());
    }
    if rest.len() != 32 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed());
    }
    Uuid::parse_str(rest).map_err(|_| malformed())
}

fn truncate(value: &str) -> String {
    value.chars().take(80).collect()
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// The prefix this kind of id prints with.
            pub const PREFIX: &'static str = $prefix;
            /// The name of the kind, as used in messages.
            pub const KIND: &'static str = $kind;

            /// A new, time-ordered id.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps a UUID read back from storage.
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID underneath, as stored.
            pub fn uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}_{}", $prefix, self.0.simple())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_prefixed(s, $prefix, $kind).map(Self)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some(concat!("^", $prefix, "_[0-9a-f]{32}$")))
                    .description(Some(concat!("A ", $kind, " id.")))
                    .examples([serde_json::json!(concat!($prefix, "_0193a0b2c3d4e5f60718293a4b5c6d7e"))])
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

prefixed_id!(
    /// Identifies a client, the organisation being served.
    ClientId, "cli", "client"
);
prefixed_id!(
    /// Identifies an engagement, one piece of work for a client.
    EngagementId, "eng", "engagement"
);
prefixed_id!(
    /// Identifies an artifact, a versioned document.
    ArtifactId, "art", "artifact"
);
prefixed_id!(
    /// Identifies an API token.
    TokenId, "tok", "token"
);
prefixed_id!(
    /// Identifies a person: an admin, an operator or a client contact.
    UserId, "usr", "user"
);
prefixed_id!(
    /// Identifies a comment on an artifact.
    CommentId, "cmt", "comment"
);
prefixed_id!(
    /// Identifies a review link, an artifact shared with one reviewer.
    ReviewLinkId, "rvl", "review link"
);
prefixed_id!(
    /// Identifies a webhook subscription.
    WebhookId, "whk", "webhook"
);
prefixed_id!(
    /// Identifies an event (CloudEvents `id`).
    EventId, "evt", "event"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_orders_by_creation() {
        let a = ClientId::new();
        let b = ClientId::new();
        assert!(a < b, "UUIDv7 ids sort in creation order");
        assert_eq!(a.to_string().parse::<ClientId>().unwrap(), a);
        assert_eq!(a.to_string().len(), 4 + 32);
    }

    #[test]
    fn wrong_kind_names_both_kinds() {
        let eng = EngagementId::new().to_string();
        let err = eng.parse::<ArtifactId>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("engagement id"), "{msg}");
        assert!(
            msg.contains("not a artifact id") || msg.contains("artifact id"),
            "{msg}"
        );
        assert!(matches!(err, IdError::WrongKind { .. }));
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "",
            "art",
            "art_",
            "art_xyz",
            "art_0193a0b2c3d4e5f60718293a4b5c6d7",
            "zzz_0193a0b2c3d4e5f60718293a4b5c6d7e",
            "art_0193a0b2-c3d4-e5f6-0718-293a4b5c6d7e",
        ] {
            assert!(
                matches!(bad.parse::<ArtifactId>(), Err(IdError::Malformed { .. })),
                "{bad} should be malformed"
            );
        }
    }

    #[test]
    fn serde_uses_the_prefixed_form() {
        let id = ArtifactId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        let back: ArtifactId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<ClientId>(&json).is_err());
    }
}
prefixed_id!(
    /// Identifies a unit of work, a DAG of tasks.
    UnitId, "uow", "unit of work"
);
prefixed_id!(
    /// Identifies a task of a unit of work.
    TaskId, "tsk", "task"
);
prefixed_id!(
    /// Identifies an incident: a task whose attempts are exhausted.
    IncidentId, "inc", "incident"
);
prefixed_id!(
    /// Identifies a journey: a client's way through a template's stages.
    JourneyId, "jrn", "journey"
);
prefixed_id!(
    /// Identifies an item of the customer-success queue: a playbook due for a
    /// client (one per client, template and rule).
    QueueItemId, "qit", "queue item"
);
prefixed_id!(
    /// Identifies a conversation thread of a playbook step.
    ThreadId, "thr", "thread"
);
prefixed_id!(
    /// Identifies a person's to-do.
    TodoId, "tdo", "to-do"
);
prefixed_id!(
    /// Identifies a stakeholder: one of a client's contacts.
    StakeholderId, "stk", "stakeholder"
);
prefixed_id!(
    /// Identifies an uploaded file.
    FileId, "fil", "file"
);
prefixed_id!(
    /// Identifies a delivery export: one ZIP bundle of an engagement.
    ExportId, "exp", "export"
);
