//! Email over real transports: a real SMTP server (started by each test, in the test process)
//! and the default `.eml` file transport. Links in received mail are followed against the API.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use chrono::Utc;
use cifix::{
    email::{Outgoing, Template, status, transport::Transport, worker::Worker},
    entities::{email_outbox, email_token},
    infra::db::Db,
};
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};

use crate::support::{
    PASSWORD, TestApp, access, free_port,
    smtp::{Received, Script, SmtpServer},
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn fast(env: &mut std::collections::HashMap<String, String>) {
    env.insert("CIFIX_EMAIL_POLL_MS".into(), "50".into());
    env.insert("CIFIX_EMAIL_RETRY_BASE_MS".into(), "100".into());
    env.insert("CIFIX_EMAIL_RETRY_MAX_MS".into(), "300".into());
    env.insert("CIFIX_PUBLIC_URL".into(), "https://learn.example.com".into());
}

async fn spawn_smtp(smtp: &SmtpServer, extra: &[(&str, &str)]) -> TestApp {
    let url = smtp.url();
    let extra: Vec<(String, String)> = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    TestApp::spawn_with(move |env| {
        fast(env);
        env.insert("SMTP_URL".into(), url);
        env.extend(extra);
    })
    .await
}

/// A mail worker as `cifix worker` builds it, from the application's own services.
fn worker(app: &TestApp) -> Worker {
    Worker::new(&app.state.email, Transport::from_config(&app.state.config).unwrap())
}

/// A second, independent worker with a connection pool of its own, as another process has.
async fn worker_of_another_process(app: &TestApp) -> Worker {
    let mut email = app.state.email.clone();
    email.db = Db::connect(&app.state.config.database_url, 4).await.unwrap();
    Worker::new(&email, Transport::from_config(&app.state.config).unwrap())
}

async fn rows(app: &TestApp) -> Vec<email_outbox::Model> {
    email_outbox::Entity::find().all(&app.db.conn).await.unwrap()
}

async fn row_to(app: &TestApp, to: &str) -> email_outbox::Model {
    email_outbox::Entity::find()
        .filter(email_outbox::Column::ToAddress.eq(to))
        .one(&app.db.conn)
        .await
        .unwrap()
        .unwrap()
}

async fn wait_row(
    app: &TestApp,
    to: &str,
    what: &str,
    pred: impl Fn(&email_outbox::Model) -> bool,
) -> email_outbox::Model {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = row_to(app, to).await;
        if pred(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "waiting for {what}: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn make_admin(app: &TestApp, email: &str) -> String {
    app.register(email).await;
    cifix::entities::user::Entity::update_many()
        .col_expr(cifix::entities::user::Column::Role, Expr::value("admin"))
        .filter(cifix::entities::user::Column::Email.eq(email))
        .exec(&app.db.conn)
        .await
        .unwrap();
    let res = app.login(email, PASSWORD).await;
    access(&res.json::<Value>().await.unwrap())
}

fn eml_files(app: &TestApp) -> Vec<PathBuf> {
    let dir = app.dir.path().join("outbox");
    let Ok(rd) = std::fs::read_dir(dir) else { return vec![] };
    rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "eml")).collect()
}

