//! Fake LLM providers for tests: a small axum server on a random loopback port
//! that speaks the real wire protocol of Ollama (`POST /api/chat`, NDJSON
//! streams) or of the OpenAI chat completions API (`POST /v1/chat/completions`,
//! server-sent events), records every request, and misbehaves on demand.
//!
//! Streams are written as separate body frames with small pauses between them;
//! the first piece of text is cut in two across frames (in the middle of its
//! bytes, so possibly inside a UTF-8 character) and the last two messages share
//! one frame, so a client must buffer properly.
//!
//! ```ignore
//! let fake = FakeLlm::ollama("llama3.2").await;
//! fake.reply_with("Hello there");
//! let answer = fake.llm(true).complete(&prompt, None).await?;
//! assert_eq!(fake.requests()[0]["model"], "llama3.2");
//! ```
#![allow(dead_code)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use waymark_llm::{Llm, LlmSettings, ProviderKind};

/// Computes the reply text from the request's JSON body.
pub type ReplyFn = Arc<dyn Fn(&Value) -> String + Send + Sync>;

/// The fixed `created_at` / `created` the fake reports.
const CREATED_AT: &str = "2024-01-01T00:00:00.000000000Z";
const CREATED: u64 = 1_704_067_200;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Every header, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Value::Null` when it was not JSON).
    pub body: Value,
    /// The body as sent.
    pub raw: String,
}

impl RecordedRequest {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How the fake answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Misbehavior {
    /// Answers in the protocol.
    #[default]
    None,
    /// Answers this status with an error body in the provider's format.
    Fail { status: u16, message: String },
    /// Answers 200 with an HTML page instead of the protocol.
    Garbage,
    /// Ends the answer early: a stream stops before `done` / `[DONE]`, a whole
    /// answer stops in the middle of its JSON.
    Cut,
}

struct Behavior {
    reply: ReplyFn,
    misbehavior: Misbehavior,
    /// The wait before answering.
    delay: Duration,
    /// The wait before each frame of a stream.
    frame_delay: Duration,
}

struct Shared {
    kind: ProviderKind,
    model: String,
    api_key: Option<String>,
    behavior: Mutex<Behavior>,
    requests: Mutex<Vec<RecordedRequest>>,
}

/// A running fake provider. Stops when dropped.
pub struct FakeLlm {
    /// What to set as the provider URL: `http://127.0.0.1:PORT` for Ollama,
    /// `http://127.0.0.1:PORT/v1` for the OpenAI-compatible API.
    pub url: String,
    /// The one model the fake has; others get the provider's "model not found".
    pub model: String,
    pub kind: ProviderKind,
    /// The API key the fake requires (OpenAI only), if any.
    pub api_key: Option<String>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeLlm {
    /// A fake Ollama server that has `model`.
    pub async fn ollama(model: &str) -> FakeLlm {
        Self::start(ProviderKind::Ollama, model, None).await
    }

    /// A fake OpenAI-compatible API that has `model` and, when `api_key` is
    /// given, answers 401 to requests without `Authorization: Bearer <key>`.
    pub async fn openai(model: &str, api_key: Option<&str>) -> FakeLlm {
        Self::start(ProviderKind::OpenAi, model, api_key).await
    }

    async fn start(kind: ProviderKind, model: &str, api_key: Option<&str>) -> FakeLlm {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            kind,
            model: model.to_owned(),
            api_key: api_key.map(str::to_owned),
            behavior: Mutex::new(Behavior {
                reply: Arc::new(default_reply),
                misbehavior: Misbehavior::None,
                delay: Duration::ZERO,
                frame_delay: Duration::from_millis(5),
            }),
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let url = match kind {
            ProviderKind::Ollama => format!("http://{addr}"),
            ProviderKind::OpenAi => format!("http://{addr}/v1"),
        };
        FakeLlm {
            url,
            model: model.to_owned(),
            kind,
            api_key: api_key.map(str::to_owned),
            shared,
            task,
        }
    }

    /// Settings for this fake: its URL, model and key, a 10 s timeout.
    pub fn settings(&self, stream: bool) -> LlmSettings {
        LlmSettings {
            provider: self.kind,
            url: self.url.clone(),
            model: self.model.clone(),
            api_key: self.api_key.clone(),
            timeout: Duration::from_secs(10),
            stream,
        }
    }

    /// A client of this fake (installs the rustls crypto provider it needs).
    pub fn llm(&self, stream: bool) -> Llm {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Llm::new(Some(self.settings(stream)))
    }

    /// Replies with what `reply` makes of the request's JSON body.
    pub fn set_reply(&self, reply: impl Fn(&Value) -> String + Send + Sync + 'static) {
        self.behavior().reply = Arc::new(reply);
    }

    /// Replies `text` to every request.
    pub fn reply_with(&self, text: impl Into<String>) {
        let text = text.into();
        self.set_reply(move |_| text.clone());
    }

    /// Answers `status` with an error body in the provider's format.
    pub fn fail_with(&self, status: u16) {
        self.fail_with_message(status, &format!("fake failure with status {status}"));
    }

    /// Answers `status` with an error body carrying `message`.
    pub fn fail_with_message(&self, status: u16, message: &str) {
        self.behavior().misbehavior = Misbehavior::Fail {
            status,
            message: message.to_owned(),
        };
    }

    /// Answers 200 with something that is not the protocol.
    pub fn garbage(&self) {
        self.behavior().misbehavior = Misbehavior::Garbage;
    }

    /// Ends answers early (see [`Misbehavior::Cut`]).
    pub fn cut_stream(&self) {
        self.behavior().misbehavior = Misbehavior::Cut;
    }

    /// Answers in the protocol again.
    pub fn behave(&self) {
        self.behavior().misbehavior = Misbehavior::None;
    }

    /// Waits this long before answering (the request is recorded first).
    pub fn delay(&self, delay: Duration) {
        self.behavior().delay = delay;
    }

    /// Waits this long before each frame of a stream (default 5 ms).
    pub fn frame_delay(&self, delay: Duration) {
        self.behavior().frame_delay = delay;
    }

    /// The JSON bodies of every request so far, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        self.recorded().into_iter().map(|r| r.body).collect()
    }

    /// Every request so far, with method, path and headers.
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The `Authorization` header of the last request, if it had one.
    pub fn last_auth(&self) -> Option<String> {
        self.recorded()
            .last()
            .and_then(|r| r.header("authorization").map(str::to_owned))
    }

    fn behavior(&self) -> std::sync::MutexGuard<'_, Behavior> {
        self.shared.behavior.lock().unwrap()
    }
}

