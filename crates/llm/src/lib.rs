//! LLM providers: Ollama's chat API and OpenAI-compatible chat completions,
//! spoken over `reqwest`, streaming included.
//!
//! [`Llm`] holds the HTTP client and the configured provider (or none: then
//! every call answers [`LlmError::NotConfigured`] and the caller falls back to
//! its deterministic templates). [`Llm::complete`] sends one [`Prompt`] and
//! returns the whole answer; with `stream` set it reads the provider's stream
//! and hands each piece to a callback as it arrives.
//!
//! | provider | request | streamed answer |
//! |---|---|---|
//! | `ollama` | `POST {url}/api/chat` | `application/x-ndjson`: one JSON object per line, the last with `"done": true` |
//! | `openai` | `POST {url}/chat/completions` | `text/event-stream`: `data: {chunk}` events, ending with `data: [DONE]` |
//!
//! The streams are parsed by two small pure parsers (`NdjsonParser`,
//! `SseParser`) that buffer across network chunks, so a line or an event may
//! arrive in any number of pieces. The configured timeout covers the whole call,
//! reading the stream included. Errors say what to do next; neither they nor
//! `Debug` ever show the API key.
//!
//! ```no_run
//! # async fn example() -> Result<(), waymark_llm::LlmError> {
//! use waymark_llm::{Llm, LlmSettings, Prompt, ProviderKind};
//! let llm = Llm::new(Some(LlmSettings {
//!     provider: ProviderKind::Ollama,
//!     url: "http://127.0.0.1:11434".into(),
//!     model: "llama3.2".into(),
//!     api_key: None,
//!     timeout: std::time::Duration::from_secs(60),
//!     stream: true,
//! }));
//! let prompt = Prompt { user: "Say hello".into(), ..Default::default() };
//! let mut print = |piece: &str| print!("{piece}");
//! let answer = llm.complete(&prompt, Some(&mut print)).await?;
//! assert_eq!(answer.provenance, "ollama:llama3.2");
//! # Ok(()) }
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Map, Value, json};

mod stream;

use stream::{StreamEvent, StreamParser};

/// An error with its sources, `outer: inner: innermost`.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

/// The largest answer read from a provider, in bytes.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// How much of an error body is read.
const MAX_ERROR_BYTES: usize = 64 * 1024;
/// How much of an error body is kept in [`LlmError::Status`], in characters.
const ERROR_BODY_CHARS: usize = 500;
/// How much of an unexpected answer is quoted in a protocol error, in characters.
const QUOTE_CHARS: usize = 120;

/// Which wire protocol the provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// Ollama's native chat API (`/api/chat`, NDJSON streams).
    Ollama,
    /// The OpenAI chat completions API, or any server compatible with it
    /// (`/chat/completions`, server-sent events).
    OpenAi,
}

impl ProviderKind {
    /// The name used in settings and provenance: `ollama` or `openai`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Ollama => "ollama",
            ProviderKind::OpenAi => "openai",
        }
    }

    /// The URL used when none is set.
    pub fn default_url(self) -> &'static str {
        match self {
            ProviderKind::Ollama => "http://127.0.0.1:11434",
            ProviderKind::OpenAi => "https://api.openai.com/v1",
        }
    }

    /// How messages name the provider.
    fn display_name(self) -> &'static str {
        match self {
            ProviderKind::Ollama => "Ollama",
            ProviderKind::OpenAi => "the OpenAI-compatible API",
        }
    }

    /// What `WAYMARK_LLM_URL` should point at, for error messages.
    fn url_hint(self) -> &'static str {
        match self {
            ProviderKind::Ollama => "an Ollama server's root (e.g. http://127.0.0.1:11434)",
            ProviderKind::OpenAi => {
                "an OpenAI-compatible API base ending in /v1 (e.g. https://api.openai.com/v1)"
            }
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider name that is neither `ollama` nor `openai`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown LLM provider {0:?}: use \"ollama\" or \"openai\"")]
pub struct UnknownProvider(pub String);

impl FromStr for ProviderKind {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ollama" => Ok(ProviderKind::Ollama),
            "openai" => Ok(ProviderKind::OpenAi),
            _ => Err(UnknownProvider(s.to_owned())),
        }
    }
}