// ---------------------------------------------------------------------------------------------
// File transport
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn without_smtp_mail_lands_as_eml_files_and_the_link_verifies() {
    let app = TestApp::spawn_with(fast).await;
    let pair = app.register("newcomer@example.com").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let file = loop {
        if let Some(f) = eml_files(&app).into_iter().next() {
            break f;
        }
        assert!(Instant::now() < deadline, "no .eml written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let data = std::fs::read_to_string(&file).unwrap();
    let msg = Received {
        mail_from: String::new(),
        rcpt_tos: vec![],
        data: data.replace('\n', "\r\n").replace("\r\r\n", "\r\n"),
    };
    assert!(msg.header("To").unwrap().contains("newcomer@example.com"));
    assert!(msg.header("Subject").unwrap().contains("confirm your email"));
    assert!(msg.header("List-Unsubscribe").is_none(), "security mail cannot be unsubscribed from");
    let token = msg.link_token("https://learn.example.com/verify-email?token=");
    let res = app.post("/auth/email/verify", None, json!({"token": token})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let me: Value = app.get("/me", Some(&access(&pair))).await.json().await.unwrap();
    assert_eq!(me["email_verified"], true);
    let row = wait_row(&app, "newcomer@example.com", "sent", |r| r.status == status::SENT).await;
    assert!(!row.payload.to_string().contains(&token), "the one-time link is erased once sent");
    assert_eq!(file.file_name().unwrap().to_string_lossy(), format!("{}.eml", row.id), "named by id, not by token");
}

#[tokio::test]
async fn ses_bounces_and_complaints_suppress_addresses() {
    let app = TestApp::spawn_with(|env| {
        fast(env);
        env.insert("CIFIX_SES_WEBHOOK_SECRET".into(), "a-long-webhook-secret".into());
    })
    .await;
    let bounce = json!({"Type": "Notification", "Message": json!({"notificationType": "Bounce",
        "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "gone@example.com"}]}}).to_string()});
    let url = app.url("/integrations/ses/notifications");
    let res = app.client.post(&url).header("content-type", "text/plain").body(bounce.to_string()).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "no secret");
    let res = app
        .client
        .post(&url)
        .header("x-cifix-webhook-secret", "wrong-webhook-secret!")
        .body(bounce.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .client
        .post(&url)
        .header("content-type", "text/plain; charset=UTF-8")
        .header("x-cifix-webhook-secret", "a-long-webhook-secret")
        .body(bounce.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["suppressed"], 1);
    // Complaint, raw delivery, secret as the basic-auth password (how an SNS URL carries it).
    let complaint = json!({"eventType": "Complaint", "complaint": {"complainedRecipients": [{"emailAddress": "Angry@Example.com"}]}});
    let res = app
        .client
        .post(&url)
        .basic_auth("sns", Some("a-long-webhook-secret"))
        .body(complaint.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    app.register("gone@example.com").await;
    app.register("angry@example.com").await;
    app.register("fine@example.com").await;
    wait_row(&app, "fine@example.com", "sent", |r| r.status == status::SENT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for a in ["gone@example.com", "angry@example.com"] {
        let r = row_to(&app, a).await;
        assert_eq!(r.status, status::SUPPRESSED, "{a}");
        assert_eq!(r.attempts, 0, "never sent");
    }
    assert_eq!(eml_files(&app).len(), 1, "only the unsuppressed address got mail");
    let n = app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'email.suppress'").await;
    assert_eq!(n, 2);

    // Without a configured secret the webhook does not exist.
    let plain = TestApp::spawn_with(fast).await;
    let res =
        plain.client.post(plain.url("/integrations/ses/notifications")).body(bounce.to_string()).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn forgot_for_an_unknown_email_is_202_and_sends_nothing() {
    let app = TestApp::spawn_with(fast).await;
    let res = app.post("/auth/password/forgot", None, json!({"email": "nobody@example.com"})).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let unknown_body = res.text().await.unwrap();
    app.register("someone@example.com").await;
    let res = app.post("/auth/password/forgot", None, json!({"email": "someone@example.com"})).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(res.text().await.unwrap(), unknown_body, "same body either way");
    assert_eq!(rows(&app).await.iter().filter(|r| r.template == "password_reset").count(), 1);
    assert!(rows(&app).await.iter().all(|r| r.to_address != "nobody@example.com"));
    let n = app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.password_reset_requested'").await;
    assert_eq!(n, 2, "both requests are audited");
}

// ---------------------------------------------------------------------------------------------
// SMTP
// ---------------------------------------------------------------------------------------------

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
    assert!(m.header("To").unwrap().contains("Test User"));
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
    let res = app.post("/auth/password/forgot", None, json!({"email": "  RITA@example.com "})).await;
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

#[tokio::test]
async fn smtp_down_loses_nothing_and_delivers_once_when_it_returns() {
    let port = free_port();
    let app = TestApp::spawn_with(move |env| {
        fast(env);
        env.insert("SMTP_URL".into(), format!("smtp://127.0.0.1:{port}"));
        env.insert("CIFIX_EMAIL_MAX_ATTEMPTS".into(), "50".into());
    })
    .await;
    let admin = make_admin(&app, "admin@example.com").await;
    app.register("patient@example.com").await;
    let r = wait_row(&app, "patient@example.com", "failed attempts", |r| r.attempts >= 3).await;
    assert!(r.status == status::QUEUED || r.status == status::SENDING, "{r:?}");
    assert!(r.last_error.is_some());
    let list: Value = app.get("/admin/emails?status=queued", Some(&admin)).await.json().await.unwrap();
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["to"] == "patient@example.com" && e["last_error"].is_string())
    );
    eprintln!("while the SMTP server was down: attempts={} last_error={:?}", r.attempts, r.last_error);

    let smtp = SmtpServer::start_on(port, Script::default()).await;
    let r = wait_row(&app, "patient@example.com", "sent", |r| r.status == status::SENT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got: Vec<_> = smtp.messages().into_iter().filter(|m| m.rcpt_tos == ["patient@example.com"]).collect();
    assert_eq!(got.len(), 1, "exactly once");
    assert!(r.sent_at.is_some() && r.last_error.is_none());

    // The server goes down and comes back mid-test: mail enqueued meanwhile is kept and sent.
    let mut smtp = smtp;
    smtp.stop().await;
    app.register("second@example.com").await;
    wait_row(&app, "second@example.com", "a failed attempt", |r| r.attempts >= 1 && r.last_error.is_some()).await;
    smtp.restart(Script::default()).await;
    wait_row(&app, "second@example.com", "sent", |r| r.status == status::SENT).await;
    assert_eq!(smtp.messages().iter().filter(|m| m.rcpt_tos == ["second@example.com"]).count(), 1);
}

#[tokio::test]
async fn a_slow_server_within_the_timeout_gets_each_email_once() {
    let smtp = SmtpServer::start(Script { delay: Duration::from_secs(1), ..Script::default() }).await;
    let app = spawn_smtp(&smtp, &[("CIFIX_SMTP_TIMEOUT_SECS", "5")]).await;
    app.register("slow1@example.com").await;
    app.register("slow2@example.com").await;
    smtp.wait_for(2).await;
    for a in ["slow1@example.com", "slow2@example.com"] {
        let r = wait_row(&app, a, "sent", |r| r.status == status::SENT).await;
        assert_eq!(r.attempts, 1);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.messages().len(), 2);
}

#[tokio::test]
async fn a_rejected_recipient_is_retried_then_failed_and_an_admin_can_retry() {
    let smtp = SmtpServer::start(Script::rejecting(&["bounce@example.com"])).await;
    let app = spawn_smtp(&smtp, &[("CIFIX_EMAIL_MAX_ATTEMPTS", "3")]).await;
    let admin = make_admin(&app, "boss@example.com").await;
    app.register("bounce@example.com").await;
    let r = wait_row(&app, "bounce@example.com", "failed", |r| r.status == status::FAILED).await;
    assert_eq!(r.attempts, 3);
    assert!(r.last_error.as_deref().unwrap().contains("550"), "{r:?}");
    assert!(smtp.messages().iter().all(|m| !m.rcpt_tos.contains(&"bounce@example.com".to_string())));

    let list: Value = app.get("/admin/emails?status=failed", Some(&admin)).await.json().await.unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["to"], "bounce@example.com");
    assert_eq!(items[0]["attempts"], 3);
    for key in ["id", "template", "status", "last_error", "created_at", "sent_at"] {
        assert!(items[0].get(key).is_some(), "{key}");
    }
    assert_eq!(app.get("/admin/emails?status=bogus", Some(&admin)).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let student = app.register("student@example.com").await;
    assert_eq!(app.get("/admin/emails", Some(&access(&student))).await.status(), StatusCode::NOT_FOUND);

    let id = items[0]["id"].as_str().unwrap();
    let res = app.post(&format!("/admin/emails/{id}/retry"), Some(&admin), json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let r =
        wait_row(&app, "bounce@example.com", "failed again", |r| r.status == status::FAILED && r.attempts == 3).await;
    assert!(r.last_error.is_some());
    let sent = row_to(&app, "boss@example.com").await;
    let res = app.post(&format!("/admin/emails/{}/retry", sent.id), Some(&admin), json!({})).await;
    assert_eq!(res.status(), StatusCode::CONFLICT, "only failed mail is retried");
}

#[tokio::test]
async fn a_crashed_workers_stale_lease_is_reclaimed_and_sent_once() {
    let smtp = SmtpServer::start(Script::default()).await;
    let app = spawn_smtp(&smtp, &[("CIFIX_EMAIL_WORKER", "false"), ("CIFIX_EMAIL_LEASE_SECS", "60")]).await;
    app.register("crash@example.com").await;
    let crashed = worker(&app);
    // The "crashed" worker claims and then never sends or records anything.
    let (_, claimed) = crashed.claim(10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let other = worker_of_another_process(&app).await;
    assert_eq!(other.run_once().await.unwrap().claimed, 0, "a live lease is respected");
    // Time passes beyond the lease.
    email_outbox::Entity::update_many()
        .col_expr(email_outbox::Column::LockedUntil, Expr::value(Some(Utc::now() - chrono::Duration::seconds(1))))
        .exec(&app.db.conn)
        .await
        .unwrap();
    let pass = other.run_once().await.unwrap();
    assert_eq!(pass.sent, 1);
    smtp.wait_for(1).await;
    let r = row_to(&app, "crash@example.com").await;
    assert_eq!(r.status, status::SENT);
    assert_eq!(r.attempts, 2, "the lost claim counts as an attempt");
    assert_eq!(other.run_once().await.unwrap().claimed, 0);
    assert_eq!(smtp.messages().len(), 1);
}

#[tokio::test]
async fn two_workers_never_send_the_same_email_twice() {
    let smtp = SmtpServer::start(Script::default()).await;
    let app = spawn_smtp(&smtp, &[("CIFIX_EMAIL_WORKER", "false"), ("CIFIX_EMAIL_CONCURRENCY", "4")]).await;
    let svc = &app.state.email;
    let n = 60;
    let txn = app.db.begin_write().await.unwrap();
    for i in 0..n {
        let to = format!("u{i}@example.com");
        let out = Outgoing {
            to: &to,
            to_name: Some("Reader"),
            user_id: None,
            template: Template::PasswordReset,
            vars: json!({"reset_url": "https://learn.example.com/x", "expires_minutes": 30}),
            dedup_key: None,
        };
        svc.enqueue(&txn, out).await.unwrap().unwrap();
    }
    txn.commit().await.unwrap();
    // Two workers with their own connection pools, as two processes would have.
    let (a, b) = (worker(&app), worker_of_another_process(&app).await);
    let (pa, pb) = tokio::join!(a.drain(), b.drain());
    let (pa, pb) = (pa.unwrap(), pb.unwrap());
    assert_eq!(pa.sent + pb.sent, n);
    eprintln!("worker A sent {}, worker B sent {}", pa.sent, pb.sent);
    let msgs = smtp.wait_for(n).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.messages().len(), n, "no duplicates");
    let mut to: Vec<String> = msgs.iter().flat_map(|m| m.rcpt_tos.clone()).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), n);
    assert!(rows(&app).await.iter().all(|r| r.status == status::SENT && r.attempts == 1));
}

#[tokio::test]
async fn preferences_and_one_click_unsubscribe() {
    let smtp = SmtpServer::start(Script::default()).await;
    let app = spawn_smtp(&smtp, &[]).await;
    let pair = app.register("pia@example.com").await;
    let token = access(&pair);
    smtp.wait_for(1).await;
    let prefs: Value = app.get("/me/notification-preferences", Some(&token)).await.json().await.unwrap();
    assert_eq!(
        prefs,
        json!({"email": {"achievements": true, "progress_digest": true, "assessment_results": true, "new_sign_in": true}})
    );
    let user_id: uuid::Uuid = pair["user"]["id"].as_str().unwrap().parse().unwrap();
    let svc = &app.state.email;
    let award = || json!({"achievement": "First steps", "description": "You finished your first lesson."});
    let txn = app.db.begin_write().await.unwrap();
    assert!(svc.enqueue_for_user(&txn, user_id, Template::AchievementAwarded, award()).await.unwrap().is_some());
    txn.commit().await.unwrap();
    let msgs = smtp.wait_for(2).await;
    let m = &msgs[1];
    assert!(m.header("Subject").unwrap().contains("First steps"));
    let lu = m.header("List-Unsubscribe").expect("optional mail carries List-Unsubscribe");
    assert_eq!(m.header("List-Unsubscribe-Post").as_deref(), Some("List-Unsubscribe=One-Click"));
    let url = lu.trim_start_matches('<').trim_end_matches('>').to_string();
    assert!(url.starts_with("https://learn.example.com/api/v1/email/unsubscribe?token="), "{url}");
    let path = url.trim_start_matches("https://learn.example.com");

    // A tampered token is refused; turning security mail off is impossible.
    let bad = format!("{path}x");
    assert_eq!(app.client.post(app.url(&bad)).send().await.unwrap().status(), StatusCode::BAD_REQUEST);
    let sec = svc.unsubscribe_token(user_id, cifix::email::Category::Security);
    let res = app.client.post(app.url(&format!("/api/v1/email/unsubscribe?token={sec}"))).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // The body link shows a page; it changes nothing by itself.
    let page = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("<form method=\"post\""));
    // RFC 8058 one-click: a form POST, no auth.
    let res = app
        .client
        .post(app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["category"], "achievements");
    let prefs: Value = app.get("/me/notification-preferences", Some(&token)).await.json().await.unwrap();
    assert_eq!(prefs["email"]["achievements"], false);
    assert_eq!(prefs["email"]["assessment_results"], true);

    let txn = app.db.begin_write().await.unwrap();
    assert!(svc.enqueue_for_user(&txn, user_id, Template::AchievementAwarded, award()).await.unwrap().is_none());
    drop(txn);
    let res = app
        .send_json(
            reqwest::Method::PUT,
            "/me/notification-preferences",
            Some(&token),
            json!({"email": {"assessment_results": false}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let prefs: Value = res.json().await.unwrap();
    assert_eq!(prefs["email"]["assessment_results"], false);
    assert_eq!(prefs["email"]["achievements"], false, "left out: unchanged");
    let res = app
        .send_json(
            reqwest::Method::PUT,
            "/me/notification-preferences",
            Some(&token),
            json!({"email": {"security": false}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Security mail ignores preferences.
    app.post("/auth/password/forgot", None, json!({"email": "pia@example.com"})).await;
    smtp.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.messages().len(), 3);

    // At most once per dedup key (assessment results are switched on again first).
    let res = app
        .send_json(
            reqwest::Method::PUT,
            "/me/notification-preferences",
            Some(&token),
            json!({"email": {"assessment_results": true}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let txn = app.db.begin_write().await.unwrap();
    let k = Some("achievement:first-steps".to_string());
    let vars = json!({"overall_score": 80, "path_url": "https://learn.example.com/path"});
    svc.enqueue_for_user_once(&txn, user_id, Template::AssessmentResults, vars.clone(), k.clone())
        .await
        .unwrap()
        .unwrap();
    assert!(svc.enqueue_for_user_once(&txn, user_id, Template::AssessmentResults, vars, k).await.unwrap().is_none());
    txn.commit().await.unwrap();
}

#[tokio::test]
async fn header_injection_never_reaches_headers() {
    let smtp = SmtpServer::start(Script::default()).await;
    let app = spawn_smtp(&smtp, &[]).await;
    // At the API edge.
    let res = app
        .post(
            "/auth/register",
            None,
            json!({"email": "eve@example.com", "password": PASSWORD, "display_name": "Eve\r\nBcc: victim@example.com"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = app
        .post(
            "/auth/register",
            None,
            json!({"email": "eve@example.com\r\nBcc: victim@example.com", "password": PASSWORD, "display_name": "Eve"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res =
        app.post("/auth/password/forgot", None, json!({"email": "eve@example.com\nBcc: victim@example.com"})).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Deeper, for callers that skip the edge: the outbox itself refuses or flattens.
    let svc = &app.state.email;
    let txn = app.db.begin_write().await.unwrap();
    let err = svc
        .enqueue(
            &txn,
            Outgoing {
                to: "eve@example.com\r\nBcc: victim@example.com",
                to_name: None,
                user_id: None,
                template: Template::PasswordReset,
                vars: json!({"reset_url": "x", "expires_minutes": 30}),
                dedup_key: None,
            },
        )
        .await;
    assert!(err.is_err());
    svc.enqueue(
        &txn,
        Outgoing {
            to: "eve@example.com",
            to_name: Some("Eve\r\nBcc: victim@example.com"),
            user_id: None,
            template: Template::AchievementAwarded,
            vars: json!({"achievement": "Hacker\r\nBcc: victim2@example.com\r\n\r\nbody", "description": "d"}),
            dedup_key: None,
        },
    )
    .await
    .unwrap()
    .unwrap();
    txn.commit().await.unwrap();
    let msgs = smtp.wait_for(1).await;
    let m = &msgs[0];
    assert_eq!(m.rcpt_tos, vec!["eve@example.com"], "no injected recipient");
    for h in m.headers() {
        assert!(!h.to_lowercase().starts_with("bcc:"), "injected header: {h}");
    }
    assert!(m.header("Subject").unwrap().contains("Hacker Bcc: victim2@example.com body"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.messages().len(), 1);
}

/// Throughput of one worker to the local SMTP server. Printed, not asserted.
#[tokio::test]
async fn throughput_report() {
    let smtp = SmtpServer::start(Script::default()).await;
    let app = spawn_smtp(&smtp, &[("CIFIX_EMAIL_WORKER", "false"), ("CIFIX_EMAIL_CONCURRENCY", "8")]).await;
    let svc = &app.state.email;
    let n = 300;
    let txn = app.db.begin_write().await.unwrap();
    for i in 0..n {
        let to = format!("bench{i}@example.com");
        let out = Outgoing {
            to: &to,
            to_name: Some("Bench"),
            user_id: None,
            template: Template::PasswordReset,
            vars: json!({"reset_url": "https://learn.example.com/x", "expires_minutes": 30}),
            dedup_key: None,
        };
        svc.enqueue(&txn, out).await.unwrap();
    }
    txn.commit().await.unwrap();
    let w = worker(&app);
    let start = Instant::now();
    let pass = w.drain().await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(pass.sent, n);
    smtp.wait_for(n).await;
    println!(
        "email throughput ({}): {n} emails in {secs:.2}s = {:.0} emails/s (one worker, 8 concurrent SMTP connections)",
        if crate::support::use_postgres() { "PostgreSQL" } else { "SQLite" },
        n as f64 / secs
    );
}

/// `cifix worker` as its own process delivers what the API queued, logs one line per `.eml`
/// without the link's token, and stops on SIGTERM.
#[tokio::test]
async fn the_worker_command_delivers_queued_mail_and_stops_on_sigterm() {
    let app = TestApp::spawn_with(|env| {
        fast(env);
        env.insert("CIFIX_EMAIL_WORKER".into(), "false".into());
    })
    .await;
    app.register("apart@example.com").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(row_to(&app, "apart@example.com").await.status, status::QUEUED, "no worker in the API");

    let log_path = app.dir.path().join("worker.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cifix"))
        .arg("worker")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&app.env)
        .current_dir(app.dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let r = wait_row(&app, "apart@example.com", "sent by the worker process", |r| r.status == status::SENT).await;
    let file = app.dir.path().join("outbox").join(format!("{}.eml", r.id));
    let data = std::fs::read_to_string(&file).unwrap().replace("=\r\n", "").replace("=3D", "=");
    let at = data.find("verify-email?token=").unwrap() + "verify-email?token=".len();
    let token: String =
        data[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
    assert!(token.len() >= 40);

    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("worker did not stop on SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains(&file.display().to_string()), "one line names the file: {log}");
    assert!(!log.contains(&token), "the token never reaches the log");
}
