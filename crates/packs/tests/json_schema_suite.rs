//! Runs the official JSON Schema Test Suite (draft 2020-12, required tests;
//! `shared/conformance/json-schema/`, outside this repo) against the
//! `jsonschema` validator as this crate builds it for pack schemas.
//!
//! The product builds validators with `jsonschema::options()
//! .should_validate_formats(true)`. The suite's required tests treat `format`
//! as an annotation only (format assertion lives in `optional/format/`, which
//! is not copied), so here the validators are built with the same options
//! except format assertion: draft 2020-12, plus a retriever that serves the
//! suite's `remotes/` as `http://localhost:1234/<path>` and refuses everything
//! else, so the test never touches the network.
//!
//! The data is found at `$WAYMARK_SHARED_DIR/conformance`, or else at
//! `../shared/conformance` next to the repository. A missing folder fails the
//! test: it never skips it.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonschema::{Draft, Retrieve, Uri};
use serde_json::Value;

/// Totals stated in the suite's README; a truncated copy must not pass.
const EXPECTED_FILES: usize = 46;
const EXPECTED_CASES: usize = 383;
const EXPECTED_TESTS: usize = 1_299;

/// Where the suite's remote documents are served from.
const REMOTE_BASE: &str = "http://localhost:1234/";

/// Tests the validator is known to get wrong: (file, case description, test
/// description, reason). Each must still fail, so this list cannot rot.
const KNOWN_FAILURES: &[(&str, &str, &str, &str)] = &[];

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

fn read_json(path: &Path) -> Value {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every file under `dir`, recursively, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = fs::read_dir(&current)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", current.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Serves the suite's `remotes/` documents, registered up front under
/// `http://localhost:1234/<path relative to remotes/>`. Refuses every other URI.
#[derive(Clone)]
struct SuiteRemotes {
    documents: Arc<HashMap<String, Value>>,
}

impl SuiteRemotes {
    fn load(remotes: &Path) -> Self {
        assert!(
            remotes.is_dir(),
            "{} is missing: the suite's remote schemas are required",
            remotes.display()
        );
        let mut documents = HashMap::new();
        for path in files_under(remotes) {
            let relative = path
                .strip_prefix(remotes)
                .expect("file is under remotes/")
                .components()
                .map(|c| c.as_os_str().to_str().expect("UTF-8 file name"))
                .collect::<Vec<_>>()
                .join("/");
            documents.insert(format!("{REMOTE_BASE}{relative}"), read_json(&path));
        }
        assert!(
            !documents.is_empty(),
            "{} holds no remote schemas",
            remotes.display()
        );
        Self {
            documents: Arc::new(documents),
        }
    }
}

impl Retrieve for SuiteRemotes {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let uri = uri.as_str();
        let without_fragment = uri.split_once('#').map_or(uri, |(base, _)| base);
        if !without_fragment.starts_with(REMOTE_BASE) {
            return Err(format!("refusing to retrieve {uri}: not a suite remote").into());
        }
        self.documents
            .get(without_fragment)
            .cloned()
            .ok_or_else(|| format!("no suite remote at {uri}").into())
    }
}

/// What went wrong with one test.
struct Failure {
    file: String,
    case: String,
    test: String,
    expected_valid: bool,
    detail: String,
}

/// Runs one test; `Ok(())` when the validator agrees with the suite.
fn run_test(
    validator: &jsonschema::Validator,
    data: &Value,
    expected_valid: bool,
) -> Result<(), String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let is_valid = validator.is_valid(data);
        // The product reports problems through `iter_errors`, so check it too.
        let first_error = validator.iter_errors(data).next().map(|e| e.to_string());
        (is_valid, first_error)
    }));
    let (is_valid, first_error) = match outcome {
        Ok(result) => result,
        Err(_) => return Err("validator panicked".to_owned()),
    };
    if is_valid != first_error.is_none() {
        return Err(format!(
            "is_valid() says {is_valid} but iter_errors() {}",
            first_error.map_or("found no error".to_owned(), |e| format!("found: {e}"))
        ));
    }
    if is_valid != expected_valid {
        return Err(match first_error {
            Some(e) => format!("judged invalid: {e}"),
            None => "judged valid".to_owned(),
        });
    }
    Ok(())
}