/// Which provider to ask, and how.
#[derive(Clone)]
pub struct LlmSettings {
    pub provider: ProviderKind,
    /// Ollama: the server root, e.g. `http://127.0.0.1:11434` (the client posts
    /// to `{url}/api/chat`). OpenAI-compatible: the API base including `/v1`,
    /// e.g. `https://api.openai.com/v1` (posts to `{url}/chat/completions`).
    pub url: String,
    pub model: String,
    /// Sent as `Authorization: Bearer` (OpenAI-compatible; also to Ollama if set).
    pub api_key: Option<String>,
    /// The whole call, including reading a stream.
    pub timeout: Duration,
    /// Ask the provider to stream, and read the stream.
    pub stream: bool,
}

impl fmt::Debug for LlmSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmSettings")
            .field("provider", &self.provider)
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("timeout", &self.timeout)
            .field("stream", &self.stream)
            .finish()
    }
}

impl LlmSettings {
    /// The URL requests go to.
    fn endpoint(&self) -> String {
        let base = self.url.trim().trim_end_matches('/');
        match self.provider {
            ProviderKind::Ollama => format!("{base}/api/chat"),
            ProviderKind::OpenAi => format!("{base}/chat/completions"),
        }
    }

    /// `ollama:<model>` or `openai:<model>`.
    fn provenance(&self) -> String {
        format!("{}:{}", self.provider, self.model)
    }
}

/// What to ask.
#[derive(Debug, Clone, Default)]
pub struct Prompt {
    pub system: Option<String>,
    /// Earlier turns of a conversation, oldest first, between the system
    /// message and `user`.
    pub history: Vec<Turn>,
    pub user: String,
    pub temperature: Option<f64>,
    /// Ask for a JSON object (Ollama `format: "json"`, OpenAI
    /// `response_format: {type: json_object}`).
    pub json: bool,
}

/// One earlier turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// `user` or `assistant`.
    pub role: &'static str,
    pub content: String,
}

/// A provider's whole answer.
#[derive(Debug, Clone)]
pub struct Completion {
    pub text: String,
    /// `ollama:<model>` or `openai:<model>`: the provenance strings of the product.
    pub provenance: String,
}

/// A call to the provider that did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// No provider is configured.
    #[error(
        "no LLM provider is configured; set WAYMARK_LLM_PROVIDER (ollama or openai) and \
         WAYMARK_LLM_MODEL to use one"
    )]
    NotConfigured,
    /// The call, reading the answer included, took longer than the timeout.
    #[error(
        "the LLM provider did not finish answering within {0:?}; raise WAYMARK_LLM_TIMEOUT_S, \
         use a smaller model, or check that the provider is not overloaded"
    )]
    Timeout(Duration),
    /// The provider answered an error status, or reported an error inside a
    /// stream it had started with a success status (then `status` is that
    /// success status).
    #[error("{}", status_message(.provider, .url, .status, .body))]
    Status {
        provider: ProviderKind,
        /// The configured URL.
        url: String,
        status: u16,
        /// The first 500 characters of the error body.
        body: String,
    },
    /// The answer is not the provider's protocol (or the stream ended before
    /// the provider said it was done).
    #[error("{0}")]
    Protocol(String),
    /// The provider could not be reached, or the connection broke.
    #[error("{0}")]
    Transport(String),
}

impl LlmError {
    /// Whether trying the same call again later may succeed: timeouts, broken
    /// connections, rate limits, server errors and errors reported inside a
    /// stream. A missing provider, a refused request or a wrong protocol will
    /// fail again.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Timeout(_) | LlmError::Transport(_) => true,
            LlmError::Status { status, .. } => {
                matches!(*status, 200..=299 | 408 | 409 | 425 | 429 | 500..)
            }
            LlmError::NotConfigured | LlmError::Protocol(_) => false,
        }
    }

    /// The provider's own message, for [`LlmError::Status`].
    pub fn provider_message(&self) -> Option<String> {
        match self {
            LlmError::Status { body, .. } => Some(error_message(body)),
            _ => None,
        }
    }
}

