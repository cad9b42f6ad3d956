//! Standard Webhooks signatures: the symmetric `v1` scheme (HMAC-SHA256).
//!
//! See <https://github.com/standard-webhooks/standard-webhooks>, `spec/standard-webhooks.md`,
//! sections "Signature scheme", "Webhook headers" and "Verifying signatures".
//!
//! - A **secret** is `whsec_` followed by standard (padded) base64 of the key bytes.
//!   The prefix is optional when reading one; the HMAC key is the decoded bytes.
//! - Every delivery carries three headers: [`HEADER_ID`] (a unique message id),
//!   [`HEADER_TIMESTAMP`] (integer Unix seconds) and [`HEADER_SIGNATURE`].
//! - The **signed content** is `{webhook-id}.{webhook-timestamp}.{raw body}`: the exact
//!   body bytes, never a re-serialization of the JSON.
//! - The **signature** is `v1,` followed by base64 of the HMAC-SHA256 of the signed
//!   content. The header may hold several space-separated `version,signature` entries
//!   (to rotate keys); a receiver considers only `v1` entries and accepts the message if
//!   any one of them matches, comparing in constant time.
//! - A receiver rejects a message whose timestamp is more than [`TOLERANCE_SECONDS`]
//!   away from its own clock, in either direction, to limit replays.
//!
//! Everything here is pure: the current time is an argument, never read from a clock.
//!
//! ```
//! use waymark_domain::webhook::{self, WebhookSecret};
//!
//! let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
//! let body = br#"{"test": 2432232314}"#;
//! let signature = webhook::sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
//! assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
//!
//! let headers = [
//!     (webhook::HEADER_ID, "msg_p5jXN8AQM9LWM0D4loKWxJek"),
//!     (webhook::HEADER_TIMESTAMP, "1614265330"),
//!     (webhook::HEADER_SIGNATURE, signature.as_str()),
//! ];
//! assert!(webhook::verify(&secret, &headers, body, 1614265330).is_ok());
//! assert!(webhook::verify(&secret, &headers, b"{}", 1614265330).is_err());
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

type HmacSha256 = Hmac<Sha256>;

/// Name of the header that carries the unique message id.
pub const HEADER_ID: &str = "webhook-id";
/// Name of the header that carries the send time, in integer Unix seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Name of the header that carries the space-separated `version,signature` entries.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// The prefix of a serialized secret. Optional when parsing.
pub const SECRET_PREFIX: &str = "whsec_";
/// The signature version of the symmetric HMAC-SHA256 scheme.
pub const VERSION: &str = "v1";
/// How far, in seconds, a message's timestamp may be from the receiver's clock, in
/// either direction (the value the reference libraries use).
pub const TOLERANCE_SECONDS: u64 = 300;

/// Why a secret could not be read or a message could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The secret has no key bytes: it is empty, or just the `whsec_` prefix.
    #[error("the webhook secret is empty: expected `whsec_` followed by base64 key bytes")]
    EmptySecret,
    /// The part after the optional `whsec_` prefix is not standard, padded base64.
    /// (The secret itself is deliberately left out of the message.)
    #[error(
        "the webhook secret is not valid: expected `whsec_` followed by standard, padded base64"
    )]
    InvalidSecretEncoding,
    /// The timestamp is negative; it must be non-negative integer Unix seconds.
    #[error("webhook timestamp {0} is negative: expected non-negative integer Unix seconds")]
    NegativeTimestamp(i64),
    /// The timestamp text is not a non-negative integer (see [`parse_timestamp`]).
    #[error("webhook timestamp {0:?} is not a non-negative integer number of Unix seconds")]
    InvalidTimestamp(String),
    /// The HMAC implementation refused the key. HMAC-SHA256 accepts keys of any
    /// length, so this is not expected; it exists so that no code path panics.
    #[error("the HMAC-SHA256 implementation refused the webhook key")]
    KeyRejected,
}

/// Why a received message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A required header is absent. Carries the header's name.
    #[error("the `{0}` header is missing")]
    MissingHeader(&'static str),
    /// The `webhook-timestamp` header is not a non-negative integer of Unix seconds.
    #[error("the `webhook-timestamp` header is not a non-negative integer number of Unix seconds")]
    InvalidTimestamp,
    /// The message's timestamp is more than [`TOLERANCE_SECONDS`] before `now`.
    #[error(
        "the message timestamp {timestamp} is too old: more than {TOLERANCE_SECONDS} s before now ({now})"
    )]
    TimestampTooOld {
        /// The timestamp from the `webhook-timestamp` header.
        timestamp: i64,
        /// The receiver's current time.
        now: i64,
    },
    /// The message's timestamp is more than [`TOLERANCE_SECONDS`] after `now`.
    #[error(
        "the message timestamp {timestamp} is too new: more than {TOLERANCE_SECONDS} s after now ({now})"
    )]
    TimestampTooNew {
        /// The timestamp from the `webhook-timestamp` header.
        timestamp: i64,
        /// The receiver's current time.
        now: i64,
    },
    /// No `v1` entry of the `webhook-signature` header matches the message (this
    /// includes a header with no `v1` entry at all, or only malformed entries).
    #[error("no `v1` entry of the `webhook-signature` header matches the message")]
    NoMatchingSignature,
    /// The expected signature could not be computed.
    #[error("could not compute the expected signature: {0}")]
    Sign(#[from] SignError),
}

