//! Security headers, CORS, rate limits and the client address behind a proxy.

use super::*;

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
        for name in ["idempotent-replayed", "ratelimit-remaining", "retry-after", "www-authenticate"] {
            assert!(expose.contains(name), "a page can read {name}: {expose:?}");
        }

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
