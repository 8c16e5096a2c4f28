//! Password rules, failed-login lockout, and what is stored instead of secrets.

use super::*;

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
    for (i, pw) in ["Zq9!xk2#".to_string(), "Qz9!".repeat(32), "éàüö".repeat(32)].iter().enumerate() {
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
