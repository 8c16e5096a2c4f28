//! Accounts and sessions over real HTTP: registration, sign-in, refresh rotation, logout, the
//! account endpoints, password rules, lockout, and hostile access tokens.

use crate::support::{JWT_SECRET, PASSWORD, TestApp, access, error_fields, expect, problem, s, sql_str};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::{Method, Response, StatusCode};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The claims of a JWT, read without verifying (the client's view of its own token).
fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("three JWT segments");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn jwt_header(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

/// The session id carried by an access token.
fn sid_of(pair: &Value) -> String {
    s(&jwt_claims(&s(&pair["access_token"]))["sid"])
}

fn refresh_tok(pair: &Value) -> String {
    s(&pair["refresh_token"])
}

async fn me_status(app: &TestApp, token: &str) -> StatusCode {
    app.get("/me", Some(token)).await.status()
}

async fn refresh(app: &TestApp, token: &str) -> Response {
    app.post("/auth/refresh", None, json!({ "refresh_token": token })).await
}

async fn login_ok(app: &TestApp, email: &str, password: &str) -> Value {
    expect(app.login(email, password).await, StatusCode::OK).await
}

/// A problem body without its request id, for comparing two answers.
fn without_request_id(mut body: Value) -> Value {
    body.as_object_mut().unwrap().remove("request_id");
    body
}

/// The key id the server derives from its secret: hex of the first 6 bytes of
/// SHA-256("cifix-kid:" + secret).
fn kid_for(secret: &str) -> String {
    hex::encode(&Sha256::digest(format!("cifix-kid:{secret}").as_bytes())[..6])
}

/// Claims like the server issues, valid for ten minutes.
fn claims(sub: &str, sid: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": "cifix",
        "aud": "cifix-api",
        "sub": sub,
        "sid": sid,
        "role": "student",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    })
}

