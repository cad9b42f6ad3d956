//! The file pages in a real chromium, on both backends: an operator uploads a
//! CSV from the client page (progress shown, then the file's page), the text
//! and the table's columns appear once the engine has read them, the
//! download serves the bytes; a refused file says why without leaving the
//! page; a hostile name stays text; the client's contact sees the file, the
//! contact of another client gets "Not found". axe-core on every page, at a
//! phone's width too.

use fantoccini::Locator;
use serde_json::{Value, json};
use waymark_engine::{Engine, EngineSettings};

use crate::browser::{Browser, browser};
use crate::helpers::{Backend, spawn_app};

crate::each_backend!(files_are_uploaded_read_and_shown_in_the_pages);

const PASSWORD: &str = "a long enough password";

async fn not_pwned(b: &Browser) {
    let safe =
        b.c.execute("return window.pwned === undefined", vec![])
            .await
            .unwrap();
    assert_eq!(safe, Value::Bool(true), "markup ran on {}", b.url().await);
}

async fn fits_a_phone(b: &Browser) {
    b.set_width(375).await;
    let wide = b.overflowing().await;
    assert!(
        wide.is_empty(),
        "sideways scrolling at 375 px on {}: {wide:?}",
        b.url().await
    );
    b.assert_accessible().await;
    b.set_width(1280).await;
}

/// Chooses `path` in the file input of form `#form` and submits it.
async fn choose(b: &Browser, form: &str, path: &std::path::Path) {
    b.find(&format!("#{form}-file"))
        .await
        .send_keys(path.to_str().unwrap())
        .await
        .unwrap();
}

async fn files_are_uploaded_read_and_shown_in_the_pages(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let client = app.client("Acme").await;
    let other = app.client("Other Co").await;
    app.user(json!({"email": "olga@team.example", "name": "Olga Operator", "role": "operator", "password": PASSWORD}))
        .await;
    app.user(json!({"email": "ana@acme.example", "name": "Ana", "role": "client", "client_id": client, "password": PASSWORD}))
        .await;
    app.user(json!({"email": "bo@other.example", "name": "Bo", "role": "client", "client_id": other, "password": PASSWORD}))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir
        .path()
        .join("pipeline <img src=x onerror=window.pwned=1>.csv");
    std::fs::write(
        &csv,
        "stage,deals,value,closed_on\nlead,40,120000,2026-01-10\nqualified,22,88000,2026-02-11\nwon,9,61000,2026-03-01\n",
    )
    .unwrap();
    let exe = dir.path().join("invoice.pdf");
    let mut bytes = b"MZ\x90\x00\x03".to_vec();
    bytes.extend(std::iter::repeat_n(0u8, 512));
    std::fs::write(&exe, bytes).unwrap();

    let Some(b) = browser().await else { return };
    let base = app.base.clone();
    b.sign_in(&base, "olga@team.example", PASSWORD).await;
    b.goto(&format!("{base}/clients/{client}")).await;
    assert!(b.text("#files-h").await.contains("Files"));
    b.assert_accessible().await;

    // A refused file: the form says why, and the page stays.
    choose(&b, "client-upload", &exe).await;
    b.find("#client-upload button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    let mut said = String::new();
    for _ in 0..200 {
        said = b.text("#client-upload .upload-status").await;
        if said.starts_with("Not uploaded") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        said.contains("Not uploaded") && said.contains("executable"),
        "{said}"
    );
    assert!(b.url().await.ends_with(&format!("/clients/{client}")));

    // The CSV: uploaded with progress, then its page.
    b.goto(&format!("{base}/clients/{client}")).await;
    choose(&b, "client-upload", &csv).await;
    b.click("#client-upload button[type=submit]").await;
    let url = b.url().await;
    assert!(
        url.contains("/files/fil_") && url.ends_with("?done=uploaded"),
        "{url}"
    );
    let id = url
        .split("/files/")
        .nth(1)
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    assert!(b.text(".notice").await.contains("its text is being read"));
    assert!(b.text("#file-text").await.contains("reading text"));
    not_pwned(&b).await;
    // Markup characters are dropped from names; the rest is shown as text.
    let name = b.text("h1").await;
    assert!(
        name.starts_with("pipeline img src=x onerror=window.pwned=1"),
        "{name}"
    );

    // The engine reads it; the page shows the table.
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
    b.goto(&format!("{base}/files/{id}")).await;
    let text = b.text("#file-text").await;
    assert!(text.contains("text extracted"), "{text}");
    assert!(text.contains("3 rows × 4 columns"), "{text}");
    let headers: Vec<String> = {
        let mut out = vec![];
        for e in b.c.find_all(Locator::Css("#file-text th")).await.unwrap() {
            out.push(e.text().await.unwrap());
        }
        out
    };
    assert_eq!(headers[1], "deals\ninteger", "{headers:?}");
    let shown = b.text("pre.file-text").await;
    assert!(
        shown.contains("qualified") && shown.contains("88000"),
        "{shown}"
    );
    not_pwned(&b).await;
    b.assert_accessible().await;
    fits_a_phone(&b).await;
    b.screenshot("file").await;
    let download = b
        .c
        .execute(
            "return fetch(arguments[0]).then(r => r.text().then(t => [r.status, r.headers.get('content-type'), t.length]))",
            vec![json!(format!("/files/{id}/download"))],
        )
        .await
        .unwrap();
    assert_eq!(download[0], 200);
    assert_eq!(download[1], "text/csv; charset=utf-8");
    assert!(download[2].as_u64().unwrap() > 100);
    // The client page lists it.
    b.goto(&format!("{base}/clients/{client}")).await;
    assert!(b.text(".files").await.contains("text extracted"));
    b.close().await;

    // The client's contact sees it; another client's does not.
    let Some(c) = browser().await else { return };
    c.sign_in(&base, "ana@acme.example", PASSWORD).await;
    c.goto(&format!("{base}/files/{id}")).await;
    assert!(c.text("#file-text").await.contains("qualified"));
    c.assert_accessible().await;
    c.close().await;
    let Some(d) = browser().await else { return };
    d.sign_in(&base, "bo@other.example", PASSWORD).await;
    d.goto(&format!("{base}/files/{id}")).await;
    assert_eq!(d.text("h1").await, "Not found");
    d.goto(&format!("{base}/files/{id}/download")).await;
    assert_eq!(d.text("h1").await, "Not found");
    d.close().await;
}
