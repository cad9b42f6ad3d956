//! Units of work and tasks: the rules of the work engine.
//!
//! A unit of work is a DAG of tasks (and may wait on other units). A task names
//! its executor (a built-in one or an external agent's id), and carries its
//! priority, attempts, backoff and timeout. This module checks a unit's
//! definition, names the states, decides what a failed attempt leads to (a retry
//! after an exponential, jittered delay, or exhaustion and an incident), checks
//! leases, and orders claiming fairly across clients. The store applies these
//! rules inside its transactions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::FieldError;
use crate::graph::find_cycle;

/// Most tasks in one unit of work.
pub const MAX_TASKS: usize = 10_000;
/// Most dependencies of one task.
pub const MAX_DEPENDENCIES: usize = 1_000;
/// Most units a unit may wait on.
pub const MAX_UNIT_DEPENDENCIES: usize = 100;
/// Largest serialized task input or output, in bytes.
pub const MAX_PAYLOAD: usize = 256 * 1024;

/// Where a task stands.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting on its dependencies (or on the units its unit waits on).
    Pending,
    /// Can be claimed (once its `run_at` has come, after a failed attempt).
    Ready,
    /// Would be ready, but its journey is paused: not claimed until it resumes.
    Held,
    /// Claimed: a worker or agent holds its lease.
    Running,
    Completed,
    /// Attempts exhausted; an incident is open on its unit.
    Failed,
    /// A dependency failed: waits for the incident's resolution.
    Blocked,
    Cancelled,
    /// Passed over by a person resolving an incident; counts as done for its dependents.
    Skipped,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 9] = [
        TaskStatus::Pending,
        TaskStatus::Ready,
        TaskStatus::Held,
        TaskStatus::Running,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Blocked,
        TaskStatus::Cancelled,
        TaskStatus::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Ready => "ready",
            TaskStatus::Held => "held",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Blocked => "blocked",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Skipped => "skipped",
        }
    }

    /// No further change happens to it (short of a person's incident resolution).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Cancelled | TaskStatus::Skipped
        )
    }

    /// Its dependents may go ahead.
    pub fn satisfies_dependents(self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Skipped)
    }

    /// A person may cancel it.
    pub fn cancellable(self) -> bool {
        matches!(
            self,
            TaskStatus::Pending
                | TaskStatus::Ready
                | TaskStatus::Held
                | TaskStatus::Running
                | TaskStatus::Blocked
                | TaskStatus::Failed
        )
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskStatus::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown task status `{}`; one of {}",
                    s.chars().take(40).collect::<String>(),
                    TaskStatus::ALL.map(TaskStatus::as_str).join(", ")
                )
            })
    }
}

/// How one attempt at a task ended (or that it is still running). An
/// attempt starts when a worker or agent claims the task, or when a person
/// finishes a human task nobody claimed; its record is kept when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Its holder still has the lease.
    Running,
    Completed,
    /// Its executor reported a failure (or its output broke the handoff contract).
    Failed,
    /// Its lease ran out: no heartbeat or result in time.
    Expired,
    /// The task (or its unit) was cancelled while it ran.
    Cancelled,
}

impl AttemptOutcome {
    pub const ALL: [AttemptOutcome; 5] = [
        AttemptOutcome::Running,
        AttemptOutcome::Completed,
        AttemptOutcome::Failed,
        AttemptOutcome::Expired,
        AttemptOutcome::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Running => "running",
            AttemptOutcome::Completed => "completed",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Expired => "expired",
            AttemptOutcome::Cancelled => "cancelled",
        }
    }
}

impl FromStr for AttemptOutcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AttemptOutcome::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown attempt outcome `{s}`"))
    }
}

/// Where a unit of work stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnitStatus {
    /// Waiting on the units it depends on.
    Pending,
    Running,
    /// Every task completed or skipped.
    Completed,
    /// A task's attempts are exhausted: an incident is open.
    Failed,
    Cancelled,
}

