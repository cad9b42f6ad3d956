//! Uploaded files over HTTP on both backends: upload (multipart, streamed),
//! kind by content, extraction by the engine's `file.extract` task, text,
//! download, deduplication, isolation between clients, deletion; hostile
//! input (a renamed executable, a file over the limit, a hostile name, a
//! truncated or encrypted PDF, a zip bomb, an upload cut off midway) leaves
//! no row and no object behind. The S3 half runs against moto, an
//! S3-compatible server.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use waymark_engine::blobs::{BlobSettings, Blobs, S3Settings};
use waymark_engine::{Engine, EngineSettings};
use waymark_files::fixtures;
use waymark_server::HttpSettings;

use crate::helpers::{Answer, Backend, TestApp, spawn_app_configured};

crate::each_backend!(
    documents_are_uploaded_extracted_and_served,
    the_same_bytes_are_one_file_per_client,
    clients_never_see_each_others_files,
    unreadable_files_say_why,
    refused_uploads_leave_nothing_behind,
    an_upload_cut_off_midway_leaves_nothing_behind,
    operators_delete_files_and_their_bytes,
    files_go_to_an_s3_compatible_store,
);

async fn app(backend: Backend) -> Option<TestApp> {
    spawn_app_configured(backend, HttpSettings::default(), |s| s).await
}

/// The engine stepped by the test, reading the app's files.
fn engine(app: &TestApp) -> Engine {
    Engine::new(
        app.store.clone(),
        EngineSettings {
            concurrency: 4,
            name: "test-worker".into(),
            blobs: Some(app.blobs.clone()),
            ..EngineSettings::default()
        },
    )
}

/// Uploads `bytes` named `name` with the other form fields, as `token`.
async fn upload_as(
    app: &TestApp,
    token: &str,
    name: &str,
    bytes: Vec<u8>,
    fields: &[(&str, &str)],
) -> Answer {
    let mut form = Form::new();
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    form = form.part("file", Part::bytes(bytes).file_name(name.to_owned()));
    let res = app
        .http
        .post(format!("{}/api/v1/files", app.base))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    TestApp::answer(res).await
}

async fn upload(app: &TestApp, name: &str, bytes: Vec<u8>, client: &str) -> Answer {
    upload_as(app, &app.token, name, bytes, &[("client_id", client)]).await
}

async fn client_user_token(app: &TestApp, client: &str, email: &str) -> String {
    let u = app
        .user(json!({"email": email, "name": "Contact", "role": "client", "client_id": client}))
        .await;
    app.token_for(u["id"].as_str().unwrap()).await
}

/// Files under a folder (objects or staged uploads), recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn pdf_pages(n: usize, word: &str) -> Vec<u8> {
    let pages: Vec<String> = (1..=n)
        .map(|i| format!("Page {i} of the contract.\nThe {word} clause applies on page {i}."))
        .collect();
    let refs: Vec<&str> = pages.iter().map(String::as_str).collect();
    fixtures::pdf(&refs)
}

