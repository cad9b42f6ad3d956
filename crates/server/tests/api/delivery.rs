//! Delivery over HTTP on both backends: a marketing engagement built to
//! completion by a client contact's approvals, its manifest, an export
//! refused while strategy is stale and made once it is re-approved, the ZIP
//! (manifest, each artifact as JSON and Markdown, an attached file, the PDF
//! report, whose pages are rendered to images), downloads that are the same
//! bytes every time, the audit record, and who may see and do what.

use std::io::Read;
use std::path::Path;

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use waymark_store::Role;

use crate::fixtures::{get_as, person, post_as};
use crate::helpers::{Answer, TestApp};

crate::both_backends!(a_delivery_is_exported_once_nothing_blocks_it);

const PACK: &str = "marketing-engagement";
/// The types built, in pipeline order; the delivery needs all but monitoring.
const TYPES: [&str; 6] = [
    "intake",
    "strategy",
    "creatives",
    "execution",
    "monitoring",
    "delivery",
];

async fn examples(app: &TestApp) -> Value {
    let pack = app.get(&format!("/api/v1/packs/{PACK}")).await;
    assert_eq!(pack.status, 200, "{}", pack.body);
    pack.body["artifact_types"].clone()
}

fn example(types: &Value, ty: &str) -> Value {
    types
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == ty)
        .unwrap_or_else(|| panic!("no type {ty}"))["example"]
        .clone()
}

fn title(ty: &str) -> String {
    format!("Northwind {ty} plan")
}

