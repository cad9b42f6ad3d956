//! Users, tokens and signing in.

use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use waymark_server::auth::{generate_secret, hash_secret};
use waymark_store::{NewToken, Role, WriteContext};

use crate::helpers::{Answer, TestApp};

crate::both_backends!(
    users_of_each_role_and_what_is_refused,
    who_sees_which_users,
    a_client_users_token_makes_only_its_own_tokens,
    admins_make_user_agent_and_standalone_tokens,
    a_revoked_token_fails_on_the_very_next_request,
    an_expired_token_is_refused,
    signing_in_sets_a_cookie_that_authenticates,
    five_failed_sign_ins_lock_the_email_out,
    unknown_and_known_emails_fail_alike,
);

const PASSWORD: &str = "correct horse battery staple";

async fn sign_in(app: &TestApp, email: &str, password: &str) -> Answer {
    app.call_as(
        None,
        Method::POST,
        "/api/v1/sessions",
        Some(json!({"email": email, "password": password})),
    )
    .await
}

fn pointer(a: &Answer) -> &str {
    a.body["errors"][0]["pointer"].as_str().unwrap_or_default()
}

async fn users_of_each_role_and_what_is_refused(app: TestApp) {
    let client = app.client("Acme").await;
    let admin = app
        .user(json!({"email": "  Ada@Example.COM ", "name": "Ada", "role": "admin"}))
        .await;
    assert_eq!(admin["email"], "ada@example.com");
    assert_eq!(admin["role"], "admin");
    assert_eq!(admin["client_id"], Value::Null);
    assert_eq!(admin["has_password"], false);
    assert!(admin["id"].as_str().unwrap().starts_with("usr_"));
    let op = app
        .user(json!({"email": "oz@example.com", "name": "Oz", "role": "operator", "password": PASSWORD}))
        .await;
    assert_eq!(op["role"], "operator");
    assert_eq!(op["has_password"], true);
    let cu = app
        .user(json!({"email": "cy@acme.test", "name": "Cy", "role": "client", "client_id": client}))
        .await;
    assert_eq!(cu["role"], "client");
    assert_eq!(cu["client_id"], client.as_str());

    let missing_client = "cli_0192a0c0000070008000000000000000";
    for (body, at) in [
        (
            json!({"email": "a@x.test", "name": "A", "role": "agent"}),
            "/role",
        ),
        (
            json!({"email": "a@x.test", "name": "A", "role": "owner"}),
            "/role",
        ),
        (
            json!({"email": "a@x.test", "name": "A", "role": "client"}),
            "/client_id",
        ),
        (
            json!({"email": "a@x.test", "name": "A", "role": "operator", "client_id": client}),
            "/client_id",
        ),
        (
            json!({"email": "a@x.test", "name": "A", "role": "client", "client_id": "nope"}),
            "/client_id",
        ),
        (
            json!({"email": "a@x.test", "name": "A", "role": "client", "client_id": missing_client}),
            "/client_id",
        ),
        (
            json!({"email": "not-an-email", "name": "A", "role": "admin"}),
            "/email",
        ),
        (
            json!({"email": "a@b@c", "name": "A", "role": "admin"}),
            "/email",
        ),
        (
            json!({"email": format!("{}@x.test", "a".repeat(250)), "name": "A", "role": "admin"}),
            "/email",
        ),
        (
            json!({"email": "OZ@example.com", "name": "Dup", "role": "admin"}),
            "/email",
        ),
        (
            json!({"email": "a@x.test", "name": " ", "role": "admin"}),
            "/name",
        ),
        (
            json!({"email": "a@x.test", "name": "x".repeat(201), "role": "admin"}),
            "/name",
        ),
        (
            json!({"email": "a@x.test", "name": "A", "role": "admin", "password": "short"}),
            "/password",
        ),
        (
            json!({"email": "a@x.test", "name": "A", "role": "admin", "password": "p".repeat(1025)}),
            "/password",
        ),
        (
            json!({"email": "a@x.test", "name": "A", "role": "admin", "nickname": "A"}),
            "",
        ),
    ] {
        let a = app.post("/api/v1/users", body.clone()).await;
        a.assert_problem(422, "invalid");
        if !at.is_empty() {
            assert_eq!(pointer(&a), at, "{body}: {}", a.body);
        }
    }
    // Nothing refused was created.
    let all = app.get("/api/v1/users").await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 3);

    // Only admins create users.
    let op_token = app.token_for(op["id"].as_str().unwrap()).await;
    let a = app
        .call_as(
            Some(&op_token),
            Method::POST,
            "/api/v1/users",
            Some(json!({"email": "b@x.test", "name": "B", "role": "admin"})),
        )
        .await;
    a.assert_problem(403, "forbidden");
}

