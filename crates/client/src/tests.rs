//! End-to-end tests of the commands against a small real HTTP server that answers
//! canned responses and records what it was sent.

use std::sync::{Arc, Mutex};

use clap::{CommandFactory, Parser};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{
    ArtifactCommand, CliError, ClientCommand, EngagementCommand, Remote, artifacts, clients,
    engagements,
};

/// reqwest is built without a default crypto provider; the binary installs ring.
pub(crate) fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A request as the fake server received it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("the request body is JSON")
    }
}

/// A response the fake server sends back.
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn ok(status: u16, body: Value) -> Canned {
    Canned {
        status,
        headers: vec![("Content-Type", "application/json".into())],
        body: body.to_string(),
    }
}

fn problem(status: u16, body: Value) -> Canned {
    Canned {
        status,
        headers: vec![("Content-Type", "application/problem+json".into())],
        body: body.to_string(),
    }
}

impl Canned {
    fn etag(mut self, version: u64) -> Self {
        self.headers.push(("ETag", format!("\"{version}\"")));
        self
    }
}

struct FakeServer {
    url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl FakeServer {
    /// Answers one connection per canned response, in order.
    async fn start(responses: Vec<Canned>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        tokio::spawn(async move {
            for response in responses {
                let (mut stream, _) = listener.accept().await.unwrap();
                let request = read_request(&mut stream).await;
                recorded.lock().unwrap().push(request);
                let mut head = format!("HTTP/1.1 {} Canned\r\n", response.status);
                for (name, value) in &response.headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str(&format!(
                    "Content-Length: {}\r\nConnection: close\r\n\r\n",
                    response.body.len()
                ));
                stream.write_all(head.as_bytes()).await.unwrap();
                stream.write_all(response.body.as_bytes()).await.unwrap();
                stream.shutdown().await.unwrap();
            }
        });
        Self { url, requests }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Runs `waymark <args>` against this server with token `secret`.
    async fn run(&self, args: &[&str]) -> Result<String, CliError> {
        run_against(&self.url, args).await
    }
}

async fn read_request(stream: &mut TcpStream) -> Recorded {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed inside the request head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap().split(' ');
    let method = request_line.next().unwrap().to_owned();
    let target = request_line.next().unwrap().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed inside the request body");
        body.extend_from_slice(&chunk[..n]);
    }
    Recorded {
        method,
        target,
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}

/// The slice of the `waymark` command line this crate provides.
#[derive(Parser, Debug)]
#[command(name = "waymark")]
struct Cli {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    #[command(subcommand)]
    Client(ClientCommand),
    #[command(subcommand)]
    Engagement(EngagementCommand),
    #[command(subcommand)]
    Artifact(ArtifactCommand),
}

async fn run_against(url: &str, args: &[&str]) -> Result<String, CliError> {
    install_crypto();
    let prefix = ["waymark", "--server", url, "--token", "secret"];
    let argv = prefix.iter().chain(args);
    let cli = Cli::try_parse_from(argv).map_err(|err| CliError::input(err.to_string()))?;
    let api = cli.remote.api()?;
    let json = cli.remote.json;
    match cli.command {
        Command::Client(cmd) => clients::execute(&api, json, cmd).await,
        Command::Engagement(cmd) => engagements::execute(&api, json, cmd).await,
        Command::Artifact(cmd) => artifacts::execute(&api, json, cmd).await,
    }
}

fn artifact(version: u64) -> Value {
    json!({
        "id": "art_1", "client_id": "cli_1", "engagement_id": null, "type": "strategy",
        "title": "Q3 plan", "status": "draft", "version": version, "content_hash": "sha256:ab",
        "created_by": "usr_1", "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-02T00:00:00Z", "content": {"summary": "grow"},
        "inputs_hash": null, "sources": [], "provenance": null, "note": null, "warnings": []
    })
}

#[test]
fn command_line_is_well_formed() {
    Cli::command().debug_assert();
    let both = Cli::try_parse_from([
        "waymark",
        "artifact",
        "update",
        "art_1",
        "--content",
        "{}",
        "--file",
        "x.json",
    ]);
    assert!(both.is_err(), "--content and --file are exclusive");
    let neither = Cli::try_parse_from(["waymark", "artifact", "update", "art_1"]);
    assert!(neither.is_err(), "content is required");
}

#[tokio::test]
async fn sends_the_bearer_token_and_if_match() {
    let server = FakeServer::start(vec![ok(200, artifact(3)).etag(3)]).await;
    let out = server
        .run(&[
            "artifact",
            "update",
            "art_1",
            "--content",
            r#"{"summary": "grow"}"#,
            "--note",
            "tighter",
            "--if-match",
            "2",
        ])
        .await
        .unwrap();
    assert!(out.contains("art_1") && out.contains("version"), "{out}");

    let requests = server.requests();
    assert_eq!(requests.len(), 1, "no GET when --if-match is given");
    let put = &requests[0];
    assert_eq!(
        (put.method.as_str(), put.target.as_str()),
        ("PUT", "/api/v1/artifacts/art_1/content")
    );
    assert_eq!(put.header("authorization"), Some("Bearer secret"));
    assert_eq!(put.header("if-match"), Some("\"2\""));
    assert_eq!(
        put.json(),
        json!({"content": {"summary": "grow"}, "note": "tighter"})
    );
}

#[tokio::test]
async fn update_without_if_match_reads_the_current_version_first() {
    let server = FakeServer::start(vec![ok(200, artifact(3)).etag(3), ok(200, artifact(4))]).await;
    server
        .run(&[
            "artifact",
            "update",
            "art_1",
            "--content",
            r#"{"summary": "more"}"#,
        ])
        .await
        .unwrap();

    let requests = server.requests();
    let calls: Vec<_> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.target.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            ("GET", "/api/v1/artifacts/art_1"),
            ("PUT", "/api/v1/artifacts/art_1/content")
        ]
    );
    assert_eq!(requests[1].header("if-match"), Some("\"3\""));
}