impl UnitStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitStatus::Pending => "pending",
            UnitStatus::Running => "running",
            UnitStatus::Completed => "completed",
            UnitStatus::Failed => "failed",
            UnitStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, UnitStatus::Completed | UnitStatus::Cancelled)
    }
}

impl FromStr for UnitStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            UnitStatus::Pending,
            UnitStatus::Running,
            UnitStatus::Completed,
            UnitStatus::Failed,
            UnitStatus::Cancelled,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| format!("unknown unit status `{s}`"))
    }
}

/// Who runs a task.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Executor {
    /// Does nothing and succeeds.
    Noop,
    /// A person completes it through the API or the UI.
    Human,
    /// POSTs the task, signed, to a URL; the callback completes it.
    HttpWebhook,
    /// Writes an artifact version from a prompt template and its sources.
    LlmGenerate,
    /// Extracts the text of an uploaded file (`input.file_id`) and indexes it.
    FileExtract,
    /// The data flow's steps over an uploaded file (`input.file_id`): what it
    /// is (`file.inspect`), its text and table (`file.parse`), its meaning
    /// (`file.semantic`), the insights artifact drawn from it (`file.insights`).
    FileInspect,
    FileParse,
    FileSemantic,
    FileInsights,
    /// An external agent registered under this id.
    Agent(String),
}

/// The lane the embedded workers claim from.
pub const ENGINE_LANE: &str = "engine";
/// The lane of human tasks: never claimed, completed by a person.
pub const HUMAN_LANE: &str = "human";

impl Executor {
    /// Parses an executor name: a built-in one or an agent id.
    pub fn parse(name: &str) -> Result<Executor, String> {
        Ok(match name {
            "noop" => Executor::Noop,
            "human" => Executor::Human,
            "http.webhook" => Executor::HttpWebhook,
            "llm.generate" => Executor::LlmGenerate,
            "file.extract" => Executor::FileExtract,
            "file.inspect" => Executor::FileInspect,
            "file.parse" => Executor::FileParse,
            "file.semantic" => Executor::FileSemantic,
            "file.insights" => Executor::FileInsights,
            other => Executor::Agent(check_agent_id(other)?),
        })
    }

    pub fn name(&self) -> &str {
        match self {
            Executor::Noop => "noop",
            Executor::Human => "human",
            Executor::HttpWebhook => "http.webhook",
            Executor::LlmGenerate => "llm.generate",
            Executor::FileExtract => "file.extract",
            Executor::FileInspect => "file.inspect",
            Executor::FileParse => "file.parse",
            Executor::FileSemantic => "file.semantic",
            Executor::FileInsights => "file.insights",
            Executor::Agent(id) => id,
        }
    }

    /// The queue its tasks wait in: one for the embedded workers' executors, one
    /// for people, one per agent. Claiming reads one lane through one index.
    pub fn lane(&self) -> &str {
        match self {
            Executor::Noop
            | Executor::HttpWebhook
            | Executor::LlmGenerate
            | Executor::FileExtract
            | Executor::FileInspect
            | Executor::FileParse
            | Executor::FileSemantic
            | Executor::FileInsights => ENGINE_LANE,
            Executor::Human => HUMAN_LANE,
            Executor::Agent(id) => id,
        }
    }
}

/// Names no agent may take: the built-in executors and the lanes.
const RESERVED: [&str; 11] = [
    "noop",
    "human",
    "http.webhook",
    "llm.generate",
    "file.extract",
    "file.inspect",
    "file.parse",
    "file.semantic",
    "file.insights",
    ENGINE_LANE,
    "system",
];

/// Checks an agent id: 1-64 lowercase letters, digits, `-`, `_` or `.`, starting
/// with a letter or digit, not a built-in executor's name.
pub fn check_agent_id(id: &str) -> Result<String, String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && id.as_bytes()[0].is_ascii_alphanumeric();
    if !ok {
        return Err(format!(
            "`{}` is not an executor: use noop, human, http.webhook, llm.generate, or an agent id \
             (1-64 lowercase letters, digits, '-', '_' or '.')",
            id.chars().take(64).collect::<String>()
        ));
    }
    if RESERVED.contains(&id) {
        return Err(format!(
            "`{id}` is reserved for a built-in executor; pick another agent id"
        ));
    }
    Ok(id.to_owned())
}

