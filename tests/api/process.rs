//! Tests of the `cifix` binary itself: CLI commands, configuration errors, graceful shutdown,
//! secrets never reaching logs, and several processes sharing one rate-limit budget.

use std::{collections::HashMap, io::Write, process::Stdio, time::Duration};

use crate::support::process::{Server, command, sigterm};
use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A data directory and the environment for a `cifix` process. Bind the result before starting
/// any process, so that the processes are stopped before it removes their database.
async fn env_for_process() -> (Scratch, tempfile::TempDir, HashMap<String, String>) {
    env_for_process_on(Backend::of_run()).await
}

async fn env_for_process_on(backend: Backend) -> (Scratch, tempfile::TempDir, HashMap<String, String>) {
    let dir = tempfile::tempdir().unwrap();
    let (env, scratch) = base_env_on(&dir, backend).await;
    (scratch, dir, env)
}

fn run_cli(env: &HashMap<String, String>, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child =
        command(env).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // A command that refuses its arguments exits without reading its input: a closed pipe
    // here is its answer, not the test's failure.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_configuration_value_stops_the_process_with_one_line_naming_it() {
    let (_scratch, _dir, env) = env_for_process().await;
    for (var, value) in [("CIFIX_BCRYPT_COST", "abc"), ("CIFIX_BIND", "not-an-address"), ("DATABASE_URL", "mysql://x")]
    {
        let mut e = env.clone();
        e.insert(var.into(), value.into());
        let (code, _, stderr) = run_cli(&e, &["serve"], "");
        assert_ne!(code, 0);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(lines[0].contains(var), "{stderr}");
    }
    let mut prod = env.clone();
    prod.insert("CIFIX_ENV".into(), "production".into());
    prod.remove("CIFIX_JWT_SECRET");
    let (code, _, stderr) = run_cli(&prod, &["serve"], "");
    assert_ne!(code, 0);
    assert!(stderr.contains("CIFIX_JWT_SECRET"), "{stderr}");
    prod.insert("CIFIX_JWT_SECRET".into(), JWT_SECRET.into());
    prod.insert("DATABASE_URL".into(), "sqlite://x.db?mode=rwc".into());
    let (code, _, stderr) = run_cli(&prod, &["serve"], "");
    assert_ne!(code, 0);
    assert!(stderr.contains("DATABASE_URL") && stderr.contains("SQLite"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_user_makes_an_admin_who_can_sign_in_and_refuses_bad_input() {
    let (_scratch, _dir, env) = env_for_process().await;
    let (code, stdout, stderr) =
        run_cli(&env, &["create-user", "--email", "Root@Example.com", "--role", "admin"], &format!("{PASSWORD}\n"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("admin root@example.com"), "{stdout}");

    let (code, _, stderr) =
        run_cli(&env, &["create-user", "--email", "root@example.com", "--role", "admin"], &format!("{PASSWORD}\n"));
    assert_ne!(code, 0);
    assert!(stderr.contains("already registered"), "{stderr}");
    let (code, _, stderr) =
        run_cli(&env, &["create-user", "--email", "not-an-email", "--role", "student"], &format!("{PASSWORD}\n"));
    assert_ne!(code, 0);
    assert!(stderr.contains("email"), "{stderr}");
    let (code, _, stderr) =
        run_cli(&env, &["create-user", "--email", "weak@example.com", "--role", "student"], "password123\n");
    assert_ne!(code, 0);
    assert!(stderr.contains("password"), "{stderr}");
    let (code, _, _) =
        run_cli(&env, &["create-user", "--email", "x@example.com", "--role", "superuser"], &format!("{PASSWORD}\n"));
    assert_ne!(code, 0);

    let server = Server::start(&env, "serve").await;
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({"email": "root@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["user"]["role"], "admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_command_prints_the_document() {
    let (_scratch, _dir, env) = env_for_process().await;
    let (code, stdout, _) = run_cli(&env, &["openapi"], "");
    assert_eq!(code, 0);
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert!(doc["paths"]["/api/v1/auth/register"]["post"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_passwords_and_tokens_never_reach_logs_or_the_audit_trail() {
    let (_scratch, _dir, mut env) = env_for_process().await;
    env.insert("CIFIX_LOG_FORMAT".into(), "json".into());
    // Debug level for our code and the HTTP stack: the most a production operator would turn on.
    env.insert("RUST_LOG".into(), "debug".into());
    let database_url = env["DATABASE_URL"].clone();
    let server = Server::start(&env, "canary").await;
    let c = reqwest::Client::new();
    let url = |p: &str| format!("{}/api/v1{p}", server.base);
    let canary_pw = "Canary-Passw0rd-7f3a9c1e";
    let canary_pw2 = "Canary-Second-Passw0rd-2b8d";

    let reg: Value = c
        .post(url("/auth/register"))
        .json(&json!({"email": "owl@example.com", "password": canary_pw, "display_name": "Canary"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let wrong = c
        .post(url("/auth/login"))
        .json(&json!({"email": "owl@example.com", "password": canary_pw2}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let login: Value = c
        .post(url("/auth/login"))
        .json(&json!({"email": "owl@example.com", "password": canary_pw}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refreshed: Value = c
        .post(url("/auth/refresh"))
        .json(&json!({"refresh_token": login["refresh_token"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // A replayed refresh token and a password change: both paths log and audit.
    let replay =
        c.post(url("/auth/refresh")).json(&json!({"refresh_token": login["refresh_token"]})).send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    let me = c.get(url("/me")).bearer_auth(reg["access_token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let change = c
        .post(url("/me/password"))
        .bearer_auth(reg["access_token"].as_str().unwrap())
        .json(&json!({"current_password": canary_pw, "new_password": canary_pw2}))
        .send()
        .await
        .unwrap();
    assert_eq!(change.status(), StatusCode::NO_CONTENT);

    let canaries = [
        canary_pw.to_string(),
        canary_pw2.to_string(),
        reg["access_token"].as_str().unwrap().to_string(),
        reg["refresh_token"].as_str().unwrap().to_string(),
        login["access_token"].as_str().unwrap().to_string(),
        login["refresh_token"].as_str().unwrap().to_string(),
        refreshed["refresh_token"].as_str().unwrap().to_string(),
        JWT_SECRET.to_string(),
    ];
    let log = server.log();
    assert!(log.contains("\"route\":\"/api/v1/auth/login\""), "the access log is JSON and was captured: {log}");

    let db = sea_orm::Database::connect(database_url).await.unwrap();
    use sea_orm::{EntityTrait, QueryOrder};
    let audit = cifix::entities::audit_log::Entity::find()
        .order_by_asc(cifix::entities::audit_log::Column::At)
        .all(&db)
        .await
        .unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    for expected in [
        "auth.register",
        "auth.login_failed",
        "auth.login",
        "auth.refresh",
        "auth.refresh_reuse_detected",
        "auth.password_change",
    ] {
        assert!(actions.contains(&expected), "{expected} audited: {actions:?}");
    }
    let audit_text = format!("{audit:?}");
    for canary in &canaries {
        assert_eq!(log.matches(canary.as_str()).count(), 0, "a secret reached the logs");
        assert_eq!(audit_text.matches(canary.as_str()).count(), 0, "a secret reached the audit trail");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    let (_scratch, _dir, mut env) = env_for_process().await;
    // A slow bcrypt makes a registration a request that is still running when SIGTERM lands.
    env.insert("CIFIX_BCRYPT_COST".into(), "13".into());
    let mut server = Server::start(&env, "drain").await;
    let url = format!("{}/api/v1/auth/register", server.base);
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&json!({"email": "slow@example.com", "password": PASSWORD, "display_name": "Slow"}))
            .send()
            .await
            .map(|r| r.status())
    });
    // Wait until the request is being handled (the access log line comes only at its end, so
    // watch for the connection instead: a short, fixed pause is enough for a local request).
    tokio::time::sleep(Duration::from_millis(150)).await;
    let status = tokio::task::spawn_blocking(move || {
        let s = server.terminate();
        (s, server.log())
    })
    .await
    .unwrap();
    assert!(status.0.success(), "exit status {:?}: {}", status.0, status.1);
    assert_eq!(in_flight.await.unwrap().unwrap(), StatusCode::CREATED, "the in-flight request completed");
    assert!(status.1.contains("shutting down"), "{}", status.1);
}

/// Two instances on one PostgreSQL + Redis spend one budget: requests alternate between them
/// and the refusals start where a single instance's would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_and_redis_share_one_rate_limit_budget() {
    let (_scratch, _dir, mut env) = env_for_process_on(Backend::Postgres).await;
    env.insert("CIFIX_RATE_LIMIT_PER_MINUTE".into(), "10".into());
    let a = Server::start(&env, "a").await;
    let b = Server::start(&env, "b").await;
    let c = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut remaining = Vec::new();
    for i in 0..14 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let r = c.get(format!("{base}/health/live")).send().await.unwrap();
        statuses.push(r.status().as_u16());
        remaining.push(r.headers()["ratelimit-remaining"].to_str().unwrap().to_string());
    }
    // Starting the two servers cost a few readiness probes from the same budget.
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!(ok < 10, "a shared budget of 10 is spent across both instances: {statuses:?}");
    assert!(statuses.iter().filter(|s| **s == 429).count() >= 4, "{statuses:?}");
    let first_refusal = statuses.iter().position(|s| *s == 429).unwrap();
    assert!(statuses[first_refusal..].iter().all(|s| *s == 429), "once spent, both refuse: {statuses:?}");
    assert!(remaining.iter().any(|r| r == "0"), "{remaining:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_requests_are_served_and_still_limited_per_instance() {
    let app = TestApp::spawn_with(|env| {
        env.insert("REDIS_URL".into(), "redis://127.0.0.1:1".into());
        env.insert("CIFIX_RATE_LIMIT_PER_MINUTE".into(), "5".into());
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(app.get("/health/live", None).await.status().as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 429, 429], "fail open to the local limiter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_requests_are_503_while_the_database_is_unreachable() {
    let app = TestApp::spawn_on_postgres().await;
    let student = app.user("kid", "student").await;
    assert_eq!(app.get("/health/ready", None).await.status(), StatusCode::OK);
    let db_name = app.env["DATABASE_URL"].rsplit('/').next().unwrap().to_string();
    let admin = sea_orm::Database::connect(format!("{}/postgres", pg_base())).await.unwrap();
    use sea_orm::ConnectionTrait;
    admin.execute_unprepared(&format!("ALTER DATABASE {db_name} ALLOW_CONNECTIONS false")).await.unwrap();
    admin
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db_name}'"
        ))
        .await
        .unwrap();
    let res = app.get("/health/ready", None).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.get("/health/live", None).await.status(), StatusCode::OK, "the process itself is alive");
    // A request that needs the database hears at once that it may retry, not a bare 500.
    let res = app.get("/me", student.auth()).await;
    assert_eq!(res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string()).as_deref(), Some("1"));
    let body = problem(res, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["type"], "urn:cifix:problem:database-unavailable");
    admin.execute_unprepared(&format!("ALTER DATABASE {db_name} ALLOW_CONNECTIONS true")).await.unwrap();
    let mut back = false;
    for _ in 0..50 {
        if app.get("/health/ready", None).await.status() == StatusCode::OK {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "ready again once the database is back");
}

/// Replicas of a first deploy (or of a deploy that adds a migration) start at the same moment
/// on a database whose schema they all want to create: they take turns, and all serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_started_together_on_an_empty_database_all_become_ready() {
    let (_scratch, _dir, env) = env_for_process_on(Backend::Postgres).await;
    let (a, b, c) = tokio::join!(Server::start(&env, "a"), Server::start(&env, "b"), Server::start(&env, "c"));
    for s in [&a, &b, &c] {
        let res = reqwest::get(format!("{}/health/ready", s.base)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{}", s.log());
    }
}

/// After SIGTERM the instance first says it is not ready while it goes on answering, so a
/// load balancer that probes every few hundred milliseconds moves away before the listener
/// closes; then it drains and exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_first_turns_readiness_off_while_still_serving() {
    let (_scratch, _dir, mut env) = env_for_process().await;
    env.insert("CIFIX_SHUTDOWN_DELAY_SECS".into(), "3".into());
    let mut server = Server::start(&env, "delay").await;
    let base = server.base.clone();
    sigterm(server.child.id());
    let client = reqwest::Client::new();
    let mut saw_draining = false;
    for _ in 0..40 {
        let ready = client.get(format!("{base}/health/ready")).send().await.expect("still listening");
        if ready.status() == StatusCode::SERVICE_UNAVAILABLE {
            let body: Value = ready.json().await.unwrap();
            assert_eq!(body["type"], "urn:cifix:problem:draining", "{body}");
            saw_draining = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(saw_draining, "readiness never turned off: {}", server.log());
    // Requests are still answered meanwhile.
    let res = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"email": "late@example.com", "password": PASSWORD, "display_name": "Late"}))
        .send()
        .await
        .expect("still serving during the delay");
    assert_eq!(res.status(), StatusCode::CREATED);
    let status = tokio::task::spawn_blocking(move || server.child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "exit status {status:?}");
}