async fn documents_are_uploaded_extracted_and_served(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let client = app.client("Acme").await;
    let pdf = pdf_pages(5, "indemnification");
    let up = upload(&app, "contract.pdf", pdf.clone(), &client).await;
    assert_eq!(up.status, 201, "{}", up.body);
    assert_eq!(up.body["kind"], "pdf");
    assert_eq!(up.body["mime"], "application/pdf");
    assert_eq!(up.body["status"], "extracting");
    assert_eq!(up.body["deduplicated"], false);
    assert_eq!(up.body["size"], pdf.len());
    let pdf_id = up.body["id"].as_str().unwrap().to_owned();
    assert!(pdf_id.starts_with("fil_"));
    assert_eq!(up.body["links"]["page"], format!("/files/{pdf_id}"));

    let docx = fixtures::docx(&[
        "Statement of work",
        "The rollout covers the quarterly onboarding.",
    ]);
    let up = upload(&app, "sow.docx", docx, &client).await;
    assert_eq!(up.status, 201, "{}", up.body);
    assert_eq!(up.body["kind"], "docx");
    let docx_id = up.body["id"].as_str().unwrap().to_owned();

    let csv = "region,revenue,closed_on,active\nnorth,1200,2026-01-05,true\nqualified,950.5,2026-02-11,false\neast,400,2026-03-01,true\n";
    let up = upload(&app, "sales.csv", csv.as_bytes().to_vec(), &client).await;
    assert_eq!(up.status, 201, "{}", up.body);
    assert_eq!(up.body["kind"], "csv");
    let csv_id = up.body["id"].as_str().unwrap().to_owned();

    // Nothing is read before the engine runs its tasks.
    let t = app.get(&format!("/api/v1/files/{pdf_id}/text")).await;
    assert_eq!(t.body["status"], "extracting");
    assert!(t.body["text"].is_null());

    assert_eq!(engine(&app).run_until_idle().await.unwrap(), 3);

    let t = app.get(&format!("/api/v1/files/{pdf_id}/text")).await;
    assert_eq!(t.status, 200, "{}", t.body);
    assert_eq!(t.body["status"], "extracted", "{}", t.body);
    assert_eq!(t.body["pages"], 5);
    let text = t.body["text"].as_str().unwrap();
    assert!(
        text.contains("indemnification clause applies on page 3"),
        "{text}"
    );

    let t = app.get(&format!("/api/v1/files/{docx_id}/text")).await;
    assert!(
        t.body["text"]
            .as_str()
            .unwrap()
            .contains("quarterly onboarding"),
        "{}",
        t.body
    );

    let t = app.get(&format!("/api/v1/files/{csv_id}/text")).await;
    assert_eq!(t.body["table"]["rows"], 3, "{}", t.body);
    assert_eq!(t.body["table"]["columns"], 4);
    assert_eq!(
        t.body["table"]["column_types"],
        json!(["text", "number", "date", "boolean"])
    );

    let f = app.get(&format!("/api/v1/files/{pdf_id}")).await;
    assert_eq!(f.body["status"], "extracted");
    assert!(f.body["text_chars"].as_i64().unwrap() > 100);
    assert!(f.body["extraction_ms"].as_i64().is_some());

    // The bytes come back whole, with their type and name.
    let res = app
        .http
        .get(format!("{}/api/v1/files/{pdf_id}/content", app.base))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/pdf");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    let cd = res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cd.starts_with("attachment; filename=\"contract.pdf\""),
        "{cd}"
    );
    assert_eq!(res.bytes().await.unwrap().to_vec(), pdf);

    let res = app
        .http
        .get(format!("{}/api/v1/files/{csv_id}/content", app.base))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");

    // Listed newest first, by client.
    let list = app.get(&format!("/api/v1/files?client_id={client}")).await;
    let ids: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![csv_id.as_str(), docx_id.as_str(), pdf_id.as_str()]
    );

    // A word of each text finds its file, for the client's user; never for
    // another client's.
    let ana = client_user_token(&app, &client, "ana@acme.example").await;
    let other = app.client("Other").await;
    let bo = client_user_token(&app, &other, "bo@other.example").await;
    for (word, id) in [
        ("indemnification", &pdf_id),
        ("onboarding", &docx_id),
        ("qualified", &csv_id),
    ] {
        let found = app
            .call_as(
                Some(&ana),
                Method::GET,
                &format!("/api/v1/search?q={word}"),
                None,
            )
            .await;
        assert_eq!(found.status, 200, "{}", found.body);
        let hits: Vec<&str> = found.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap())
            .collect();
        assert_eq!(hits, vec![id.as_str()], "{word}: {}", found.body);
        assert_eq!(found.body["items"][0]["kind"], "file");
        assert_eq!(found.body["items"][0]["url"], format!("/files/{id}"));
        assert!(
            found.body["items"][0]["snippet_html"]
                .as_str()
                .unwrap()
                .contains(&format!("<mark>{word}</mark>")),
            "{}",
            found.body
        );
        let hidden = app
            .call_as(
                Some(&bo),
                Method::GET,
                &format!("/api/v1/search?q={word}"),
                None,
            )
            .await;
        assert_eq!(hidden.status, 200);
        assert_eq!(hidden.body["items"], json!([]), "{word}");
    }

    // Each upload and each extraction is in the audit log.
    let audit = app.get("/api/v1/audit?limit=200").await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.iter().filter(|a| **a == "file.upload").count(), 3);
    assert_eq!(actions.iter().filter(|a| **a == "file.extract").count(), 3);
}