fn sign(claims: &Value, secret: &str, kid: Option<String>, alg: Algorithm) -> String {
    let mut header = Header::new(alg);
    header.kid = kid;
    encode(&header, claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

/// Signed exactly like the server signs: HS256, the server's secret and kid.
fn forge(claims: &Value) -> String {
    sign(claims, JWT_SECRET, Some(kid_for(JWT_SECRET)), Algorithm::HS256)
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// A registered user: (token pair, user id, session id).
async fn user(app: &TestApp, email: &str) -> (Value, String, String) {
    let pair = app.register(email).await;
    let id = s(&pair["user"]["id"]);
    let sid = sid_of(&pair);
    (pair, id, sid)
}

/// Asserts that `token` is refused on an authenticated endpoint with a 401 problem.
async fn assert_rejected(app: &TestApp, token: &str, what: &str) {
    let res = app.get("/me", Some(token)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}: must be 401");
    problem(res, StatusCode::UNAUTHORIZED).await;
    // The same token on a state-changing endpoint is refused too.
    let res = app.post("/auth/logout-all", Some(token), json!({})).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}: logout-all must be 401");
}

// ---------------------------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_creates_user_session_and_audit_row() {
    let app = TestApp::spawn().await;
    let res = app
        .post(
            "/auth/register",
            None,
            json!({"email": "new@example.com", "password": PASSWORD, "display_name": "  Ada Lovelace  "}),
        )
        .await;
    let body = expect(res, StatusCode::CREATED).await;

    let user = &body["user"];
    let id = s(&user["id"]);
    Uuid::parse_str(&id).expect("user id is a UUID");
    assert_eq!(user["email"], "new@example.com");
    assert_eq!(user["display_name"], "Ada Lovelace", "display name is trimmed");
    assert_eq!(user["role"], "student");
    assert_eq!(user["email_verified"], false);
    chrono::DateTime::parse_from_rfc3339(&s(&user["created_at"])).expect("RFC 3339 created_at");
    assert!(user.get("password_hash").is_none() && user.get("password").is_none());
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(!s(&body["refresh_token"]).is_empty());

    // The access token is a JWT for this user and works at once.
    let claims = jwt_claims(&access(&body));
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["iss"], "cifix");
    assert_eq!(claims["aud"], "cifix-api");
    assert_eq!(jwt_header(&access(&body))["kid"], kid_for(JWT_SECRET).as_str());
    let me = expect(app.get("/me", Some(&access(&body))).await, StatusCode::OK).await;
    assert_eq!(me["id"], id.as_str());

    assert_eq!(app.count("SELECT COUNT(*) FROM users WHERE email = 'new@example.com'").await, 1);
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE u.email = 'new@example.com' AND s.revoked_at IS NULL"
        )
        .await,
        1
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'auth.register' \
             AND target_type = 'user' AND target_id = '{id}' AND ip = '127.0.0.1'"
        ))
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_email_is_409_case_insensitively() {
    let app = TestApp::spawn().await;
    let first = app.register("Alice@Example.com").await;
    assert_eq!(first["user"]["email"], "alice@example.com", "stored lower-cased");

    for email in ["alice@example.com", "ALICE@EXAMPLE.COM", "  Alice@example.COM "] {
        let res = app
            .post(
                "/auth/register",
                None,
                json!({"email": email, "password": "another good passphrase", "display_name": "Imposter"}),
            )
            .await;
        let body = problem(res, StatusCode::CONFLICT).await;
        assert!(!s(&body["detail"]).is_empty());
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.register'").await, 1);
    // The original password still works, whatever case the email is typed in.
    login_ok(&app, "ALICE@example.com", PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_validation_names_every_bad_field() {
    let app = TestApp::spawn().await;
    let res = app
        .post("/auth/register", None, json!({"email": "not-an-email", "password": "short", "display_name": "   "}))
        .await;
    let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    let mut fields = error_fields(&body);
    fields.sort();
    assert_eq!(fields, vec!["display_name", "email", "password"]);
    for e in body["errors"].as_array().unwrap() {
        assert!(!s(&e["message"]).is_empty());
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
}

// ---------------------------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_returns_tokens_and_user_and_audits() {
    let app = TestApp::spawn().await;
    let (reg, id, reg_sid) = user(&app, "bob@example.com").await;
    let body = login_ok(&app, "bob@example.com", PASSWORD).await;
    assert_eq!(body["user"]["id"], id.as_str());
    assert_eq!(body["user"]["email"], "bob@example.com");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_ne!(refresh_tok(&body), refresh_tok(&reg));
    assert_ne!(sid_of(&body), reg_sid, "each login is its own session");
    assert_eq!(me_status(&app, &access(&body)).await, StatusCode::OK);
    assert_eq!(
        app.count(&format!("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.login' AND target_id = '{id}'")).await,
        1
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE u.email = 'bob@example.com' AND s.revoked_at IS NULL"
        )
        .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let app = TestApp::spawn().await;
    app.register("carol@example.com").await;

    let wrong_pw = app.login("carol@example.com", "not the right password").await;
    let wrong_headers = wrong_pw.headers().clone();
    let wrong_pw = problem(wrong_pw, StatusCode::UNAUTHORIZED).await;
    let unknown = app.login("nobody@example.com", PASSWORD).await;
    let unknown_headers = unknown.headers().clone();
    let unknown = problem(unknown, StatusCode::UNAUTHORIZED).await;

    assert_ne!(wrong_pw["request_id"], unknown["request_id"]);
    assert_eq!(without_request_id(wrong_pw), without_request_id(unknown));
    assert_eq!(wrong_headers.get("content-type"), unknown_headers.get("content-type"));
    assert_eq!(wrong_headers.get("retry-after").is_some(), unknown_headers.get("retry-after").is_some());
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.login_failed'").await,
        2,
        "both failures are audited"
    );
}

// ---------------------------------------------------------------------------------------------
// Refresh, logout, logout-all
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_and_a_replayed_token_revokes_the_session() {
    let app = TestApp::spawn().await;
    let (r0, id, sid) = user(&app, "dan@example.com").await;

    let r1 = expect(refresh(&app, &refresh_tok(&r0)).await, StatusCode::OK).await;
    assert_ne!(refresh_tok(&r1), refresh_tok(&r0), "refresh token rotates");
    assert_eq!(sid_of(&r1), sid, "same session");
    assert_eq!(r1["user"]["id"], id.as_str());
    assert_eq!(r1["token_type"], "Bearer");
    assert_eq!(me_status(&app, &access(&r1)).await, StatusCode::OK);

    // The spent token comes back: refused, and the whole session ends.
    problem(refresh(&app, &refresh_tok(&r0)).await, StatusCode::UNAUTHORIZED).await;
    problem(refresh(&app, &refresh_tok(&r1)).await, StatusCode::UNAUTHORIZED).await;
    assert_rejected(&app, &access(&r1), "access token of a session ended by reuse").await;
    assert_rejected(&app, &access(&r0), "older access token of that session").await;
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'auth.refresh_reuse_detected' \
             AND target_id = '{sid}'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE u.email = 'dan@example.com' AND s.revoked_at IS NOT NULL"
        )
        .await,
        1
    );
    // Signing in again still works: the account is not punished, only the session.
    login_ok(&app, "dan@example.com", PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rejects_unknown_empty_and_oversized_tokens() {
    let app = TestApp::spawn().await;
    app.register("erin@example.com").await;
    for t in ["", "definitely-not-a-token", &"x".repeat(5000)] {
        problem(refresh(&app, t).await, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_of_one_token_succeed_at_most_once() {
    let app = TestApp::spawn().await;
    let (pair, _, _) = user(&app, "race@example.com").await;
    let t = refresh_tok(&pair);
    let (a, b) = tokio::join!(refresh(&app, &t), refresh(&app, &t));
    let statuses = [a.status(), b.status()];
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!(ok <= 1, "one refresh token, two successes: {statuses:?}");
    for s in statuses {
        assert!(s == StatusCode::OK || s == StatusCode::UNAUTHORIZED, "{statuses:?}");
    }
    assert!(ok == 1, "exactly one of the two concurrent refreshes wins: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_session_and_is_idempotent() {
    let app = TestApp::spawn().await;
    let (pair, _, sid) = user(&app, "fay@example.com").await;
    let other = login_ok(&app, "fay@example.com", PASSWORD).await;

    let res = app.post("/auth/logout", None, json!({"refresh_token": refresh_tok(&pair)})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(res.headers().contains_key("x-request-id"));
    assert!(res.text().await.unwrap().is_empty());

    problem(refresh(&app, &refresh_tok(&pair)).await, StatusCode::UNAUTHORIZED).await;
    assert_rejected(&app, &access(&pair), "access token of a logged-out session").await;
    // The user's other session is untouched.
    assert_eq!(me_status(&app, &access(&other)).await, StatusCode::OK);
    expect(refresh(&app, &refresh_tok(&other)).await, StatusCode::OK).await;

    // Again, and with an unknown token: still 204, nothing more happens.
    for t in [refresh_tok(&pair), "unknown-token".to_string()] {
        let res = app.post("/auth/logout", None, json!({"refresh_token": t})).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(
        app.count(&format!("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.logout' AND target_id = '{sid}'"))
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_all_ends_every_session_of_the_user_at_once() {
    let app = TestApp::spawn().await;
    let (a, _, _) = user(&app, "gus@example.com").await;
    let b = login_ok(&app, "gus@example.com", PASSWORD).await;
    let c = login_ok(&app, "gus@example.com", PASSWORD).await;
    let (stranger, _, _) = user(&app, "hal@example.com").await;
    for p in [&a, &b, &c] {
        assert_eq!(me_status(&app, &access(p)).await, StatusCode::OK);
    }

    let res = app.post("/auth/logout-all", Some(&access(&b)), json!({})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    for (p, name) in [(&a, "a"), (&b, "b"), (&c, "c")] {
        assert_rejected(&app, &access(p), &format!("access token of session {name}")).await;
        problem(refresh(&app, &refresh_tok(p)).await, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(me_status(&app, &access(&stranger)).await, StatusCode::OK, "other users keep theirs");
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE u.email = 'gus@example.com' AND s.revoked_at IS NULL"
        )
        .await,
        0
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.logout_all'").await, 1);
    // Without a token it is 401.
    problem(app.post("/auth/logout-all", None, json!({})).await, StatusCode::UNAUTHORIZED).await;
}

// ---------------------------------------------------------------------------------------------
// /me
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_me_returns_the_user_and_needs_a_token() {
    let app = TestApp::spawn().await;
    let (pair, id, _) = user(&app, "ida@example.com").await;
    let me = expect(app.get("/me", Some(&access(&pair))).await, StatusCode::OK).await;
    assert_eq!(me["id"], id.as_str());
    assert_eq!(me["email"], "ida@example.com");
    assert_eq!(me["display_name"], "Test User");
    assert_eq!(me["role"], "student");
    assert_eq!(me["email_verified"], false);
    assert!(me["created_at"].is_string());
    let keys: Vec<&String> = me.as_object().unwrap().keys().collect();
    for k in &keys {
        assert!(!k.contains("password") && !k.contains("failed"), "no internal field {k}");
    }
    problem(app.get("/me", None).await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_me_changes_and_validates_display_name() {
    let app = TestApp::spawn().await;
    let (pair, id, _) = user(&app, "jay@example.com").await;
    let t = access(&pair);

    let body = expect(
        app.send_json(Method::PATCH, "/me", Some(&t), json!({"display_name": "Jay Q. Public"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["display_name"], "Jay Q. Public");
    assert_eq!(body["id"], id.as_str());
    let me = expect(app.get("/me", Some(&t)).await, StatusCode::OK).await;
    assert_eq!(me["display_name"], "Jay Q. Public", "persisted");
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'user.update_profile'").await, 1);

    // Unicode is welcome, 100 characters is the maximum.
    let hundred = "é".repeat(100);
    let body =
        expect(app.send_json(Method::PATCH, "/me", Some(&t), json!({"display_name": hundred})).await, StatusCode::OK)
            .await;
    assert_eq!(body["display_name"], hundred.as_str());

    let bad = [
        "".to_string(),
        "    ".to_string(),
        "x".repeat(101),
        "bell\u{7}name".to_string(),
        "two\nlines".to_string(),
        "nul\u{0}byte".to_string(),
        "esc\u{1b}[31mred".to_string(),
        "del\u{7f}".to_string(),
    ];
    for name in bad {
        let res = app.send_json(Method::PATCH, "/me", Some(&t), json!({"display_name": name})).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "display_name {name:?}");
        let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&body), vec!["display_name"], "display_name {name:?}");
    }
    let me = expect(app.get("/me", Some(&t)).await, StatusCode::OK).await;
    assert_eq!(me["display_name"], hundred.as_str(), "refused updates changed nothing");

    // An empty patch changes nothing.
    let body = expect(app.send_json(Method::PATCH, "/me", Some(&t), json!({})).await, StatusCode::OK).await;
    assert_eq!(body["display_name"], hundred.as_str());

    problem(app.send_json(Method::PATCH, "/me", None, json!({"display_name": "x"})).await, StatusCode::UNAUTHORIZED)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_me_cannot_set_role_or_email() {
    let app = TestApp::spawn().await;
    let (pair, _, _) = user(&app, "kim@example.com").await;
    let t = access(&pair);
    for (field, value) in [("role", "admin"), ("email", "admin@example.com"), ("email_verified", "true")] {
        let res = app.send_json(Method::PATCH, "/me", Some(&t), json!({ field: value })).await;
        let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&body), vec![field]);
    }
    let me = expect(app.get("/me", Some(&t)).await, StatusCode::OK).await;
    assert_eq!(me["role"], "student");
    assert_eq!(me["email"], "kim@example.com");
    assert_eq!(me["email_verified"], false);
}

// ---------------------------------------------------------------------------------------------
// /me/password
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_password_with_wrong_current_is_422() {
    let app = TestApp::spawn().await;
    let (pair, _, _) = user(&app, "lee@example.com").await;
    let other = login_ok(&app, "lee@example.com", PASSWORD).await;
    let res = app
        .post(
            "/me/password",
            Some(&access(&pair)),
            json!({"current_password": "not my password at all", "new_password": "a brand new passphrase"}),
        )
        .await;
    let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&body), vec!["current_password"]);
    // Nothing changed: old password works, the other session lives.
    login_ok(&app, "lee@example.com", PASSWORD).await;
    problem(app.login("lee@example.com", "a brand new passphrase").await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(me_status(&app, &access(&other)).await, StatusCode::OK);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.password_change'").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_password_refuses_a_weak_new_password() {
    let app = TestApp::spawn().await;
    let (pair, _, _) = user(&app, "max@example.com").await;
    for weak in ["short1!", "password123", &"y".repeat(129)] {
        let res = app
            .post("/me/password", Some(&access(&pair)), json!({"current_password": PASSWORD, "new_password": weak}))
            .await;
        let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&body), vec!["new_password"], "new password {weak:?}");
    }
    login_ok(&app, "max@example.com", PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_password_ends_other_sessions_but_keeps_the_current_one() {
    let app = TestApp::spawn().await;
    let (current, id, _) = user(&app, "nia@example.com").await;
    let other = login_ok(&app, "nia@example.com", PASSWORD).await;
    let new_password = "a brand new passphrase";

    let res = app
        .post(
            "/me/password",
            Some(&access(&current)),
            json!({"current_password": PASSWORD, "new_password": new_password}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    // The session that changed the password goes on.
    assert_eq!(me_status(&app, &access(&current)).await, StatusCode::OK);
    let rotated = expect(refresh(&app, &refresh_tok(&current)).await, StatusCode::OK).await;
    assert_eq!(me_status(&app, &access(&rotated)).await, StatusCode::OK);
    // The other one ends at once, access and refresh.
    assert_rejected(&app, &access(&other), "other session after a password change").await;
    problem(refresh(&app, &refresh_tok(&other)).await, StatusCode::UNAUTHORIZED).await;

    // The new password signs in, the old one no longer does.
    login_ok(&app, "nia@example.com", new_password).await;
    problem(app.login("nia@example.com", PASSWORD).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'auth.password_change' AND target_id = '{id}'"
        ))
        .await,
        1
    );
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

async fn sessions_page(app: &TestApp, token: &str, query: &str) -> Value {
    expect(app.get(&format!("/me/sessions{query}"), Some(token)).await, StatusCode::OK).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_list_is_paginated() {
    let app = TestApp::spawn().await;
    let (first, _, first_sid) = user(&app, "oli@example.com").await;
    let res = app
        .req(Method::POST, "/auth/login", None)
        .header("user-agent", "cifix-test-agent/1.0")
        .json(&json!({"email": "oli@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let second = expect(res, StatusCode::OK).await;
    let third = login_ok(&app, "oli@example.com", PASSWORD).await;
    // Another user's sessions never show up.
    user(&app, "pat@example.com").await;
    let t = access(&third);

    let all = sessions_page(&app, &t, "").await;
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(all["next_cursor"].is_null());
    let ids: Vec<String> = items.iter().map(|i| s(&i["id"])).collect();
    for sid in [&first_sid, &sid_of(&second), &sid_of(&third)] {
        assert!(ids.contains(sid), "session {sid} listed");
    }
    for i in items {
        assert!(i["created_at"].is_string() && i["last_used_at"].is_string());
        assert_eq!(i["ip"], "127.0.0.1");
    }
    let with_agent = items.iter().find(|i| i["id"] == sid_of(&second).as_str()).unwrap();
    assert_eq!(with_agent["user_agent"], "cifix-test-agent/1.0");

    // One at a time: each page gives a cursor until the last.
    let mut seen = Vec::new();
    let mut query = "?limit=1".to_string();
    loop {
        let page = sessions_page(&app, &t, &query).await;
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "limit=1 gives one item");
        seen.push(s(&items[0]["id"]));
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("?limit=1&cursor={c}"),
            None => break,
        }
        assert!(seen.len() < 10, "pagination does not end");
    }
    let mut sorted_seen = seen.clone();
    sorted_seen.sort();
    sorted_seen.dedup();
    assert_eq!(sorted_seen.len(), 3, "every session exactly once: {seen:?}");

    // A revoked session drops out of the list.
    let res = app.post("/auth/logout", None, json!({"refresh_token": refresh_tok(&first)})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let after = sessions_page(&app, &t, "?limit=100").await;
    assert_eq!(after["items"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_list_rejects_bad_limit_and_cursor() {
    let app = TestApp::spawn().await;
    let (pair, _, _) = user(&app, "quinn@example.com").await;
    let t = access(&pair);
    for q in ["?limit=0", "?limit=101"] {
        let body =
            problem(app.get(&format!("/me/sessions{q}"), Some(&t)).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&body), vec!["limit"], "{q}");
    }
    for q in ["?limit=-1", "?limit=abc", "?cursor=not-a-cursor"] {
        problem(app.get(&format!("/me/sessions{q}"), Some(&t)).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    sessions_page(&app, &t, "?limit=100").await;
    sessions_page(&app, &t, "?limit=1").await;
    problem(app.get("/me/sessions", None).await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_own_session_ends_it() {
    let app = TestApp::spawn().await;
    let (mine, _, _) = user(&app, "ray@example.com").await;
    let laptop = login_ok(&app, "ray@example.com", PASSWORD).await;
    let laptop_sid = sid_of(&laptop);

    let res =
        app.req(Method::DELETE, &format!("/me/sessions/{laptop_sid}"), Some(&access(&mine))).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    assert_rejected(&app, &access(&laptop), "access token of a revoked session").await;
    problem(refresh(&app, &refresh_tok(&laptop)).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(me_status(&app, &access(&mine)).await, StatusCode::OK, "the caller's session lives");
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'auth.session_revoke' AND target_id = '{laptop_sid}'"
        ))
        .await,
        1
    );

    // Revoking it again, a random id, or a non-UUID: 404.
    for id in [laptop_sid.clone(), Uuid::new_v4().to_string(), "not-a-uuid".to_string()] {
        let res = app.req(Method::DELETE, &format!("/me/sessions/{id}"), Some(&access(&mine))).send().await.unwrap();
        problem(res, StatusCode::NOT_FOUND).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_another_users_session_is_404_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (attacker, _, _) = user(&app, "sam@example.com").await;
    let (victim, _, victim_sid) = user(&app, "tia@example.com").await;

    let res =
        app.req(Method::DELETE, &format!("/me/sessions/{victim_sid}"), Some(&access(&attacker))).send().await.unwrap();
    let body = problem(res, StatusCode::NOT_FOUND).await;
    assert!(!body.to_string().contains(&victim_sid));

    assert_eq!(me_status(&app, &access(&victim)).await, StatusCode::OK);
    expect(refresh(&app, &refresh_tok(&victim)).await, StatusCode::OK).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NOT NULL").await, 0);
}

// ---------------------------------------------------------------------------------------------
// Password rules
// ---------------------------------------------------------------------------------------------

async fn register_with(app: &TestApp, email: &str, password: &str) -> Response {
    app.post("/auth/register", None, json!({"email": email, "password": password, "display_name": "P"})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_length_is_8_to_128_characters() {
    let app = TestApp::spawn().await;
    for (i, pw) in ["Zq9!xk2".to_string(), "Q".repeat(129), "é".repeat(129)].iter().enumerate() {
        let res = register_with(&app, &format!("bad{i}@example.com"), pw).await;
        let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&body), vec!["password"], "{} chars", pw.chars().count());
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);

    // The bounds themselves are fine, counted in characters rather than bytes.
    for (i, pw) in ["Zq9!xk2#".to_string(), "Q".repeat(128), "é".repeat(128)].iter().enumerate() {
        let email = format!("ok{i}@example.com");
        let res = register_with(&app, &email, pw).await;
        expect(res, StatusCode::CREATED).await;
        login_ok(&app, &email, pw).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn common_passwords_are_refused() {
    let app = TestApp::spawn().await;
    for (i, pw) in ["password123", "Password123", "12345678", "qwertyuiop"].iter().enumerate() {
        let res = register_with(&app, &format!("common{i}@example.com"), pw).await;
        let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&body), vec!["password"], "{pw}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_byte_of_a_long_password_counts() {
    let app = TestApp::spawn().await;
    // 100 characters alike, so bcrypt's 72-byte window would see the two as equal.
    let base: String = "Zebra-7-quartz!".chars().cycle().take(100).collect();
    let real = format!("{base}X");
    let other = format!("{base}Y");
    assert_eq!(real.len(), 101);
    expect(register_with(&app, "lp@example.com", &real).await, StatusCode::CREATED).await;

    problem(app.login("lp@example.com", &other).await, StatusCode::UNAUTHORIZED).await;
    problem(app.login("lp@example.com", &real[..72]).await, StatusCode::UNAUTHORIZED).await;
    login_ok(&app, "lp@example.com", &real).await;

    // Differing at byte 73 only.
    let a: String = "Kite&Mango#9".chars().cycle().take(72).collect();
    expect(register_with(&app, "lp2@example.com", &format!("{a}one")).await, StatusCode::CREATED).await;
    problem(app.login("lp2@example.com", &format!("{a}two")).await, StatusCode::UNAUTHORIZED).await;
    login_ok(&app, "lp2@example.com", &format!("{a}one")).await;
}

// ---------------------------------------------------------------------------------------------
// Failed-login lockout
// ---------------------------------------------------------------------------------------------

async fn failed_count(app: &TestApp, email: &str) -> i64 {
    app.count(&format!("SELECT CAST(failed_login_count AS BIGINT) FROM users WHERE email = '{}'", sql_str(email))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_locks_after_too_many_failed_logins() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_MAX_FAILED_LOGINS_PER_HOUR".into(), "3".into());
    })
    .await;
    app.register("uma@example.com").await;
    app.register("vic@example.com").await;

    for n in 1..=3 {
        problem(app.login("uma@example.com", "wrong password here").await, StatusCode::UNAUTHORIZED).await;
        assert_eq!(failed_count(&app, "uma@example.com").await, n, "counted in the users table");
    }
    // Now even the right password is refused, with a hint when to retry.
    let res = app.login("uma@example.com", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "Retry-After {retry}");
    problem(res, StatusCode::TOO_MANY_REQUESTS).await;
    problem(app.login("uma@example.com", "wrong password here").await, StatusCode::TOO_MANY_REQUESTS).await;

    // Other accounts are unaffected.
    login_ok(&app, "vic@example.com", PASSWORD).await;
    assert_eq!(failed_count(&app, "vic@example.com").await, 0);
    // No session was created for the locked account after registration.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.email = 'uma@example.com'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_login_resets_the_failure_counter() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_MAX_FAILED_LOGINS_PER_HOUR".into(), "3".into());
    })
    .await;
    app.register("wes@example.com").await;
    for _ in 0..2 {
        problem(app.login("wes@example.com", "wrong password here").await, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(failed_count(&app, "wes@example.com").await, 2);
    login_ok(&app, "wes@example.com", PASSWORD).await;
    assert_eq!(failed_count(&app, "wes@example.com").await, 0);
    // Two more failures do not lock: the count started again.
    for _ in 0..2 {
        problem(app.login("wes@example.com", "wrong password here").await, StatusCode::UNAUTHORIZED).await;
    }
    login_ok(&app, "wes@example.com", PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_user_is_shut_out_at_once() {
    let app = TestApp::spawn().await;
    let (pair, _, _) = user(&app, "xan@example.com").await;
    app.db.conn.execute_unprepared("UPDATE users SET is_active = false WHERE email = 'xan@example.com'").await.unwrap();
    assert_rejected(&app, &access(&pair), "access token of a deactivated user").await;
    problem(refresh(&app, &refresh_tok(&pair)).await, StatusCode::UNAUTHORIZED).await;
    // Login says what it says for a wrong password: nothing about the account's state.
    let deactivated = problem(app.login("xan@example.com", PASSWORD).await, StatusCode::UNAUTHORIZED).await;
    let unknown = problem(app.login("nobody@example.com", PASSWORD).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(without_request_id(deactivated), without_request_id(unknown));
}

// ---------------------------------------------------------------------------------------------
// Secrets at rest
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_and_tokens_are_never_stored_in_clear() {
    let app = TestApp::spawn().await;
    let canary = "Canary-Pw-7f3a9c2e1b";
    let res = register_with(&app, "yul@example.com", canary).await;
    let reg = expect(res, StatusCode::CREATED).await;
    let logged = login_ok(&app, "yul@example.com", canary).await;
    problem(app.login("yul@example.com", "Canary-Wrong-55d1e9").await, StatusCode::UNAUTHORIZED).await;
    let rotated = expect(refresh(&app, &refresh_tok(&logged)).await, StatusCode::OK).await;

    let secrets = [
        canary.to_string(),
        "Canary-Wrong-55d1e9".to_string(),
        refresh_tok(&reg),
        refresh_tok(&logged),
        refresh_tok(&rotated),
        access(&reg),
        access(&logged),
        access(&rotated),
    ];
    for secret in &secrets {
        let lit = sql_str(secret);
        for (table, cols) in [
            ("users", vec!["email", "display_name", "password_hash"]),
            ("refresh_tokens", vec!["token_hash"]),
            ("sessions", vec!["user_agent", "ip", "revoked_reason"]),
            ("audit_log", vec!["action", "target_type", "target_id", "ip", "user_agent", "request_id"]),
        ] {
            for col in cols {
                let n =
                    app.count(&format!("SELECT COUNT(*) FROM {table} WHERE COALESCE({col}, '') LIKE '%{lit}%'")).await;
                assert_eq!(n, 0, "{table}.{col} holds a secret in clear");
            }
        }
        let n = app
            .count(&format!("SELECT COUNT(*) FROM audit_log WHERE COALESCE(CAST(details AS TEXT), '') LIKE '%{lit}%'"))
            .await;
        assert_eq!(n, 0, "audit_log.details holds a secret in clear");
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile access tokens
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_forged_with_the_real_key_is_accepted_so_the_negatives_mean_something() {
    let app = TestApp::spawn().await;
    let (_, id, sid) = user(&app, "zed@example.com").await;
    let token = forge(&claims(&id, &sid));
    let me = expect(app.get("/me", Some(&token)).await, StatusCode::OK).await;
    assert_eq!(me["id"], id.as_str());

    // The role comes from the account, not from what the token claims.
    let mut c = claims(&id, &sid);
    c["role"] = json!("admin");
    let me = expect(app.get("/me", Some(&forge(&c))).await, StatusCode::OK).await;
    assert_eq!(me["role"], "student");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alg_none_is_401() {
    let app = TestApp::spawn().await;
    let (_, id, sid) = user(&app, "n1@example.com").await;
    let body = b64(&claims(&id, &sid));
    for header in [
        json!({"alg": "none", "typ": "JWT", "kid": kid_for(JWT_SECRET)}),
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "None", "typ": "JWT", "kid": kid_for(JWT_SECRET)}),
    ] {
        let h = b64(&header);
        assert_rejected(&app, &format!("{h}.{body}."), &format!("unsigned {header}")).await;
        assert_rejected(&app, &format!("{h}.{body}"), &format!("two-part {header}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_payload_is_401() {
    let app = TestApp::spawn().await;
    let (pair, _, _) = user(&app, "n2@example.com").await;
    let (_, other_id, other_sid) = user(&app, "n2b@example.com").await;
    let token = access(&pair);
    assert_eq!(me_status(&app, &token).await, StatusCode::OK);
    let parts: Vec<&str> = token.split('.').collect();
    let original = jwt_claims(&token);

    let mut edits: Vec<(&str, Value)> = Vec::new();
    let mut c = original.clone();
    c["role"] = json!("admin");
    edits.push(("role escalated", c));
    let mut c = original.clone();
    c["sub"] = json!(other_id);
    c["sid"] = json!(other_sid);
    edits.push(("another user's identity", c));
    let mut c = original.clone();
    c["exp"] = json!(original["exp"].as_i64().unwrap() + 86_400 * 365);
    edits.push(("lifetime extended", c));
    for (what, c) in edits {
        let forged = format!("{}.{}.{}", parts[0], b64(&c), parts[2]);
        assert_rejected(&app, &forged, what).await;
    }
    // A flipped signature byte too.
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[0] ^= 1;
    let forged = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
    assert_rejected(&app, &forged, "flipped signature").await;
    assert_eq!(me_status(&app, &token).await, StatusCode::OK, "the genuine token still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_with_another_secret_is_401() {
    let app = TestApp::spawn().await;
    let (_, id, sid) = user(&app, "n3@example.com").await;
    let other = "another-secret-another-secret-another-0123456789";
    let c = claims(&id, &sid);
    assert_rejected(&app, &sign(&c, other, Some(kid_for(JWT_SECRET)), Algorithm::HS256), "other secret, our kid").await;
    assert_rejected(&app, &sign(&c, other, Some(kid_for(other)), Algorithm::HS256), "other secret, its kid").await;
    assert_rejected(&app, &sign(&c, "", Some(kid_for(JWT_SECRET)), Algorithm::HS256), "empty secret").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_another_algorithm_is_401_even_with_the_right_secret() {
    let app = TestApp::spawn().await;
    let (_, id, sid) = user(&app, "n4@example.com").await;
    let c = claims(&id, &sid);
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        assert_rejected(&app, &sign(&c, JWT_SECRET, Some(kid_for(JWT_SECRET)), alg), &format!("{alg:?}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_audience_and_issuer_are_401() {
    let app = TestApp::spawn().await;
    let (_, id, sid) = user(&app, "n5@example.com").await;
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("wrong aud", Box::new(|c: &mut Value| c["aud"] = json!("other-api"))),
        ("wrong iss", Box::new(|c: &mut Value| c["iss"] = json!("evil"))),
        ("aud list without ours", Box::new(|c: &mut Value| c["aud"] = json!(["other-api"]))),
        (
            "missing aud",
            Box::new(|c: &mut Value| {
                c.as_object_mut().unwrap().remove("aud");
            }),
        ),
        (
            "missing iss",
            Box::new(|c: &mut Value| {
                c.as_object_mut().unwrap().remove("iss");
            }),
        ),
        (
            "missing sub",
            Box::new(|c: &mut Value| {
                c.as_object_mut().unwrap().remove("sub");
            }),
        ),
        (
            "missing sid",
            Box::new(|c: &mut Value| {
                c.as_object_mut().unwrap().remove("sid");
            }),
        ),
    ];
    for (what, edit) in cases {
        let mut c = claims(&id, &sid);
        edit(&mut c);
        assert_rejected(&app, &forge(&c), what).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_not_yet_valid_tokens_are_401() {
    let app = TestApp::spawn().await;
    let (_, id, sid) = user(&app, "n6@example.com").await;
    let now = chrono::Utc::now().timestamp();

    let mut expired = claims(&id, &sid);
    expired["iat"] = json!(now - 3600);
    expired["nbf"] = json!(now - 3600);
    expired["exp"] = json!(now - 120);
    assert_rejected(&app, &forge(&expired), "expired two minutes ago").await;

    let mut early = claims(&id, &sid);
    early["iat"] = json!(now);
    early["nbf"] = json!(now + 3600);
    early["exp"] = json!(now + 7200);
    assert_rejected(&app, &forge(&early), "nbf an hour ahead").await;

    let mut no_exp = claims(&id, &sid);
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_rejected(&app, &forge(&no_exp), "no exp").await;

    let mut no_nbf = claims(&id, &sid);
    no_nbf.as_object_mut().unwrap().remove("nbf");
    assert_rejected(&app, &forge(&no_nbf), "no nbf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exp_sent_as_a_string_is_401() {
    let app = TestApp::spawn().await;
    let (_, id, sid) = user(&app, "n7@example.com").await;
    let mut c = claims(&id, &sid);
    c["exp"] = json!((chrono::Utc::now().timestamp() + 600).to_string());
    assert_rejected(&app, &forge(&c), "exp as a string").await;
    let mut c = claims(&id, &sid);
    c["nbf"] = json!(chrono::Utc::now().timestamp().to_string());
    assert_rejected(&app, &forge(&c), "nbf as a string").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_unknown_kid_is_401() {
    let app = TestApp::spawn().await;
    let (_, id, sid) = user(&app, "n8@example.com").await;
    let c = claims(&id, &sid);
    assert_rejected(&app, &sign(&c, JWT_SECRET, None, Algorithm::HS256), "no kid").await;
    assert_rejected(&app, &sign(&c, JWT_SECRET, Some("deadbeef0000".into()), Algorithm::HS256), "unknown kid").await;
    assert_rejected(&app, &sign(&c, JWT_SECRET, Some("".into()), Algorithm::HS256), "empty kid").await;
    assert_rejected(&app, &sign(&c, JWT_SECRET, Some(JWT_SECRET.into()), Algorithm::HS256), "secret as kid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_signature_for_a_session_that_does_not_match_is_401() {
    let app = TestApp::spawn().await;
    let (_, id, sid) = user(&app, "n9@example.com").await;
    let (_, other_id, _) = user(&app, "n9b@example.com").await;
    // Someone else's user id on my session.
    assert_rejected(&app, &forge(&claims(&other_id, &sid)), "sub of another user").await;
    // A session that never existed.
    assert_rejected(&app, &forge(&claims(&id, &Uuid::now_v7().to_string())), "unknown sid").await;
    // Ids that are not UUIDs.
    assert_rejected(&app, &forge(&claims("1", &sid)), "sub not a UUID").await;
    assert_rejected(&app, &forge(&claims(&id, "' OR 1=1 --")), "sid not a UUID").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_malformed_authorization_headers_are_401() {
    let app = TestApp::spawn().await;
    let (pair, _, _) = user(&app, "n10@example.com").await;
    let token = access(&pair);

    for garbage in ["garbage", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9", &"A".repeat(5000), "null"] {
        assert_rejected(&app, garbage, &format!("garbage {:.20}", garbage)).await;
    }
    for header in [
        token.clone(),
        format!("Basic {token}"),
        format!("Token {token}"),
        format!("Bearer{token}"),
        "Bearer ".to_string(),
        "Bearer".to_string(),
        format!("Bearer {token}x"),
    ] {
        let res = app.req(Method::GET, "/me", None).header("authorization", header.clone()).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "Authorization: {:.30}", header);
        problem(res, StatusCode::UNAUTHORIZED).await;
    }
    // The genuine header still works.
    let res =
        app.req(Method::GET, "/me", None).header("authorization", format!("Bearer {token}")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}