async fn who_sees_which_users(app: TestApp) {
    let client = app.client("Acme").await;
    let op = app
        .user(json!({"email": "oz@example.com", "name": "Oz", "role": "operator"}))
        .await;
    let cu = app
        .user(json!({"email": "cy@acme.test", "name": "Cy", "role": "client", "client_id": client}))
        .await;
    let other = app
        .user(json!({"email": "di@acme.test", "name": "Di", "role": "client", "client_id": client}))
        .await;
    let op_token = app.token_for(op["id"].as_str().unwrap()).await;
    let cu_token = app.token_for(cu["id"].as_str().unwrap()).await;

    // Admins and operators list, with filters.
    let list = app
        .call_as(
            Some(&op_token),
            Method::GET,
            &format!("/api/v1/users?client_id={client}&role=client"),
            None,
        )
        .await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 2);
    let page = app.get("/api/v1/users?limit=1").await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 1);
    assert!(page.body["next_cursor"].is_string());
    app.get("/api/v1/users?role=boss")
        .await
        .assert_problem(400, "invalid_query");
    // Client users do not.
    app.call_as(Some(&cu_token), Method::GET, "/api/v1/users", None)
        .await
        .assert_problem(403, "forbidden");

    // A user reads themselves; another user answers as a missing one does.
    let me = app
        .call_as(
            Some(&cu_token),
            Method::GET,
            &format!("/api/v1/users/{}", cu["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["email"], "cy@acme.test");
    let other_id = other["id"].as_str().unwrap();
    let hidden = app
        .call_as(
            Some(&cu_token),
            Method::GET,
            &format!("/api/v1/users/{other_id}"),
            None,
        )
        .await;
    hidden.assert_problem(404, "not_found");
    assert_eq!(hidden.body["detail"], format!("no user {other_id}"));
    let missing = app
        .get("/api/v1/users/usr_0192a0c0000070008000000000000000")
        .await;
    missing.assert_problem(404, "not_found");
    let by_op = app
        .call_as(
            Some(&op_token),
            Method::GET,
            &format!("/api/v1/users/{other_id}"),
            None,
        )
        .await;
    assert_eq!(by_op.status, 200);

    // /me: the user for a user's token, null for the standalone admin token.
    let me = app
        .call_as(Some(&cu_token), Method::GET, "/api/v1/me", None)
        .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["user"]["id"], cu["id"]);
    assert_eq!(me.body["role"], "client");
    assert_eq!(me.body["client_id"], client.as_str());
    assert_eq!(me.body["name"], "Cy");
    assert!(me.body["token_id"].as_str().unwrap().starts_with("tok_"));
    let admin_me = app.get("/api/v1/me").await;
    assert_eq!(admin_me.body["user"], Value::Null);
    assert_eq!(admin_me.body["role"], "admin");
}

async fn a_client_users_token_makes_only_its_own_tokens(app: TestApp) {
    let client = app.client("Acme").await;
    let cu = app
        .user(json!({"email": "cy@acme.test", "name": "Cy", "role": "client", "client_id": client}))
        .await;
    let other = app
        .user(json!({"email": "di@acme.test", "name": "Di", "role": "client", "client_id": client}))
        .await;
    let cu_id = cu["id"].as_str().unwrap();
    let other_id = other["id"].as_str().unwrap();
    let cu_token = app.token_for(cu_id).await;
    let other_token = app.token_for(other_id).await;
    let as_cu = |method: Method, path: String, body: Option<Value>| {
        let t = cu_token.clone();
        let app = &app;
        async move { app.call_as(Some(&t), method, &path, body).await }
    };

    // Their own, with or without naming themselves: their role and client.
    for body in [
        json!({"name": "laptop"}),
        json!({"name": "ci", "user_id": cu_id, "role": "client"}),
    ] {
        let made = as_cu(Method::POST, "/api/v1/tokens".into(), Some(body)).await;
        assert_eq!(made.status, 201, "{}", made.body);
        assert_eq!(made.body["user_id"], cu_id);
        assert_eq!(made.body["role"], "client");
        assert_eq!(made.body["client_id"], client.as_str());
        assert_eq!(made.body["kind"], "api");
        assert!(made.body["token"].as_str().unwrap().starts_with("wm_"));
        // The new token works.
        let me = app
            .call_as(made.body["token"].as_str(), Method::GET, "/api/v1/me", None)
            .await;
        assert_eq!(me.body["user"]["id"], cu_id);
    }
    // Another user's id answers as a missing user would.
    let foreign = as_cu(
        Method::POST,
        "/api/v1/tokens".into(),
        Some(json!({"name": "x", "user_id": other_id})),
    )
    .await;
    foreign.assert_problem(404, "not_found");
    assert_eq!(foreign.body["detail"], format!("no user {other_id}"));
    let missing_id = "usr_0192a0c0000070008000000000000000";
    let missing = as_cu(
        Method::POST,
        "/api/v1/tokens".into(),
        Some(json!({"name": "x", "user_id": missing_id})),
    )
    .await;
    missing.assert_problem(404, "not_found");
    // No higher role, no agent tokens.
    as_cu(
        Method::POST,
        "/api/v1/tokens".into(),
        Some(json!({"name": "x", "role": "admin"})),
    )
    .await
    .assert_problem(422, "invalid");
    as_cu(
        Method::POST,
        "/api/v1/tokens".into(),
        Some(json!({"name": "x", "agent_id": "bot"})),
    )
    .await
    .assert_problem(403, "forbidden");

    // Their list is their own tokens.
    let list = as_cu(Method::GET, "/api/v1/tokens".into(), None).await;
    assert_eq!(list.status, 200);
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{}", list.body);
    assert!(items.iter().all(|t| t["user_id"] == cu_id));
    assert!(items.iter().all(|t| t.get("token").is_none()));
    let theirs = as_cu(
        Method::GET,
        format!("/api/v1/tokens?user_id={other_id}"),
        None,
    )
    .await;
    assert_eq!(theirs.body["items"].as_array().unwrap().len(), 0);
    // Admins see everyone's, never a secret.
    let all = app.get("/api/v1/tokens").await;
    let all = all.body["items"].as_array().unwrap();
    assert_eq!(all.len(), 5, "{all:?}");
    assert!(
        all.iter()
            .all(|t| t.get("token").is_none() && t.get("secret_hash").is_none())
    );
    let others_token_id = app
        .get(&format!("/api/v1/tokens?user_id={other_id}"))
        .await
        .body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Revoking another's token answers as a missing token would, and changes nothing.
    let r = as_cu(
        Method::DELETE,
        format!("/api/v1/tokens/{others_token_id}"),
        None,
    )
    .await;
    r.assert_problem(404, "not_found");
    assert_eq!(r.body["detail"], format!("no token {others_token_id}"));
    let still = app
        .call_as(Some(&other_token), Method::GET, "/api/v1/me", None)
        .await;
    assert_eq!(still.status, 200);

    // A token that belongs to nobody (a standalone operator token) makes none.
    let standalone = app
        .post("/api/v1/tokens", json!({"name": "ops", "role": "operator"}))
        .await;
    let standalone = standalone.body["token"].as_str().unwrap().to_owned();
    app.call_as(
        Some(&standalone),
        Method::POST,
        "/api/v1/tokens",
        Some(json!({"name": "x"})),
    )
    .await
    .assert_problem(403, "forbidden");
    app.call_as(Some(&standalone), Method::GET, "/api/v1/tokens", None)
        .await
        .assert_problem(403, "forbidden");
}

async fn admins_make_user_agent_and_standalone_tokens(app: TestApp) {
    let op = app
        .user(json!({"email": "oz@example.com", "name": "Oz", "role": "operator"}))
        .await;
    let op_id = op["id"].as_str().unwrap();
    let for_user = app
        .post(
            "/api/v1/tokens",
            json!({"name": "oz laptop", "user_id": op_id, "expires_at": "2999-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(for_user.status, 201, "{}", for_user.body);
    assert_eq!(for_user.body["role"], "operator");
    assert_eq!(for_user.body["user_id"], op_id);
    assert_eq!(for_user.body["expires_at"], "2999-01-01T00:00:00Z");
    for key in [
        "id",
        "token",
        "name",
        "role",
        "user_id",
        "agent_id",
        "client_id",
        "kind",
        "expires_at",
        "created_at",
    ] {
        assert!(for_user.body.get(key).is_some(), "{key}: {}", for_user.body);
    }

    let agent = app
        .post(
            "/api/v1/tokens",
            json!({"name": "writer", "agent_id": "writer-1.v2"}),
        )
        .await;
    assert_eq!(agent.status, 201, "{}", agent.body);
    assert_eq!(agent.body["role"], "agent");
    assert_eq!(agent.body["agent_id"], "writer-1.v2");
    let me = app
        .call_as(
            agent.body["token"].as_str(),
            Method::GET,
            "/api/v1/me",
            None,
        )
        .await;
    assert_eq!(me.body["role"], "agent");
    assert_eq!(me.body["name"], "writer-1.v2");

    let standalone = app.post("/api/v1/tokens", json!({"name": "ops"})).await;
    assert_eq!(standalone.status, 201);
    assert_eq!(standalone.body["role"], "operator");
    assert_eq!(standalone.body["user_id"], Value::Null);

    let past = "2001-01-01T00:00:00Z";
    for (body, at) in [
        (
            json!({"name": "x", "user_id": op_id, "agent_id": "bot"}),
            "/agent_id",
        ),
        (json!({"name": "x", "role": "client"}), "/role"),
        (json!({"name": "x", "role": "boss"}), "/role"),
        (
            json!({"name": "x", "user_id": op_id, "role": "admin"}),
            "/role",
        ),
        (json!({"name": "x", "agent_id": "a b"}), "/agent_id"),
        (
            json!({"name": "x", "agent_id": "a".repeat(101)}),
            "/agent_id",
        ),
        (json!({"name": "x", "expires_at": past}), "/expires_at"),
        (
            json!({"name": "x", "expires_at": "tomorrow"}),
            "/expires_at",
        ),
        (json!({"name": "x", "user_id": "nope"}), "/user_id"),
        (json!({"name": " "}), "/name"),
        (json!({"name": "x", "scopes": ["all"]}), ""),
    ] {
        let a = app.post("/api/v1/tokens", body.clone()).await;
        a.assert_problem(422, "invalid");
        if !at.is_empty() {
            assert_eq!(pointer(&a), at, "{body}: {}", a.body);
        }
    }
}

async fn a_revoked_token_fails_on_the_very_next_request(app: TestApp) {
    let op = app
        .user(json!({"email": "oz@example.com", "name": "Oz", "role": "operator"}))
        .await;
    let op_token = app.token_for(op["id"].as_str().unwrap()).await;
    let me = app
        .call_as(Some(&op_token), Method::GET, "/api/v1/me", None)
        .await;
    assert_eq!(me.status, 200);
    let id = me.body["token_id"].as_str().unwrap().to_owned();

    // A user revokes their own token.
    let revoked = app
        .call_as(
            Some(&op_token),
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(revoked.body["id"], id.as_str());
    assert!(revoked.body["revoked_at"].is_string());
    app.call_as(Some(&op_token), Method::GET, "/api/v1/me", None)
        .await
        .assert_problem(401, "unauthorized");

    // An admin revokes anyone's.
    let second = app.token_for(op["id"].as_str().unwrap()).await;
    let id = app
        .call_as(Some(&second), Method::GET, "/api/v1/me", None)
        .await
        .body["token_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .call(Method::DELETE, &format!("/api/v1/tokens/{id}"), None, &[])
        .await;
    assert_eq!(r.status, 200);
    app.call_as(Some(&second), Method::GET, "/api/v1/clients", None)
        .await
        .assert_problem(401, "unauthorized");
    // Again: nothing changes, still revoked.
    let again = app
        .call(Method::DELETE, &format!("/api/v1/tokens/{id}"), None, &[])
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["revoked_at"], r.body["revoked_at"]);
    app.call(
        Method::DELETE,
        "/api/v1/tokens/tok_0192a0c0000070008000000000000000",
        None,
        &[],
    )
    .await
    .assert_problem(404, "not_found");
}

async fn an_expired_token_is_refused(app: TestApp) {
    let secret = generate_secret();
    let mut new = NewToken::standalone("old", Role::Operator, hash_secret(&secret));
    new.expires_at = Some(OffsetDateTime::now_utc() - time::Duration::hours(1));
    app.store
        .create_token(new, &WriteContext::new("test"))
        .await
        .unwrap();
    app.call_as(Some(&secret), Method::GET, "/api/v1/me", None)
        .await
        .assert_problem(401, "unauthorized");
    // The same with a live expiry works.
    let secret = generate_secret();
    let mut new = NewToken::standalone("new", Role::Operator, hash_secret(&secret));
    new.expires_at = Some(OffsetDateTime::now_utc() + time::Duration::hours(1));
    app.store
        .create_token(new, &WriteContext::new("test"))
        .await
        .unwrap();
    let ok = app
        .call_as(Some(&secret), Method::GET, "/api/v1/me", None)
        .await;
    assert_eq!(ok.status, 200);
}

fn cookie_of(a: &Answer) -> String {
    a.headers
        .get("set-cookie")
        .expect("a Set-Cookie header")
        .to_str()
        .unwrap()
        .to_owned()
}

async fn signing_in_sets_a_cookie_that_authenticates(app: TestApp) {
    let client = app.client("Acme").await;
    let cu = app
        .user(json!({"email": "cy@acme.test", "name": "Cy", "role": "client", "client_id": client, "password": PASSWORD}))
        .await;
    // No token needed; the email in any case.
    let s = sign_in(&app, " CY@acme.test", PASSWORD).await;
    assert_eq!(s.status, 201, "{}", s.body);
    let token = s.body["token"].as_str().unwrap().to_owned();
    assert_eq!(s.body["user"]["id"], cu["id"]);
    let expires = OffsetDateTime::parse(
        s.body["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let hours = (expires - OffsetDateTime::now_utc()).whole_minutes();
    assert!((11 * 60..=12 * 60).contains(&hours), "{hours}");
    let cookie = cookie_of(&s);
    assert_eq!(
        cookie,
        format!("waymark_session={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age=43200")
    );

    // The cookie alone authenticates.
    let me = app
        .http
        .get(format!("{}/api/v1/me", app.base))
        .header("cookie", format!("theme=dark; waymark_session={token}"))
        .send()
        .await
        .unwrap();
    let me = TestApp::answer(me).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["user"]["email"], "cy@acme.test");
    assert_eq!(me.body["role"], "client");
    assert_eq!(me.body["client_id"], client.as_str());
    let sessions = app
        .get(&format!(
            "/api/v1/tokens?user_id={}",
            cu["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(sessions.body["items"][0]["kind"], "session");
    assert!(sessions.body["items"][0]["expires_at"].is_string());

    // Signing out revokes it and clears the cookie.
    let out = app
        .http
        .delete(format!("{}/api/v1/sessions/current", app.base))
        .header("cookie", format!("waymark_session={token}"))
        .send()
        .await
        .unwrap();
    let out = TestApp::answer(out).await;
    assert_eq!(out.status, 204, "{}", out.body);
    assert!(cookie_of(&out).starts_with("waymark_session=; "));
    assert!(cookie_of(&out).contains("Max-Age=0"));
    let after = app
        .http
        .get(format!("{}/api/v1/me", app.base))
        .header("cookie", format!("waymark_session={token}"))
        .send()
        .await
        .unwrap();
    TestApp::answer(after)
        .await
        .assert_problem(401, "unauthorized");

    // A user without a password cannot sign in; the sign-in body is strict.
    app.user(json!({"email": "np@x.test", "name": "Np", "role": "operator"}))
        .await;
    sign_in(&app, "np@x.test", "")
        .await
        .assert_problem(401, "unauthorized");
    app.call_as(
        None,
        Method::POST,
        "/api/v1/sessions",
        Some(json!({"email": "cy@acme.test", "password": PASSWORD, "remember": true})),
    )
    .await
    .assert_problem(422, "invalid");
}

async fn five_failed_sign_ins_lock_the_email_out(app: TestApp) {
    for (email, name) in [("oz@example.com", "Oz"), ("di@example.com", "Di")] {
        app.user(json!({"email": email, "name": name, "role": "operator", "password": PASSWORD}))
            .await;
    }
    // Success clears earlier failures.
    for _ in 0..4 {
        sign_in(&app, "di@example.com", "wrong password!")
            .await
            .assert_problem(401, "unauthorized");
    }
    assert_eq!(sign_in(&app, "di@example.com", PASSWORD).await.status, 201);
    for _ in 0..4 {
        sign_in(&app, "di@example.com", "wrong password!")
            .await
            .assert_problem(401, "unauthorized");
    }

    for _ in 0..5 {
        sign_in(&app, "oz@example.com", "wrong password!")
            .await
            .assert_problem(401, "unauthorized");
    }
    // The sixth is refused before the password is looked at, even the right one
    // and whatever the case of the email.
    let locked = sign_in(&app, "OZ@example.com", PASSWORD).await;
    locked.assert_problem(429, "too_many_attempts");
    let retry: u64 = locked.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    // About 15 minutes, less the seconds since the first failure.
    assert!(retry >= 800, "{retry}");
    // Other emails are not affected.
    assert_eq!(sign_in(&app, "di@example.com", PASSWORD).await.status, 201);
}

async fn unknown_and_known_emails_fail_alike(app: TestApp) {
    app.user(
        json!({"email": "oz@example.com", "name": "Oz", "role": "operator", "password": PASSWORD}),
    )
    .await;
    let known = sign_in(&app, "oz@example.com", "not the password").await;
    let unknown = sign_in(&app, "nobody@example.com", "not the password").await;
    known.assert_problem(401, "unauthorized");
    unknown.assert_problem(401, "unauthorized");
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("trace_id");
        }
        v
    };
    assert_eq!(strip(&known.body), strip(&unknown.body));
    assert_eq!(known.body["detail"], "wrong email or password");
    assert_eq!(
        known.headers.get("www-authenticate"),
        unknown.headers.get("www-authenticate")
    );
}