/// Shares the artifact (as the admin) and approves its latest version as
/// the client contact.
async fn share_and_approve(app: &TestApp, contact: &str, id: &str) {
    let s = app
        .post(
            &format!("/api/v1/artifacts/{id}/share"),
            json!({"message": "please review"}),
        )
        .await;
    assert_eq!(s.status, 200, "{}", s.body);
    let v = s.body["version"].as_i64().unwrap();
    let a = post_as(
        app,
        contact,
        &format!("/api/v1/artifacts/{id}/approve"),
        json!({"version": v}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["artifact"]["status"], "approved", "{}", a.body);
}

async fn transition(app: &TestApp, id: &str, body: Value) -> Value {
    let t = app
        .post(&format!("/api/v1/artifacts/{id}/transitions"), body)
        .await;
    assert_eq!(t.status, 200, "{}", t.body);
    t.body
}

async fn upload(app: &TestApp, client: &str, eng: &str, name: &str, bytes: &[u8]) -> Value {
    let form = Form::new()
        .text("client_id", client.to_owned())
        .text("engagement_id", eng.to_owned())
        .part(
            "file",
            Part::bytes(bytes.to_vec()).file_name(name.to_owned()),
        );
    let res = app
        .http
        .post(format!("{}/api/v1/files", app.base))
        .bearer_auth(&app.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let a = TestApp::answer(res).await;
    assert_eq!(a.status, 201, "{}", a.body);
    a.body
}

/// A download's status, headers and bytes.
async fn download(
    app: &TestApp,
    token: &str,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let res = app
        .http
        .get(format!("{}{path}", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.bytes().await.unwrap().to_vec())
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn entry(zip: &mut zip::ZipArchive<std::io::Cursor<Vec<u8>>>, name: &str) -> Vec<u8> {
    let mut f = zip
        .by_name(name)
        .unwrap_or_else(|_| panic!("the bundle has no {name}"));
    let mut out = Vec::new();
    f.read_to_end(&mut out).unwrap();
    out
}

async fn a_delivery_is_exported_once_nothing_blocks_it(app: TestApp) {
    let client = app.client("Northwind Ledger").await;
    let other = app.client("Beta Holdings").await;
    let e = app
        .post(
            "/api/v1/engagements",
            json!({"client_id": client, "name": "Launch", "pack": PACK}),
        )
        .await;
    assert_eq!(e.status, 201, "{}", e.body);
    let eng = e.body["id"].as_str().unwrap().to_owned();
    let contact = person(&app, "ana@northwind.example", Role::Client, Some(&client)).await;
    let outsider = person(&app, "bo@beta.example", Role::Client, Some(&other)).await;
    let delivery_path = format!("/api/v1/engagements/{eng}/delivery");
    let exports_path = format!("/api/v1/engagements/{eng}/exports");

    // Nothing yet: every type the delivery needs is missing; monitoring,
    // which comes after the delivery, is not needed.
    let d = app.get(&delivery_path).await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.body["ready"], false);
    assert_eq!(
        d.body["required"],
        json!(["intake", "strategy", "creatives", "execution", "delivery"])
    );
    let missing: Vec<&str> = d.body["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            assert_eq!(b["kind"], "missing");
            b["type"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        missing,
        ["intake", "strategy", "creatives", "execution", "delivery"]
    );

    // Build it: each type created, shared and approved by the client contact
    // (monitoring left as a draft).
    let types = examples(&app).await;
    let mut ids = std::collections::HashMap::new();
    for ty in TYPES {
        let a = app
            .post(
                "/api/v1/artifacts",
                json!({"client_id": client, "engagement_id": eng, "type": ty,
                       "title": title(ty), "content": example(&types, ty)}),
            )
            .await;
        assert_eq!(a.status, 201, "{ty}: {}", a.body);
        let id = a.body["id"].as_str().unwrap().to_owned();
        if ty != "monitoring" {
            share_and_approve(&app, &contact.token, &id).await;
        }
        ids.insert(ty, id);
    }
    let brief = b"# Brief\n\nThe launch brief, attached to the engagement.\n".to_vec();
    let file = upload(&app, &client, &eng, "launch brief.md", &brief).await;

    let d = app.get(&delivery_path).await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.body["ready"], true, "{}", d.body["blockers"]);
    let manifest = d.body["manifest"].as_array().unwrap();
    assert_eq!(manifest.len(), 5, "{}", d.body);
    for (m, ty) in manifest
        .iter()
        .zip(["intake", "strategy", "creatives", "execution", "delivery"])
    {
        assert_eq!(m["type"], ty);
        let a = app.get(&format!("/api/v1/artifacts/{}", ids[ty])).await;
        assert_eq!(m["artifact_id"], a.body["id"]);
        assert_eq!(m["content_hash"], a.body["content_hash"]);
        assert_eq!(m["version"], a.body["version"]);
        assert_eq!(m["approvals"][0]["kind"], "client_contact", "{m}");
        assert_eq!(
            m["approvals"][0]["by_name"],
            "Name of ana@northwind.example"
        );
        assert!(m["approved_at"].is_string(), "{m}");
        assert_eq!(m["json_path"], format!("artifacts/{ty}.json"));
    }
    assert_eq!(
        manifest[1]["sources"][0]["artifact_id"],
        json!(ids["intake"])
    );
    assert_eq!(d.body["left_out"][0]["type"], "monitoring");
    assert_eq!(d.body["files"][0]["sha256"], file["sha256"]);
    assert_eq!(d.body["files"][0]["path"], "files/launch brief.md");
    let a = &d.body["analytics"];
    assert_eq!(a["by_status"]["approved"], 5, "{a}");
    assert_eq!(a["by_status"]["draft"], 1, "{a}");
    assert_eq!(a["stale"], 0);
    assert_eq!(a["review_turnaround"]["count"], 5, "{a}");
    assert_eq!(a["review_turnaround"]["approved"], 5, "{a}");
    assert!(a["review_turnaround"]["median_s"].as_f64().unwrap() >= 0.0);

    // A new intake makes strategy stale, and everything built on it.
    let intake = &ids["intake"];
    transition(&app, intake, json!({"to": "draft", "reason": "new budget"})).await;
    let now = app.get(&format!("/api/v1/artifacts/{intake}")).await;
    let mut content = now.body["content"].clone();
    content["client_identity"]["geography"] = json!("United States, Canada and Mexico");
    let w = app
        .put_content(
            intake,
            &now.etag(),
            json!({"content": content, "note": "the budget moved"}),
        )
        .await;
    assert_eq!(w.status, 200, "{}", w.body);
    share_and_approve(&app, &contact.token, intake).await;
    let s = app
        .get(&format!("/api/v1/artifacts/{}", ids["strategy"]))
        .await;
    assert_eq!(s.body["status"], "stale", "{}", s.body);

    let refused = app.post(&exports_path, json!({})).await;
    refused.assert_problem(409, "not_deliverable");
    let blockers = refused.body["blockers"].as_array().unwrap();
    let stale = blockers
        .iter()
        .find(|b| b["type"] == "strategy")
        .unwrap_or_else(|| panic!("strategy is not named: {}", refused.body));
    assert_eq!(stale["kind"], "stale");
    assert_eq!(stale["artifact_id"], json!(ids["strategy"]));
    assert!(
        stale["message"]
            .as_str()
            .unwrap()
            .contains("is stale: Upstream intake changed"),
        "{stale}"
    );
    assert!(
        refused.body["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("strategy")),
        "{}",
        refused.body
    );
    let listed = app.get(&exports_path).await;
    assert_eq!(
        listed.body["items"],
        json!([]),
        "a refused export is not recorded"
    );
    // The page lists what to do, each linking to its artifact; its export
    // form is refused with the same blockers.
    let mut pages = Pages::sign_in(&app, "olu@team.example").await;
    let page_path = format!("/engagements/{eng}/delivery");
    let (status, html) = pages.get(&page_path).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Before it can be exported"), "{html}");
    assert!(
        html.contains(&format!("href=\"/artifacts/{}\"", ids["strategy"])),
        "{html}"
    );
    assert!(html.contains("Check it against its new inputs"), "{html}");
    let (status, _) = pages
        .post(&format!("/engagements/{eng}/exports"), &html)
        .await;
    assert_eq!(status, 409);
    let (_, board) = pages.get(&format!("/engagements/{eng}")).await;
    assert!(
        board.contains(&format!("href=\"/engagements/{eng}/delivery\"")),
        "{board}"
    );

    // Re-approved as still valid, upstream first: the export goes through.
    for ty in ["strategy", "creatives", "execution", "delivery"] {
        transition(
            &app,
            &ids[ty],
            json!({"to": "approved", "reason": "still valid after the new budget"}),
        )
        .await;
    }
    let made = app
        .call(
            reqwest::Method::POST,
            &exports_path,
            None,
            &[("Idempotency-Key", "export-1")],
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let x = made.body.clone();
    let xid = x["id"].as_str().unwrap();
    assert!(xid.starts_with("exp_"), "{x}");
    assert_eq!(x["status"], "ready");
    assert_eq!(x["artifacts"], 5);
    assert_eq!(x["files"], 1);
    let url = x["download_url"].as_str().unwrap();
    assert_eq!(url, format!("{exports_path}/{xid}"));
    // The same key again answers the same export.
    let again = app
        .call(
            reqwest::Method::POST,
            &exports_path,
            None,
            &[("Idempotency-Key", "export-1")],
        )
        .await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.body["id"], x["id"]);

    // The download: the same bytes every time, hashed as answered.
    let (status, headers, zip_bytes) = download(&app, &app.token, url).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/zip");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;"),
    );
    assert_eq!(
        headers["etag"].to_str().unwrap(),
        format!("\"{}\"", x["sha256"].as_str().unwrap())
    );
    assert_eq!(sha256(&zip_bytes), x["sha256"].as_str().unwrap());
    assert_eq!(zip_bytes.len() as i64, x["size"].as_i64().unwrap());
    let (_, _, second) = download(&app, &app.token, url).await;
    assert_eq!(second, zip_bytes, "a second download is byte-identical");

    // What the bundle holds.
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).unwrap();
    let manifest_bytes = entry(&mut z, "manifest.json");
    assert_eq!(
        sha256(&manifest_bytes),
        x["manifest_sha256"].as_str().unwrap()
    );
    let m: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(m["export_id"], x["id"]);
    assert_eq!(m["engagement"]["id"], json!(eng));
    assert_eq!(m["waymark_version"], "0.0.0-test");
    assert!(m["generated_at"].is_string());
    assert!(m["generated_by"]["id"].is_string());
    let bundled = m["artifacts"].as_array().unwrap();
    assert_eq!(bundled.len(), 5);
    for b in bundled {
        let a = app
            .get(&format!(
                "/api/v1/artifacts/{}",
                b["artifact_id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(b["content_hash"], a.body["content_hash"]);
        let json_entry: Value =
            serde_json::from_slice(&entry(&mut z, b["json_path"].as_str().unwrap())).unwrap();
        assert_eq!(json_entry, a.body["content"]);
        let md = String::from_utf8(entry(&mut z, b["markdown_path"].as_str().unwrap())).unwrap();
        assert!(
            md.starts_with(&format!("# {}", a.body["title"].as_str().unwrap())),
            "{md}"
        );
        assert!(md.contains("## ") || md.contains("**"), "{md}");
    }
    // The re-approval is in strategy's approval record, beside the client's.
    let kinds: Vec<&str> = bundled[1]["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["client_contact", "reapproval"]);
    assert_eq!(entry(&mut z, "files/launch brief.md"), brief);
    let pdf = entry(&mut z, "report.pdf");
    assert!(pdf.starts_with(b"%PDF-"));

    // The report's text names every artifact.
    let dir = tempfile::tempdir().unwrap();
    let pdf_path = dir.path().join("report.pdf");
    std::fs::write(&pdf_path, &pdf).unwrap();
    // To look at it: WAYMARK_REPORT_OUT=/tmp/delivery.pdf cargo test ... delivery
    if let Ok(out) = std::env::var("WAYMARK_REPORT_OUT") {
        std::fs::write(out, &pdf).unwrap();
    }
    let text = waymark_files::extract(
        &pdf_path,
        waymark_files::FileKind::Pdf,
        &waymark_files::Limits::default(),
    )
    .unwrap();
    let words = text.text.split_whitespace().collect::<Vec<_>>().join(" ");
    for ty in ["intake", "strategy", "creatives", "execution", "delivery"] {
        assert!(
            words.contains(&title(ty)),
            "the report does not name {}: {words}",
            title(ty)
        );
    }
    assert!(words.contains("Approval record"), "{words}");
    let page_count = text.pages.unwrap();
    assert!(page_count >= 7, "{page_count} pages");
    check_pages(&pdf_path, page_count);

    // The export is in the audit log, and listed.
    let audit = app.get(&format!("/api/v1/audit?target={xid}")).await;
    assert_eq!(audit.status, 200, "{}", audit.body);
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["export.create"]);
    assert_eq!(
        audit.body["items"][0]["after_hash"],
        format!("sha256:{}", x["sha256"].as_str().unwrap())
    );
    let listed = app.get(&exports_path).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed.body["items"][0]["id"], x["id"]);
    let d = app.get(&delivery_path).await;
    assert_eq!(d.body["exports"][0]["id"], x["id"]);
    assert_eq!(d.body["analytics"]["stale"], 1, "monitoring is still stale");

    // The page: ready, the manifest, the figures, the exports with their
    // download links; its export button makes another export.
    let (status, html) = pages.get(&page_path).await;
    assert_eq!(status, 200);
    assert!(html.contains("Ready to export"), "{html}");
    assert!(html.contains(&title("execution")), "{html}");
    assert!(html.contains("median review turnaround"), "{html}");
    let href = format!("/engagements/{eng}/exports/{xid}/download");
    assert!(html.contains(&href), "{html}");
    let (status, done) = pages
        .post(&format!("/engagements/{eng}/exports"), &html)
        .await;
    assert_eq!(status, 303);
    assert_eq!(done, format!("/engagements/{eng}/delivery?done=exported"));
    let res = pages
        .http
        .get(format!("{}{href}", app.base))
        .header("cookie", pages.cookies())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        sha256(&res.bytes().await.unwrap()),
        x["sha256"].as_str().unwrap()
    );
    let (_, html) = pages.get(&format!("{page_path}?done=exported")).await;
    assert!(html.contains("The export is built and recorded"), "{html}");
    let listed = app.get(&exports_path).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 2);

    // The client's contact reads the delivery and downloads the export, but
    // the team exports; another client's contact learns nothing of it.
    let theirs = get_as(&app, &contact.token, &delivery_path).await;
    assert_eq!(theirs.status, 200, "{}", theirs.body);
    assert!(theirs.body["analytics"].is_null());
    assert_eq!(theirs.body["manifest"].as_array().unwrap().len(), 5);
    post_as(&app, &contact.token, &exports_path, json!({}))
        .await
        .assert_problem(403, "forbidden");
    let (status, _, bytes) = download(&app, &contact.token, url).await;
    assert_eq!(status, 200);
    assert_eq!(sha256(&bytes), x["sha256"].as_str().unwrap());

    let not_found = |a: Answer| a.assert_problem(404, "not_found");
    not_found(get_as(&app, &outsider.token, &delivery_path).await);
    not_found(get_as(&app, &outsider.token, &exports_path).await);
    not_found(post_as(&app, &outsider.token, &exports_path, json!({})).await);
    let (status, _, bytes) = download(&app, &outsider.token, url).await;
    assert_eq!(status, 404);
    assert!(!String::from_utf8_lossy(&bytes).contains("Northwind"));
    // An export id under another engagement is not found either.
    let e2 = app
        .post(
            "/api/v1/engagements",
            json!({"client_id": client, "name": "Later", "pack": PACK}),
        )
        .await;
    let wrong = format!(
        "/api/v1/engagements/{}/exports/{xid}",
        e2.body["id"].as_str().unwrap()
    );
    let (status, _, _) = download(&app, &app.token, &wrong).await;
    assert_eq!(status, 404);
}

/// A signed-in browser without a browser: the session and CSRF cookies,
/// sent by hand, and no redirects followed.
struct Pages {
    http: reqwest::Client,
    base: String,
    session: String,
    csrf_cookie: Option<String>,
}

impl Pages {
    async fn sign_in(app: &TestApp, email: &str) -> Pages {
        const PASSWORD: &str = "a long enough password";
        app.user(json!({"email": email, "name": "Olu Operator", "role": "operator", "password": PASSWORD}))
            .await;
        let s = app
            .post(
                "/api/v1/sessions",
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(s.status, 201, "{}", s.body);
        Pages {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.base.clone(),
            session: s.body["token"].as_str().unwrap().to_owned(),
            csrf_cookie: None,
        }
    }

    fn cookies(&self) -> String {
        match &self.csrf_cookie {
            Some(c) => format!("waymark_session={}; waymark_csrf={c}", self.session),
            None => format!("waymark_session={}", self.session),
        }
    }

    /// A page's status and HTML (keeping the CSRF cookie it sets).
    async fn get(&mut self, path: &str) -> (u16, String) {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookies())
            .send()
            .await
            .unwrap();
        if let Some(c) = res
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            && let Some(v) = c.strip_prefix("waymark_csrf=")
        {
            self.csrf_cookie = Some(v.split(';').next().unwrap().to_owned());
        }
        (res.status().as_u16(), res.text().await.unwrap())
    }

    /// Posts the form whose CSRF token `html` carries; answers the status
    /// and where it redirects.
    async fn post(&self, path: &str, html: &str) -> (u16, String) {
        let token = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("the page has a form");
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookies())
            .form(&[("csrf", token)])
            .send()
            .await
            .unwrap();
        let location = res
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (res.status().as_u16(), location)
    }
}