/// How long to wait before retrying: `initial_s`, doubling per attempt, at most `max_s`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// Delay before the first retry, in seconds (default 1).
    #[serde(default = "Backoff::default_initial")]
    pub initial_s: f64,
    /// Longest delay, in seconds (default 300).
    #[serde(default = "Backoff::default_max")]
    pub max_s: f64,
}

impl Backoff {
    fn default_initial() -> f64 {
        1.0
    }
    fn default_max() -> f64 {
        300.0
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial_s: Self::default_initial(),
            max_s: Self::default_max(),
        }
    }
}

/// The delay before attempt `attempts_made + 1`, after `attempts_made` failed
/// ones: `initial * 2^(attempts_made - 1)`, capped at `max`, scaled by a jitter
/// in [0.5, 1.0) drawn from `jitter` in [0, 1), so retries of many tasks failed
/// together spread out instead of arriving at once.
pub fn retry_delay(policy: &Backoff, attempts_made: u32, jitter: f64) -> Duration {
    let exp = attempts_made.saturating_sub(1).min(40) as i32;
    let raw = (policy.initial_s * 2f64.powi(exp))
        .min(policy.max_s)
        .max(0.0);
    let factor = 0.5 + 0.5 * jitter.clamp(0.0, 0.999_999);
    Duration::from_secs_f64(raw * factor)
}

/// What a failed attempt leads to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AfterFailure {
    /// Ready again after the delay.
    Retry(Duration),
    /// No attempts left (or the failure is final): the task fails and an incident opens.
    Exhausted,
}

/// Decides a failed attempt: retried while attempts remain and the failure may be
/// retried, else exhausted.
pub fn after_failure(
    policy: &Backoff,
    attempts_made: u32,
    max_attempts: u32,
    retryable: bool,
    jitter: f64,
) -> AfterFailure {
    if retryable && attempts_made < max_attempts {
        AfterFailure::Retry(retry_delay(policy, attempts_made, jitter))
    } else {
        AfterFailure::Exhausted
    }
}

/// Why a lease was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("task is {0}, not running: nobody holds its lease")]
    NotRunning(TaskStatus),
    #[error("this lease token is not the task's current lease (another attempt holds it)")]
    Foreign,
    #[error(
        "the lease expired; the attempt counts as failed and the task is retried by someone else"
    )]
    Expired,
}

/// A new lease token: `wml_` and 128 random bits, shown to the claimer once.
pub fn new_lease_token() -> String {
    let bytes: [u8; 16] = rand::random();
    format!("wml_{}", hex::encode(bytes))
}

/// What the store keeps of a lease token: its SHA-256, hex.
pub fn lease_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Checks a lease presented with a completion, failure or heartbeat.
pub fn check_lease(
    status: TaskStatus,
    held: Option<&str>,
    expires_at_us: Option<i64>,
    presented: &str,
    now_us: i64,
) -> Result<(), LeaseError> {
    if status != TaskStatus::Running {
        return Err(LeaseError::NotRunning(status));
    }
    let held_ok = held
        .is_some_and(|h| subtle::ConstantTimeEq::ct_eq(h.as_bytes(), presented.as_bytes()).into());
    if !held_ok {
        return Err(LeaseError::Foreign);
    }
    if expires_at_us.is_none_or(|e| e <= now_us) {
        return Err(LeaseError::Expired);
    }
    Ok(())
}

/// When a lease taken or extended at `now` ends: after `lease`, but never past
/// the attempt's deadline (its start plus the task's timeout), so heartbeats
/// cannot keep a stuck attempt alive.
pub fn lease_until(now_us: i64, lease: Duration, deadline_us: i64) -> i64 {
    (now_us + lease.as_micros() as i64).min(deadline_us)
}