#[test]
fn json_schema_test_suite_draft2020_12_required() {
    let suite = conformance_dir().join("json-schema");
    let remotes = SuiteRemotes::load(&suite.join("remotes"));
    let tests_dir = suite.join("draft2020-12");

    let mut files: Vec<PathBuf> = fs::read_dir(&tests_dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", tests_dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();

    let mut case_count = 0;
    let mut test_count = 0;
    let mut failures = Vec::new();

    for path in &files {
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("UTF-8 file name")
            .to_owned();
        let cases = read_json(path);
        let cases = cases
            .as_array()
            .unwrap_or_else(|| panic!("{file}: not an array of test cases"));
        for case in cases {
            case_count += 1;
            let case_description = case["description"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: a test case has no description"));
            let tests = case["tests"].as_array().unwrap_or_else(|| {
                panic!("{file}: case {case_description:?} has no `tests` array")
            });
            test_count += tests.len();

            let built = catch_unwind(AssertUnwindSafe(|| {
                jsonschema::options()
                    .with_draft(Draft::Draft202012)
                    .with_retriever(remotes.clone())
                    .build(&case["schema"])
            }));
            let validator = match built {
                Ok(Ok(validator)) => Some(validator),
                Ok(Err(e)) => {
                    let detail = format!("schema did not build: {e}");
                    failures.extend(
                        tests
                            .iter()
                            .map(|t| failure(&file, case_description, t, &detail)),
                    );
                    None
                }
                Err(_) => {
                    let detail = "building the schema panicked";
                    failures.extend(
                        tests
                            .iter()
                            .map(|t| failure(&file, case_description, t, detail)),
                    );
                    None
                }
            };
            let Some(validator) = validator else { continue };

            for test in tests {
                let expected_valid = test["valid"].as_bool().unwrap_or_else(|| {
                    panic!("{file}: {case_description:?}: a test has no `valid`")
                });
                if let Err(detail) = run_test(&validator, &test["data"], expected_valid) {
                    failures.push(failure(&file, case_description, test, &detail));
                }
            }
        }
    }

    // Split failures into the known ones and the rest.
    let mut known_seen: BTreeMap<(&str, &str, &str), bool> = KNOWN_FAILURES
        .iter()
        .map(|&(file, case, test, _)| ((file, case, test), false))
        .collect();
    assert_eq!(
        known_seen.len(),
        KNOWN_FAILURES.len(),
        "KNOWN_FAILURES lists a test twice"
    );
    let mut unexpected = Vec::new();
    for f in &failures {
        match known_seen.get_mut(&(f.file.as_str(), f.case.as_str(), f.test.as_str())) {
            Some(seen) => *seen = true,
            None => unexpected.push(format!(
                "{} | {} | {} | expected {}: {}",
                f.file,
                f.case,
                f.test,
                if f.expected_valid { "valid" } else { "invalid" },
                f.detail
            )),
        }
    }
    let stale: Vec<String> = known_seen
        .iter()
        .filter(|(_, seen)| !**seen)
        .map(|((file, case, test), _)| format!("{file} | {case} | {test}"))
        .collect();

    let passed = test_count - failures.len();
    println!(
        "JSON Schema Test Suite draft2020-12: {} files, {case_count} cases, {test_count} tests, \
         {passed} passed, {} known failures, {} unexpected failures",
        files.len(),
        KNOWN_FAILURES.len(),
        unexpected.len()
    );

    assert!(
        unexpected.is_empty(),
        "{} unexpected JSON Schema Test Suite failure(s) (file | case | test | expected):\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert!(
        stale.is_empty(),
        "{} known failure(s) now pass or no longer exist; remove them from KNOWN_FAILURES:\n{}",
        stale.len(),
        stale.join("\n")
    );
    assert_eq!(
        (files.len(), case_count, test_count),
        (EXPECTED_FILES, EXPECTED_CASES, EXPECTED_TESTS),
        "the suite copy does not have the (files, cases, tests) its README states"
    );
}

fn failure(file: &str, case: &str, test: &Value, detail: &str) -> Failure {
    Failure {
        file: file.to_owned(),
        case: case.to_owned(),
        test: test["description"]
            .as_str()
            .unwrap_or("<no description>")
            .to_owned(),
        expected_valid: test["valid"].as_bool().unwrap_or_default(),
        detail: detail.to_owned(),
    }
}