/// The sentence for [`LlmError::Status`].
fn status_message(provider: &ProviderKind, url: &str, status: &u16, body: &str) -> String {
    let (provider, status) = (*provider, *status);
    let name = provider.display_name();
    let message = error_message(body);
    let message = message.trim_end_matches('.');
    let next = match status {
        200..=299 => {
            return format!(
                "{name} at {url} reported an error while answering: {message}; retry, or look \
                 at the provider's logs"
            );
        }
        401 | 403 => "check WAYMARK_LLM_API_KEY".to_owned(),
        404 => match provider {
            ProviderKind::Ollama => "pull the model (`ollama pull <model>`) or set \
                                     WAYMARK_LLM_MODEL to one the server has; check \
                                     WAYMARK_LLM_URL if the server itself is not there"
                .to_owned(),
            ProviderKind::OpenAi => "set WAYMARK_LLM_MODEL to a model the API offers; check \
                                     that WAYMARK_LLM_URL is the API base ending in /v1"
                .to_owned(),
        },
        408 | 409 | 425 | 429 => {
            "the provider is busy or rate limiting; retry later, or raise its limits".to_owned()
        }
        400 | 422 => "the provider refused the request; check that WAYMARK_LLM_MODEL is a chat \
                      model that supports what was asked (e.g. JSON output)"
            .to_owned(),
        500.. => "the provider failed; retry later, or look at its logs".to_owned(),
        _ => format!(
            "check WAYMARK_LLM_URL (it should be {}), WAYMARK_LLM_MODEL and WAYMARK_LLM_API_KEY",
            provider.url_hint()
        ),
    };
    format!("{name} at {url} answered {status}: {message}; {next}")
}

/// The message inside a provider's error body: Ollama's `{"error": "..."}`,
/// OpenAI's `{"error": {"message": "..."}}`, else the body itself.
fn error_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body.trim()).ok();
    let found = parsed.as_ref().and_then(|v| {
        let error = v.get("error");
        error
            .and_then(Value::as_str)
            .or_else(|| error?.get("message")?.as_str())
            .or_else(|| v.get("message")?.as_str())
            .map(str::to_owned)
    });
    match found {
        Some(message) => message,
        None if body.trim().is_empty() => "(no message)".to_owned(),
        None => quote(body.trim()),
    }
}

/// The first characters of `text`, for messages.
pub(crate) fn quote(text: &str) -> String {
    let mut out: String = text.chars().take(QUOTE_CHARS).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// The LLM client: an HTTP client and the configured provider, if any. Cheap
/// to clone.
#[derive(Clone)]
pub struct Llm {
    inner: Option<Arc<Provider>>,
}

impl fmt::Debug for Llm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Llm")
            .field("settings", &self.settings())
            .finish()
    }
}

/// A configured provider and the client that talks to it.
struct Provider {
    settings: LlmSettings,
    /// The client, or why it could not be built.
    http: Result<reqwest::Client, String>,
}

impl Llm {
    /// A client for the provider in `settings`, or for none. With a provider,
    /// this builds a `reqwest` client, which needs a process-wide rustls crypto
    /// provider installed (the binary installs `ring` at start).
    pub fn new(settings: Option<LlmSettings>) -> Self {
        let inner = settings.map(|settings| {
            let http = reqwest::Client::builder()
                .connect_timeout(settings.timeout)
                .user_agent(concat!("waymark/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| {
                    format!(
                        "cannot build the HTTP client for the LLM provider: {}",
                        error_chain(&e)
                    )
                });
            Arc::new(Provider { settings, http })
        });
        Self { inner }
    }

    /// The configured provider, if any.
    pub fn settings(&self) -> Option<&LlmSettings> {
        self.inner.as_ref().map(|p| &p.settings)
    }

    /// Asks the configured provider. `on_chunk` (if given) receives each piece
    /// of text as it streams in (once with the whole text when not streaming).
    /// `Err(LlmError::NotConfigured)` when there is no provider.
    pub async fn complete(
        &self,
        prompt: &Prompt,
        on_chunk: Option<&mut (dyn FnMut(&str) + Send)>,
    ) -> Result<Completion, LlmError> {
        let Some(provider) = &self.inner else {
            return Err(LlmError::NotConfigured);
        };
        let settings = &provider.settings;
        let started = Instant::now();
        let result = tokio::time::timeout(settings.timeout, provider.call(prompt, on_chunk))
            .await
            .unwrap_or(Err(LlmError::Timeout(settings.timeout)));
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(answer) => tracing::debug!(
                provider = %settings.provider,
                model = %settings.model,
                stream = settings.stream,
                elapsed_ms,
                chars = answer.text.chars().count(),
                "llm: answered"
            ),
            Err(e) => tracing::debug!(
                provider = %settings.provider,
                model = %settings.model,
                stream = settings.stream,
                elapsed_ms,
                error = %e,
                "llm: failed"
            ),
        }
        result
    }
}

