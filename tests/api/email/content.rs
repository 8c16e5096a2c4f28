//! What a message may carry: unsubscribe links honoured per category, no injected headers.

use super::*;

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
        json!({"email": {"achievements": true, "progress_digest": true, "assessment_results": true, "new_sign_in": true, "project_reviews": true}})
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
