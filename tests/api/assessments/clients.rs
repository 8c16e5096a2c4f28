//! Machine clients of the assessment tool: signatures, revocation, secret rotation.

use super::*;

#[tokio::test]
async fn signatures_are_required_and_checked() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let a = start(&app, &s.student).await;
    let id = a["id"].as_str().unwrap();
    let body = results(id, "ext-1");

    // Unsigned, and a user's Bearer token (even an admin's), are 401 on integration endpoints.
    let res = app.client.post(app.url(RESULTS)).json(&body).send().await.unwrap();
    problem(res, StatusCode::UNAUTHORIZED).await;
    let res = app.client.post(app.url(RESULTS)).bearer_auth(&s.admin.token).json(&body).send().await.unwrap();
    problem(res, StatusCode::UNAUTHORIZED).await;

    // Wrong secret, unknown client, tampered body, another path, stale and future timestamps,
    // malformed signature.
    let wrong = Client { id: s.client.id.clone(), secret: "not-the-secret".into() };
    problem(deliver(&app, &wrong, &body).await, StatusCode::UNAUTHORIZED).await;
    let unknown = Client { id: uuid::Uuid::now_v7().to_string(), secret: s.client.secret.clone() };
    problem(deliver(&app, &unknown, &body).await, StatusCode::UNAUTHORIZED).await;
    let mut r = Signed::post(&s.client, RESULTS, &body);
    r.signed_body = Some(serde_json::to_vec(&results(id, "ext-other")).unwrap());
    problem(r.send(&app).await, StatusCode::UNAUTHORIZED).await;
    let mut r = Signed::post(&s.client, RESULTS, &body);
    r.path = "/api/v1/integrations/assessments/launch";
    let res = app
        .client
        .post(app.url(RESULTS))
        .header("x-cifix-client", &s.client.id)
        .header("x-cifix-timestamp", r.ts.to_string())
        .header("x-cifix-nonce", &r.nonce)
        .header("x-cifix-signature", signature(&s.client.secret, &r.ts.to_string(), &r.nonce, "POST", r.path, &r.body))
        .body(r.body.clone())
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::UNAUTHORIZED).await;
    for skew in [-301, 301] {
        let mut r = Signed::post(&s.client, RESULTS, &body);
        r.ts += skew;
        let p = problem(r.send(&app).await, StatusCode::UNAUTHORIZED).await;
        assert!(p["detail"].as_str().unwrap().contains("timestamp"), "{p}");
    }
    let res = app
        .client
        .post(app.url(RESULTS))
        .header("x-cifix-client", &s.client.id)
        .header("x-cifix-timestamp", Utc::now().timestamp().to_string())
        .header("x-cifix-nonce", nonce())
        .header("x-cifix-signature", "v1=zz")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::UNAUTHORIZED).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM assessments WHERE status = 'completed'").await, 0);

    // A correct delivery works once; the same request replayed (same nonce) is refused even
    // though the body is a legitimate idempotent repeat.
    let r = Signed::post(&s.client, RESULTS, &body);
    expect(r.send(&app).await, StatusCode::CREATED).await;
    let p = problem(r.send(&app).await, StatusCode::UNAUTHORIZED).await;
    assert!(p["detail"].as_str().unwrap().contains("nonce"), "{p}");

    // A machine signature is useless on user endpoints: they need a Bearer JWT.
    let r = Signed { method: "GET", body: vec![], ..Signed::post(&s.client, "/api/v1/me/assessments", &json!(null)) };
    problem(r.send(&app).await, StatusCode::UNAUTHORIZED).await;
    // Launch lookup, signed: the tool learns who is assessed.
    let start2 = start(&app, &s.student).await;
    let r = Signed::post(
        &s.client,
        "/api/v1/integrations/assessments/launch",
        &json!({"launch_token": start2["launch_token"]}),
    );
    let info = expect(r.send(&app).await, StatusCode::OK).await;
    assert_eq!(info["user_id"], s.student.id.as_str());
    assert_eq!(info["assessment_id"], start2["id"]);
    assert_eq!(info["status"], "pending");
}

#[tokio::test]
async fn clients_are_admin_only_revocable_and_rotate_with_overlap() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let instructor = app.user("teacher", "instructor").await;
    for u in [&s.student, &instructor] {
        problem(
            app.send_json(Method::POST, "/admin/integrations/clients", u.auth(), json!({"name": "x"})).await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    let p = problem(
        app.send_json(Method::POST, "/admin/integrations/clients", s.admin.auth(), json!({"name": ""})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&p), vec!["name"]);
    let list = app.get_json("/admin/integrations/clients", s.admin.auth()).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(&s.client.secret), "secrets are shown once");
    // Only the hash is stored.
    assert_eq!(
        app.count(&format!("SELECT COUNT(*) FROM integration_clients WHERE key_hash = '{}'", s.client.secret)).await,
        0
    );

    // Rotate: the new secret works at once and the old one during the overlap.
    let res = app
        .send_json(
            Method::POST,
            &format!("/admin/integrations/clients/{}/rotate", s.client.id),
            s.admin.auth(),
            json!({}),
        )
        .await;
    let rot = expect(res, StatusCode::OK).await;
    let new = Client { id: s.client.id.clone(), secret: rot["client_secret"].as_str().unwrap().into() };
    assert_ne!(new.secret, s.client.secret);
    let a1 = start(&app, &s.student).await;
    let a2 = start(&app, &s.student).await;
    expect(deliver(&app, &s.client, &results(a1["id"].as_str().unwrap(), "old-secret")).await, StatusCode::CREATED)
        .await;
    expect(deliver(&app, &new, &results(a2["id"].as_str().unwrap(), "new-secret")).await, StatusCode::CREATED).await;

    // Revoked: every signature fails; rotating a revoked client is 404; revoking twice is fine.
    let path = format!("/admin/integrations/clients/{}", s.client.id);
    expect(app.delete(&path, s.admin.auth()).await, StatusCode::NO_CONTENT).await;
    expect(app.delete(&path, s.admin.auth()).await, StatusCode::NO_CONTENT).await;
    let a3 = start(&app, &s.student).await;
    problem(deliver(&app, &new, &results(a3["id"].as_str().unwrap(), "after-revoke")).await, StatusCode::UNAUTHORIZED)
        .await;
    problem(
        app.send_json(Method::POST, &format!("{path}/rotate"), s.admin.auth(), json!({})).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(app.delete(&path, s.student.auth()).await, StatusCode::NOT_FOUND).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'integration_client.%'").await, 3);
}

#[tokio::test]
async fn a_rotated_secret_stops_working_after_the_overlap() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_INTEGRATION_SECRET_OVERLAP_SECS".into(), "0".into());
    })
    .await;
    let s = setup(&app).await;
    let res = app
        .send_json(
            Method::POST,
            &format!("/admin/integrations/clients/{}/rotate", s.client.id),
            s.admin.auth(),
            json!({}),
        )
        .await;
    let rot = expect(res, StatusCode::OK).await;
    let a = start(&app, &s.student).await;
    let body = results(a["id"].as_str().unwrap(), "x");
    problem(deliver(&app, &s.client, &body).await, StatusCode::UNAUTHORIZED).await;
    let new = Client { id: s.client.id.clone(), secret: rot["client_secret"].as_str().unwrap().into() };
    expect(deliver(&app, &new, &body).await, StatusCode::CREATED).await;
}
