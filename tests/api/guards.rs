//! The guards every endpoint inherits, over real HTTP: request ids, error shapes, body rules,
//! SQL injection, security headers, CORS, rate limits, trusted proxies, operations endpoints and
//! the append-only audit trail.

use crate::support::{PASSWORD, TestApp, error_fields, expect, problem, s, sql_str, use_postgres};
use reqwest::{Method, Response, StatusCode, header::HeaderMap};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Strings an error body must never contain: SQL, driver names, panics, backtraces, paths.
const LEAKS: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE ",
    "sqlx",
    "sea_orm",
    "SqlxError",
    "DbErr",
    "panicked",
    "stack backtrace",
    "RUST_BACKTRACE",
    "src/",
    ".rs:",
    "no such table",
    "relation \"",
    "syntax error",
];

fn assert_clean(text: &str, what: &str) {
    for leak in LEAKS {
        assert!(!text.contains(leak), "{what}: body leaks {leak:?}: {text}");
    }
}

/// Status, headers and body text, after checking that the body leaks nothing and that every
/// error is problem+json with the request id.
async fn checked(res: Response, what: &str) -> (StatusCode, HeaderMap, String) {
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    assert!(headers.contains_key("x-request-id"), "{what}: no x-request-id");
    if status.is_client_error() || status.is_server_error() {
        let ct = headers.get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        assert!(ct.starts_with("application/problem+json"), "{what}: {status} is {ct}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["request_id"], headers["x-request-id"].to_str().unwrap(), "{what}");
        assert_eq!(body["status"], status.as_u16(), "{what}");
        assert_clean(&text, what);
    }
    (status, headers, text)
}

fn header(res: &Response, name: &str) -> Option<String> {
    res.headers().get(name).map(|v| v.to_str().unwrap().to_string())
}

/// A raw body with a chosen content type.
async fn post_raw(app: &TestApp, path: &str, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> Response {
    let mut r = app.req(Method::POST, path, None).body(body);
    if let Some(ct) = content_type {
        r = r.header("content-type", ct);
    }
    r.send().await.unwrap()
}

fn register_body(email: &str) -> Value {
    json!({"email": email, "password": PASSWORD, "display_name": "Guard Test"})
}

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

// ---------------------------------------------------------------------------------------------
// SQL injection
// ---------------------------------------------------------------------------------------------

const INJECTIONS: &[&str] = &[
    "' OR 1=1 --",
    "\"; DROP TABLE users; --",
    "x' UNION SELECT password_hash FROM users --",
    "admin'--",
    "') OR ('1'='1",
    "%' OR email LIKE '%",
    "1; DELETE FROM sessions; --",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_injection_strings_in_every_text_field_are_just_text() {
    let app = TestApp::spawn().await;
    app.register("victim@example.com").await;
    let mut users = 1;
    let mut sessions = 1;
    for (i, inj) in INJECTIONS.iter().enumerate() {
        let what = format!("injection {inj:?}");

        // register: as the email (invalid address), as the display name and as the password.
        let (st, _, text) = checked(
            app.post("/auth/register", None, json!({"email": inj, "password": PASSWORD, "display_name": "x"})).await,
            &what,
        )
        .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{what} as email");
        assert_eq!(error_fields(&serde_json::from_str(&text).unwrap()), vec!["email"]);

        let email = format!("inj{i}@example.com");
        let (st, _, text) = checked(
            app.post("/auth/register", None, json!({"email": email, "password": inj, "display_name": inj})).await,
            &what,
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{what} as password and display name: {text}");
        users += 1;
        sessions += 1;
        let reg: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(reg["user"]["display_name"], *inj, "stored verbatim");
        let token = s(&reg["access_token"]);

        // login: as the email, and as the password of someone else.
        let (st, ..) = checked(app.login(inj, PASSWORD).await, &what).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{what} as login email");
        let (st, ..) = checked(app.login("victim@example.com", inj).await, &what).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{what} as someone else's password");
        // ... and as this user's real password, it simply works.
        let (st, ..) = checked(app.login(&email, inj).await, &what).await;
        assert_eq!(st, StatusCode::OK, "{what} as the real password");
        sessions += 1;

        // PATCH /me
        let (st, _, text) = checked(
            app.send_json(Method::PATCH, "/me", Some(&token), json!({"display_name": format!("{inj} 2")})).await,
            &what,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{what} in PATCH /me");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["display_name"], format!("{inj} 2"));

        // refresh and logout
        let (st, ..) = checked(app.post("/auth/refresh", None, json!({"refresh_token": inj})).await, &what).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{what} as refresh token");
        let (st, ..) = checked(app.post("/auth/logout", None, json!({"refresh_token": inj})).await, &what).await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{what} as logout token");

        // POST /me/password, for a user whose password is an ordinary one: the injection as
        // the (wrong) current password, then as the new password.
        let b_email = format!("inj{i}b@example.com");
        let b = app.register(&b_email).await;
        users += 1;
        sessions += 1;
        let b_token = s(&b["access_token"]);
        let (st, _, text) = checked(
            app.post(
                "/me/password",
                Some(&b_token),
                json!({"current_password": inj, "new_password": "fresh passphrase 1"}),
            )
            .await,
            &what,
        )
        .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{what} as current password");
        assert_eq!(error_fields(&serde_json::from_str(&text).unwrap()), vec!["current_password"]);
        let (st, ..) = checked(
            app.post("/me/password", Some(&b_token), json!({"current_password": PASSWORD, "new_password": inj})).await,
            &what,
        )
        .await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{what} as new password");
        let (st, ..) = checked(app.login(&b_email, inj).await, &what).await;
        assert_eq!(st, StatusCode::OK, "{what} as the changed password");
        sessions += 1;

        // query string and path
        let q = app.req(Method::GET, "/me/sessions", Some(&token)).query(&[("cursor", *inj)]).send().await.unwrap();
        let (st, ..) = checked(q, &what).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{what} as cursor");
        let path = format!("/me/sessions/{}", urlencode(inj));
        let (st, ..) = checked(app.req(Method::DELETE, &path, Some(&token)).send().await.unwrap(), &what).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{what} as session id");

        // headers
        let (st, ..) =
            checked(app.req(Method::GET, "/me", Some(&token)).header("user-agent", *inj).send().await.unwrap(), &what)
                .await;
        assert_eq!(st, StatusCode::OK, "{what} as user agent");
    }

    // An address that is valid and full of quotes is stored and found exactly.
    let quoted = "o'neil+x'or'1'='1@example.com";
    let (st, _, text) = checked(app.post("/auth/register", None, register_body(quoted)).await, "quoted email").await;
    assert_eq!(st, StatusCode::CREATED, "{text}");
    users += 1;
    sessions += 1;
    let (st, ..) = checked(app.login(quoted, PASSWORD).await, "quoted email").await;
    assert_eq!(st, StatusCode::OK);
    sessions += 1;
    let (st, ..) = checked(app.login("o'neil+x'or'1'='2@example.com", PASSWORD).await, "near miss").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Every table is intact and holds exactly what was created.
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, users);
    assert_eq!(app.count(&format!("SELECT COUNT(*) FROM users WHERE email = '{}'", sql_str(quoted))).await, 1);
    for inj in INJECTIONS {
        assert_eq!(
            app.count(&format!("SELECT COUNT(*) FROM users WHERE display_name = '{}'", sql_str(&format!("{inj} 2"))))
                .await,
            1,
            "{inj:?} stored verbatim"
        );
    }
    // Every session that was started is there, and none was ended by an injection.
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, sessions);
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL").await, sessions);
    assert_eq!(app.count("SELECT COUNT(*) FROM refresh_tokens").await, sessions);
    assert!(app.count("SELECT COUNT(*) FROM audit_log").await > 0);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Security headers and CORS
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_are_on_every_response_and_no_hsts_without_tls() {
    let app = TestApp::spawn().await;
    for (what, res) in [
        ("live", app.get("/health/live", None).await),
        ("401", app.get("/me", None).await),
        ("404", app.get("/nope", None).await),
        ("422", app.post("/auth/login", None, json!({})).await),
        ("openapi", app.get("/api/openapi.json", None).await),
    ] {
        assert_eq!(header(&res, "x-content-type-options").as_deref(), Some("nosniff"), "{what}");
        let xfo = header(&res, "x-frame-options").unwrap_or_default().to_ascii_uppercase();
        assert!(xfo == "DENY" || xfo == "SAMEORIGIN", "{what}: x-frame-options {xfo:?}");
        assert!(header(&res, "referrer-policy").is_some_and(|v| !v.is_empty()), "{what}: referrer-policy");
        let csp = header(&res, "content-security-policy").unwrap_or_default();
        assert!(csp.contains("frame-ancestors"), "{what}: csp {csp:?}");
        assert!(header(&res, "strict-transport-security").is_none(), "{what}: HSTS over plain HTTP");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_when_the_public_url_is_https() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_PUBLIC_URL".into(), "https://learn.example.com".into());
    })
    .await;
    for res in [app.get("/health/live", None).await, app.get("/me", None).await] {
        let hsts = header(&res, "strict-transport-security").expect("HSTS behind TLS");
        let max_age: u64 =
            hsts.split(';').find_map(|p| p.trim().strip_prefix("max-age=")).expect("max-age").parse().unwrap();
        assert!(max_age >= 15_552_000, "at least 180 days: {hsts}");
    }
}

async fn with_origin(app: &TestApp, method: Method, path: &str, origin: &str) -> Response {
    app.req(method, path, None).header("origin", origin).send().await.unwrap()
}

async fn preflight(app: &TestApp, path: &str, origin: &str) -> Response {
    app.req(Method::OPTIONS, path, None)
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type, authorization")
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cors_origin_is_allowed_by_default() {
    let app = TestApp::spawn().await;
    for origin in ["https://app.example.com", "http://localhost:3000", "null"] {
        let res = with_origin(&app, Method::GET, "/me", origin).await;
        assert!(header(&res, "access-control-allow-origin").is_none(), "{origin}");
        assert!(header(&res, "access-control-allow-credentials").is_none(), "{origin}");
        let res = preflight(&app, "/auth/login", origin).await;
        assert!(header(&res, "access-control-allow-origin").is_none(), "preflight {origin}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_exactly_the_configured_origins() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_CORS_ORIGINS".into(), "https://app.example.com,https://admin.example.com".into());
    })
    .await;
    for allowed in ["https://app.example.com", "https://admin.example.com"] {
        let res = with_origin(&app, Method::GET, "/me", allowed).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(header(&res, "access-control-allow-origin").as_deref(), Some(allowed));
        let expose = header(&res, "access-control-expose-headers").unwrap_or_default().to_ascii_lowercase();
        assert!(expose.contains("x-request-id"), "clients can read the request id: {expose:?}");

        let res = preflight(&app, "/auth/login", allowed).await;
        assert!(res.status().is_success(), "preflight {allowed}: {}", res.status());
        assert_eq!(header(&res, "access-control-allow-origin").as_deref(), Some(allowed));
        let methods = header(&res, "access-control-allow-methods").unwrap_or_default();
        assert!(methods.contains("POST"), "{methods:?}");
    }
    for other in [
        "https://evil.example.com",
        "https://app.example.com.evil.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "null",
    ] {
        let res = with_origin(&app, Method::GET, "/me", other).await;
        assert!(header(&res, "access-control-allow-origin").is_none(), "{other}");
        let res = preflight(&app, "/auth/login", other).await;
        assert!(header(&res, "access-control-allow-origin").is_none(), "preflight {other}");
    }
}

// ---------------------------------------------------------------------------------------------
// Rate limits and client addresses
// ---------------------------------------------------------------------------------------------

fn num(res: &Response, name: &str) -> u64 {
    header(res, name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratelimit_headers_are_on_responses() {
    let app = TestApp::spawn().await;
    for (what, res) in [
        ("live", app.get("/health/live", None).await),
        ("401", app.get("/me", None).await),
        ("404", app.get("/nope", None).await),
        ("login", app.login("x@example.com", PASSWORD).await),
    ] {
        let limit = num(&res, "ratelimit-limit");
        let remaining = num(&res, "ratelimit-remaining");
        num(&res, "ratelimit-reset");
        assert!(limit > 0 && remaining < limit, "{what}: {remaining}/{limit}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_general_limit_is_429_with_retry_after() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_RATE_LIMIT_PER_MINUTE".into(), "5".into());
    })
    .await;
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let res = app.get("/me", None).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(num(&res, "ratelimit-limit"), 5);
        remaining.push(num(&res, "ratelimit-remaining"));
    }
    assert_eq!(remaining, vec![4, 3, 2, 1, 0]);
    let res = app.get("/me", None).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry = num(&res, "retry-after");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(num(&res, "ratelimit-remaining"), 0);
    assert_eq!(num(&res, "ratelimit-limit"), 5);
    checked(res, "429").await;
    // Every endpoint shares the budget, including a valid login.
    let (st, ..) = checked(app.login("a@example.com", PASSWORD).await, "login over budget").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log").await, 0, "refused before any work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_has_a_stricter_per_ip_limit() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_AUTH_RATE_LIMIT_PER_MINUTE".into(), "3".into());
    })
    .await;
    for i in 0..3 {
        let res = app.login(&format!("nobody{i}@example.com"), PASSWORD).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = app.login("nobody9@example.com", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry = num(&res, "retry-after");
    assert!(retry >= 1, "Retry-After {retry}");
    checked(res, "auth 429").await;
    // Registration shares the strict budget ...
    let (st, ..) = checked(app.post("/auth/register", None, register_body("late@example.com")).await, "register").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
    // ... while other endpoints still answer normally.
    assert_eq!(app.get("/me", None).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/health/live", None).await.status(), StatusCode::OK);
}

async fn me_from(app: &TestApp, forwarded_for: &str) -> StatusCode {
    app.req(Method::GET, "/me", None).header("x-forwarded-for", forwarded_for).send().await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_RATE_LIMIT_PER_MINUTE".into(), "3".into());
        env.insert("CIFIX_TRUSTED_PROXIES".into(), "127.0.0.1".into());
    })
    .await;
    for _ in 0..3 {
        assert_eq!(me_from(&app, "198.51.100.1").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(me_from(&app, "198.51.100.1").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(me_from(&app, "198.51.100.2").await, StatusCode::UNAUTHORIZED, "another client");
    // A spoofed left-most entry does not buy a fresh budget: the proxy appended the real one.
    assert_eq!(me_from(&app, "6.6.6.6, 198.51.100.1").await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_trusted_proxy_forwarded_for_is_ignored() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_RATE_LIMIT_PER_MINUTE".into(), "3".into());
    })
    .await;
    for i in 0..3 {
        assert_eq!(me_from(&app, &format!("198.51.100.{i}")).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(me_from(&app, "198.51.100.77").await, StatusCode::TOO_MANY_REQUESTS, "one budget for the peer");
    assert_eq!(app.get("/me", None).await.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_ip_is_the_forwarded_one_only_behind_a_trusted_proxy() {
    let trusted = TestApp::spawn_with(|env| {
        env.insert("CIFIX_TRUSTED_PROXIES".into(), "127.0.0.1".into());
    })
    .await;
    let res = trusted
        .req(Method::POST, "/auth/register", None)
        .header("x-forwarded-for", "203.0.113.7")
        .json(&register_body("proxied@example.com"))
        .send()
        .await
        .unwrap();
    let pair = expect(res, StatusCode::CREATED).await;
    assert_eq!(
        trusted.count("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.register' AND ip = '203.0.113.7'").await,
        1
    );
    let sessions = expect(trusted.get("/me/sessions", Some(&s(&pair["access_token"]))).await, StatusCode::OK).await;
    assert_eq!(sessions["items"][0]["ip"], "203.0.113.7");
    // A client-chosen entry to the left is not believed.
    let res = trusted
        .req(Method::POST, "/auth/login", None)
        .header("x-forwarded-for", "6.6.6.6, 203.0.113.8")
        .json(&json!({"email": "proxied@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        trusted.count("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.login' AND ip = '203.0.113.8'").await,
        1
    );
    assert_eq!(trusted.count("SELECT COUNT(*) FROM audit_log WHERE ip = '6.6.6.6'").await, 0);

    let direct = TestApp::spawn().await;
    let res = direct
        .req(Method::POST, "/auth/register", None)
        .header("x-forwarded-for", "203.0.113.7")
        .json(&register_body("direct@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(
        direct.count("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.register' AND ip = '127.0.0.1'").await,
        1
    );
    assert_eq!(direct.count("SELECT COUNT(*) FROM audit_log WHERE ip = '203.0.113.7'").await, 0);
}

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
