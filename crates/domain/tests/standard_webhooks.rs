//! Runs the shared Standard Webhooks test vectors
//! (`shared/conformance/standard-webhooks/vectors.json`, outside this repo) against
//! `waymark_domain::webhook`, as that folder's README describes:
//!
//! 1. every sign vector gives the exact `webhook-signature` value and HMAC, with the
//!    secret both with and without its `whsec_` prefix;
//! 2. every verify vector's outcome equals `expected_valid` at the given `now`;
//! 3. every sign-error vector fails (string timestamps go through
//!    [`webhook::parse_timestamp`]).
//!
//! The data is found at `$WAYMARK_SHARED_DIR/conformance`, or else at
//! `../shared/conformance` next to the repository. A missing folder fails the
//! tests: it never skips them.

use std::fs;
use std::path::PathBuf;

use serde_json::Value;
use waymark_domain::webhook::{self, SignError, WebhookSecret};

/// The `conformance` folder of the shared test data.
fn conformance_dir() -> PathBuf {
    let dir = match std::env::var_os("WAYMARK_SHARED_DIR") {
        Some(shared) => PathBuf::from(shared).join("conformance"),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/conformance"
        )),
    };
    assert!(
        dir.is_dir(),
        "conformance data not found at {}: check out the shared test data there, \
         or set WAYMARK_SHARED_DIR to the folder that contains `conformance/`",
        dir.display()
    );
    dir
}

fn vectors() -> Value {
    let path = conformance_dir().join("standard-webhooks/vectors.json");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The array `key` of the vectors file; fails when it is missing or empty.
fn cases<'a>(vectors: &'a Value, key: &str) -> &'a [Value] {
    let cases = vectors[key]
        .as_array()
        .unwrap_or_else(|| panic!("vectors.json has no `{key}` array"));
    assert!(!cases.is_empty(), "vectors.json has an empty `{key}` array");
    cases
}

fn str_field<'a>(case: &'a Value, field: &str) -> &'a str {
    case[field]
        .as_str()
        .unwrap_or_else(|| panic!("{}: `{field}` is not a string", case["id"]))
}

fn i64_field(case: &Value, field: &str) -> i64 {
    case[field]
        .as_i64()
        .unwrap_or_else(|| panic!("{}: `{field}` is not an integer", case["id"]))
}

fn report(what: &str, total: usize, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} of {total} {what} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn sign_vectors_give_the_expected_signature_and_hmac() {
    let vectors = vectors();
    let cases = cases(&vectors, "sign_vectors");
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases {
        let id = str_field(case, "id");
        let secret = str_field(case, "secret");
        let msg_id = str_field(case, "msg_id");
        let timestamp = i64_field(case, "timestamp");
        let payload = str_field(case, "payload").as_bytes();
        let expected_signature = str_field(case, "expected_signature");
        let expected_hmac = str_field(case, "hmac_sha256_hex");

        let bare = secret
            .strip_prefix("whsec_")
            .unwrap_or_else(|| panic!("{id}: the secret has no `whsec_` prefix"));
        assert_eq!(
            bare,
            str_field(case, "secret_key_bytes_base64"),
            "{id}: data disagrees with itself"
        );
        for (form, text) in [("with prefix", secret), ("without prefix", bare)] {
            let key = WebhookSecret::parse(text).unwrap_or_else(|e| panic!("{id} ({form}): {e}"));
            let signature = webhook::sign(&key, msg_id, timestamp, payload)
                .unwrap_or_else(|e| panic!("{id} ({form}): {e}"));
            if signature != expected_signature {
                failures.push(format!(
                    "{id} ({form}): signature {signature}, wanted {expected_signature}"
                ));
            }
            let mac = webhook::mac(&key, msg_id, timestamp, payload)
                .unwrap_or_else(|e| panic!("{id} ({form}): {e}"));
            let mac_hex = hex::encode(mac);
            if mac_hex != expected_hmac {
                failures.push(format!(
                    "{id} ({form}): HMAC {mac_hex}, wanted {expected_hmac}"
                ));
            }
            checked += 1;
        }
        assert_eq!(
            case["secret_key_length_bytes"].as_u64(),
            Some(base64_len(bare)),
            "{id}: secret_key_length_bytes"
        );
    }
    report("sign checks", checked, &failures);
    assert_eq!(checked, 2 * cases.len());
    assert_eq!(cases.len(), 2, "expected the 2 upstream sign vectors");
}

