//! The LLM clients against fake providers that speak the real protocols. No
//! database needed; each case runs for Ollama and for the OpenAI-compatible API.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use waymark_llm::{Completion, Llm, LlmError, LlmSettings, Prompt, ProviderKind, json_object};

use crate::fake_llm::{FakeLlm, pieces};

const MODEL: &str = "fake-model";
const KEY: &str = "sk-test-123";

/// Generates `name::ollama` and `name::openai` from `async fn name(fake: FakeLlm)`.
macro_rules! both_providers {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn ollama() {
                    super::$name(crate::fake_llm::FakeLlm::ollama(super::MODEL).await).await;
                }
                #[tokio::test]
                async fn openai() {
                    super::$name(
                        crate::fake_llm::FakeLlm::openai(super::MODEL, Some(super::KEY)).await,
                    )
                    .await;
                }
            }
        )*
    };
}

both_providers!(
    whole_answer,
    streamed_answer,
    json_answer,
    bearer_key,
    error_status,
    unknown_model,
    timeout_waiting_for_the_answer,
    timeout_while_streaming,
    garbage_is_a_protocol_error,
    cut_answer_is_a_protocol_error,
    reply_from_the_request,
);

fn prompt() -> Prompt {
    Prompt {
        system: Some("You are terse.".into()),
        user: "Name three colours.".into(),
        temperature: Some(0.2),
        json: false,
        ..Default::default()
    }
}

/// Asks `llm`, collecting the pieces `on_chunk` receives.
async fn ask(llm: &Llm, prompt: &Prompt) -> (Result<Completion, LlmError>, Vec<String>) {
    let mut pieces = Vec::new();
    let mut collect = |piece: &str| pieces.push(piece.to_owned());
    let result = llm.complete(prompt, Some(&mut collect)).await;
    (result, pieces)
}

fn messages() -> Value {
    json!([
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name three colours."}
    ])
}

fn with_settings(fake: &FakeLlm, stream: bool, change: impl FnOnce(&mut LlmSettings)) -> Llm {
    let _ = fake.llm(stream); // installs the crypto provider
    let mut settings = fake.settings(stream);
    change(&mut settings);
    Llm::new(Some(settings))
}

async fn whole_answer(fake: FakeLlm) {
    fake.reply_with("Red, green and blue.");
    let (answer, pieces) = ask(&fake.llm(false), &prompt()).await;
    let answer = answer.unwrap();
    assert_eq!(answer.text, "Red, green and blue.");
    assert_eq!(pieces, vec!["Red, green and blue."]);
    let provenance = match fake.kind {
        ProviderKind::Ollama => "ollama:fake-model",
        ProviderKind::OpenAi => "openai:fake-model",
    };
    assert_eq!(answer.provenance, provenance);
    let requests = fake.recorded();
    assert_eq!(requests.len(), 1);
    let expected = match fake.kind {
        ProviderKind::Ollama => {
            assert_eq!(requests[0].path, "/api/chat");
            json!({"model": MODEL, "messages": messages(), "stream": false,
                   "options": {"temperature": 0.2}})
        }
        ProviderKind::OpenAi => {
            assert_eq!(requests[0].path, "/v1/chat/completions");
            json!({"model": MODEL, "messages": messages(), "stream": false, "temperature": 0.2})
        }
    };
    assert_eq!(requests[0].body, expected);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].header("content-type"), Some("application/json"));
}

async fn streamed_answer(fake: FakeLlm) {
    let reply = "Rouge, vert et bleu — ✓ déjà vu.";
    fake.reply_with(reply);
    let (answer, received) = ask(&fake.llm(true), &prompt()).await;
    assert_eq!(answer.unwrap().text, reply);
    assert_eq!(received, pieces(reply), "one piece per streamed message");
    assert!(received.len() >= 3, "{received:?}");
    let body = &fake.requests()[0];
    assert_eq!(body["stream"], json!(true));
    assert_eq!(body["messages"], messages());
    let accept = fake.recorded()[0].header("accept").map(str::to_owned);
    let expected = match fake.kind {
        ProviderKind::Ollama => "application/x-ndjson",
        ProviderKind::OpenAi => "text/event-stream",
    };
    assert_eq!(accept.as_deref(), Some(expected));

    // No callback: the same text.
    let answer = fake.llm(true).complete(&prompt(), None).await.unwrap();
    assert_eq!(answer.text, reply);

    // An empty answer streams only the end marker.
    fake.reply_with("");
    let (answer, received) = ask(&fake.llm(true), &prompt()).await;
    assert_eq!(answer.unwrap().text, "");
    assert!(received.is_empty());
}

