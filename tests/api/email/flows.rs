//! Links in real mail, followed against the API: verifying an address, resetting a password.

use super::*;

#[tokio::test]
async fn verify_flow_end_to_end() {
    let smtp = SmtpServer::start(Script::default()).await;
    let app = spawn_smtp(&smtp, &[]).await;
    let pair = app.register("vera@example.com").await;
    let msgs = smtp.wait_for(1).await;
    let m = &msgs[0];
    assert_eq!(m.rcpt_tos, vec!["vera@example.com"]);
    assert_eq!(m.mail_from, "no-reply@localhost", "the envelope sender is the From address");
    assert!(m.header("Subject").unwrap().contains("Welcome to CIFIX LEARN"));
    assert!(m.header("From").unwrap().contains("no-reply@localhost"));
    // The address is not proven yet: nothing the registrant typed goes to it.
    assert!(!m.header("To").unwrap().contains("Test User"));
    assert!(m.data.contains("text/plain") && m.data.contains("text/html"), "both parts");
    let token = m.link_token("https://learn.example.com/verify-email?token=");

    let res = app.post("/auth/email/verify", None, json!({"token": "not-a-real-token"})).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = app.post("/auth/email/verify", None, json!({"token": token})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app.post("/auth/email/verify", None, json!({"token": token})).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "single use");
    let me: Value = app.get("/me", Some(&access(&pair))).await.json().await.unwrap();
    assert_eq!(me["email_verified"], true);

    // Resend: needs auth; verified accounts get nothing new.
    assert_eq!(app.post("/auth/email/resend", None, json!({})).await.status(), StatusCode::UNAUTHORIZED);
    let res = app.req(reqwest::Method::POST, "/auth/email/resend", Some(&access(&pair))).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let other = app.register("late@example.com").await;
    smtp.wait_for(2).await;
    let res = app.req(reqwest::Method::POST, "/auth/email/resend", Some(&access(&other))).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let msgs = smtp.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.messages().len(), 3, "nothing for the verified account");
    assert_eq!(msgs[2].rcpt_tos, vec!["late@example.com"]);
    let n = app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.email_verified'").await;
    assert_eq!(n, 1);
}

#[tokio::test]
async fn forgot_and_reset_end_to_end() {
    let smtp = SmtpServer::start(Script::default()).await;
    let app = spawn_smtp(&smtp, &[]).await;
    let pair = app.register("rita@example.com").await;
    smtp.wait_for(1).await;
    let res = app.post("/auth/password/forgot", None, json!({"email": "RITA@example.com"})).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let msgs = smtp.wait_for(2).await;
    let m = &msgs[1];
    assert_eq!(m.rcpt_tos, vec!["rita@example.com"]);
    assert!(m.header("Subject").unwrap().contains("Reset your CIFIX LEARN password"));
    let token = m.link_token("https://learn.example.com/reset-password?token=");

    // A weak password is a 422 and leaves the link usable.
    let res = app.post("/auth/password/reset", None, json!({"token": token, "new_password": "short"})).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let new_pw = "a brand new passphrase 42";
    let res = app.post("/auth/password/reset", None, json!({"token": token, "new_password": new_pw})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get("/me", Some(&access(&pair))).await.status(), StatusCode::UNAUTHORIZED, "sessions ended");
    assert_eq!(app.login("rita@example.com", PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.login("rita@example.com", new_pw).await.status(), StatusCode::OK);
    let res =
        app.post("/auth/password/reset", None, json!({"token": token, "new_password": "yet another passphrase"})).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "used twice");
    let n = app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.password_reset'").await;
    assert_eq!(n, 1);

    // Expired: a fresh link whose 30 minutes are over.
    app.post("/auth/password/forgot", None, json!({"email": "rita@example.com"})).await;
    let msgs = smtp.wait_for(3).await;
    let token = msgs[2].link_token("https://learn.example.com/reset-password?token=");
    email_token::Entity::update_many()
        .col_expr(email_token::Column::ExpiresAt, Expr::value(Utc::now() - chrono::Duration::minutes(1)))
        .filter(email_token::Column::Purpose.eq("reset"))
        .exec(&app.db.conn)
        .await
        .unwrap();
    let res =
        app.post("/auth/password/reset", None, json!({"token": token, "new_password": "expired passphrase 1"})).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // Unknown email: 202, and no mail.
    let res = app.post("/auth/password/forgot", None, json!({"email": "ghost@example.com"})).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.messages().len(), 3);
    let res = app.post("/auth/password/forgot", None, json!({"email": "not an email"})).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