/// A symmetric webhook key: the bytes behind a `whsec_…` secret.
///
/// Its `Debug` output never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl WebhookSecret {
    /// Reads a secret: `whsec_` (optional) followed by standard, padded base64 of the
    /// key. An empty key, `whsec_` alone, or invalid base64 is an error.
    pub fn parse(secret: &str) -> Result<Self, SignError> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
        if encoded.is_empty() {
            return Err(SignError::EmptySecret);
        }
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SignError::InvalidSecretEncoding)?;
        if key.is_empty() {
            return Err(SignError::EmptySecret);
        }
        Ok(Self { key })
    }

    /// A new random secret: returns its serialized form (`whsec_` followed by base64 of
    /// 32 random bytes), to hand to the receiver, and the parsed key.
    /// A secret made of `key` (at least one byte).
    pub fn from_key(key: Vec<u8>) -> Result<Self, SignError> {
        if key.is_empty() {
            return Err(SignError::EmptySecret);
        }
        Ok(Self { key })
    }

    /// The secret as receivers configure it: `whsec_` and the key in base64.
    pub fn serialized(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    pub fn generate() -> (String, WebhookSecret) {
        let key: [u8; 32] = rand::random();
        let serialized = format!("{SECRET_PREFIX}{}", STANDARD.encode(key));
        (serialized, Self { key: key.to_vec() })
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSecret")
            .field("key", &format_args!("<{} bytes redacted>", self.key.len()))
            .finish()
    }
}

/// Reads a timestamp given as text: ASCII digits only (no sign, no fraction, no
/// spaces), fitting in an `i64`.
pub fn parse_timestamp(text: &str) -> Result<i64, SignError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignError::InvalidTimestamp(text.to_owned()));
    }
    text.parse::<i64>()
        .map_err(|_| SignError::InvalidTimestamp(text.to_owned()))
}

/// The raw HMAC-SHA256 of the signed content `{msg_id}.{timestamp}.{payload}`, i.e.
/// the bytes that [`sign`] base64-encodes. A negative timestamp is an error.
pub fn mac(
    secret: &WebhookSecret,
    msg_id: &str,
    timestamp: i64,
    payload: &[u8],
) -> Result<[u8; 32], SignError> {
    if timestamp < 0 {
        return Err(SignError::NegativeTimestamp(timestamp));
    }
    let mut mac = HmacSha256::new_from_slice(&secret.key).map_err(|_| SignError::KeyRejected)?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    Ok(mac.finalize().into_bytes().into())
}

/// The `webhook-signature` header value for a message: `v1,` followed by base64 of
/// [`mac`]. Sign the exact body bytes that are sent. A negative timestamp is an error.
pub fn sign(
    secret: &WebhookSecret,
    msg_id: &str,
    timestamp: i64,
    payload: &[u8],
) -> Result<String, SignError> {
    let mac = mac(secret, msg_id, timestamp, payload)?;
    Ok(format!("{VERSION},{}", STANDARD.encode(mac)))
}

/// The value of the first header called `name`, compared case-insensitively.
fn header<'a>(headers: &[(&str, &'a str)], name: &'static str) -> Result<&'a str, VerifyError> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|&(_, value)| value)
        .ok_or(VerifyError::MissingHeader(name))
}

