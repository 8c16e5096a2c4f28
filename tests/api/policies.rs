//! Route policies over real HTTP: how the `Authorization` header is read, which routes spend
//! the stricter auth budget, and which are never remembered for `Idempotency-Key`.

use crate::support::{PASSWORD, TestApp};
use reqwest::{Method, Response, StatusCode};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

/// Registers `email`, gives it `role`, and returns its access and refresh tokens.
async fn account(app: &TestApp, email: &str, role: &str) -> (String, String) {
    let pair = app.register(email).await;
    app.db.conn.execute_unprepared(&format!("UPDATE users SET role = '{role}' WHERE email = '{email}'")).await.unwrap();
    (pair["access_token"].as_str().unwrap().to_string(), pair["refresh_token"].as_str().unwrap().to_string())
}

fn replayed(res: &Response) -> bool {
    res.headers().get("idempotent-replayed").is_some_and(|v| v == "true")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_read_case_insensitively_also_for_idempotency() {
    let app = TestApp::spawn().await;
    let (token, _) = account(&app, "teacher@example.com", "instructor").await;
    for (n, scheme) in ["Bearer", "bearer", "BEARER"].into_iter().enumerate() {
        let body = json!({"slug": format!("course-{n}"), "title": "T", "summary": "S", "level": "beginner"});
        let post = || {
            app.req(Method::POST, "/courses", None)
                .header("authorization", format!("{scheme} {token}"))
                .header("idempotency-key", format!("key-{n}"))
                .json(&body)
                .send()
        };
        let first = post().await.unwrap();
        assert_eq!(first.status(), StatusCode::CREATED, "{scheme}");
        assert!(!replayed(&first), "{scheme}");
        let first: Value = first.json().await.unwrap();
        let again = post().await.unwrap();
        assert_eq!(again.status(), StatusCode::CREATED, "{scheme}");
        assert!(replayed(&again), "{scheme}: the retry is a replay");
        assert_eq!(again.json::<Value>().await.unwrap(), first, "{scheme}: the first response");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM courses").await, 3, "one course per key");

    // Junk around the token is no token at all, whatever the scheme's case.
    for header in [format!("bearer  {token}"), format!("bearer {token} x"), format!("bearer{token}")] {
        let res = app.req(Method::GET, "/me", None).header("authorization", header).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
}

/// Every entry point that costs a bcrypt hash or guards an account.
const AUTH_BUDGET_ROUTES: &[&str] = &[
    "/auth/login",
    "/auth/register",
    "/auth/refresh",
    "/auth/password/forgot",
    "/auth/password/reset",
    "/auth/email/verify",
    "/me/password",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_account_guarding_route_spends_the_auth_budget_and_no_other_does() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_AUTH_RATE_LIMIT_PER_MINUTE".into(), "3".into());
    })
    .await;
    let (token, refresh) = account(&app, "kid@example.com", "student").await;
    let mut spent = false;
    for i in 0..10 {
        if app.login(&format!("nobody{i}@example.com"), PASSWORD).await.status() == StatusCode::TOO_MANY_REQUESTS {
            spent = true;
            break;
        }
    }
    assert!(spent, "the auth budget runs out");

    for path in AUTH_BUDGET_ROUTES {
        let res = app.post(path, Some(&token), json!({})).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "{path} spends the auth budget");
        assert_eq!(res.headers()["ratelimit-limit"], "3", "{path} reports the auth budget");
        assert!(res.headers().contains_key("retry-after"), "{path}");
    }
    // The other account routes, and everything else, keep the general budget.
    let status = |res: Response| res.status();
    assert_eq!(status(app.post("/auth/email/resend", Some(&token), json!({})).await), StatusCode::ACCEPTED);
    assert_eq!(status(app.get("/me", Some(&token)).await), StatusCode::OK);
    assert_eq!(status(app.get("/me/sessions", Some(&token)).await), StatusCode::OK);
    assert_eq!(status(app.post("/auth/logout", None, json!({"refresh_token": refresh})).await), StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_that_carry_credentials_are_never_replayed() {
    let app = TestApp::spawn().await;
    let (admin, refresh) = account(&app, "admin@example.com", "admin").await;
    let twice = |path: &'static str, body: Value| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let send = || app.req(Method::POST, path, Some(&admin)).header("idempotency-key", path).json(&body).send();
            let first = send().await.unwrap();
            assert!(first.status().is_success(), "{path}: {}", first.status());
            let again = send().await.unwrap();
            assert!(!replayed(&again), "{path} is not remembered");
            again.status()
        }
    };
    // A replay would hand out the first response's tokens or secrets again.
    assert_eq!(twice("/auth/login", json!({"email": "admin@example.com", "password": PASSWORD})).await, StatusCode::OK);
    let register = json!({"email": "new@example.com", "password": PASSWORD, "display_name": "New"});
    assert_eq!(twice("/auth/register", register).await, StatusCode::CONFLICT);
    assert_eq!(twice("/auth/email/resend", json!({})).await, StatusCode::ACCEPTED);
    assert_eq!(twice("/realtime/ticket", json!({})).await, StatusCode::CREATED);
    assert_eq!(twice("/admin/integrations/clients", json!({"name": "Tool"})).await, StatusCode::CREATED);
    assert_eq!(app.count("SELECT COUNT(*) FROM integration_clients").await, 2);
    let change = json!({"current_password": PASSWORD, "new_password": "another horse battery staple"});
    assert_eq!(twice("/me/password", change).await, StatusCode::UNPROCESSABLE_ENTITY);
    // A student's launch token is a credential too.
    let (student, _) = account(&app, "kid@example.com", "student").await;
    for _ in 0..2 {
        let res = app
            .req(Method::POST, "/me/assessments", Some(&student))
            .header("idempotency-key", "start")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        assert!(!replayed(&res), "a launch token is never handed out twice");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM assessments").await, 2);
    // Last: the second use of a refresh token ends the session.
    assert_eq!(twice("/auth/refresh", json!({"refresh_token": refresh})).await, StatusCode::UNAUTHORIZED);
}