#[tokio::test]
async fn a_stale_version_shows_the_detail() {
    let server = FakeServer::start(vec![problem(
        412,
        json!({"type": "about:blank", "title": "Precondition Failed", "status": 412,
               "detail": "the artifact is at version 3, not 2", "code": "version_conflict"}),
    )])
    .await;
    let err = server
        .run(&[
            "artifact",
            "rollback",
            "art_1",
            "--to",
            "1",
            "--if-match",
            "2",
        ])
        .await
        .unwrap_err();

    let text = err.to_string();
    assert!(
        text.starts_with("412 Precondition Failed — the artifact is at version 3, not 2"),
        "{text}"
    );
    assert!(text.contains("hint: "), "{text}");
    assert_eq!(err.exit_code(), 1);
    assert_eq!(
        err.problem().and_then(|p| p.code.as_deref()),
        Some("version_conflict")
    );
    let post = &server.requests()[0];
    assert_eq!(post.json(), json!({"to_version": 1}));
    assert_eq!(post.header("if-match"), Some("\"2\""));
}

#[tokio::test]
async fn a_refused_transition_lists_what_is_allowed() {
    let server = FakeServer::start(vec![problem(
        409,
        json!({"title": "Conflict", "status": 409, "code": "invalid_transition",
               "detail": "draft cannot move to approved", "allowed": ["in_review", "archived"]}),
    )])
    .await;
    let err = server
        .run(&[
            "artifact",
            "transition",
            "art_1",
            "--to",
            "approved",
            "--reason",
            "ship it",
        ])
        .await
        .unwrap_err();

    assert_eq!(
        err.to_string(),
        "409 Conflict — draft cannot move to approved\nallowed: in_review, archived"
    );
    let post = &server.requests()[0];
    assert_eq!(post.target, "/api/v1/artifacts/art_1/transitions");
    assert_eq!(post.json(), json!({"to": "approved", "reason": "ship it"}));
}

