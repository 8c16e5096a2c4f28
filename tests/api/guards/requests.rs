//! Request ids, error shapes and the rules every request body follows.

use super::*;

// ---------------------------------------------------------------------------------------------
// Request ids
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let reg = app.post("/auth/register", None, register_body("rid@example.com")).await;
    assert!(header(&reg, "x-request-id").is_some(), "201");
    let reg: Value = reg.json().await.unwrap();
    let responses = vec![
        ("200 live", app.get("/health/live", None).await),
        ("200 ready", app.get("/health/ready", None).await),
        ("200 metrics", app.get("/metrics", None).await),
        ("200 openapi", app.get("/api/openapi.json", None).await),
        ("200 me", app.get("/me", Some(reg["access_token"].as_str().unwrap())).await),
        ("401", app.get("/me", None).await),
        ("404", app.get("/nope", None).await),
        ("404 outside api", app.client.get(format!("{}/definitely/not/here", app.base)).send().await.unwrap()),
        ("405", app.get("/auth/login", None).await),
        ("415", post_raw(&app, "/auth/login", Some("text/plain"), "{}").await),
        ("400", post_raw(&app, "/auth/login", Some("application/json"), "{").await),
        ("422", app.post("/auth/login", None, json!({})).await),
        ("204", app.post("/auth/logout", None, json!({"refresh_token": reg["refresh_token"]})).await),
    ];
    let mut ids = Vec::new();
    for (what, res) in responses {
        let id = header(&res, "x-request-id").unwrap_or_else(|| panic!("{what}: no x-request-id"));
        assert!(!id.is_empty() && id.len() <= 64, "{what}: {id}");
        checked(res, what).await;
        ids.push(id);
    }
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "each request gets its own id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sane_request_id_is_echoed_and_an_insane_one_replaced() {
    let app = TestApp::spawn().await;
    for sane in ["abc-123", "trace_01.HJ:9", &"a".repeat(64), "0f8fad5b-d9cb-469f-a165-70867728950e"] {
        let res = app.req(Method::GET, "/health/live", None).header("x-request-id", sane).send().await.unwrap();
        assert_eq!(header(&res, "x-request-id").as_deref(), Some(sane));
        // Also on an error, in the header and in the body.
        let res = app.req(Method::GET, "/me", None).header("x-request-id", sane).send().await.unwrap();
        assert_eq!(header(&res, "x-request-id").as_deref(), Some(sane));
        let body = problem(res, StatusCode::UNAUTHORIZED).await;
        assert_eq!(body["request_id"], sane);
    }
    for insane in [
        "has spaces in it".to_string(),
        "x".repeat(100),
        "a\"b".to_string(),
        "semi;colon".to_string(),
        "<script>".to_string(),
        "%0d%0aSet-Cookie:x".to_string(),
    ] {
        let res = app.req(Method::GET, "/me", None).header("x-request-id", insane.as_str()).send().await.unwrap();
        let got = header(&res, "x-request-id").expect("a replacement id");
        assert_ne!(got, insane, "insane id {insane:?} must not be echoed");
        assert!(!got.is_empty() && got.len() <= 64 && !got.contains(' '));
        let body = problem(res, StatusCode::UNAUTHORIZED).await;
        assert_eq!(body["request_id"], got.as_str());
        assert!(!body.to_string().contains(&insane));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_id_reaches_the_audit_row() {
    let app = TestApp::spawn().await;
    let res = app
        .req(Method::POST, "/auth/register", None)
        .header("x-request-id", "trace-reg-42")
        .header("user-agent", "guard-tests/1.0")
        .json(&register_body("audit-rid@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'auth.register' AND request_id = 'trace-reg-42' \
             AND user_agent = 'guard-tests/1.0' AND ip = '127.0.0.1'"
        )
        .await,
        1
    );
}

// ---------------------------------------------------------------------------------------------
// Error shapes and body rules
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_are_404_problem_json() {
    let app = TestApp::spawn().await;
    // Paths as the client sends them, not prefixed by the test helper.
    for path in [
        "/api/v1/nope",
        "/api/v2/me",
        "/api/v1/me/sessions/x/y",
        "/api/v1/",
        "/",
        "/definitely/not/here",
        "/health/nope",
        "/api/docs/no-such-file.js",
    ] {
        let res = app.client.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        problem(res, StatusCode::NOT_FOUND).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_are_405_problem_json() {
    let app = TestApp::spawn().await;
    for (method, path) in [
        (Method::GET, "/auth/login"),
        (Method::DELETE, "/me"),
        (Method::PUT, "/auth/register"),
        (Method::POST, "/health/live"),
        (Method::GET, "/auth/logout-all"),
    ] {
        let res = app.req(method.clone(), path, None).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        problem(res, StatusCode::METHOD_NOT_ALLOWED).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400() {
    let app = TestApp::spawn().await;
    for body in ["{", "not json", "", "{\"email\": \"a@example.com\",}", "{'email': 'a@example.com'}"] {
        let res = post_raw(&app, "/auth/login", Some("application/json"), body).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "body {body:?}");
        let p = problem(res, StatusCode::BAD_REQUEST).await;
        assert_clean(&p.to_string(), body);
    }
    let res = post_raw(&app, "/auth/register", Some("application/json"), "{\"email\":").await;
    problem(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailing_garbage_after_a_json_value_is_400() {
    let app = TestApp::spawn().await;
    let valid = register_body("trail@example.com").to_string();
    for body in [format!("{valid}}}"), format!("{valid} xyz"), format!("{valid}{valid}")] {
        let res = post_raw(&app, "/auth/register", Some("application/json"), body.clone()).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "body {body:?}");
        problem(res, StatusCode::BAD_REQUEST).await;
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0, "a malformed body creates nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_content_type_is_415() {
    let app = TestApp::spawn().await;
    let json_text = register_body("ct@example.com").to_string();
    for ct in [Some("text/plain"), None, Some("application/x-www-form-urlencoded"), Some("application/xml")] {
        let res = post_raw(&app, "/auth/register", ct, json_text.clone()).await;
        assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "content-type {ct:?}");
        problem(res, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
    // JSON with a charset parameter is still JSON.
    let res = post_raw(&app, "/auth/register", Some("application/json; charset=utf-8"), json_text).await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_field_is_422_naming_it() {
    let app = TestApp::spawn().await;
    let mut body = register_body("uf@example.com");
    body["role"] = json!("admin");
    let p = problem(app.post("/auth/register", None, body).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&p), vec!["role"]);
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0, "nobody became an admin");

    let p = problem(
        app.post("/auth/login", None, json!({"email": "a@example.com", "password": "x", "remember_me": true})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&p), vec!["remember_me"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_field_is_422_naming_it() {
    let app = TestApp::spawn().await;
    for (path, body, field) in [
        ("/auth/register", json!({"email": "m@example.com", "password": PASSWORD}), "display_name"),
        ("/auth/register", json!({"password": PASSWORD, "display_name": "x"}), "email"),
        ("/auth/login", json!({"email": "m@example.com"}), "password"),
        ("/auth/refresh", json!({}), "refresh_token"),
        ("/auth/logout", json!({}), "refresh_token"),
    ] {
        let p = problem(app.post(path, None, body).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&p), vec![field], "{path}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_field_is_422_naming_it() {
    let app = TestApp::spawn().await;
    let p = problem(
        app.post("/auth/register", None, json!({"email": 42, "password": PASSWORD, "display_name": "x"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&p), vec!["email"]);
    let p = problem(
        app.post("/auth/login", None, json!({"email": "a@example.com", "password": ["x"]})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&p), vec!["password"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enum_given_another_json_type_is_422_naming_it() {
    let app = TestApp::spawn().await;
    let author = app.user("enum-author", "instructor").await;
    for level in [json!(5), json!(true), json!({"a": 1}), json!(["beginner"])] {
        let body = json!({"slug": "typed-levels", "title": "T", "summary": "", "level": level});
        let p = problem(app.post("/courses", author.auth(), body).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&p), vec!["level"], "{level}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_an_object_is_422() {
    let app = TestApp::spawn().await;
    let u = app.user("arrays", "student").await;
    // serde alone would read `[null]` as a patch of nothing and answer 200.
    for body in [json!([null]), json!(["Ada"]), json!("Ada"), json!(null), json!(7)] {
        let res = app.send_json(Method::PATCH, "/me", u.auth(), body.clone()).await;
        problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_float_without_a_fraction_is_the_integer_it_equals() {
    // JSON Schema counts 753.0 an integer, so a client generated from the document may send it.
    let app = TestApp::spawn().await;
    let author = app.user("float-author", "instructor").await;
    let course = json!({"slug": "floats", "title": "Floats", "summary": "", "level": "beginner"});
    let course = expect(app.post("/courses", author.auth(), course).await, StatusCode::CREATED).await;
    let path = format!("/courses/{}/modules", s(&course["id"]));
    let m = expect(app.post(&path, author.auth(), json!({"title": "One", "position": 1.0})).await, StatusCode::CREATED)
        .await;
    assert_eq!(m["position"], 1);
    let p = problem(
        app.post(&path, author.auth(), json!({"title": "Two", "position": 1.5})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&p), vec!["position"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_413() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_BODY_LIMIT_BYTES".into(), "1024".into());
    })
    .await;
    let mut body = register_body("big@example.com");
    body["display_name"] = json!("x".repeat(4096));
    let res = app.post("/auth/register", None, body).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    problem(res, StatusCode::PAYLOAD_TOO_LARGE).await;

    // Far over the limit, and as raw bytes that are not even JSON.
    let res = post_raw(&app, "/auth/login", Some("application/json"), vec![b'{'; 200_000]).await;
    problem(res, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);

    // A normal body under the limit is fine.
    app.register("small@example.com").await;
}