impl Provider {
    /// One call, without the timeout.
    async fn call(
        &self,
        prompt: &Prompt,
        on_chunk: Option<&mut (dyn FnMut(&str) + Send)>,
    ) -> Result<Completion, LlmError> {
        let s = &self.settings;
        let http = self
            .http
            .as_ref()
            .map_err(|e| LlmError::Transport(e.clone()))?;
        let accept = match (s.stream, s.provider) {
            (false, _) => "application/json",
            (true, ProviderKind::Ollama) => "application/x-ndjson",
            (true, ProviderKind::OpenAi) => "text/event-stream",
        };
        let mut request = http
            .post(s.endpoint())
            .header(ACCEPT, accept)
            .json(&request_body(s, prompt));
        if let Some(key) = &s.api_key {
            request = request.bearer_auth(key);
        }
        let mut response = request.send().await.map_err(|e| {
            LlmError::Transport(format!(
                "cannot reach {} at {}: {}; check that it runs and that WAYMARK_LLM_URL is {}",
                s.provider.display_name(),
                s.url,
                error_chain(&e),
                s.provider.url_hint()
            ))
        })?;
        let status = response.status();
        if !status.is_success() {
            let body = read_error_body(&mut response).await;
            return Err(self.status_error(status.as_u16(), &body));
        }
        let mime = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        // A server that ignores `stream` answers one JSON document; take it.
        let text = if s.stream && mime != "application/json" {
            self.read_stream(&mut response, status.as_u16(), &mime, on_chunk)
                .await?
        } else {
            let body = self.read_body(&mut response).await?;
            let text = self.whole_answer(status.as_u16(), &body)?;
            if let Some(f) = on_chunk {
                f(&text);
            }
            text
        };
        Ok(Completion {
            text,
            provenance: s.provenance(),
        })
    }

    /// Reads a whole success body, up to [`MAX_ANSWER_BYTES`].
    async fn read_body(&self, response: &mut reqwest::Response) -> Result<Vec<u8>, LlmError> {
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.broken(&e))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_ANSWER_BYTES {
                return Err(self.too_large());
            }
        }
        Ok(body)
    }

    /// Reads a stream to its end marker, passing each piece of text on.
    async fn read_stream(
        &self,
        response: &mut reqwest::Response,
        status: u16,
        mime: &str,
        mut on_chunk: Option<&mut (dyn FnMut(&str) + Send)>,
    ) -> Result<String, LlmError> {
        let mut parser = StreamParser::new(self.settings.provider);
        let mut text = String::new();
        let mut read = 0usize;
        // The start of the body, to quote when it holds no message at all.
        let mut head = Vec::new();
        loop {
            let chunk = response.chunk().await.map_err(|e| self.broken(&e))?;
            let events = match &chunk {
                Some(bytes) => {
                    if head.len() < QUOTE_CHARS * 4 {
                        head.extend_from_slice(bytes);
                    }
                    read += bytes.len();
                    if read > MAX_ANSWER_BYTES {
                        return Err(self.too_large());
                    }
                    parser.push(bytes)
                }
                None => parser.finish(),
            }
            .map_err(|e| self.not_protocol(&e))?;
            for event in events {
                match event {
                    StreamEvent::Text(piece) => {
                        text.push_str(&piece);
                        if let Some(f) = &mut on_chunk {
                            f(&piece);
                        }
                    }
                    StreamEvent::Done => return Ok(text),
                    StreamEvent::Error(body) => return Err(self.status_error(status, &body)),
                }
            }
            if chunk.is_none() && parser.messages() == 0 {
                let head = String::from_utf8_lossy(&head);
                return Err(self.not_protocol(&format!(
                    "the answer ({}) holds no {}: {}",
                    if mime.is_empty() {
                        "no content type"
                    } else {
                        mime
                    },
                    match self.settings.provider {
                        ProviderKind::Ollama => "JSON lines",
                        ProviderKind::OpenAi => "server-sent events",
                    },
                    quote(head.trim())
                )));
            }
            if chunk.is_none() {
                let s = &self.settings;
                return Err(LlmError::Protocol(format!(
                    "{} at {} ended its stream before saying it was done (after {} characters); \
                     retry, or look at the provider's logs",
                    s.provider.display_name(),
                    s.url,
                    text.chars().count()
                )));
            }
        }
    }

    /// The text of a whole (not streamed) answer.
    fn whole_answer(&self, status: u16, body: &[u8]) -> Result<String, LlmError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| self.not_protocol("the answer is not UTF-8 text"))?;
        let value: Value = serde_json::from_str(text).map_err(|e| {
            self.not_protocol(&format!(
                "the answer is not JSON ({e}): {}",
                quote(text.trim())
            ))
        })?;
        if value.get("error").is_some_and(|e| !e.is_null()) {
            return Err(self.status_error(status, text));
        }
        let content = match self.settings.provider {
            ProviderKind::Ollama => value.pointer("/message/content"),
            ProviderKind::OpenAi => value.pointer("/choices/0/message/content"),
        };
        match content {
            Some(Value::String(content)) => Ok(content.clone()),
            _ => Err(self.not_protocol(&format!(
                "the answer has no {}: {}",
                match self.settings.provider {
                    ProviderKind::Ollama => "message.content",
                    ProviderKind::OpenAi => "choices[0].message.content",
                },
                quote(text.trim())
            ))),
        }
    }

    fn status_error(&self, status: u16, body: &str) -> LlmError {
        LlmError::Status {
            provider: self.settings.provider,
            url: self.settings.url.clone(),
            status,
            body: body.chars().take(ERROR_BODY_CHARS).collect(),
        }
    }

    fn not_protocol(&self, detail: &str) -> LlmError {
        let s = &self.settings;
        LlmError::Protocol(format!(
            "{} at {} did not answer in its protocol ({detail}); check that WAYMARK_LLM_URL is {}",
            s.provider.display_name(),
            s.url,
            s.provider.url_hint()
        ))
    }

    fn broken(&self, e: &reqwest::Error) -> LlmError {
        let s = &self.settings;
        LlmError::Transport(format!(
            "the connection to {} at {} broke while reading the answer: {}; retry",
            s.provider.display_name(),
            s.url,
            error_chain(e)
        ))
    }

    fn too_large(&self) -> LlmError {
        self.not_protocol(&format!(
            "the answer is larger than {} MiB",
            MAX_ANSWER_BYTES / 1024 / 1024
        ))
    }
}

