//! Registration and sign-in.

use super::*;

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

    for email in ["alice@example.com", "ALICE@EXAMPLE.COM", "Alice@example.COM"] {
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
