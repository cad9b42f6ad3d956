//! The audit log's hash chain.
//!
//! Every mutating request appends one [`AuditRecord`] in the transaction of its
//! change. Each record's `hash` is SHA-256 over the RFC 8785 canonical JSON of the
//! record's fields together with the previous record's hash, so editing,
//! removing or reordering any record breaks every link after it. [`Verifier`]
//! walks a chain in order (in pages, so a large log needs no memory) and names the
//! first record that does not hold.
//!
//! ```
//! use waymark_domain::audit::{AuditRecord, GENESIS, Verifier, chain_hash};
//! let mut r = AuditRecord {
//!     seq: 1, at_us: 1_700_000_000_000_000, actor: "usr_1".into(),
//!     actor_name: Some("Ana <ana@northwind.example>".into()), client_id: None,
//!     action: "client.create".into(), target: "cli_1".into(),
//!     before_hash: None, after_hash: Some("ab".into()), trace_id: None,
//!     prev_hash: GENESIS.into(), hash: String::new(),
//! };
//! r.hash = chain_hash(&r);
//! let mut v = Verifier::new();
//! assert!(v.check(&r).is_ok());
//! r.actor = "usr_2".into(); // tampered
//! assert!(Verifier::new().check(&r).is_err());
//! ```

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One record of the audit log, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Position in the log, from 1, without gaps.
    pub seq: i64,
    /// When, in microseconds since the Unix epoch (UTC).
    pub at_us: i64,
    /// Who: a user id, a token id, a review link id, or `system`.
    pub actor: String,
    /// Who, for people: the person's name and email, the agent's id, the
    /// token's name (records written before names were kept have none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_name: Option<String>,
    /// The client the change concerns, if any.
    pub client_id: Option<String>,
    /// What was done, e.g. `artifact.approve`.
    pub action: String,
    /// The record changed, e.g. `art_…`.
    pub target: String,
    /// Content hash of the target before the change, where it has content.
    pub before_hash: Option<String>,
    /// Content hash of the target after the change.
    pub after_hash: Option<String>,
    /// The W3C trace id of the request.
    pub trace_id: Option<String>,
    /// The previous record's `hash` ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// SHA-256 (hex) of this record chained to `prev_hash`: [`chain_hash`].
    pub hash: String,
}

/// The fields a record's hash covers: everything but the hash itself.
#[derive(Serialize)]
struct Hashed<'a> {
    seq: i64,
    at_us: i64,
    actor: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor_name: Option<&'a str>,
    client_id: Option<&'a str>,
    action: &'a str,
    target: &'a str,
    before_hash: Option<&'a str>,
    after_hash: Option<&'a str>,
    trace_id: Option<&'a str>,
    prev_hash: &'a str,
}

/// The hash a record must carry: SHA-256 of the canonical JSON of its fields,
/// `prev_hash` included.
pub fn chain_hash(r: &AuditRecord) -> String {
    let fields = Hashed {
        seq: r.seq,
        at_us: r.at_us,
        actor: &r.actor,
        actor_name: r.actor_name.as_deref(),
        client_id: r.client_id.as_deref(),
        action: &r.action,
        target: &r.target,
        before_hash: r.before_hash.as_deref(),
        after_hash: r.after_hash.as_deref(),
        trace_id: r.trace_id.as_deref(),
        prev_hash: &r.prev_hash,
    };
    // Plain strings and integers only: serialization cannot fail.
    let canonical = serde_json_canonicalizer::to_string(&fields).unwrap_or_default();
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// Why a chain does not hold, naming the first record that breaks it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// A record is missing: the sequence jumps.
    #[error(
        "record {found} follows record {previous}: records {missing_from}..{missing_to} are missing"
    )]
    Gap {
        previous: i64,
        found: i64,
        missing_from: i64,
        missing_to: i64,
    },
    /// The record does not point at the previous record's hash (a record
    /// before it was changed, removed or reordered).
    #[error(
        "record {seq} does not follow record {previous}: its prev_hash is not that record's hash"
    )]
    Link { seq: i64, previous: i64 },
    /// The record's own fields no longer give its hash: it was edited.
    #[error("record {seq} was altered: its fields no longer give its hash")]
    Altered { seq: i64 },
    /// The log ends before its recorded head: trailing records were removed.
    #[error(
        "the log ends at record {last} but its head says {head}: records after {last} were removed"
    )]
    Truncated { last: i64, head: i64 },
}

