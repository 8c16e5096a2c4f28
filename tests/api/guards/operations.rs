//! Operations endpoints, the append-only audit trail, and errors without internals.

use super::*;

// ---------------------------------------------------------------------------------------------
// Operations endpoints
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_live_and_ready_answer_200() {
    let app = TestApp::spawn().await;
    let live = app.get("/health/live", None).await;
    assert_eq!(live.status(), StatusCode::OK);
    let ready = app.get("/health/ready", None).await;
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_once_the_database_is_unreachable() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/health/ready", None).await.status(), StatusCode::OK);
    // The test shares the service's pool: closing it takes the database away from the service.
    app.db.conn.close_by_ref().await.unwrap();
    let res = app.get("/health/ready", None).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let (_, _, text) = checked(res, "ready 503").await;
    assert_clean(&text, "ready 503");
    assert_eq!(app.get("/health/live", None).await.status(), StatusCode::OK, "the process is still up");
    // Requests that need the database fail cleanly, without internals.
    let (st, ..) = checked(app.post("/auth/register", None, register_body("down@example.com")).await, "db down").await;
    assert!(st.is_server_error(), "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_request_counts_latency_and_pool_usage() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/me", None).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/health/live", None).await.status(), StatusCode::OK);
    let res = app.get("/metrics", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(header(&res, "content-type").unwrap_or_default().starts_with("text/plain"));
    let text = res.text().await.unwrap();
    for needle in [
        "http_requests_total",
        "http_request_duration_seconds",
        "http_request_duration_seconds_bucket",
        "db_pool_connections",
        "route=\"/api/v1/me\"",
        "status=\"401\"",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}");
    }
    // Labels are route templates, never raw ids or tokens.
    assert!(!text.contains("Bearer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_the_auth_and_account_endpoints() {
    let app = TestApp::spawn().await;
    let res = app.get("/api/openapi.json", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(header(&res, "content-type").unwrap_or_default().starts_with("application/json"));
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with('3'));
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/api/v1/auth/register", &["post"][..]),
        ("/api/v1/auth/login", &["post"]),
        ("/api/v1/auth/refresh", &["post"]),
        ("/api/v1/auth/logout", &["post"]),
        ("/api/v1/auth/logout-all", &["post"]),
        ("/api/v1/me", &["get", "patch"]),
        ("/api/v1/me/password", &["post"]),
        ("/api/v1/me/sessions", &["get"]),
        ("/api/v1/me/sessions/{id}", &["delete"]),
    ] {
        let p = paths.get(path).unwrap_or_else(|| panic!("OpenAPI lacks {path}"));
        for m in methods {
            assert!(p.get(*m).is_some(), "OpenAPI lacks {m} {path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_is_served_from_the_binary() {
    let app = TestApp::spawn().await;
    let res = app.get("/api/docs/", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(header(&res, "content-type").unwrap_or_default().starts_with("text/html"));
    let html = res.text().await.unwrap();
    assert!(html.to_lowercase().contains("swagger"), "{html:.200}");
    for cdn in ["unpkg.com", "jsdelivr", "cdnjs", "googleapis"] {
        assert!(!html.contains(cdn), "loads from a CDN: {cdn}");
    }
    // Its script and the configuration it loads are served by us too.
    for asset in ["/api/docs/swagger-ui-bundle.js", "/api/docs/swagger-initializer.js"] {
        let res = app.get(asset, None).await;
        assert_eq!(res.status(), StatusCode::OK, "{asset}");
    }
    // The online validator would send our document to swagger.io.
    let init = app.get("/api/docs/swagger-initializer.js", None).await.text().await.unwrap();
    assert!(init.contains(r#""validatorUrl": "none""#), "{init}");
}

// ---------------------------------------------------------------------------------------------
// Audit trail
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_is_append_only() {
    let app = TestApp::spawn().await;
    app.register("ledger@example.com").await;
    problem(app.login("ledger@example.com", "wrong password here").await, StatusCode::UNAUTHORIZED).await;
    let before = app.count("SELECT COUNT(*) FROM audit_log").await;
    assert_eq!(before, 2);

    let update = app.db.conn.execute_unprepared("UPDATE audit_log SET action = 'x'").await;
    assert!(update.is_err(), "UPDATE on audit_log must fail");
    let delete = app.db.conn.execute_unprepared("DELETE FROM audit_log").await;
    assert!(delete.is_err(), "DELETE on audit_log must fail");
    let one = app.db.conn.execute_unprepared("DELETE FROM audit_log WHERE action = 'auth.login_failed'").await;
    assert!(one.is_err(), "deleting one row must fail");
    if use_postgres() {
        let truncate = app.db.conn.execute_unprepared("TRUNCATE audit_log").await;
        assert!(truncate.is_err(), "TRUNCATE on audit_log must fail");
    }

    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log").await, before);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'x'").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.register'").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.login_failed'").await, 1);
    // Appending still works.
    login_ok(&app, "ledger@example.com").await;
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log").await, before + 1);
}

async fn login_ok(app: &TestApp, email: &str) {
    assert_eq!(app.login(email, PASSWORD).await.status(), StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// No internals in errors
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_never_leak_internals() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_BODY_LIMIT_BYTES".into(), "2048".into());
    })
    .await;
    let pair = app.register("leak@example.com").await;
    let token = s(&pair["access_token"]);
    let cases: Vec<(&str, StatusCode, Response)> = vec![
        ("400", StatusCode::BAD_REQUEST, post_raw(&app, "/auth/login", Some("application/json"), "{\"email\":").await),
        ("401 login", StatusCode::UNAUTHORIZED, app.login("leak@example.com", "wrong password here").await),
        ("401 token", StatusCode::UNAUTHORIZED, app.get("/me", Some("x.y.z")).await),
        (
            "401 refresh",
            StatusCode::UNAUTHORIZED,
            app.post("/auth/refresh", None, json!({"refresh_token": "nope"})).await,
        ),
        ("404", StatusCode::NOT_FOUND, app.get("/nope", None).await),
        (
            "404 session",
            StatusCode::NOT_FOUND,
            app.req(Method::DELETE, "/me/sessions/not-a-uuid", Some(&token)).send().await.unwrap(),
        ),
        ("405", StatusCode::METHOD_NOT_ALLOWED, app.get("/auth/register", None).await),
        ("409", StatusCode::CONFLICT, app.post("/auth/register", None, register_body("LEAK@example.com")).await),
        (
            "413",
            StatusCode::PAYLOAD_TOO_LARGE,
            post_raw(&app, "/auth/login", Some("application/json"), vec![b' '; 10_000]).await,
        ),
        ("415", StatusCode::UNSUPPORTED_MEDIA_TYPE, post_raw(&app, "/auth/login", Some("text/plain"), "{}").await),
        (
            "422",
            StatusCode::UNPROCESSABLE_ENTITY,
            app.post("/auth/register", None, json!({"email": "x", "password": "y", "display_name": ""})).await,
        ),
        ("422 query", StatusCode::UNPROCESSABLE_ENTITY, app.get("/me/sessions?limit=zzz", Some(&token)).await),
    ];
    for (what, status, res) in cases {
        let (st, _, _) = checked(res, what).await;
        assert_eq!(st, status, "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_failure_is_a_500_without_internals() {
    let app = TestApp::spawn().await;
    let pair = app.register("fail@example.com").await;
    let audit_before = app.count("SELECT COUNT(*) FROM audit_log").await;
    app.db.conn.execute_unprepared("ALTER TABLE sessions RENAME TO sessions_gone").await.unwrap();

    let res = app.login("fail@example.com", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let (_, _, text) = checked(res, "500 login").await;
    assert!(!text.contains("sessions"), "names a table: {text}");
    let res = app.get("/me", Some(&s(&pair["access_token"]))).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    checked(res, "500 me").await;
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log").await, audit_before, "the failed login rolled back");

    app.db.conn.execute_unprepared("ALTER TABLE sessions_gone RENAME TO sessions").await.unwrap();
    login_ok(&app, "fail@example.com").await;
}
