//! People and shared artifacts for the review and isolation tests: users and
//! their tokens made through the store, and requests made with those tokens.

use reqwest::Method;
use serde_json::{Value, json};
use waymark_domain::{ClientId, UserId};
use waymark_server::auth::{generate_secret, hash_secret};
use waymark_store::{NewToken, NewUser, Role, TokenKind, WriteContext};

use crate::helpers::{Answer, TestApp};

/// A person with a token.
pub struct Person {
    pub id: UserId,
    pub token: String,
}

/// Makes a user of `role` (of `client` for client users) and a token for them.
pub async fn person(app: &TestApp, email: &str, role: Role, client: Option<&str>) -> Person {
    let client_id: Option<ClientId> = client.map(|c| c.parse().unwrap());
    let ctx = WriteContext::new("system");
    let user = app
        .store
        .create_user(
            NewUser {
                email: email.into(),
                name: format!("Name of {email}"),
                role,
                client_id,
                password_hash: None,
            },
            &ctx,
        )
        .await
        .unwrap();
    let token = generate_secret();
    app.store
        .create_token(
            NewToken {
                user_id: Some(user.id),
                client_id,
                kind: TokenKind::Api,
                ..NewToken::standalone(format!("{email} token"), role, hash_secret(&token))
            },
            &ctx,
        )
        .await
        .unwrap();
    Person { id: user.id, token }
}

/// Sends a request with `token` instead of the admin's.
pub async fn call_as(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    app.call_as(Some(token), method, path, body).await
}

pub async fn get_as(app: &TestApp, token: &str, path: &str) -> Answer {
    call_as(app, token, Method::GET, path, None).await
}

pub async fn post_as(app: &TestApp, token: &str, path: &str, body: Value) -> Answer {
    call_as(app, token, Method::POST, path, Some(body)).await
}

/// An artifact of `client` written by `author`, shared for review when `share`.
pub async fn artifact_by(
    app: &TestApp,
    author: &str,
    client: &str,
    title: &str,
    share: bool,
) -> String {
    let a = post_as(
        app,
        author,
        "/api/v1/artifacts",
        json!({"client_id": client, "type": "migration_plan", "title": title,
               "content": {"phases": [{"name": "discovery"}, {"name": "waves"}]}}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let id = a.body["id"].as_str().unwrap().to_owned();
    if share {
        let s = post_as(
            app,
            author,
            &format!("/api/v1/artifacts/{id}/share"),
            json!({"message": format!("{title}: please review")}),
        )
        .await;
        assert_eq!(s.status, 200, "{}", s.body);
    }
    id
}