/// Fair claiming across clients: each task gets a virtual start time. A client's
/// tasks made ready together get consecutive times starting at the later of the
/// client's own clock and the queue's current virtual time (the time of the next
/// task to be claimed), so a client with ten thousand tasks queued takes turns
/// with one that arrives later with ten, and an idle client earns no credit.
///
/// Answers the first key and the client's clock afterwards.
pub fn fair_keys(client_clock: i64, queue_now: i64, count: usize) -> (i64, i64) {
    let start = client_clock.max(queue_now);
    (start, start + count as i64)
}

/// A person's resolution of an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Run the failed task again with fresh attempts; blocked dependents wait again.
    Retry,
    /// Pass over the failed task: its dependents go ahead.
    Skip,
    /// Cancel the unit of work: every task not done is cancelled.
    Cancel,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Retry => "retry",
            Resolution::Skip => "skip",
            Resolution::Cancel => "cancel",
        }
    }
}

/// A task as submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Unique in the unit; dependencies name it.
    pub key: String,
    /// Shown to people; defaults to the key.
    #[serde(default)]
    pub name: Option<String>,
    /// `noop`, `human`, `http.webhook`, `llm.generate`, or an agent id.
    pub executor: String,
    /// Any JSON value, handed to its executor (see `handoff_from`).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub input: Value,
    /// Keys of tasks of the same unit this one waits on.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Lower runs first (default 0).
    #[serde(default)]
    pub priority: i64,
    /// Attempts before an incident (default 3).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Longest one attempt may run, in seconds (default 300).
    #[serde(default)]
    pub timeout_s: Option<u32>,
    #[serde(default)]
    pub backoff: Option<Backoff>,
    /// Fields the output must carry: a completion without one of them fails
    /// the handoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<HandoffContract>,
    /// The key of a dependency whose output becomes this task's input (its
    /// fields set over `input`) when the task becomes ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff_from: Option<String>,
}

/// The fields an output must carry to be handed on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffContract {
    #[serde(default)]
    pub required: Vec<String>,
}

/// At most this many fields in a contract.
pub const MAX_CONTRACT_FIELDS: usize = 100;

/// The contract's fields the output lacks (absent or `null`), in contract
/// order; an output that is not an object lacks them all.
pub fn missing_fields(required: &[String], output: &Value) -> Vec<String> {
    required
        .iter()
        .filter(|f| output.get(f.as_str()).is_none_or(Value::is_null))
        .cloned()
        .collect()
}

/// Why an output breaks its contract, as one sentence; `None` when it keeps it.
pub fn contract_breach(required: &[String], output: &Value) -> Option<String> {
    let missing = missing_fields(required, output);
    (!missing.is_empty()).then(|| {
        format!(
            "the output breaks the handoff contract: it lacks {} (required: {})",
            missing.join(", "),
            required.join(", ")
        )
    })
}

/// The input of a task that receives a handoff: its own input with each field
/// of the handed-on output set over it (the output as it is when either is not
/// an object).
pub fn handoff_input(input: &Value, output: &Value) -> Value {
    match (input, output) {
        (Value::Object(base), Value::Object(over)) => {
            let mut merged = base.clone();
            for (k, v) in over {
                merged.insert(k.clone(), v.clone());
            }
            Value::Object(merged)
        }
        _ => output.clone(),
    }
}

/// A checked task, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedTask {
    pub key: String,
    pub name: String,
    pub executor: Executor,
    pub input: Value,
    /// Indexes into the unit's tasks.
    pub depends_on: Vec<usize>,
    pub priority: i64,
    pub max_attempts: u32,
    pub timeout_s: u32,
    pub backoff: Backoff,
    /// Fields the output must carry (empty: no contract).
    pub contract: Vec<String>,
    /// Index of the dependency whose output becomes this task's input.
    pub handoff_from: Option<usize>,
}

