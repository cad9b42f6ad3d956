//! A contract PDF becomes a `contract_analysis` artifact (renewal's type):
//! the fake LLM server answers first with JSON that does not fit the schema,
//! then, told the errors, with JSON that does; the artifact's provenance is
//! the provider and its `file_id` the file. Without a provider the labelled
//! lines of the document fill the schema; an answer that never fits is
//! refused with its errors and writes nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use waymark_engine::{Engine, EngineSettings};
use waymark_files::fixtures;
use waymark_server::HttpSettings;

use crate::fake_llm::{FakeLlm, user_message};
use crate::helpers::{Backend, TestApp, spawn_app_configured};

crate::each_backend!(
    a_contract_pdf_becomes_a_contract_analysis,
    without_a_provider_labelled_lines_fill_the_schema,
    an_answer_that_never_fits_is_refused,
);

const CONTRACT: [&str; 2] = [
    "Master subscription agreement between Northwind Analytics and Acme Corporation.\n\
     Customer name: Acme Corporation\nStart date: 2026-01-01\nEnd date: 2026-12-31",
    "Term (months): 12\nAuto renew: yes\nNotice period (days): 90\n\
     Total contract value: EUR 120,000\nExtraction confidence: medium",
];

async fn uploaded_contract(app: &TestApp) -> (String, String) {
    let client = app.client("Acme").await;
    let form = Form::new().text("client_id", client.clone()).part(
        "file",
        Part::bytes(fixtures::pdf(&CONTRACT)).file_name("msa.pdf"),
    );
    let up = TestApp::answer(
        app.http
            .post(format!("{}/api/v1/files", app.base))
            .bearer_auth(&app.token)
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(up.status, 201, "{}", up.body);
    let id = up.body["id"].as_str().unwrap().to_owned();
    // Fields cannot be read before the text is.
    let early = app
        .post(
            &format!("/api/v1/files/{id}/extract"),
            json!({"type": "contract_analysis"}),
        )
        .await;
    early.assert_problem(409, "text_not_ready");
    Engine::new(
        app.store.clone(),
        EngineSettings {
            blobs: Some(app.blobs.clone()),
            ..EngineSettings::default()
        },
    )
    .run_until_idle()
    .await
    .unwrap();
    (client, id)
}

async fn a_contract_pdf_becomes_a_contract_analysis(backend: Backend) {
    let fake = FakeLlm::openai("gpt-test", None).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    fake.set_reply(move |req: &Value| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        let asked = user_message(req);
        if n == 0 {
            assert!(
                asked.contains("Acme Corporation"),
                "the document is sent: {asked}"
            );
            // Misses the required customer_name and gives a wrong type.
            json!({"summary": "A subscription agreement.", "term_months": "twelve"}).to_string()
        } else {
            assert!(
                asked.contains("/customer_name: is required"),
                "the errors are sent back: {asked}"
            );
            assert!(
                req.to_string().contains("Acme Corporation"),
                "the conversation goes with it"
            );
            json!({"summary": "Acme's 12-month subscription, renewing automatically.",
                   "customer_name": "Acme Corporation", "term_months": 12, "auto_renew": true,
                   "notice_period_days": 90, "currency": "EUR", "total_contract_value": 120000,
                   "extraction_confidence": "high"})
            .to_string()
        }
    });
    let llm = fake.llm(false);
    let Some(app) =
        spawn_app_configured(backend, HttpSettings::default(), move |s| s.with_llm(llm)).await
    else {
        return;
    };
    let (client, file) = uploaded_contract(&app).await;
    let out = app
        .post(
            &format!("/api/v1/files/{file}/extract"),
            json!({"type": "contract_analysis"}),
        )
        .await;
    assert_eq!(out.status, 201, "{}", out.body);
    assert_eq!(out.body["provenance"], "openai:gpt-test");
    assert_eq!(out.body["attempts"], 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let artifact = &out.body["artifact"];
    assert_eq!(artifact["type"], "contract_analysis");
    assert_eq!(artifact["client_id"], client);
    assert_eq!(artifact["provenance"], "openai:gpt-test", "{artifact}");
    assert_eq!(artifact["content"]["file_id"], file);
    assert_eq!(artifact["content"]["customer_name"], "Acme Corporation");
    assert_eq!(artifact["content"]["term_months"], 12);
    // It fits the type: the API reads it back as written.
    let id = artifact["id"].as_str().unwrap();
    let read = app.get(&format!("/api/v1/artifacts/{id}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["content"], artifact["content"]);
    // A schema of one's own answers the fields only.
    fake.reply_with(json!({"customer_name": "Acme Corporation", "notice": 90}).to_string());
    let own = app
        .post(
            &format!("/api/v1/files/{file}/extract"),
            json!({"schema": {"type": "object", "required": ["customer_name"],
                   "properties": {"customer_name": {"type": "string"}, "notice": {"type": "integer"}},
                   "additionalProperties": false}}),
        )
        .await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(
        own.body["content"],
        json!({"customer_name": "Acme Corporation", "notice": 90})
    );
    assert!(own.body["artifact"].is_null());
}

async fn without_a_provider_labelled_lines_fill_the_schema(backend: Backend) {
    let Some(app) = spawn_app_configured(backend, HttpSettings::default(), |s| s).await else {
        return;
    };
    let (_, file) = uploaded_contract(&app).await;
    let out = app
        .post(
            &format!("/api/v1/files/{file}/extract"),
            json!({"type": "contract_analysis", "title": "Acme MSA terms"}),
        )
        .await;
    assert_eq!(out.status, 201, "{}", out.body);
    assert_eq!(out.body["provenance"], "template");
    let c = &out.body["artifact"]["content"];
    assert_eq!(c["customer_name"], "Acme Corporation", "{c}");
    assert_eq!(c["notice_period_days"], 90);
    assert_eq!(c["total_contract_value"], 120000.0);
    assert_eq!(c["auto_renew"], true);
    assert_eq!(c["file_id"], file);
    assert_eq!(out.body["artifact"]["title"], "Acme MSA terms");
}

async fn an_answer_that_never_fits_is_refused(backend: Backend) {
    let fake = FakeLlm::ollama("llama-test").await;
    fake.reply_with(json!({"summary": "no customer named"}).to_string());
    let llm = fake.llm(false);
    let Some(app) =
        spawn_app_configured(backend, HttpSettings::default(), move |s| s.with_llm(llm)).await
    else {
        return;
    };
    let (client, file) = uploaded_contract(&app).await;
    let before = app
        .get(&format!("/api/v1/artifacts?client_id={client}"))
        .await;
    let out = app
        .post(
            &format!("/api/v1/files/{file}/extract"),
            json!({"type": "contract_analysis"}),
        )
        .await;
    out.assert_problem(422, "invalid");
    assert_eq!(
        out.body["errors"][0]["pointer"], "/content/customer_name",
        "{}",
        out.body
    );
    assert_eq!(fake.requests().len(), 2);
    let after = app
        .get(&format!("/api/v1/artifacts?client_id={client}"))
        .await;
    assert_eq!(before.body, after.body);
    // Bad requests say what is wrong.
    for (body, pointer) in [
        (json!({}), "/type"),
        (json!({"type": "no_such_type"}), "/type"),
        (json!({"schema": {"type": 12}}), "/schema"),
        (json!({"type": "contract_analysis", "schema": {}}), "/type"),
    ] {
        let r = app
            .post(&format!("/api/v1/files/{file}/extract"), body.clone())
            .await;
        r.assert_problem(422, "invalid");
        assert_eq!(
            r.body["errors"][0]["pointer"], pointer,
            "{body}: {}",
            r.body
        );
    }
}
