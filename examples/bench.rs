//! Latency benchmark: starts a real `cifix` server in-process (SQLite in a temp dir by default,
//! or `DATABASE_URL`/`REDIS_URL` if set) with production settings (bcrypt cost 10) and
//! measures endpoints under concurrent load, printing p50/p90/p99.
//!
//!     cargo run --release --example bench -- [login_requests] [me_requests] [concurrency] [progress_clients]
//!
//! Numbers go in issue notes; they are never asserted by tests.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use cifix::{app, config::Config, state::AppState};
use futures::{StreamExt, stream};
use serde_json::{Value, json};

const PASSWORD: &str = "a long benchmark passphrase";

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

fn report(name: &str, mut lat: Vec<Duration>, wall: Duration, errors: usize) {
    lat.sort();
    println!(
        "{name:<28} n={:<6} errors={errors:<4} p50={:>7.2}ms p90={:>7.2}ms p99={:>7.2}ms max={:>7.2}ms throughput={:>8.1}/s",
        lat.len(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.90),
        percentile(&lat, 0.99),
        lat.last().unwrap().as_secs_f64() * 1000.0,
        lat.len() as f64 / wall.as_secs_f64()
    );
}

/// Runs `n` requests with `concurrency` in flight; returns latencies of the successful ones.
async fn run<F, Fut>(n: usize, concurrency: usize, f: F) -> (Vec<Duration>, Duration, usize)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    let results: Vec<(Duration, bool)> = stream::iter(0..n)
        .map(|i| {
            let fut = f(i);
            async move {
                let t = Instant::now();
                let ok = fut.await;
                (t.elapsed(), ok)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let wall = started.elapsed();
    let errors = results.iter().filter(|r| !r.1).count();
    (results.into_iter().filter(|r| r.1).map(|r| r.0).collect(), wall, errors)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let logins = args.first().copied().unwrap_or(1000);
    let mes = args.get(1).copied().unwrap_or(5000);
    let concurrency = args.get(2).copied().unwrap_or(50);
    let progress_clients = args.get(3).copied().unwrap_or(200);

    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().display().to_string();
    let database_url = std::env::var("DATABASE_URL").ok();
    let redis_url = std::env::var("REDIS_URL").ok();
    let config = Config::from_lookup(|k| match k {
        "CIFIX_DATA_DIR" => Some(data_dir.clone()),
        "DATABASE_URL" => database_url.clone(),
        "REDIS_URL" => redis_url.clone(),
        "CIFIX_REDIS_PREFIX" => Some(format!("cifix-bench:{}:", uuid::Uuid::new_v4().simple())),
        "CIFIX_JWT_SECRET" => Some("bench-secret-bench-secret-bench-secret-000".into()),
        // One client address sends everything here; production budgets are per client.
        "CIFIX_RATE_LIMIT_PER_MINUTE"
        | "CIFIX_AUTH_RATE_LIMIT_PER_MINUTE"
        | "CIFIX_LOGIN_ACCOUNT_RATE_LIMIT_PER_MINUTE" => Some("100000000".into()),
        "CIFIX_LOG_FORMAT" => Some("json".into()),
        _ => None,
    })?;
    println!(
        "backend={} redis={} bcrypt_cost={} max_concurrent_hashes={} cores={}",
        if config.is_sqlite() { "sqlite" } else { "postgres" },
        config.redis_url.is_some(),
        config.bcrypt_cost,
        config.max_concurrent_hashes,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let state = AppState::build(config).await?;
    let state_for_setup = state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/api/v1", listener.local_addr()?);
    tokio::spawn(app::serve(state, listener, std::future::pending()));

    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let users = 20;
    let mut tokens = Vec::new();
    for i in 0..users {
        let r: Value = client
            .post(format!("{base}/auth/register"))
            .json(&json!({"email": format!("bench{i}@example.com"), "password": PASSWORD, "display_name": "Bench"}))
            .send()
            .await?
            .json()
            .await?;
        tokens.push(r["access_token"].as_str().unwrap().to_string());
    }
    let tokens = Arc::new(tokens);

    // One login at a time shows the cost of a login itself; concurrency above the hashing
    // bound shows the queueing users feel during a login storm.
    for (n, login_conc) in [(logins / 10, 1), (logins, concurrency.min(16))] {
        let (lat, wall, errors) = run(n, login_conc, |i| {
            let client = client.clone();
            let base = base.clone();
            async move {
                client
                    .post(format!("{base}/auth/login"))
                    .json(&json!({"email": format!("bench{}@example.com", i % users), "password": PASSWORD}))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        report(&format!("POST /auth/login (c={login_conc})"), lat, wall, errors);
    }

    let (lat, wall, errors) = run(mes, concurrency, |i| {
        let client = client.clone();
        let base = base.clone();
        let tokens = tokens.clone();
        async move {
            client
                .get(format!("{base}/me"))
                .bearer_auth(&tokens[i % tokens.len()])
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    report(&format!("GET /me (c={concurrency})"), lat, wall, errors);

    progress_scenarios(&client, &base, &state_for_setup, progress_clients).await?;

    let metrics = client.get(base.replace("/api/v1", "/metrics")).send().await?.text().await?;
    println!("\nSQL statements per request (mean over the run, from /metrics):");
    for route in ["/api/v1/auth/login", "/api/v1/me", "/api/v1/me/lessons/{lesson_id}/progress", "/api/v1/me/dashboard"]
    {
        let read = |suffix: &str| {
            metrics
                .lines()
                .find(|l| l.starts_with(&format!("http_request_db_statements_{suffix}{{route=\"{route}\"}}")))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
        };
        if let (Some(sum), Some(count)) = (read("sum"), read("count")) {
            println!("  {route:<42} {:.2}", sum / count);
        }
    }
    Ok(())
}

/// `progress_clients` students, each enrolled in one published course of 5 modules × 6 lessons,
/// send progress updates concurrently, then read their dashboards concurrently.
async fn progress_scenarios(
    client: &reqwest::Client,
    base: &str,
    state: &AppState,
    progress_clients: usize,
) -> anyhow::Result<()> {
    state.auth.create_user("teacher@example.com", PASSWORD, cifix::kernel::context::Role::Instructor).await?;
    let teacher: Value = client
        .post(format!("{base}/auth/login"))
        .json(&json!({"email": "teacher@example.com", "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    let t = teacher["access_token"].as_str().unwrap();
    let course: Value = client
        .post(format!("{base}/courses"))
        .bearer_auth(t)
        .json(&json!({"slug": "bench-course", "title": "Bench", "summary": "Load", "level": "beginner"}))
        .send()
        .await?
        .json()
        .await?;
    let course_id = course["id"].as_str().unwrap().to_string();
    let mut lessons = Vec::new();
    for m in 0..5 {
        let module: Value = client
            .post(format!("{base}/courses/{course_id}/modules"))
            .bearer_auth(t)
            .json(&json!({"title": format!("Module {m}")}))
            .send()
            .await?
            .json()
            .await?;
        for l in 0..6 {
            let lesson: Value = client
                .post(format!("{base}/modules/{}/lessons", module["id"].as_str().unwrap()))
                .bearer_auth(t)
                .json(&json!({"title": format!("Lesson {m}.{l}"), "kind": "reading"}))
                .send()
                .await?
                .json()
                .await?;
            lessons.push(lesson["id"].as_str().unwrap().to_string());
        }
    }
    client.patch(format!("{base}/courses/{course_id}")).bearer_auth(t).json(&json!({"published": true})).send().await?;

    let students: Vec<String> = stream::iter(0..progress_clients)
        .map(|i| {
            let client = client.clone();
            let base = base.to_string();
            let course_id = course_id.clone();
            async move {
                let r: Value = client
                    .post(format!("{base}/auth/register"))
                    .json(&json!({"email": format!("learner{i}@example.com"), "password": PASSWORD, "display_name": "Learner"}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let token = r["access_token"].as_str().unwrap().to_string();
                client.post(format!("{base}/courses/{course_id}/enrollments")).bearer_auth(&token).send().await.unwrap();
                token
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let students = Arc::new(students);
    let lessons = Arc::new(lessons);

    let n = progress_clients * 10;
    let (lat, wall, errors) = run(n, progress_clients, |i| {
        let client = client.clone();
        let base = base.to_string();
        let students = students.clone();
        let lessons = lessons.clone();
        async move {
            let student = &students[i % students.len()];
            let lesson = &lessons[(i / students.len()) % lessons.len()];
            let status = if i % 3 == 0 { "completed" } else { "in_progress" };
            client
                .put(format!("{base}/me/lessons/{lesson}/progress"))
                .bearer_auth(student)
                .json(&json!({"status": status, "progress": 0.5, "time_spent_seconds": 60 + i}))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    report(&format!("PUT lesson progress (c={progress_clients})"), lat, wall, errors);

    let (lat, wall, errors) = run(n, progress_clients, |i| {
        let client = client.clone();
        let base = base.to_string();
        let students = students.clone();
        async move {
            client
                .get(format!("{base}/me/dashboard"))
                .bearer_auth(&students[i % students.len()])
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    report(&format!("GET /me/dashboard (c={progress_clients})"), lat, wall, errors);
    Ok(())
}
