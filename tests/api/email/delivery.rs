//! Delivery to a real SMTP server that goes away, is slow or refuses; workers that crash or race.

use super::*;

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