impl ChainBreak {
    /// The sequence number of the first broken record.
    pub fn seq(&self) -> i64 {
        match self {
            ChainBreak::Gap { found, .. } => *found,
            ChainBreak::Link { seq, .. } | ChainBreak::Altered { seq } => *seq,
            ChainBreak::Truncated { last, .. } => *last + 1,
        }
    }
}

/// Checks a chain record by record, in order; feed it pages as they are read.
#[derive(Debug, Clone)]
pub struct Verifier {
    last_seq: i64,
    last_hash: String,
    checked: u64,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// A verifier expecting the first record.
    pub fn new() -> Self {
        Self {
            last_seq: 0,
            last_hash: GENESIS.to_string(),
            checked: 0,
        }
    }

    /// Checks the next record of the chain.
    pub fn check(&mut self, r: &AuditRecord) -> Result<(), ChainBreak> {
        if r.seq != self.last_seq + 1 {
            if r.seq > self.last_seq + 1 {
                return Err(ChainBreak::Gap {
                    previous: self.last_seq,
                    found: r.seq,
                    missing_from: self.last_seq + 1,
                    missing_to: r.seq - 1,
                });
            }
            return Err(ChainBreak::Link {
                seq: r.seq,
                previous: self.last_seq,
            });
        }
        if chain_hash(r) != r.hash {
            return Err(ChainBreak::Altered { seq: r.seq });
        }
        if r.prev_hash != self.last_hash {
            return Err(ChainBreak::Link {
                seq: r.seq,
                previous: self.last_seq,
            });
        }
        self.last_seq = r.seq;
        self.last_hash = r.hash.clone();
        self.checked += 1;
        Ok(())
    }

    /// After the last record: the chain must end where its head says.
    pub fn finish(&self, head_seq: i64, head_hash: &str) -> Result<u64, ChainBreak> {
        if head_seq > self.last_seq {
            return Err(ChainBreak::Truncated {
                last: self.last_seq,
                head: head_seq,
            });
        }
        if head_seq == self.last_seq && head_hash != self.last_hash {
            return Err(ChainBreak::Altered { seq: head_seq });
        }
        Ok(self.checked)
    }

    /// The sequence number of the last record checked.
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    /// The hash of the last record checked.
    pub fn last_hash(&self) -> &str {
        &self.last_hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let mut r = AuditRecord {
                    seq,
                    at_us: 1_700_000_000_000_000 + seq,
                    actor: format!("usr_{seq}"),
                    actor_name: (seq % 3 == 0).then(|| format!("Person {seq}")),
                    client_id: (seq % 2 == 0).then(|| "cli_x".to_string()),
                    action: "artifact.approve".into(),
                    target: format!("art_{seq}"),
                    before_hash: Some("a".into()),
                    after_hash: Some("b".into()),
                    trace_id: None,
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                r.hash = chain_hash(&r);
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    fn verify(records: &[AuditRecord]) -> Result<u64, ChainBreak> {
        let mut v = Verifier::new();
        for r in records {
            v.check(r)?;
        }
        let last = records.last();
        v.finish(
            last.map_or(0, |r| r.seq),
            last.map_or(GENESIS, |r| r.hash.as_str()),
        )
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&chain(20)), Ok(20));
        assert_eq!(verify(&[]), Ok(0));
    }

    #[test]
    fn an_edited_field_names_its_record() {
        for field in 0..4 {
            let mut c = chain(10);
            match field {
                0 => c[6].actor = "usr_evil".into(),
                1 => c[6].after_hash = Some("c".into()),
                2 => c[6].at_us += 1,
                _ => c[6].client_id = Some("cli_y".into()),
            }
            assert_eq!(verify(&c), Err(ChainBreak::Altered { seq: 7 }));
        }
    }

    #[test]
    fn a_rehashed_record_breaks_the_next_link() {
        let mut c = chain(10);
        c[3].actor = "usr_evil".into();
        c[3].hash = chain_hash(&c[3]);
        assert_eq!(
            verify(&c),
            Err(ChainBreak::Link {
                seq: 5,
                previous: 4
            })
        );
    }

    #[test]
    fn removed_records_are_found() {
        let mut c = chain(10);
        c.remove(4);
        let err = verify(&c).unwrap_err();
        assert_eq!(err.seq(), 6);
        assert!(matches!(
            err,
            ChainBreak::Gap {
                missing_from: 5,
                missing_to: 5,
                ..
            }
        ));
        let c = chain(10);
        let mut v = Verifier::new();
        for r in &c[..8] {
            v.check(r).unwrap();
        }
        assert_eq!(
            v.finish(10, &c[9].hash),
            Err(ChainBreak::Truncated { last: 8, head: 10 })
        );
    }
}