#[tokio::test]
async fn validation_errors_show_their_pointers() {
    let server = FakeServer::start(vec![problem(
        422,
        json!({"title": "Unprocessable Content", "status": 422, "code": "invalid_content",
               "detail": "the content does not match the strategy schema",
               "errors": [{"pointer": "/content/summary", "message": "is required"},
                          {"pointer": "/content/budget", "message": "must be a number"}]}),
    )])
    .await;
    let err = server
        .run(&[
            "artifact",
            "create",
            "--client",
            "cli_1",
            "--type",
            "strategy",
            "--title",
            "Plan",
            "--content",
            "{}",
        ])
        .await
        .unwrap_err();

    let text = err.to_string();
    assert!(
        text.contains("the content does not match the strategy schema"),
        "{text}"
    );
    assert!(text.contains("\n  /content/summary: is required"), "{text}");
    assert!(
        text.contains("\n  /content/budget: must be a number"),
        "{text}"
    );
}

#[tokio::test]
async fn unauthorized_says_how_to_pass_a_token() {
    let server = FakeServer::start(vec![problem(
        401,
        json!({"title": "Unauthorized", "status": 401, "detail": "missing bearer token"}),
    )])
    .await;
    let err = server.run(&["client", "list"]).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("hint: set WAYMARK_TOKEN or pass --token"),
        "{err}"
    );
}

#[tokio::test]
async fn an_error_without_problem_details_shows_the_body() {
    let server = FakeServer::start(vec![Canned {
        status: 502,
        headers: vec![("Content-Type", "text/plain".into())],
        body: "upstream down".into(),
    }])
    .await;
    let err = server.run(&["client", "get", "cli_1"]).await.unwrap_err();
    assert_eq!(err.to_string(), "502 Bad Gateway — upstream down");
}

#[tokio::test]
async fn a_refused_connection_asks_whether_the_server_runs() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);

    let err = run_against(&url, &["artifact", "get", "art_1"])
        .await
        .unwrap_err();
    assert!(matches!(err, CliError::Connect { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("is `waymark serve` running at {url}?")),
        "{err}"
    );
    assert_eq!(err.exit_code(), 2);
}

#[tokio::test]
async fn invalid_content_is_rejected_before_sending() {
    // Nothing listens here: reaching the network would fail differently.
    let url = "http://127.0.0.1:9";
    let create = [
        "artifact",
        "create",
        "--client",
        "cli_1",
        "--type",
        "strategy",
        "--title",
        "Plan",
        "--content",
    ];

    let err = run_against(url, &[&create[..], &["{oops"]].concat())
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with("--content: not valid JSON"),
        "{err}"
    );
    assert_eq!(err.exit_code(), 2);

    let err = run_against(url, &[&create[..], &["[1, 2]"]].concat())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("must be a JSON object"), "{err}");

    let err = run_against(
        url,
        &["artifact", "update", "art_1", "--file", "/nonexistent.json"],
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().starts_with("--file /nonexistent.json: "),
        "{err}"
    );
}

#[tokio::test]
async fn create_sends_only_the_given_fields() {
    let client = json!({"id": "cli_1", "name": "Acme", "arr": 120000, "owner": "dana"});
    let server = FakeServer::start(vec![ok(201, client)]).await;
    let out = server
        .run(&[
            "client",
            "create",
            "Acme",
            "--owner",
            "dana",
            "--arr",
            "120000",
            "--renewal-date",
            "2026-09-30",
            "--attributes",
            r#"{"region": "emea"}"#,
        ])
        .await
        .unwrap();
    assert!(out.contains("cli_1") && out.contains("Acme"), "{out}");

    let post = &server.requests()[0];
    assert_eq!(
        (post.method.as_str(), post.target.as_str()),
        ("POST", "/api/v1/clients")
    );
    assert_eq!(
        post.json(),
        json!({"name": "Acme", "owner": "dana", "arr": 120000, "renewal_date": "2026-09-30",
               "attributes": {"region": "emea"}})
    );
    assert!(
        Cli::try_parse_from([
            "waymark",
            "client",
            "create",
            "A",
            "--renewal-date",
            "30/09"
        ])
        .is_err()
    );
}