/// `Fake answer to: <user message>`, or `{"answer": ...}` when JSON was asked.
pub fn default_reply(request: &Value) -> String {
    let answer = format!("Fake answer to: {}", user_message(request));
    if wants_json(request) {
        json!({ "answer": answer }).to_string()
    } else {
        answer
    }
}

/// The content of the last user message of a chat request.
pub fn user_message(request: &Value) -> String {
    request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Whether a chat request asks for JSON (either protocol).
pub fn wants_json(request: &Value) -> bool {
    !request["format"].is_null()
        || matches!(
            request["response_format"]["type"].as_str(),
            Some("json_object" | "json_schema")
        )
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = String::from_utf8_lossy(&body).into_owned();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    shared.requests.lock().unwrap().push(RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: parsed.clone().unwrap_or(Value::Null),
        raw,
    });
    let (reply, misbehavior, delay, frame_delay) = {
        let b = shared.behavior.lock().unwrap();
        (
            b.reply.clone(),
            b.misbehavior.clone(),
            b.delay,
            b.frame_delay,
        )
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let kind = shared.kind;
    let route = match kind {
        ProviderKind::Ollama => "/api/chat",
        ProviderKind::OpenAi => "/v1/chat/completions",
    };
    if uri.path() != route {
        return match kind {
            // Ollama (Go's mux) answers unknown paths in plain text.
            ProviderKind::Ollama => (StatusCode::NOT_FOUND, "404 page not found").into_response(),
            ProviderKind::OpenAi => error(
                kind,
                404,
                &format!("Invalid URL ({method} {})", uri.path()),
                "invalid_request_error",
                None,
            ),
        };
    }
    if method != Method::POST {
        return match kind {
            ProviderKind::Ollama => {
                (StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed").into_response()
            }
            ProviderKind::OpenAi => error(
                kind,
                405,
                &format!("Invalid method for URL ({method} {})", uri.path()),
                "invalid_request_error",
                None,
            ),
        };
    }
    if let (ProviderKind::OpenAi, Some(key)) = (kind, &shared.api_key) {
        let expected = format!("Bearer {key}");
        match headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes)
        {
            Some(got) if got == expected.as_bytes() => {}
            Some(_) => {
                return error(
                    kind,
                    401,
                    "Incorrect API key provided. You can find your API key at \
                     https://platform.openai.com/account/api-keys.",
                    "invalid_request_error",
                    Some("invalid_api_key"),
                );
            }
            None => {
                return error(
                    kind,
                    401,
                    "You didn't provide an API key. You need to provide your API key in an \
                     Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    "invalid_request_error",
                    None,
                );
            }
        }
    }
    let Some(request) = parsed.filter(Value::is_object) else {
        let message = match kind {
            ProviderKind::Ollama => "invalid character looking for beginning of value",
            ProviderKind::OpenAi => {
                "We could not parse the JSON body of your request. (HINT: This likely means \
                 you aren't using your HTTP library correctly.)"
            }
        };
        return error(kind, 400, message, "invalid_request_error", None);
    };
    if let Misbehavior::Fail { status, message } = &misbehavior {
        return error(kind, *status, message, "server_error", None);
    }
    let model = request["model"].as_str().unwrap_or_default();
    if model != shared.model {
        return match kind {
            ProviderKind::Ollama => error(
                kind,
                404,
                &format!("model \"{model}\" not found, try pulling it first"),
                "",
                None,
            ),
            ProviderKind::OpenAi => error(
                kind,
                404,
                &format!("The model `{model}` does not exist"),
                "invalid_request_error",
                Some("model_not_found"),
            ),
        };
    }
    if misbehavior == Misbehavior::Garbage {
        return (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>\n",
        )
            .into_response();
    }
    // Ollama streams unless told not to; OpenAI only when asked.
    let stream = request["stream"]
        .as_bool()
        .unwrap_or(kind == ProviderKind::Ollama);
    let text = reply(&request);
    let cut = misbehavior == Misbehavior::Cut;
    if stream {
        streamed(kind, &shared.model, &text, cut, frame_delay)
    } else {
        whole(kind, &shared.model, &text, cut)
    }
}

/// An error answer in the provider's format.
fn error(
    kind: ProviderKind,
    status: u16,
    message: &str,
    kind_name: &str,
    code: Option<&str>,
) -> Response {
    let body = match kind {
        ProviderKind::Ollama => json!({ "error": message }),
        ProviderKind::OpenAi => json!({
            "error": { "message": message, "type": kind_name, "param": null, "code": code }
        }),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// A whole (not streamed) answer.
fn whole(kind: ProviderKind, model: &str, text: &str, cut: bool) -> Response {
    let body = match kind {
        ProviderKind::Ollama => json!({
            "model": model,
            "created_at": CREATED_AT,
            "message": { "role": "assistant", "content": text },
            "done_reason": "stop",
            "done": true,
            "total_duration": 1_000_000,
            "load_duration": 1_000,
            "prompt_eval_count": 10,
            "prompt_eval_duration": 1_000,
            "eval_count": 20,
            "eval_duration": 1_000
        }),
        ProviderKind::OpenAi => json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": text, "refusal": null },
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": { "prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30 },
            "system_fingerprint": "fp_fake"
        }),
    };
    let mut body = body.to_string();
    if cut {
        body.truncate(body.len() / 2);
    }
    let content_type = match kind {
        ProviderKind::Ollama => "application/json; charset=utf-8",
        ProviderKind::OpenAi => "application/json",
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// `text` in pieces of about a quarter each (at least two when it has two
/// characters or more).
pub fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(4).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// A streamed answer: the messages of the protocol, written as separate frames.
fn streamed(
    kind: ProviderKind,
    model: &str,
    text: &str,
    cut: bool,
    frame_delay: Duration,
) -> Response {
    let pieces = pieces(text);
    let mut messages: Vec<Vec<u8>> = Vec::new();
    match kind {
        ProviderKind::Ollama => {
            let line = |content: &str, done: bool| {
                let mut value = json!({
                    "model": model,
                    "created_at": CREATED_AT,
                    "message": { "role": "assistant", "content": content },
                    "done": done
                });
                if done {
                    let extra = json!({
                        "done_reason": "stop", "total_duration": 1_000_000,
                        "load_duration": 1_000, "prompt_eval_count": 10,
                        "prompt_eval_duration": 1_000, "eval_count": 20, "eval_duration": 1_000
                    });
                    value
                        .as_object_mut()
                        .unwrap()
                        .extend(extra.as_object().unwrap().clone());
                }
                format!("{value}\n").into_bytes()
            };
            messages.extend(pieces.iter().map(|p| line(p, false)));
            if !cut {
                messages.push(line("", true));
            }
        }
        ProviderKind::OpenAi => {
            let event = |delta: Value, finish: Value| {
                let chunk = json!({
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": CREATED,
                    "model": model,
                    "system_fingerprint": "fp_fake",
                    "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }]
                });
                format!("data: {chunk}\n\n").into_bytes()
            };
            messages.push(b": keep-alive\n\n".to_vec());
            messages.push(event(
                json!({ "role": "assistant", "content": "", "refusal": null }),
                Value::Null,
            ));
            messages.extend(
                pieces
                    .iter()
                    .map(|p| event(json!({ "content": p }), Value::Null)),
            );
            if !cut {
                messages.push(event(json!({}), json!("stop")));
                messages.push(b"data: [DONE]\n\n".to_vec());
            }
        }
    }
    let frames = frames(kind, messages);
    let body = futures::stream::iter(frames).then(move |frame| async move {
        tokio::time::sleep(frame_delay).await;
        Ok::<_, Infallible>(Bytes::from(frame))
    });
    let content_type = match kind {
        ProviderKind::Ollama => "application/x-ndjson",
        ProviderKind::OpenAi => "text/event-stream; charset=utf-8",
    };
    (
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response()
}

/// Groups messages into frames: the first message with text is cut in two in
/// the middle of its bytes, and the last two messages share a frame.
fn frames(kind: ProviderKind, messages: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let first_text = match kind {
        ProviderKind::Ollama => 0,
        // After the keep-alive comment and the role-only delta.
        ProviderKind::OpenAi => 2,
    };
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let count = messages.len();
    for (i, message) in messages.into_iter().enumerate() {
        if i == first_text && i + 1 < count {
            let (a, b) = message.split_at(message.len() / 2);
            frames.push(a.to_vec());
            frames.push(b.to_vec());
        } else if i + 1 == count && count > first_text + 2 {
            frames.last_mut().unwrap().extend(message);
        } else {
            frames.push(message);
        }
    }
    frames
}
