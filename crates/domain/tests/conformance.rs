//! Runs the shared conformance data (`shared/conformance/`, outside this repo)
//! against `waymark_domain::content`:
//!
//! - `jcs/`: RFC 8785 canonical JSON, content hashes and ES6 number formatting
//!   (cyberphone/json-canonicalization test data);
//! - `json-patch/`: RFC 6902 apply, plus our own diff round trips
//!   (json-patch/json-patch-tests).
//!
//! The data is found at `$WAYMARK_SHARED_DIR/conformance`, or else at
//! `../shared/conformance` next to the repository. A missing folder fails the
//! tests: it never skips them.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use waymark_domain::content::{apply, canonical_json, content_hash, diff};

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

fn read_bytes(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn read_text(path: &Path) -> String {
    String::from_utf8(read_bytes(path))
        .unwrap_or_else(|e| panic!("{} is not UTF-8: {e}", path.display()))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&read_text(path))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Decodes an `outhex/*.txt` file: hex byte pairs separated by whitespace.
fn decode_outhex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|pair| {
            u8::from_str_radix(pair, 16).unwrap_or_else(|e| panic!("bad outhex byte {pair:?}: {e}"))
        })
        .collect()
}

#[test]
fn jcs_inputs_canonicalize_to_expected_outputs_and_hashes() {
    let jcs = conformance_dir().join("jcs");
    let manifest = read_json(&jcs.join("sha256.json"));
    let cases = manifest["cases"]
        .as_array()
        .expect("sha256.json has a `cases` array");

    let mut names: Vec<String> = fs::read_dir(jcs.join("input"))
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", jcs.join("input").display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let stem = path.file_stem().expect("input file has a name");
            stem.to_str().expect("UTF-8 file name").to_owned()
        })
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        cases.len(),
        "jcs/input and sha256.json list different cases"
    );

    let mut failures = Vec::new();
    for name in &names {
        // Outputs are the exact canonical bytes, with no trailing newline.
        let expected_bytes = read_bytes(&jcs.join("output").join(format!("{name}.json")));
        let outhex = decode_outhex(&read_text(&jcs.join("outhex").join(format!("{name}.txt"))));
        assert_eq!(
            expected_bytes, outhex,
            "{name}: output/ and outhex/ disagree in the data itself"
        );
        let expected = String::from_utf8(expected_bytes).expect("canonical output is UTF-8");

        let input = read_json(&jcs.join("input").join(format!("{name}.json")));
        let canonical = canonical_json(&input);
        if canonical != expected {
            failures.push(format!(
                "{name}: canonical form\n   got: {canonical}\nwanted: {expected}"
            ));
        }

        // Canonicalizing the canonical form again changes nothing.
        let again = canonical_json(&serde_json::from_str(&expected).expect("output is JSON"));
        if again != expected {
            failures.push(format!(
                "{name}: not idempotent\n   got: {again}\nwanted: {expected}"
            ));
        }

        let case = cases
            .iter()
            .find(|c| c["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} is missing from sha256.json"));
        let wanted_hash = case["sha256_hex"].as_str().expect("sha256_hex is a string");
        assert_eq!(
            sha256_hex(expected.as_bytes()),
            wanted_hash,
            "{name}: sha256.json disagrees with output/ in the data itself"
        );
        let hash = content_hash(&input);
        if hash.as_str() != wanted_hash {
            failures.push(format!("{name}: content hash {hash}, wanted {wanted_hash}"));
        }
    }

    assert_eq!(names.len(), 6, "expected the 6 upstream JCS cases");
    assert!(
        failures.is_empty(),
        "{} JCS failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn jcs_es6_numbers_serialize_like_javascript() {
    let jcs = conformance_dir().join("jcs");
    let path = jcs.join("es6numbers-10000.txt");
    let bytes = read_bytes(&path);

    // Check that the file is the exact upstream 10,000-line prefix.
    let manifest = read_json(&jcs.join("sha256.json"));
    let published = manifest["es6_number_file_hashes"]["table"]
        .as_array()
        .expect("sha256.json has the ES6 number hash table")
        .iter()
        .find(|row| row["lines"] == 10_000)
        .expect("the table has a 10,000-line entry");
    assert_eq!(
        sha256_hex(&bytes),
        published["sha256_hex"]
            .as_str()
            .expect("sha256_hex is a string"),
        "{} is not upstream's 10,000-line prefix",
        path.display()
    );

    let text = String::from_utf8(bytes).expect("number file is UTF-8");
    let mut ran = 0usize;
    let mut negative_zero = 0usize;
    let mut failures = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let (hex, expected) = line
            .split_once(',')
            .unwrap_or_else(|| panic!("line {}: no comma in {line:?}", index + 1));
        let bits = u64::from_str_radix(hex, 16)
            .unwrap_or_else(|e| panic!("line {}: bad hex {hex:?}: {e}", index + 1));
        let f = f64::from_bits(bits);
        // JCS forbids NaN and Infinity and the file holds none; they could
        // not be a JSON value anyway, so finding one means the data changed.
        assert!(f.is_finite(), "line {}: non-finite {line:?}", index + 1);
        if f == 0.0 && f.is_sign_negative() {
            // Representable: serde_json keeps -0.0 as a float Number, and JCS
            // (like ES6) must write it as "0". Checked below like any other line.
            negative_zero += 1;
        }

        let got = canonical_json(&json!(f));
        if got != expected {
            failures.push(format!(
                "line {}: {hex} -> {got}, wanted {expected}",
                index + 1
            ));
        }
        ran += 1;
    }

    assert!(
        failures.is_empty(),
        "{} of {ran} number case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(ran, 10_000, "expected 10,000 number cases");
    assert!(negative_zero >= 1, "the -0.0 edge case did not run");
}