async fn json_answer(fake: FakeLlm) {
    let prompt = Prompt {
        system: None,
        user: "Give me JSON.".into(),
        temperature: None,
        json: true,
        ..Default::default()
    };
    for stream in [false, true] {
        let answer = fake.llm(stream).complete(&prompt, None).await.unwrap();
        assert_eq!(
            json_object(&answer.text),
            Some(json!({"answer": "Fake answer to: Give me JSON."}))
        );
        let body = fake.requests().pop().unwrap();
        let user_only = json!([{"role": "user", "content": "Give me JSON."}]);
        let expected = match fake.kind {
            ProviderKind::Ollama => json!({"model": MODEL, "messages": user_only,
                                           "stream": stream, "format": "json"}),
            ProviderKind::OpenAi => json!({"model": MODEL, "messages": user_only,
                                           "stream": stream,
                                           "response_format": {"type": "json_object"}}),
        };
        assert_eq!(body, expected);
    }
}

async fn bearer_key(fake: FakeLlm) {
    match fake.kind {
        ProviderKind::OpenAi => {
            fake.llm(false).complete(&prompt(), None).await.unwrap();
            assert_eq!(fake.last_auth().as_deref(), Some("Bearer sk-test-123"));
            for key in [Some("sk-wrong"), None] {
                let llm = with_settings(&fake, true, |s| s.api_key = key.map(str::to_owned));
                let e = llm.complete(&prompt(), None).await.unwrap_err();
                assert!(matches!(e, LlmError::Status { status: 401, .. }), "{e:?}");
                assert!(e.to_string().contains("WAYMARK_LLM_API_KEY"), "{e}");
                assert!(!e.to_string().contains("sk-wrong"), "{e}");
                assert!(!e.is_retryable());
            }
            assert_eq!(fake.last_auth(), None);
        }
        ProviderKind::Ollama => {
            fake.llm(false).complete(&prompt(), None).await.unwrap();
            assert_eq!(fake.last_auth(), None);
            let llm = with_settings(&fake, false, |s| s.api_key = Some("proxy-key".into()));
            llm.complete(&prompt(), None).await.unwrap();
            assert_eq!(fake.last_auth().as_deref(), Some("Bearer proxy-key"));
            assert!(!format!("{llm:?}").contains("proxy-key"));
        }
    }
}

async fn error_status(fake: FakeLlm) {
    fake.fail_with_message(503, "the model is overloaded");
    for stream in [false, true] {
        let e = fake
            .llm(stream)
            .complete(&prompt(), None)
            .await
            .unwrap_err();
        let LlmError::Status {
            status,
            body,
            url,
            provider,
        } = &e
        else {
            panic!("{e:?}");
        };
        assert_eq!((*status, *provider), (503, fake.kind));
        assert_eq!(url, &fake.url);
        assert!(body.contains("the model is overloaded"), "{body}");
        assert_eq!(
            e.provider_message().as_deref(),
            Some("the model is overloaded")
        );
        let message = e.to_string();
        assert!(message.contains(&fake.url), "{message}");
        assert!(
            message.contains("answered 503: the model is overloaded; "),
            "{message}"
        );
        assert!(e.is_retryable());
    }
    fake.fail_with(400);
    let e = fake.llm(false).complete(&prompt(), None).await.unwrap_err();
    assert!(matches!(e, LlmError::Status { status: 400, .. }), "{e:?}");
    assert!(!e.is_retryable());
    fake.behave();
    fake.llm(true).complete(&prompt(), None).await.unwrap();
}

async fn unknown_model(fake: FakeLlm) {
    for stream in [false, true] {
        let llm = with_settings(&fake, stream, |s| s.model = "llama-nope".into());
        let e = llm.complete(&prompt(), None).await.unwrap_err();
        assert!(matches!(e, LlmError::Status { status: 404, .. }), "{e:?}");
        let message = e.to_string();
        let said = match fake.kind {
            ProviderKind::Ollama => "model \"llama-nope\" not found, try pulling it first",
            ProviderKind::OpenAi => "The model `llama-nope` does not exist",
        };
        assert!(message.contains(said), "{message}");
        assert!(message.contains("WAYMARK_LLM_MODEL"), "{message}");
        assert!(!e.is_retryable());
    }
}