/// The start of an error body; what cannot be read is left out.
async fn read_error_body(response: &mut reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BYTES {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// The JSON body of a chat request, in the provider's protocol.
fn request_body(settings: &LlmSettings, prompt: &Prompt) -> Value {
    let mut messages = Vec::new();
    if let Some(system) = &prompt.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    for turn in &prompt.history {
        messages.push(json!({"role": turn.role, "content": turn.content}));
    }
    messages.push(json!({"role": "user", "content": prompt.user}));
    let mut body = Map::new();
    body.insert("model".into(), settings.model.clone().into());
    body.insert("messages".into(), messages.into());
    body.insert("stream".into(), settings.stream.into());
    match settings.provider {
        ProviderKind::Ollama => {
            if prompt.json {
                body.insert("format".into(), "json".into());
            }
            if let Some(t) = prompt.temperature {
                body.insert("options".into(), json!({"temperature": t}));
            }
        }
        ProviderKind::OpenAi => {
            if let Some(t) = prompt.temperature {
                body.insert("temperature".into(), t.into());
            }
            if prompt.json {
                body.insert("response_format".into(), json!({"type": "json_object"}));
            }
        }
    }
    Value::Object(body)
}

/// Extracts the JSON object from a model's answer: the whole text, or the first
/// `{...}` inside ``` fences, or else in surrounding prose. `None` if there is
/// none.
pub fn json_object(text: &str) -> Option<Value> {
    if let Ok(value @ Value::Object(_)) = serde_json::from_str(text.trim()) {
        return Some(value);
    }
    fenced_blocks(text)
        .into_iter()
        .find_map(first_object)
        .or_else(|| first_object(text))
}

/// The insides of ``` fences, without the language tag.
fn fenced_blocks(text: &str) -> Vec<&str> {
    let parts: Vec<&str> = text.split("```").collect();
    // Odd parts are inside fences, if a fence closes them.
    (1..parts.len().saturating_sub(1))
        .step_by(2)
        .map(|i| parts[i])
        .map(|block| match block.split_once('\n') {
            Some((tag, rest)) if !tag.contains('{') => rest,
            _ => block,
        })
        .collect()
}

/// The first `{` in `text` where a whole JSON object starts.
fn first_object(text: &str) -> Option<Value> {
    text.match_indices('{').find_map(|(at, _)| {
        let mut values = serde_json::Deserializer::from_str(&text[at..]).into_iter::<Value>();
        match values.next() {
            Some(Ok(value @ Value::Object(_))) => Some(value),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{NdjsonParser, SseParser};

    fn text(piece: &str) -> StreamEvent {
        StreamEvent::Text(piece.to_owned())
    }

    /// Feeds `body` to a fresh parser in every possible two-way split, and
    /// byte by byte, and checks each gives `expected`.
    fn check_splits(provider: ProviderKind, body: &[u8], expected: &[StreamEvent]) {
        let run = |pieces: &[&[u8]]| {
            let mut parser = StreamParser::new(provider);
            let mut events = Vec::new();
            for piece in pieces {
                events.extend(parser.push(piece).unwrap());
            }
            events.extend(parser.finish().unwrap());
            events
        };
        for at in 0..=body.len() {
            assert_eq!(run(&[&body[..at], &body[at..]]), expected, "split at {at}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(run(&bytes), expected, "byte by byte");
    }

    #[test]
    fn ndjson_pieces_and_done_across_any_split() {
        let body = concat!(
            r#"{"model":"m","message":{"role":"assistant","content":"Hel"},"done":false}"#,
            "\n",
            r#"{"model":"m","message":{"role":"assistant","content":"lo é"},"done":false}"#,
            "\r\n\n",
            r#"{"model":"m","message":{"role":"assistant","content":""},"done":true,"eval_count":3}"#,
            "\n"
        );
        check_splits(
            ProviderKind::Ollama,
            body.as_bytes(),
            &[text("Hel"), text("lo é"), StreamEvent::Done],
        );
    }

    #[test]
    fn ndjson_last_line_without_newline_errors_and_garbage() {
        let body = r#"{"message":{"content":"a"},"done":true}"#;
        check_splits(
            ProviderKind::Ollama,
            body.as_bytes(),
            &[text("a"), StreamEvent::Done],
        );
        let error = r#"{"error":"model crashed"}"#;
        check_splits(
            ProviderKind::Ollama,
            format!("{error}\n").as_bytes(),
            &[StreamEvent::Error(error.into())],
        );
        let mut p = NdjsonParser::default();
        assert!(p.push(b"<html>\n").unwrap_err().contains("not JSON"));
        let mut p = NdjsonParser::default();
        assert!(
            p.push(b"{\"status\":\"ok\"}\n")
                .unwrap_err()
                .contains("done")
        );
        let mut p = NdjsonParser::default();
        assert!(p.push(b"\xff\xfe\n").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn sse_events_comments_crlf_and_done_across_any_split() {
        let body = concat!(
            ": keep-alive\r\n\r\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}]}\r\n\r\n",
            "event: message\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
            "data:{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo é\"},\"finish_reason\":null}]}\r\r",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"total_tokens\":3}}\n\n",
            "data: [DONE]\n\n"
        );
        check_splits(
            ProviderKind::OpenAi,
            body.as_bytes(),
            &[text("Hel"), text("lo é"), StreamEvent::Done],
        );
    }

    #[test]
    fn sse_multiline_data_last_event_without_blank_line_and_errors() {
        let body = "data: {\"choices\":\ndata: [{\"delta\":{\"content\":\"x\"}}]}\n\ndata: [DONE]";
        check_splits(
            ProviderKind::OpenAi,
            body.as_bytes(),
            &[text("x"), StreamEvent::Done],
        );
        let error = r#"{"error":{"message":"overloaded","type":"server_error"}}"#;
        check_splits(
            ProviderKind::OpenAi,
            format!("data: {error}\n\n").as_bytes(),
            &[StreamEvent::Error(error.into())],
        );
        // Lines that are not SSE fields are ignored; the stream never ends.
        check_splits(ProviderKind::OpenAi, b"<html>\n<body>oops</body>\n", &[]);
        let mut p = SseParser::default();
        assert!(p.push(b"data: nope\n\n").unwrap_err().contains("not JSON"));
        let mut p = SseParser::default();
        assert!(p.push(b"data: {}\n\n").unwrap_err().contains("choices"));
    }

    #[test]
    fn request_bodies_follow_each_protocol() {
        let mut settings = LlmSettings {
            provider: ProviderKind::Ollama,
            url: "http://h:1/".into(),
            model: "m".into(),
            api_key: Some("sk-secret".into()),
            timeout: Duration::from_secs(1),
            stream: false,
        };
        let prompt = Prompt {
            system: Some("sys".into()),
            history: vec![
                Turn {
                    role: "user",
                    content: "before".into(),
                },
                Turn {
                    role: "assistant",
                    content: "answered".into(),
                },
            ],
            user: "hi".into(),
            temperature: Some(0.5),
            json: true,
        };
        assert_eq!(settings.endpoint(), "http://h:1/api/chat");
        assert_eq!(
            request_body(&settings, &prompt),
            json!({"model": "m", "stream": false, "format": "json",
                   "options": {"temperature": 0.5},
                   "messages": [{"role": "system", "content": "sys"},
                                {"role": "user", "content": "before"},
                                {"role": "assistant", "content": "answered"},
                                {"role": "user", "content": "hi"}]})
        );
        assert!(!format!("{settings:?}").contains("sk-secret"));
        settings.provider = ProviderKind::OpenAi;
        settings.stream = true;
        assert_eq!(settings.endpoint(), "http://h:1/chat/completions");
        assert_eq!(
            request_body(
                &settings,
                &Prompt {
                    user: "hi".into(),
                    ..Prompt::default()
                }
            ),
            json!({"model": "m", "stream": true,
                   "messages": [{"role": "user", "content": "hi"}]})
        );
        assert_eq!(
            request_body(&settings, &prompt)["response_format"],
            json!({"type": "json_object"})
        );
        assert_eq!(request_body(&settings, &prompt)["temperature"], json!(0.5));
        assert_eq!(settings.provenance(), "openai:m");
    }

    #[test]
    fn complete_can_run_on_any_thread() {
        fn assert_send<T: Send>(_: &T) {}
        let llm = Llm::new(None);
        let prompt = Prompt::default();
        let mut sink = |_: &str| {};
        let call = llm.complete(&prompt, Some(&mut sink));
        assert_send(&call);
        assert_send(&llm);
    }

    #[test]
    fn provider_names() {
        assert_eq!("ollama".parse(), Ok(ProviderKind::Ollama));
        assert_eq!(" OpenAI ".parse(), Ok(ProviderKind::OpenAi));
        let e = "anthropic".parse::<ProviderKind>().unwrap_err().to_string();
        assert!(e.contains("anthropic") && e.contains("ollama") && e.contains("openai"));
    }

    #[test]
    fn status_messages_name_the_provider_and_what_to_do() {
        let e = LlmError::Status {
            provider: ProviderKind::Ollama,
            url: "http://h:1".into(),
            status: 404,
            body: r#"{"error":"model \"x\" not found, try pulling it first"}"#.into(),
        };
        let m = e.to_string();
        assert!(
            m.starts_with("Ollama at http://h:1 answered 404: model \"x\" not found"),
            "{m}"
        );
        assert!(m.contains("WAYMARK_LLM_MODEL"), "{m}");
        assert!(!e.is_retryable());
        let e = LlmError::Status {
            provider: ProviderKind::OpenAi,
            url: "http://h:1/v1".into(),
            status: 429,
            body: r#"{"error":{"message":"Rate limit reached"}}"#.into(),
        };
        assert!(e.to_string().contains("answered 429: Rate limit reached"));
        assert_eq!(e.provider_message().as_deref(), Some("Rate limit reached"));
        assert!(e.is_retryable());
        assert_eq!(error_message("  "), "(no message)");
        assert_eq!(error_message("Bad Gateway"), "Bad Gateway");
    }

    #[test]
    fn json_object_finds_the_object() {
        let want = json!({"a": 1, "b": "}{"});
        assert_eq!(json_object(r#" {"a":1,"b":"}{"} "#), Some(want.clone()));
        assert_eq!(
            json_object("Here you go:\n```json\n{\"a\": 1, \"b\": \"}{\"}\n```\nDone."),
            Some(want.clone())
        );
        assert_eq!(
            json_object("Use {name} style.\n```\n{\"a\":1,\"b\":\"}{\"}\n```"),
            Some(want.clone())
        );
        assert_eq!(
            json_object("Sure! The result is {\"a\": 1, \"b\": \"}{\"} as asked."),
            Some(want)
        );
        assert_eq!(json_object("[1, 2]"), None);
        assert_eq!(json_object("no json here {oops}"), None);
        assert_eq!(json_object("```json\n{\"unclosed\": \n```"), None);
        assert_eq!(json_object(""), None);
    }
}