async fn the_same_bytes_are_one_file_per_client(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let a = app.client("A").await;
    let b = app.client("B").await;
    let bytes = b"Minutes of the kickoff.\nNext review on Friday.\n".to_vec();
    let first = upload(&app, "minutes.txt", bytes.clone(), &a).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.body["kind"], "text");
    let again = upload(&app, "minutes-copy.txt", bytes.clone(), &a).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["deduplicated"], true);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.body["name"], "minutes.txt");
    // Another client's copy is a file of its own.
    let other = upload(&app, "minutes.txt", bytes, &b).await;
    assert_eq!(other.status, 201, "{}", other.body);
    assert_ne!(other.body["id"], first.body["id"]);
    let objects = files_under(&app.blobs_root().join("objects"));
    assert_eq!(objects.len(), 2, "{objects:?}");
}

async fn clients_never_see_each_others_files(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let a = app.client("A").await;
    let b = app.client("B").await;
    let ana = client_user_token(&app, &a, "ana@a.example").await;
    let bo = client_user_token(&app, &b, "bo@b.example").await;
    // A client user uploads to their own client without naming it.
    let up = upload_as(
        &app,
        &ana,
        "brief.md",
        b"# Brief\n\nOur goals for spring.\n".to_vec(),
        &[],
    )
    .await;
    assert_eq!(up.status, 201, "{}", up.body);
    assert_eq!(up.body["client_id"], a);
    assert_eq!(up.body["kind"], "markdown");
    let id = up.body["id"].as_str().unwrap().to_owned();
    // ...and never to another's.
    let refused = upload_as(&app, &ana, "x.txt", b"hello".to_vec(), &[("client_id", &b)]).await;
    refused.assert_problem(404, "not_found");
    engine(&app).run_until_idle().await.unwrap();

    for path in [
        format!("/api/v1/files/{id}"),
        format!("/api/v1/files/{id}/text"),
        format!("/api/v1/files/{id}/content"),
    ] {
        let seen = app.call_as(Some(&ana), Method::GET, &path, None).await;
        assert_eq!(seen.status, 200, "{path}");
        let hidden = app.call_as(Some(&bo), Method::GET, &path, None).await;
        hidden.assert_problem(404, "not_found");
        assert_eq!(hidden.body["detail"], format!("no file {id}"));
    }
    let list = app
        .call_as(
            Some(&bo),
            Method::GET,
            &format!("/api/v1/files?client_id={a}"),
            None,
        )
        .await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["items"], json!([]));
    let list = app
        .call_as(Some(&ana), Method::GET, "/api/v1/files", None)
        .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    // Deleting is the team's.
    let del = app
        .call_as(
            Some(&ana),
            Method::DELETE,
            &format!("/api/v1/files/{id}"),
            None,
        )
        .await;
    del.assert_problem(403, "forbidden");
}

async fn unreadable_files_say_why(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let client = app.client("Acme").await;
    let pdf = pdf_pages(4, "termination");
    let truncated = pdf[..pdf.len() / 2].to_vec();
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("truncated.pdf", truncated, &["corrupt"]),
        ("locked.pdf", fixtures::encrypted_pdf(), &["encrypted"]),
        ("bomb.docx", fixtures::zip_bomb_docx(), &["zip_bomb"]),
        ("deep.docx", fixtures::deep_xml_docx(10_000), &["too_deep"]),
    ];
    let mut ids = Vec::new();
    for (name, bytes, _) in &cases {
        let up = upload(&app, name, bytes.clone(), &client).await;
        assert_eq!(up.status, 201, "{name}: {}", up.body);
        ids.push(up.body["id"].as_str().unwrap().to_owned());
    }
    engine(&app).run_until_idle().await.unwrap();
    for ((name, _, codes), id) in cases.iter().zip(&ids) {
        let f = app.get(&format!("/api/v1/files/{id}")).await;
        assert_eq!(f.body["status"], "failed", "{name}: {}", f.body);
        let code = f.body["error_code"].as_str().unwrap();
        assert!(codes.contains(&code), "{name}: {}", f.body);
        assert!(!f.body["status_reason"].as_str().unwrap().is_empty());
    }
    // The tasks completed: a file that cannot be read is not an incident.
    let incidents = app.get("/api/v1/work/incidents").await;
    assert_eq!(incidents.body["items"], json!([]), "{}", incidents.body);
}