async fn timeout_waiting_for_the_answer(fake: FakeLlm) {
    fake.delay(Duration::from_secs(30));
    for stream in [false, true] {
        let llm = with_settings(&fake, stream, |s| s.timeout = Duration::from_millis(300));
        let started = Instant::now();
        let e = llm.complete(&prompt(), None).await.unwrap_err();
        assert!(
            matches!(e, LlmError::Timeout(t) if t == Duration::from_millis(300)),
            "{e:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(e.to_string().contains("WAYMARK_LLM_TIMEOUT_S"), "{e}");
        assert!(e.is_retryable());
    }
    assert_eq!(
        fake.requests().len(),
        2,
        "requests are recorded before the wait"
    );
}

async fn timeout_while_streaming(fake: FakeLlm) {
    fake.frame_delay(Duration::from_millis(400));
    let llm = with_settings(&fake, true, |s| s.timeout = Duration::from_millis(1000));
    let started = Instant::now();
    let (result, received) = ask(&llm, &prompt()).await;
    let e = result.unwrap_err();
    assert!(matches!(e, LlmError::Timeout(_)), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        received.len() < pieces("Fake answer to: Name three colours.").len(),
        "{received:?}"
    );
}

async fn garbage_is_a_protocol_error(fake: FakeLlm) {
    fake.garbage();
    for stream in [false, true] {
        let e = fake
            .llm(stream)
            .complete(&prompt(), None)
            .await
            .unwrap_err();
        assert!(matches!(e, LlmError::Protocol(_)), "{e:?}");
        assert!(e.to_string().contains("WAYMARK_LLM_URL"), "{e}");
        assert!(!e.is_retryable());
    }
}

async fn cut_answer_is_a_protocol_error(fake: FakeLlm) {
    fake.cut_stream();
    let (result, received) = ask(&fake.llm(true), &prompt()).await;
    let e = result.unwrap_err();
    assert!(matches!(e, LlmError::Protocol(_)), "{e:?}");
    assert!(e.to_string().contains("before saying it was done"), "{e}");
    assert_eq!(
        received.concat(),
        "Fake answer to: Name three colours.",
        "the pieces before the cut were passed on"
    );
    let e = fake.llm(false).complete(&prompt(), None).await.unwrap_err();
    assert!(matches!(e, LlmError::Protocol(_)), "{e:?}");
}

async fn reply_from_the_request(fake: FakeLlm) {
    fake.set_reply(|request| {
        let n = request["messages"].as_array().map_or(0, Vec::len);
        format!("{n} messages, model {}", request["model"].as_str().unwrap())
    });
    let answer = fake.llm(true).complete(&prompt(), None).await.unwrap();
    assert_eq!(answer.text, "2 messages, model fake-model");
}

#[tokio::test]
async fn no_provider_is_not_configured() {
    let llm = Llm::new(None);
    assert!(llm.settings().is_none());
    let e = llm.complete(&prompt(), None).await.unwrap_err();
    assert!(matches!(e, LlmError::NotConfigured), "{e:?}");
    assert!(e.to_string().contains("WAYMARK_LLM_PROVIDER"));
}

#[tokio::test]
async fn unreachable_provider_is_a_transport_error() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    for provider in [ProviderKind::Ollama, ProviderKind::OpenAi] {
        let llm = Llm::new(Some(LlmSettings {
            provider,
            url: url.clone(),
            model: MODEL.into(),
            api_key: None,
            timeout: Duration::from_secs(5),
            stream: true,
        }));
        assert_eq!(llm.settings().unwrap().provider, provider);
        let e = llm.complete(&prompt(), None).await.unwrap_err();
        assert!(matches!(e, LlmError::Transport(_)), "{e:?}");
        assert!(e.to_string().contains(&url), "{e}");
        assert!(e.is_retryable());
    }
}

#[test]
fn json_object_in_answers() {
    assert_eq!(
        json_object("```json\n{\"title\": \"Plan\", \"steps\": [1, 2]}\n```"),
        Some(json!({"title": "Plan", "steps": [1, 2]}))
    );
    assert_eq!(
        json_object("Here is the plan: {\"title\": \"Plan {draft}\"}. Hope it helps!"),
        Some(json!({"title": "Plan {draft}"}))
    );
    assert_eq!(json_object("I cannot help with {that}."), None);
    assert_eq!(json_object("[{\"a\": 1}]"), Some(json!({"a": 1})));
}