/// An `http.webhook` task's input: `url` (http or https, absolute) is where
/// the task is POSTed.
pub fn check_webhook_input(input: &Value) -> Result<(), String> {
    let Some(url) = input.get("url").and_then(Value::as_str) else {
        return Err(
            "an http.webhook task needs `input.url`, the address to POST the task to".into(),
        );
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty()
        || url.len() > 2048
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(
            "must be an absolute URL with a host, without spaces, at most 2048 characters".into(),
        );
    }
    Ok(())
}

pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
pub const DEFAULT_TIMEOUT_S: u32 = 300;

/// Checks a unit's tasks: keys unique and well-formed, executors known,
/// dependencies on tasks of the unit, no cycles, limits. Answers every problem,
/// each at its JSON Pointer under `/tasks`.
pub fn check_tasks(tasks: Vec<TaskSpec>) -> Result<Vec<CheckedTask>, Vec<FieldError>> {
    let mut errors = Vec::new();
    if tasks.is_empty() {
        errors.push(FieldError::new(
            "/tasks",
            "a unit of work needs at least one task",
        ));
    }
    if tasks.len() > MAX_TASKS {
        errors.push(FieldError::new(
            "/tasks",
            format!(
                "{} tasks; a unit holds at most {MAX_TASKS}: split it into units that depend on each other",
                tasks.len()
            ),
        ));
        return Err(errors);
    }
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, t) in tasks.iter().enumerate() {
        let ok = !t.key.is_empty()
            && t.key.len() <= 128
            && t.key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if !ok {
            errors.push(FieldError::new(
                format!("/tasks/{i}/key"),
                "must be 1-128 letters, digits, '-', '_', '.' or ':'",
            ));
        } else if *index.entry(t.key.as_str()).or_insert(i) != i {
            errors.push(FieldError::new(
                format!("/tasks/{i}/key"),
                format!(
                    "`{}` is used by another task of the unit; keys must be unique",
                    t.key
                ),
            ));
        }
    }
    let mut checked = Vec::with_capacity(tasks.len());
    for (i, t) in tasks.iter().enumerate() {
        let executor = match Executor::parse(&t.executor) {
            Ok(e) => Some(e),
            Err(m) => {
                errors.push(FieldError::new(format!("/tasks/{i}/executor"), m));
                None
            }
        };
        if let Some(name) = &t.name
            && (name.trim().is_empty() || name.chars().count() > 200)
        {
            errors.push(FieldError::new(
                format!("/tasks/{i}/name"),
                "must be 1-200 characters",
            ));
        }
        if t.depends_on.len() > MAX_DEPENDENCIES {
            errors.push(FieldError::new(
                format!("/tasks/{i}/depends_on"),
                format!("at most {MAX_DEPENDENCIES} dependencies per task"),
            ));
        }
        let mut deps = BTreeSet::new();
        for (j, d) in t.depends_on.iter().enumerate() {
            match index.get(d.as_str()) {
                Some(&k) if k == i => errors.push(FieldError::new(
                    format!("/tasks/{i}/depends_on/{j}"),
                    "a task cannot depend on itself",
                )),
                Some(&k) => {
                    deps.insert(k);
                }
                None => errors.push(FieldError::new(
                    format!("/tasks/{i}/depends_on/{j}"),
                    format!(
                        "no task `{}` in this unit",
                        d.chars().take(128).collect::<String>()
                    ),
                )),
            }
        }
        if !(-1_000_000..=1_000_000).contains(&t.priority) {
            errors.push(FieldError::new(
                format!("/tasks/{i}/priority"),
                "must be between -1000000 and 1000000 (lower runs first)",
            ));
        }
        let max_attempts = t.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if !(1..=100).contains(&max_attempts) {
            errors.push(FieldError::new(
                format!("/tasks/{i}/max_attempts"),
                "must be between 1 and 100",
            ));
        }
        let timeout_s = t.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S);
        if !(1..=7 * 86_400).contains(&timeout_s) {
            errors.push(FieldError::new(
                format!("/tasks/{i}/timeout_s"),
                "must be between 1 and 604800 seconds (a week)",
            ));
        }
        let backoff = t.backoff.unwrap_or_default();
        let finite = backoff.initial_s.is_finite() && backoff.max_s.is_finite();
        if !finite
            || !(0.0..=86_400.0).contains(&backoff.initial_s)
            || !(0.0..=86_400.0).contains(&backoff.max_s)
            || backoff.initial_s > backoff.max_s
        {
            errors.push(FieldError::new(
                format!("/tasks/{i}/backoff"),
                "initial_s and max_s must be between 0 and 86400 seconds, initial_s <= max_s",
            ));
        }
        if serde_json::to_string(&t.input).map_or(0, |s| s.len()) > MAX_PAYLOAD {
            errors.push(FieldError::new(
                format!("/tasks/{i}/input"),
                format!("is larger than {MAX_PAYLOAD} bytes; store big inputs as artifacts and pass their ids"),
            ));
        }
        if executor == Some(Executor::HttpWebhook)
            && let Err(why) = check_webhook_input(&t.input)
        {
            errors.push(FieldError::new(format!("/tasks/{i}/input/url"), why));
        }
        let contract = t.contract.clone().unwrap_or_default().required;
        if contract.len() > MAX_CONTRACT_FIELDS {
            errors.push(FieldError::new(
                format!("/tasks/{i}/contract/required"),
                format!("at most {MAX_CONTRACT_FIELDS} fields"),
            ));
        }
        for (j, f) in contract.iter().enumerate() {
            if f.trim().is_empty() || f.chars().count() > 128 {
                errors.push(FieldError::new(
                    format!("/tasks/{i}/contract/required/{j}"),
                    "a field name is 1-128 characters",
                ));
            }
        }
        let handoff_from = match &t.handoff_from {
            None => None,
            Some(from) => match index.get(from.as_str()) {
                Some(&k) if deps.contains(&k) => Some(k),
                _ => {
                    errors.push(FieldError::new(
                        format!("/tasks/{i}/handoff_from"),
                        format!(
                            "`{}` is not one of this task's dependencies; a task receives the output of a task it depends on",
                            from.chars().take(128).collect::<String>()
                        ),
                    ));
                    None
                }
            },
        };
        if let Some(executor) = executor {
            checked.push(CheckedTask {
                key: t.key.clone(),
                name: t.name.clone().unwrap_or_else(|| t.key.clone()),
                executor,
                input: t.input.clone(),
                depends_on: deps.into_iter().collect(),
                priority: t.priority,
                max_attempts,
                timeout_s,
                backoff,
                contract,
                handoff_from,
            });
        }
    }
    if errors.is_empty() {
        let graph: BTreeMap<&str, Vec<&str>> = checked
            .iter()
            .map(|t| {
                (
                    t.key.as_str(),
                    t.depends_on
                        .iter()
                        .map(|&d| checked[d].key.as_str())
                        .collect(),
                )
            })
            .collect();
        if let Some(cycle) = find_cycle(&graph) {
            errors.push(FieldError::new(
                "/tasks",
                format!(
                    "tasks depend on each other in a cycle: {}",
                    cycle.join(" -> ")
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(checked)
    } else {
        Err(errors)
    }
}

/// Checks a unit's name: 1-200 characters.
pub fn check_unit_name(name: &str) -> Result<String, FieldError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(FieldError::new("/name", "must be 1-200 characters"));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_tasks_need_an_absolute_http_url() {
        for ok in [
            "https://hooks.example.com/run",
            "http://127.0.0.1:9000/x?y=1",
        ] {
            assert!(
                check_webhook_input(&serde_json::json!({"url": ok})).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"url": 3}),
            serde_json::json!({"url": "ftp://x"}),
            serde_json::json!({"url": "https:///path"}),
            serde_json::json!({"url": "https://a b"}),
        ] {
            assert!(check_webhook_input(&bad).is_err(), "{bad}");
        }
    }
    use proptest::prelude::*;
    use serde_json::json;

    fn spec(key: &str, deps: &[&str]) -> TaskSpec {
        serde_json::from_value(json!({"key": key, "executor": "noop", "depends_on": deps})).unwrap()
    }

    #[test]
    fn contracts_name_the_missing_fields() {
        let req = vec!["file_id".to_string(), "parse_result".to_string()];
        assert!(missing_fields(&req, &json!({"file_id": "f", "parse_result": {}})).is_empty());
        assert_eq!(
            missing_fields(&req, &json!({"file_id": "f"})),
            ["parse_result"]
        );
        // null counts as missing; a non-object lacks everything.
        assert_eq!(
            missing_fields(&req, &json!({"file_id": null, "parse_result": 1})),
            ["file_id"]
        );
        assert_eq!(missing_fields(&req, &json!("text")), req);
        assert_eq!(contract_breach(&[], &Value::Null), None);
        let why = contract_breach(&req, &json!({})).unwrap();
        assert!(why.contains("lacks file_id, parse_result"), "{why}");
    }

    #[test]
    fn a_handoff_sets_the_output_over_the_input() {
        assert_eq!(
            handoff_input(&json!({"a": 1, "b": 1}), &json!({"b": 2, "c": 3})),
            json!({"a": 1, "b": 2, "c": 3})
        );
        assert_eq!(
            handoff_input(&Value::Null, &json!({"c": 3})),
            json!({"c": 3})
        );
        assert_eq!(handoff_input(&json!({"a": 1}), &json!([1])), json!([1]));
    }

    #[test]
    fn a_handoff_comes_from_a_dependency_and_contracts_are_bounded() {
        let mut t = vec![spec("a", &[]), spec("b", &["a"]), spec("c", &[])];
        t[1].handoff_from = Some("a".into());
        t[1].contract = Some(HandoffContract {
            required: vec!["x".into()],
        });
        let ok = check_tasks(t.clone()).unwrap();
        assert_eq!(
            (ok[1].handoff_from, ok[1].contract.clone()),
            (Some(0), vec!["x".to_string()])
        );
        t[2].handoff_from = Some("a".into());
        t[0].contract = Some(HandoffContract {
            required: vec![" ".into()],
        });
        let errs = check_tasks(t).unwrap_err();
        let at: Vec<&str> = errs.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            at,
            ["/tasks/0/contract/required/0", "/tasks/2/handoff_from"]
        );
        assert!(
            errs[1]
                .message
                .contains("not one of this task's dependencies")
        );
    }

    #[test]
    fn executors_and_lanes() {
        assert_eq!(Executor::parse("noop").unwrap().lane(), ENGINE_LANE);
        assert_eq!(Executor::parse("llm.generate").unwrap().lane(), ENGINE_LANE);
        assert_eq!(Executor::parse("human").unwrap().lane(), HUMAN_LANE);
        let agent = Executor::parse("connector-installation-agent").unwrap();
        assert_eq!(agent.lane(), "connector-installation-agent");
        assert_eq!(agent.name(), "connector-installation-agent");
        assert!(Executor::parse("Bad Agent").is_err());
        assert!(Executor::parse("").is_err());
        assert!(check_agent_id("engine").unwrap_err().contains("reserved"));
        assert!(check_agent_id("-x").is_err());
    }

    #[test]
    fn a_valid_dag_is_accepted_with_indexes() {
        let tasks = check_tasks(vec![
            spec("a", &[]),
            spec("b", &["a"]),
            spec("c", &["a", "b"]),
        ])
        .unwrap();
        assert_eq!(tasks[2].depends_on, vec![0, 1]);
        assert_eq!(tasks[0].max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert_eq!(tasks[0].name, "a");
    }

    #[test]
    fn every_problem_is_reported_at_its_pointer() {
        let mut bad = spec("a", &["nope", "a"]);
        bad.executor = "NOT AN AGENT".into();
        bad.max_attempts = Some(0);
        let errors = check_tasks(vec![bad, spec("a", &[])]).unwrap_err();
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        for p in [
            "/tasks/1/key",
            "/tasks/0/executor",
            "/tasks/0/depends_on/0",
            "/tasks/0/depends_on/1",
            "/tasks/0/max_attempts",
        ] {
            assert!(pointers.contains(&p), "{p} missing from {pointers:?}");
        }
    }

    #[test]
    fn cycles_are_refused_with_the_path() {
        let errors = check_tasks(vec![
            spec("a", &["c"]),
            spec("b", &["a"]),
            spec("c", &["b"]),
        ])
        .unwrap_err();
        assert!(errors[0].message.contains("cycle"), "{errors:?}");
        assert!(check_tasks(vec![]).is_err());
    }

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let p = Backoff {
            initial_s: 1.0,
            max_s: 10.0,
        };
        assert_eq!(retry_delay(&p, 1, 0.999_999).as_secs_f64().round(), 1.0);
        assert_eq!(retry_delay(&p, 1, 0.0).as_secs_f64(), 0.5);
        assert_eq!(retry_delay(&p, 3, 0.0).as_secs_f64(), 2.0);
        assert_eq!(retry_delay(&p, 30, 0.0).as_secs_f64(), 5.0);
        assert_eq!(
            after_failure(&p, 1, 3, true, 0.0),
            AfterFailure::Retry(Duration::from_millis(500))
        );
        assert_eq!(after_failure(&p, 3, 3, true, 0.0), AfterFailure::Exhausted);
        assert_eq!(after_failure(&p, 1, 3, false, 0.0), AfterFailure::Exhausted);
    }

    #[test]
    fn leases_are_checked_in_order() {
        let now = 1_000;
        assert_eq!(
            check_lease(TaskStatus::Completed, Some("t"), Some(2_000), "t", now),
            Err(LeaseError::NotRunning(TaskStatus::Completed))
        );
        assert_eq!(
            check_lease(TaskStatus::Running, Some("t"), Some(2_000), "u", now),
            Err(LeaseError::Foreign)
        );
        assert_eq!(
            check_lease(TaskStatus::Running, Some("t"), Some(1_000), "t", now),
            Err(LeaseError::Expired)
        );
        assert_eq!(
            check_lease(TaskStatus::Running, Some("t"), Some(2_000), "t", now),
            Ok(())
        );
        assert_eq!(
            lease_until(0, Duration::from_secs(30), 10_000_000),
            10_000_000
        );
        assert_eq!(
            lease_until(0, Duration::from_secs(3), 10_000_000),
            3_000_000
        );
    }

    #[test]
    fn a_late_small_client_is_not_starved() {
        // A queues 10,000 tasks at virtual time 0; 500 have been claimed when B
        // arrives with 10: B's tasks start at the queue's current time.
        let (a_first, a_clock) = fair_keys(0, 0, 10_000);
        assert_eq!((a_first, a_clock), (0, 10_000));
        let (b_first, _) = fair_keys(0, 500, 10);
        assert_eq!(b_first, 500);
        // A's further tasks queue behind its own backlog.
        assert_eq!(fair_keys(a_clock, 500, 1).0, 10_000);
        // An idle client earns no credit.
        assert_eq!(fair_keys(3, 20_000, 1).0, 20_000);
    }

    proptest! {
        #[test]
        fn retry_delay_stays_within_bounds(initial in 0.0f64..100.0, extra in 0.0f64..1000.0, n in 1u32..200, j in 0.0f64..1.0) {
            let p = Backoff { initial_s: initial, max_s: initial + extra };
            let d = retry_delay(&p, n, j).as_secs_f64();
            prop_assert!(d <= p.max_s + 1e-9);
            prop_assert!(d >= 0.0);
        }

        #[test]
        fn status_names_round_trip(i in 0usize..8) {
            let s = TaskStatus::ALL[i];
            prop_assert_eq!(s.as_str().parse::<TaskStatus>().unwrap(), s);
        }
    }
}