#[tokio::test]
async fn artifact_list_is_a_table_of_ids_and_titles() {
    let page = json!({
        "items": [
            {"id": "art_1", "type": "strategy", "title": "Q3 plan", "status": "draft",
             "version": 2, "updated_at": "2026-01-02T00:00:00Z"},
            {"id": "art_2", "type": "intake", "title": "Kick-off notes", "status": "approved",
             "version": 1, "updated_at": "2026-01-01T00:00:00Z"}
        ],
        "next_cursor": "c2"
    });
    let server = FakeServer::start(vec![ok(200, page)]).await;
    let out = server
        .run(&[
            "artifact", "list", "--client", "cli_1", "--type", "strategy", "--limit", "2",
        ])
        .await
        .unwrap();

    for expected in [
        "id",
        "title",
        "art_1",
        "Q3 plan",
        "art_2",
        "Kick-off notes",
        "approved",
    ] {
        assert!(out.contains(expected), "{expected} missing from\n{out}");
    }
    assert!(out.contains("--cursor c2"), "{out}");
    assert!(
        out.lines().all(|line| line == line.trim()),
        "no padding at line ends:\n{out}"
    );
    assert_eq!(
        server.requests()[0].target,
        "/api/v1/artifacts?client_id=cli_1&type=strategy&limit=2"
    );
}

#[tokio::test]
async fn all_follows_next_cursor_into_one_json_document() {
    let server = FakeServer::start(vec![
        ok(
            200,
            json!({"items": [{"id": "eng_1"}], "next_cursor": "c2"}),
        ),
        ok(
            200,
            json!({"items": [{"id": "eng_2"}], "next_cursor": null}),
        ),
    ])
    .await;
    let out = server
        .run(&["engagement", "list", "--client", "cli_1", "--all", "--json"])
        .await
        .unwrap();

    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        doc,
        json!({"items": [{"id": "eng_1"}, {"id": "eng_2"}], "next_cursor": null})
    );
    let targets: Vec<_> = server.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(
        targets,
        [
            "/api/v1/engagements?client_id=cli_1",
            "/api/v1/engagements?client_id=cli_1&cursor=c2"
        ]
    );
}

#[tokio::test]
async fn json_prints_the_response_and_get_shows_fields_then_content() {
    let server = FakeServer::start(vec![ok(200, artifact(3)), ok(200, artifact(3))]).await;
    let out = server
        .run(&["artifact", "get", "art_1", "--json"])
        .await
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), artifact(3));

    let out = server.run(&["artifact", "get", "art_1"]).await.unwrap();
    let (fields, content) = out
        .split_once("\n\n")
        .expect("a blank line before the content");
    assert!(
        fields.starts_with("id ") && fields.contains("Q3 plan"),
        "{out}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(content).unwrap(),
        json!({"summary": "grow"})
    );
}

#[tokio::test]
async fn diff_is_a_table_of_operations() {
    let diff = json!({"from": 1, "to": 3, "patch": [
        {"op": "replace", "path": "/summary", "value": "grow faster"},
        {"op": "remove", "path": "/draft"}
    ]});
    let server = FakeServer::start(vec![ok(200, diff)]).await;
    let out = server
        .run(&["artifact", "diff", "art_1", "--from", "1", "--to", "3"])
        .await
        .unwrap();

    assert!(out.starts_with("version 1 → 3\n"), "{out}");
    assert!(out.contains("replace") && out.contains("/summary") && out.contains("\"grow faster\""));
    assert!(out.contains("remove") && out.contains("/draft"), "{out}");
    assert_eq!(
        server.requests()[0].target,
        "/api/v1/artifacts/art_1/diff?from=1&to=3"
    );
}

#[test]
fn writes_show_their_warnings_and_what_they_made_stale() {
    let answer = serde_json::json!({
        "warnings": ["Lead-generation objective but no target audience."],
        "flagged": [{"artifact_id": "art_1", "type": "strategy",
                     "reason": "Upstream intake changed from v1 to v2"}]
    });
    assert_eq!(
        crate::render::warnings(&answer),
        "warning: Lead-generation objective but no target audience.\n"
    );
    assert_eq!(
        crate::render::flagged(&answer),
        "stale: strategy art_1: Upstream intake changed from v1 to v2\n"
    );
    assert_eq!(
        crate::render::flagged(&serde_json::json!({"flagged": []})),
        ""
    );
}