/// The decoded length of padded base64 text.
fn base64_len(text: &str) -> u64 {
    let padding = text.bytes().rev().take_while(|&b| b == b'=').count();
    (text.len() / 4 * 3 - padding) as u64
}

#[test]
fn verify_vectors_give_the_expected_outcome() {
    let vectors = vectors();
    let cases = cases(&vectors, "verify_vectors");
    let mut failures = Vec::new();
    let (mut valid, mut invalid) = (0, 0);
    for case in cases {
        let id = str_field(case, "id");
        let secret =
            WebhookSecret::parse(str_field(case, "secret")).unwrap_or_else(|e| panic!("{id}: {e}"));
        let payload = str_field(case, "payload").as_bytes();
        let now = i64_field(case, "now");
        let expected_valid = case["expected_valid"]
            .as_bool()
            .unwrap_or_else(|| panic!("{id}: `expected_valid` is not a boolean"));
        let headers: Vec<(&str, &str)> = case["headers"]
            .as_object()
            .unwrap_or_else(|| panic!("{id}: `headers` is not an object"))
            .iter()
            .map(|(name, value)| {
                let value = value
                    .as_str()
                    .unwrap_or_else(|| panic!("{id}: header {name} is not a string"));
                (name.as_str(), value)
            })
            .collect();

        let outcome = webhook::verify(&secret, &headers, payload, now);
        if outcome.is_ok() != expected_valid {
            failures.push(format!(
                "{id}: got {outcome:?}, wanted {}",
                if expected_valid { "valid" } else { "invalid" }
            ));
        }
        if expected_valid {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    report("verify vectors", cases.len(), &failures);
    assert_eq!(valid + invalid, cases.len());
    assert!(valid > 0 && invalid > 0, "{valid} valid, {invalid} invalid");
    assert_eq!(
        cases.len(),
        24,
        "expected the 24 transcribed verify vectors"
    );
}

/// One sign-error vector run through the API: build the key, read the timestamp
/// (given as a string here) and sign. Returns the first error, or the signature.
fn try_sign(case: &Value) -> Result<String, SignError> {
    let key = WebhookSecret::parse(str_field(case, "secret"))?;
    // The key-construction cases give no message; sign a fixed one to prove that
    // nothing could be signed even if the key were accepted.
    let msg_id = case["msg_id"].as_str().unwrap_or("msg_x");
    let payload = case["payload"].as_str().unwrap_or("{}");
    let timestamp = match &case["timestamp"] {
        Value::Null => 0,
        Value::String(text) => webhook::parse_timestamp(text)?,
        Value::Number(n) => n
            .as_i64()
            .unwrap_or_else(|| panic!("{}: timestamp {n}", case["id"])),
        other => panic!("{}: unexpected timestamp {other}", case["id"]),
    };
    webhook::sign(&key, msg_id, timestamp, payload.as_bytes())
}

#[test]
fn sign_error_vectors_fail() {
    let vectors = vectors();
    let cases = cases(&vectors, "sign_error_vectors");
    let mut failures = Vec::new();
    let (mut key_errors, mut timestamp_errors) = (0, 0);
    for case in cases {
        let id = str_field(case, "id");
        match try_sign(case) {
            Ok(signature) => failures.push(format!("{id}: signed ({signature}), wanted an error")),
            Err(SignError::EmptySecret | SignError::InvalidSecretEncoding) => key_errors += 1,
            Err(SignError::InvalidTimestamp(_) | SignError::NegativeTimestamp(_)) => {
                timestamp_errors += 1
            }
            Err(e @ SignError::KeyRejected) => failures.push(format!("{id}: unexpected {e}")),
        }
        // A negative timestamp is also refused when it reaches `sign` as a number.
        if let Some(text) = case["timestamp"].as_str()
            && let Ok(n) = text.parse::<i64>()
        {
            let key = WebhookSecret::parse(str_field(case, "secret")).expect("valid secret");
            assert_eq!(
                webhook::sign(&key, "msg_x", n, b"{}"),
                Err(SignError::NegativeTimestamp(n)),
                "{id}: numeric form"
            );
        }
    }
    report("sign-error vectors", cases.len(), &failures);
    assert_eq!(key_errors + timestamp_errors, cases.len());
    assert_eq!((key_errors, timestamp_errors), (2, 3));
}