#[test]
fn json_patch_suite_applies_and_our_diff_round_trips() {
    let dir = conformance_dir().join("json-patch");
    let mut ran = 0usize;
    let mut skipped = 0usize;
    let mut failures = Vec::new();

    for file in ["tests.json", "spec_tests.json"] {
        let records = read_json(&dir.join(file));
        let records = records
            .as_array()
            .unwrap_or_else(|| panic!("{file} is not a JSON array"));
        for (index, record) in records.iter().enumerate() {
            let label = format!(
                "{file}[{index}] {:?}",
                record["comment"].as_str().unwrap_or("(no comment)")
            );
            if record["disabled"] == true {
                skipped += 1;
                continue;
            }
            ran += 1;
            let doc = &record["doc"];
            let patch = &record["patch"];
            let result = apply(doc, patch);

            match (record.get("expected"), record.get("error")) {
                (Some(expected), _) => {
                    match &result {
                        Ok(got) if got == expected => {}
                        Ok(got) => {
                            failures.push(format!("{label}: apply gave {got}, wanted {expected}"))
                        }
                        Err(e) => failures.push(format!("{label}: apply failed: {e}")),
                    }

                    // Our diff in both directions, checked by applying it.
                    for (name, from, to) in
                        [("forward", doc, expected), ("rollback", expected, doc)]
                    {
                        let ops = Value::Array(diff(from, to));
                        match apply(from, &ops) {
                            Ok(got) if got == *to => {}
                            Ok(got) => failures.push(format!(
                                "{label}: {name} diff {ops} gave {got}, wanted {to}"
                            )),
                            Err(e) => failures
                                .push(format!("{label}: {name} diff {ops} failed to apply: {e}")),
                        }
                    }
                }
                (None, Some(error)) => {
                    if let Ok(got) = &result {
                        failures.push(format!("{label}: should fail ({error}) but gave {got}"));
                    }
                }
                (None, None) => {
                    if let Err(e) = &result {
                        failures.push(format!("{label}: apply failed: {e}"));
                    }
                }
            }
        }
    }

    assert!(
        failures.is_empty(),
        "{} of {ran} JSON Patch case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        ran > 100,
        "only {ran} JSON Patch cases ran ({skipped} disabled)"
    );
    // The 4 records disabled upstream: two duplicate-`op` records (unreadable
    // once parsed into a `Value`) and two with no reason given.
    assert_eq!(skipped, 4, "expected the 4 upstream-disabled records");
}

#[test]
fn trace_context_traceparent_values() {
    use waymark_domain::trace::parse_traceparent;
    let cases = read_json(&conformance_dir().join("trace-context/cases.json"));
    let values = cases["traceparent_values"]["values"]
        .as_array()
        .expect("traceparent_values.values is an array");
    let mut failures = vec![];
    for case in values {
        let value = case["value"].as_str().expect("value is a string");
        let valid = case["valid"].as_bool().expect("valid is a bool");
        let got = parse_traceparent(value);
        if got.is_some() != valid {
            failures.push(format!("{value:?}: expected valid={valid}, got {got:?}"));
        } else if let (Some(got), Some(want)) = (&got, case["trace_id"].as_str())
            && got != want
        {
            failures.push(format!("{value:?}: trace id {got}, expected {want}"));
        }
    }
    assert!(
        failures.is_empty(),
        "traceparent mismatches:\n{}",
        failures.join("\n")
    );
    assert_eq!(values.len(), 34, "all 34 header values ran");
}
