//! What can go wrong talking to a Waymark server, rendered for a person.

use std::fmt;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use crate::render::plain;

/// An error from a remote command. `Display` is the readable, possibly multi-line
/// form meant for a terminal; the binary prints it as `error: {err}` and exits with
/// [`CliError::exit_code`].
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered with an error status (usually with problem details).
    #[error("{}", render_api_error(*status, problem.as_deref(), body))]
    Api {
        status: StatusCode,
        /// The RFC 9457 body, when the server sent one.
        problem: Option<Box<Problem>>,
        /// The raw body, shown when it was not problem details.
        body: String,
    },
    /// The server could not be reached at all.
    #[error(
        "cannot reach the Waymark server at {server}: {cause}\nhint: is `waymark serve` running at {server}?"
    )]
    Connect { server: String, cause: String },
    /// The request failed on the way (timeout, broken connection, bad URL ...).
    #[error("request to {server} failed: {cause}")]
    Transport { server: String, cause: String },
    /// The server answered successfully but not with what the API promises.
    #[error("unexpected response from the server: {0}")]
    UnexpectedResponse(String),
    /// Local input was rejected before anything was sent.
    #[error("{0}")]
    Input(String),
    /// Work the command waited for did not succeed.
    #[error("{0}")]
    Failed(String),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// The process exit code for this error: 1 when the server refused or the
    /// response was wrong, 2 for local usage mistakes and unreachable servers.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Api { .. }
            | CliError::UnexpectedResponse(_)
            | CliError::Output(_)
            | CliError::Failed(_) => 1,
            CliError::Connect { .. } | CliError::Transport { .. } | CliError::Input(_) => 2,
        }
    }

    /// The problem details the server sent, if any.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            CliError::Api { problem, .. } => problem.as_deref(),
            _ => None,
        }
    }

    /// The HTTP status the server answered with, if it answered with an error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            CliError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn input(message: impl fmt::Display) -> Self {
        CliError::Input(message.to_string())
    }

    /// Classifies a reqwest failure: refused connections get the "is it running" hint.
    pub(crate) fn from_reqwest(server: &str, err: reqwest::Error) -> Self {
        let server = server.to_owned();
        if err.is_connect() {
            CliError::Connect {
                server,
                cause: innermost_cause(&err),
            }
        } else if err.is_decode() {
            CliError::UnexpectedResponse(innermost_cause(&err))
        } else {
            CliError::Transport {
                server,
                cause: innermost_cause(&err),
            }
        }
    }
}

/// The deepest message in an error chain: "Connection refused (os error 111)"
/// says more than reqwest's "error sending request".
fn innermost_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// RFC 9457 problem details as the Waymark server sends them.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub title: Option<String>,
    pub status: Option<u16>,
    pub detail: Option<String>,
    /// Stable snake_case error code.
    pub code: Option<String>,
    /// Field-level errors, each pointing into the request body.
    #[serde(default)]
    pub errors: Vec<FieldError>,
    /// What would have been accepted (e.g. the allowed transitions).
    #[serde(default)]
    pub allowed: Vec<Value>,
    /// Why something is not possible (e.g. gating reasons).
    #[serde(default)]
    pub reasons: Vec<Value>,
}

/// One field-level error: a JSON pointer into the request and what is wrong there.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FieldError {
    #[serde(default)]
    pub pointer: String,
    #[serde(default)]
    pub message: String,
}

fn render_api_error(status: StatusCode, problem: Option<&Problem>, body: &str) -> String {
    let reason = status.canonical_reason().unwrap_or("Error");
    let mut out = format!("{} {reason}", status.as_u16());
    let detail = match problem {
        Some(p) => p
            .detail
            .clone()
            .or_else(|| p.title.clone().filter(|title| title != reason)),
        None => Some(body.trim().chars().take(500).collect::<String>()).filter(|b| !b.is_empty()),
    };
    if let Some(detail) = detail {
        out.push_str(" — ");
        out.push_str(&detail);
    }
    if let Some(p) = problem {
        for e in &p.errors {
            let pointer = if e.pointer.is_empty() {
                "/"
            } else {
                &e.pointer
            };
            out.push_str(&format!("\n  {pointer}: {}", e.message));
        }
        for reason in &p.reasons {
            out.push_str(&format!("\n  - {}", plain(reason)));
        }
        if !p.allowed.is_empty() {
            let allowed: Vec<String> = p.allowed.iter().map(plain).collect();
            out.push_str(&format!("\nallowed: {}", allowed.join(", ")));
        }
    }
    let hint = match status {
        StatusCode::UNAUTHORIZED => Some("set WAYMARK_TOKEN or pass --token"),
        StatusCode::FORBIDDEN => Some("the token is valid but not allowed to do this"),
        StatusCode::PRECONDITION_FAILED => Some(
            "the artifact changed since that version; check `waymark artifact get ID` and retry",
        ),
        _ => None,
    };
    if let Some(hint) = hint {
        out.push_str("\nhint: ");
        out.push_str(hint);
    }
    out
}
