//! A class behind one school router signs up and in; guessing is still stopped; nobody can
//! lock a child out, and a known and an unknown address answer alike.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{default_limits, login_from};
use crate::support::{
    PASSWORD, TestApp, expect, problem,
    smtp::{Script, SmtpServer},
};

const CLASS: usize = 40;

fn without_request_id(mut body: Value) -> Value {
    body.as_object_mut().unwrap().remove("request_id");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_of_forty_signs_up_and_in_from_one_address_while_guessing_one_account_is_stopped() {
    let app = TestApp::spawn_with(default_limits).await;
    let emails: Vec<String> = (0..CLASS).map(|i| format!("pupil{i}@school.example")).collect();

    let registered =
        join_all(emails.iter().map(|e| {
            app.post("/auth/register", None, json!({"email": e, "password": PASSWORD, "display_name": "Pupil"}))
        }))
        .await;
    let statuses: Vec<_> = registered.iter().map(|r| r.status()).collect();
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED), "registrations: {statuses:?}");

    // A few mistype first, as children do; everyone gets in.
    for e in &emails[..5] {
        problem(app.login(e, "not my password at all").await, StatusCode::UNAUTHORIZED).await;
    }
    let signed_in = join_all(emails.iter().map(|e| app.login(e, PASSWORD))).await;
    let statuses: Vec<_> = signed_in.iter().map(|r| r.status()).collect();
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "sign-ins: {statuses:?}");

    // Forty wrong passwords for one account from the same address: the first few are answered,
    // then the account's budget stops them, and they stay stopped.
    let mut answers = Vec::new();
    for i in 0..40 {
        answers.push(app.login(&emails[7], &format!("guess number {i} is wrong")).await.status());
    }
    // Ten, or one more per six seconds the loop took on a slow machine (the budget refills).
    let unauthorized = answers.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    assert!((10..=12).contains(&unauthorized), "the per-account budget answers ten guesses: {answers:?}");
    assert!(answers[..10].iter().all(|s| *s == StatusCode::UNAUTHORIZED), "{answers:?}");
    assert!(answers[30..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS), "{answers:?}");
    let res = app.login(&emails[7], "one more guess then").await;
    assert!(res.headers().contains_key("retry-after"));
    problem(res, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_failures_from_one_address_at_many_accounts_are_stopped_per_address() {
    let app = TestApp::spawn_with(|env| {
        default_limits(env);
        env.insert("CIFIX_TRUSTED_PROXIES".into(), "127.0.0.1".into());
    })
    .await;
    let mut answers = Vec::new();
    for i in 0..35 {
        answers.push(login_from(&app, "203.0.113.9", &format!("someone{i}@example.com"), "a guess").await.status());
    }
    // Thirty, or one more per two seconds the loop took on a slow machine (the budget refills).
    assert!(answers[..30].iter().all(|s| *s == StatusCode::UNAUTHORIZED), "{answers:?}");
    let refused = answers.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert!(refused >= 3 && answers[34] == StatusCode::TOO_MANY_REQUESTS, "{answers:?}");
    // Another address is not concerned.
    app.register("neighbour@example.com").await;
    expect(login_from(&app, "203.0.113.10", "neighbour@example.com", PASSWORD).await, StatusCode::OK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_can_lock_a_child_out_and_known_and_unknown_addresses_answer_alike() {
    let smtp = SmtpServer::start(Script::default()).await;
    let url = smtp.url();
    let app = TestApp::spawn_with(move |env| {
        default_limits(env);
        env.insert("CIFIX_TRUSTED_PROXIES".into(), "127.0.0.1".into());
        // This test is about the account budget; the per-address one has its own test.
        env.insert("CIFIX_AUTH_FAILURES_PER_MINUTE".into(), "1000".into());
        env.insert("SMTP_URL".into(), url);
        env.insert("CIFIX_EMAIL_POLL_MS".into(), "50".into());
        env.insert("CIFIX_PUBLIC_URL".into(), "https://learn.example.com".into());
    })
    .await;
    app.register("kim@school.example").await;
    smtp.wait_for(1).await;
    let attacker = "203.0.113.66";

    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..15 {
        let k = login_from(&app, attacker, "kim@school.example", "let me guess").await;
        known.push((k.status(), without_request_id(k.json().await.unwrap())));
        let u = login_from(&app, attacker, "nobody@school.example", "let me guess").await;
        unknown.push((u.status(), without_request_id(u.json().await.unwrap())));
    }
    assert_eq!(known, unknown, "an account that exists answers exactly as one that does not");
    assert_eq!(known[9].0, StatusCode::UNAUTHORIZED);
    assert_eq!(known[10].0, StatusCode::TOO_MANY_REQUESTS);
    // Even the right password from where the guessing comes from is held back ...
    problem(login_from(&app, attacker, "kim@school.example", PASSWORD).await, StatusCode::TOO_MANY_REQUESTS).await;

    // ... while Kim, at home, signs in with it. A wrong one there is throttled like any other,
    // and for an unknown address too.
    let home = "198.51.100.20";
    expect(login_from(&app, home, "kim@school.example", PASSWORD).await, StatusCode::OK).await;
    let k = problem(login_from(&app, home, "kim@school.example", "a typo").await, StatusCode::TOO_MANY_REQUESTS).await;
    let u =
        problem(login_from(&app, home, "nobody@school.example", "a typo").await, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(without_request_id(k), without_request_id(u));

    // A password reset proves the mailbox and gives the account back everywhere.
    expect(app.post("/auth/password/forgot", None, json!({"email": "kim@school.example"})).await, StatusCode::ACCEPTED)
        .await;
    let token = smtp.wait_for(2).await[1].link_token("https://learn.example.com/reset-password?token=");
    let new_password = "a brand new passphrase";
    expect(
        app.post("/auth/password/reset", None, json!({"token": token, "new_password": new_password})).await,
        StatusCode::NO_CONTENT,
    )
    .await;
    expect(login_from(&app, attacker, "kim@school.example", new_password).await, StatusCode::OK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_floods_are_capped_per_address_and_a_school_address_can_be_given_more() {
    let app = TestApp::spawn_with(|env| {
        default_limits(env);
        env.insert("CIFIX_TRUSTED_PROXIES".into(), "127.0.0.1".into());
        env.insert("CIFIX_REGISTRATIONS_PER_HOUR".into(), "3".into());
        env.insert("CIFIX_AUTH_SHARED_NETWORKS".into(), "192.0.2.0/24".into());
    })
    .await;
    let register = |ip: &'static str, email: String| {
        app.req(reqwest::Method::POST, "/auth/register", None)
            .header("x-forwarded-for", ip)
            .json(&json!({"email": email, "password": PASSWORD, "display_name": "New"}))
            .send()
    };
    for i in 0..3 {
        expect(register("203.0.113.5", format!("flood{i}@example.com")).await.unwrap(), StatusCode::CREATED).await;
    }
    let res = register("203.0.113.5", "flood3@example.com".into()).await.unwrap();
    assert!(res.headers().contains_key("retry-after"));
    problem(res, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM users WHERE email = 'flood3@example.com'").await, 0);
    // The school's address (CIFIX_AUTH_SHARED_NETWORKS) has ten times the budget.
    for i in 0..30 {
        expect(register("192.0.2.44", format!("class{i}@example.com")).await.unwrap(), StatusCode::CREATED).await;
    }
}

/// A budget so large that one request's share is under a microsecond (a load test from one
/// address, a school factor on a generous limit) allows, on Redis as in process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_finer_than_a_microsecond_allow_on_redis() {
    let app = crate::support::TestApp::spawn_on(crate::support::Backend::Postgres, |env| {
        for k in [
            "CIFIX_RATE_LIMIT_PER_MINUTE",
            "CIFIX_AUTH_RATE_LIMIT_PER_MINUTE",
            "CIFIX_LOGIN_ACCOUNT_RATE_LIMIT_PER_MINUTE",
            "CIFIX_AUTH_FAILURES_PER_MINUTE",
        ] {
            env.insert(k.into(), "100000000".into());
        }
    })
    .await;
    let kid = app.user("kid", "student").await;
    let wrong = app.post("/auth/login", None, json!({"email": kid.email, "password": "not the password"})).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let right = app.login(&kid.email, PASSWORD).await;
    assert_eq!(right.status(), StatusCode::OK);
    assert_eq!(app.get("/me", kid.auth()).await.status(), StatusCode::OK);
}