/// Checks a received message: `headers` are (name, value) pairs, names compared
/// case-insensitively; `payload` is the exact body; `now` is the receiver's current
/// time in Unix seconds.
///
/// Refuses a missing header, a timestamp that is not a non-negative integer or is
/// more than [`TOLERANCE_SECONDS`] from `now`, and a signature header in which no
/// `v1` entry matches. Entries of other versions and malformed entries are ignored;
/// every `v1` entry is compared in constant time. Never panics on malformed input.
pub fn verify(
    secret: &WebhookSecret,
    headers: &[(&str, &str)],
    payload: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let msg_id = header(headers, HEADER_ID)?;
    let timestamp = header(headers, HEADER_TIMESTAMP)?;
    let signatures = header(headers, HEADER_SIGNATURE)?;

    let timestamp = parse_timestamp(timestamp.trim()).map_err(|_| VerifyError::InvalidTimestamp)?;
    if now.abs_diff(timestamp) > TOLERANCE_SECONDS {
        return Err(if timestamp < now {
            VerifyError::TimestampTooOld { timestamp, now }
        } else {
            VerifyError::TimestampTooNew { timestamp, now }
        });
    }

    let expected = mac(secret, msg_id, timestamp, payload)?;
    let mut matched = Choice::from(0);
    for entry in signatures.split_ascii_whitespace() {
        let Some((version, encoded)) = entry.split_once(',') else {
            continue;
        };
        if version != VERSION {
            continue;
        }
        let Ok(candidate) = STANDARD.decode(encoded) else {
            continue;
        };
        // `ct_eq` on slices of different lengths is false without comparing bytes.
        matched |= candidate.as_slice().ct_eq(expected.as_slice());
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(VerifyError::NoMatchingSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;

    fn secret() -> WebhookSecret {
        WebhookSecret::parse(SECRET).unwrap()
    }

    fn headers<'a>(ts: &'a str, sig: &'a str) -> [(&'static str, &'a str); 3] {
        [
            (HEADER_ID, MSG_ID),
            (HEADER_TIMESTAMP, ts),
            (HEADER_SIGNATURE, sig),
        ]
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let sig = sign(&secret(), MSG_ID, TS, BODY).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(
            verify(&secret(), &headers("1614265330", &sig), BODY, TS),
            Ok(())
        );
    }

    #[test]
    fn generated_secret_round_trips() {
        let (serialized, key) = WebhookSecret::generate();
        assert!(serialized.starts_with(SECRET_PREFIX));
        let parsed = WebhookSecret::parse(&serialized).unwrap();
        assert_eq!(parsed, key);
        assert_eq!(parsed.key.len(), 32);
        let sig = sign(&key, MSG_ID, TS, BODY).unwrap();
        assert_eq!(
            verify(&parsed, &headers("1614265330", &sig), BODY, TS),
            Ok(())
        );
        assert!(!format!("{key:?}").contains(&serialized[SECRET_PREFIX.len()..]));
    }

    #[test]
    fn tampered_payload_fails() {
        let sig = sign(&secret(), MSG_ID, TS, BODY).unwrap();
        assert_eq!(
            verify(
                &secret(),
                &headers("1614265330", &sig),
                br#"{"test": 2432232315}"#,
                TS
            ),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn v2_entry_is_ignored_even_with_the_right_mac() {
        let sig = sign(&secret(), MSG_ID, TS, BODY).unwrap();
        let v2 = sig.replacen("v1,", "v2,", 1);
        assert_eq!(
            verify(&secret(), &headers("1614265330", &v2), BODY, TS),
            Err(VerifyError::NoMatchingSignature)
        );
        let both = format!("{v2} {sig}");
        assert_eq!(
            verify(&secret(), &headers("1614265330", &both), BODY, TS),
            Ok(())
        );
    }

    #[test]
    fn timestamp_tolerance_and_format() {
        let sig = sign(&secret(), MSG_ID, TS, BODY).unwrap();
        let h = headers("1614265330", &sig);
        assert_eq!(verify(&secret(), &h, BODY, TS + 300), Ok(()));
        assert_eq!(verify(&secret(), &h, BODY, TS - 300), Ok(()));
        assert!(matches!(
            verify(&secret(), &h, BODY, TS + 301),
            Err(VerifyError::TimestampTooOld { .. })
        ));
        assert!(matches!(
            verify(&secret(), &h, BODY, TS - 301),
            Err(VerifyError::TimestampTooNew { .. })
        ));
        assert!(verify(&secret(), &h, BODY, i64::MIN).is_err());
        assert!(verify(&secret(), &h, BODY, i64::MAX).is_err());
        for bad in [
            "",
            "-1614265330",
            "1614265330.0",
            "+1614265330",
            "99999999999999999999",
        ] {
            assert_eq!(
                verify(&secret(), &headers(bad, &sig), BODY, TS),
                Err(VerifyError::InvalidTimestamp),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn malformed_input_is_refused_without_panicking() {
        for sig in [
            "", " ", ",", "v1", "v1,", "v1,é", "v1,,,", "v1,YQ==", "\u{0}", "v1 ,x",
        ] {
            assert_eq!(
                verify(&secret(), &headers("1614265330", sig), BODY, TS),
                Err(VerifyError::NoMatchingSignature),
                "{sig:?}"
            );
        }
        assert_eq!(
            verify(&secret(), &[], BODY, TS),
            Err(VerifyError::MissingHeader(HEADER_ID))
        );
    }

    #[test]
    fn bad_secrets_and_timestamps_are_errors() {
        assert_eq!(WebhookSecret::parse(""), Err(SignError::EmptySecret));
        assert_eq!(WebhookSecret::parse("whsec_"), Err(SignError::EmptySecret));
        assert_eq!(
            WebhookSecret::parse("whsec_not base64!"),
            Err(SignError::InvalidSecretEncoding)
        );
        assert_eq!(
            WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Ok(secret())
        );
        assert_eq!(
            sign(&secret(), MSG_ID, -1, BODY),
            Err(SignError::NegativeTimestamp(-1))
        );
        assert_eq!(parse_timestamp("1614265330"), Ok(TS));
        assert!(parse_timestamp("-1").is_err());
        assert!(parse_timestamp("1.0").is_err());
    }
}
