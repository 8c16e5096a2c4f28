//! The default `.eml` file transport, SES notifications, and what forgot-password sends.

use super::*;

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