/// Renders the report's pages to PNG with `pdftoppm` (poppler-utils) and
/// checks each is an A4 page at 36 dpi with ink on it. Without `pdftoppm` the
/// check is skipped, except in CI (`CI` set), where it must run.
fn check_pages(pdf: &Path, pages: u32) {
    let dir = pdf.parent().unwrap();
    let ran = std::process::Command::new("pdftoppm")
        .args(["-r", "36", "-png"])
        .arg(pdf)
        .arg(dir.join("page"))
        .status();
    match ran {
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED (pdftoppm): the report's pages were not rendered: {e}");
            return;
        }
        Err(e) => panic!("pdftoppm is needed in CI (Debian package poppler-utils): {e}"),
        Ok(s) => assert!(s.success(), "pdftoppm failed: {s}"),
    }
    let mut images: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    images.sort();
    assert_eq!(images.len(), pages as usize, "{images:?}");
    for path in images {
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        // A4 is 595.3 x 841.9 points: 297.6 x 420.9 pixels at 36 dpi.
        assert!(
            (297..=299).contains(&info.width) && (420..=422).contains(&info.height),
            "{}: {} x {}",
            path.display(),
            info.width,
            info.height
        );
        let channels = info.color_type.samples();
        let pixels = &buf[..info.buffer_size()];
        let inked = pixels
            .chunks(channels)
            .filter(|p| p.iter().take(3).any(|c| *c < 200))
            .count();
        assert!(
            inked * 1000 >= (info.width * info.height) as usize,
            "{} is blank ({inked} dark pixels)",
            path.display()
        );
    }
}