async fn refused_uploads_leave_nothing_behind(backend: Backend) {
    let Some(app) = spawn_app_configured(
        backend,
        HttpSettings {
            upload_limit: 64 * 1024,
            ..HttpSettings::default()
        },
        |s| s,
    )
    .await
    else {
        return;
    };
    let client = app.client("Acme").await;
    // A Windows executable named as a PDF.
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00".to_vec();
    exe.extend(std::iter::repeat_n(0u8, 2048));
    let r = upload(&app, "invoice.pdf", exe, &client).await;
    r.assert_problem(415, "unsupported_media_type");
    assert!(
        r.body["detail"].as_str().unwrap().contains("executable"),
        "{}",
        r.body
    );
    // An ELF binary.
    let r = upload(
        &app,
        "notes.txt",
        b"\x7fELF\x02\x01\x01\x00binary".to_vec(),
        &client,
    )
    .await;
    r.assert_problem(415, "unsupported_media_type");
    // Over the limit.
    let big = "a,b\n".repeat(20_000).into_bytes();
    let r = upload(&app, "big.csv", big, &client).await;
    r.assert_problem(413, "file_too_large");
    // No file part, an empty file, an unknown field, a bad id, someone else's engagement.
    let form = Form::new().text("client_id", client.clone());
    let r = TestApp::answer(
        app.http
            .post(format!("{}/api/v1/files", app.base))
            .bearer_auth(&app.token)
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.assert_problem(422, "invalid");
    let r = upload(&app, "empty.txt", Vec::new(), &client).await;
    r.assert_problem(422, "invalid");
    let r = upload_as(
        &app,
        &app.token,
        "a.txt",
        b"hi".to_vec(),
        &[("client_id", &client), ("colour", "red")],
    )
    .await;
    r.assert_problem(422, "invalid");
    let r = upload_as(
        &app,
        &app.token,
        "a.txt",
        b"hi".to_vec(),
        &[("client_id", "cli_nope")],
    )
    .await;
    r.assert_problem(422, "invalid");
    let other = app.client("Other").await;
    let eng = app
        .post(
            "/api/v1/engagements",
            json!({"client_id": other, "name": "E", "pack": "marketing-engagement"}),
        )
        .await;
    let eng_id = eng.body["id"].as_str().unwrap();
    let r = upload_as(
        &app,
        &app.token,
        "a.txt",
        b"hello there".to_vec(),
        &[("client_id", &client), ("engagement_id", eng_id)],
    )
    .await;
    r.assert_problem(422, "invalid");
    assert_eq!(r.body["errors"][0]["pointer"], "/engagement_id");
    // JSON is not an upload.
    let r = app
        .post("/api/v1/files", json!({"client_id": client}))
        .await;
    r.assert_problem(415, "unsupported_media_type");

    let list = app.get("/api/v1/files").await;
    assert_eq!(list.body["items"], json!([]));
    assert_eq!(
        files_under(&app.blobs_root().join("objects")),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(
        files_under(app.blobs.staging()),
        Vec::<std::path::PathBuf>::new()
    );

    // A control character cannot even be sent in a part's header: the
    // upload is refused whole.
    let r = upload(&app, "pass\u{1}wd.txt", b"plain words".to_vec(), &client).await;
    r.assert_problem(400, "invalid_upload");
    assert_eq!(app.get("/api/v1/files").await.body["items"], json!([]));
    // A hostile name is kept only as a plain name.
    let r = upload(
        &app,
        "../../etc/pass\u{202e}wd\u{200b}<b>.txt",
        b"plain words".to_vec(),
        &client,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let name = r.body["name"].as_str().unwrap();
    assert!(
        !name.contains('/')
            && !name.contains("..")
            && !name.contains('\u{202e}')
            && !name.contains('<'),
        "{name}"
    );
    assert!(name.starts_with("pass"), "{name}");
}

async fn an_upload_cut_off_midway_leaves_nothing_behind(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let client = app.client("Acme").await;
    let boundary = "waymark-cut";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"client_id\"\r\n\r\n{client}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.txt\"\r\n\
         Content-Type: text/plain\r\n\r\n"
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(head.into_bytes()),
        Ok(vec![b'x'; 256 * 1024]),
        Err(std::io::Error::other("the client went away")),
    ];
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let sent = app
        .http
        .post(format!("{}/api/v1/files", app.base))
        .bearer_auth(&app.token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await;
    assert!(sent.is_err(), "the request was cut off");
    // The server gives up on the body and removes what it staged.
    let mut staged = files_under(app.blobs.staging());
    for _ in 0..100 {
        if staged.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        staged = files_under(app.blobs.staging());
    }
    assert_eq!(staged, Vec::<std::path::PathBuf>::new());
    let list = app.get("/api/v1/files").await;
    assert_eq!(list.body["items"], json!([]));
    assert_eq!(
        files_under(&app.blobs_root().join("objects")),
        Vec::<std::path::PathBuf>::new()
    );
}

async fn operators_delete_files_and_their_bytes(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let client = app.client("Acme").await;
    let up = upload(
        &app,
        "data.json",
        br#"{"plan": {"name": "Gold", "seats": 40}}"#.to_vec(),
        &client,
    )
    .await;
    assert_eq!(up.status, 201, "{}", up.body);
    assert_eq!(up.body["kind"], "json");
    let id = up.body["id"].as_str().unwrap().to_owned();
    engine(&app).run_until_idle().await.unwrap();
    let t = app.get(&format!("/api/v1/files/{id}/text")).await;
    assert!(
        t.body["text"].as_str().unwrap().contains("Gold"),
        "{}",
        t.body
    );
    assert_eq!(files_under(&app.blobs_root().join("objects")).len(), 1);
    let del = app
        .call(Method::DELETE, &format!("/api/v1/files/{id}"), None, &[])
        .await;
    assert_eq!(del.status, 204, "{}", del.body);
    app.get(&format!("/api/v1/files/{id}"))
        .await
        .assert_problem(404, "not_found");
    assert_eq!(
        files_under(&app.blobs_root().join("objects")),
        Vec::<std::path::PathBuf>::new()
    );
    let audit = app.get("/api/v1/audit?limit=200").await;
    assert!(
        audit.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "file.delete")
    );
}

/// Starts moto's S3 server on a free port; `None` (the test is skipped) when
/// it is not installed, except in CI, where it must run.
async fn moto() -> Option<(tokio::process::Child, String)> {
    let Some(bin) = std::env::var_os("WAYMARK_TEST_MOTO") else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "WAYMARK_TEST_MOTO is unset in CI: run the suite with scripts/test, which installs moto"
            );
        }
        eprintln!("SKIPPED (moto): set WAYMARK_TEST_MOTO or run scripts/test");
        return None;
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = tokio::process::Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("moto_server starts");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(&url).send().await.is_ok() {
            return Some((child, url));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("moto_server did not answer at {url}");
}

async fn files_go_to_an_s3_compatible_store(backend: Backend) {
    let Some((_moto, url)) = moto().await else {
        return;
    };
    // S3's CreateBucket: PUT /<bucket>.
    let made = reqwest::Client::new()
        .put(format!("{url}/waymark-files"))
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success(), "{}", made.status());
    let staging = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(
        &BlobSettings::S3(S3Settings {
            bucket: "waymark-files".into(),
            endpoint: Some(url.clone()),
            region: "us-east-1".into(),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
        }),
        staging.path(),
    )
    .unwrap();
    let Some(app) = spawn_app_configured(backend, HttpSettings::default(), move |s| {
        s.with_blobs(blobs)
    })
    .await
    else {
        return;
    };
    let client = app.client("Acme").await;
    // Over one part (8 MiB), so the bytes go up as a multipart upload.
    let mut big = String::new();
    let mut i = 0;
    while big.len() < 9 * 1024 * 1024 {
        big.push_str(&format!("line {i} of the ledger, reconciled\n"));
        i += 1;
    }
    let up = upload(&app, "ledger.txt", big.clone().into_bytes(), &client).await;
    assert_eq!(up.status, 201, "{}", up.body);
    let id = up.body["id"].as_str().unwrap().to_owned();
    let sha = up.body["sha256"].as_str().unwrap().to_owned();
    let key = Blobs::key(client.parse().unwrap(), &sha);
    assert!(app.blobs.exists(&key).await.unwrap());
    engine(&app).run_until_idle().await.unwrap();
    let f = app.get(&format!("/api/v1/files/{id}")).await;
    assert_eq!(f.body["status"], "extracted", "{}", f.body);
    let res = app
        .http
        .get(format!("{}/api/v1/files/{id}/content", app.base))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.bytes().await.unwrap().len(), big.len());
    let del = app
        .call(Method::DELETE, &format!("/api/v1/files/{id}"), None, &[])
        .await;
    assert_eq!(del.status, 204);
    assert!(!app.blobs.exists(&key).await.unwrap());
    let _: Value = f.body;
}
