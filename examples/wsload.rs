//! Real-time load tool: starts a real `cifix` server in-process (SQLite in a temp dir by
//! default, or `DATABASE_URL`/`REDIS_URL` if set) and measures
//!
//! 1. latency: with `clients` WebSocket clients connected (one per student), the delay from a
//!    progress update's HTTP response to the `progress.updated` event's arrival (p50/p99), and
//!    from the request's start to the arrival;
//! 2. capacity: how many concurrent idle WebSocket connections the instance holds, opening up
//!    to `max_connections` (5 per user, the per-user cap) and the memory they cost.
//!
//! Run it as:
//!
//!     ulimit -n 65536   # client and server sockets both live in this process: 2 fds each
//!     cargo run --release --example wsload -- [clients=1000] [updates=2000] [max_connections=10000]
//!
//! Numbers go in issue notes; they are never asserted by tests.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use cifix::{app, config::Config, state::AppState};
use futures::{StreamExt, stream};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::tungstenite::{Message, protocol::WebSocketConfig};

const PASSWORD: &str = "a long benchmark passphrase";

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

struct Ctx {
    client: reqwest::Client,
    base: String,
    ws_base: String,
}

impl Ctx {
    async fn register(&self, email: &str) -> anyhow::Result<(String, String)> {
        let r: Value = self
            .client
            .post(format!("{}/auth/register", self.base))
            .json(&json!({"email": email, "password": PASSWORD, "display_name": "Load"}))
            .send()
            .await?
            .json()
            .await?;
        Ok((
            r["access_token"].as_str().unwrap_or_default().to_string(),
            r["user"]["id"].as_str().unwrap_or_default().to_string(),
        ))
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> anyhow::Result<Value> {
        let res = self.client.post(format!("{}{path}", self.base)).bearer_auth(token).json(&body).send().await?;
        anyhow::ensure!(res.status().is_success(), "POST {path}: {}", res.status());
        Ok(res.json().await.unwrap_or(Value::Null))
    }

    async fn ws(
        &self,
        token: &str,
    ) -> anyhow::Result<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>>
    {
        let t = self.post("/realtime/ticket", token, json!({})).await?;
        let url = format!("{}/ws?ticket={}", self.ws_base, t["ticket"].as_str().unwrap_or_default());
        // The client side uses small buffers too, so that the memory per connection measured
        // below (both ends live in this process) is not dominated by the client's 128 KiB default.
        let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
        Ok(tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?.0)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let clients = args.first().copied().unwrap_or(1000);
    let updates = args.get(1).copied().unwrap_or(2000);
    let max_connections = args.get(2).copied().unwrap_or(10_000);

    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().display().to_string();
    let database_url = std::env::var("DATABASE_URL").ok();
    let redis_url = std::env::var("REDIS_URL").ok();
    let config = Config::from_lookup(|k| match k {
        "CIFIX_DATA_DIR" => Some(data_dir.clone()),
        "DATABASE_URL" => database_url.clone(),
        "REDIS_URL" => redis_url.clone(),
        "CIFIX_REDIS_PREFIX" => Some(format!("cifix-wsload:{}:", uuid::Uuid::new_v4().simple())),
        "CIFIX_JWT_SECRET" => Some("wsload-secret-wsload-secret-wsload-secret-00".into()),
        // Sign-ups are setup here, not what is measured.
        "CIFIX_BCRYPT_COST" => Some("4".into()),
        "CIFIX_RATE_LIMIT_PER_MINUTE"
        | "CIFIX_AUTH_RATE_LIMIT_PER_MINUTE"
        | "CIFIX_LOGIN_ACCOUNT_RATE_LIMIT_PER_MINUTE" => Some("100000000".into()),
        _ => None,
    })?;
    println!(
        "backend={} redis={} clients={clients} updates={updates} max_connections={max_connections} cores={}",
        if config.is_sqlite() { "sqlite" } else { "postgres" },
        config.redis_url.is_some(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let state = AppState::build(config).await?;
    let db = state.db.clone();
    let hub = state.hub.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(app::serve(state, listener, std::future::pending()));
    let ctx = Arc::new(Ctx {
        client: reqwest::Client::builder().pool_max_idle_per_host(64).build()?,
        base: format!("http://{addr}/api/v1"),
        ws_base: format!("ws://{addr}/api/v1"),
    });

    // A course with one lesson; every student enrolled.
    let (teacher, _) = ctx.register("teacher@example.com").await?;
    db.conn.execute_unprepared("UPDATE users SET role = 'instructor' WHERE email = 'teacher@example.com'").await?;
    let course = ctx
        .post("/courses", &teacher, json!({"slug": "load", "title": "Load", "summary": "", "level": "beginner"}))
        .await?;
    let course_id = course["id"].as_str().unwrap_or_default().to_string();
    let module = ctx.post(&format!("/courses/{course_id}/modules"), &teacher, json!({"title": "M"})).await?;
    let lesson = ctx
        .post(
            &format!("/modules/{}/lessons", module["id"].as_str().unwrap_or_default()),
            &teacher,
            json!({"title": "L", "kind": "video"}),
        )
        .await?;
    let lesson_id = lesson["id"].as_str().unwrap_or_default().to_string();
    let res = ctx
        .client
        .patch(format!("{}/courses/{course_id}", ctx.base))
        .bearer_auth(&teacher)
        .json(&json!({"published": true}))
        .send()
        .await?;
    anyhow::ensure!(res.status().is_success(), "publish: {}", res.status());

    let started = Instant::now();
    let tokens: Vec<String> = stream::iter(0..clients)
        .map(|i| {
            let ctx = ctx.clone();
            let course_id = course_id.clone();
            async move {
                let (t, _) = ctx.register(&format!("student{i}@example.com")).await?;
                ctx.post(&format!("/courses/{course_id}/enrollments"), &t, json!({})).await?;
                anyhow::Ok(t)
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    println!("setup: {clients} students registered and enrolled in {:.1}s", started.elapsed().as_secs_f64());

    // ---- 1. latency with `clients` connected ----
    let mut arrivals: Vec<Arc<Mutex<mpsc::UnboundedReceiver<Instant>>>> = Vec::new();
    let mut readers = Vec::new();
    for t in &tokens {
        let mut ws = ctx.ws(t).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        arrivals.push(Arc::new(Mutex::new(rx)));
        readers.push(tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Text(text) = m
                    && text.as_str().contains("\"progress.updated\"")
                {
                    let _ = tx.send(Instant::now());
                }
            }
        }));
    }
    println!("latency: {} clients connected (hub: {})", tokens.len(), hub.connection_count());
    let tokens = Arc::new(tokens);
    let concurrency = 8;
    let wall = Instant::now();
    let results: Vec<Option<(Duration, Duration, bool)>> = stream::iter(0..updates)
        .map(|i| {
            let ctx = ctx.clone();
            let tokens = tokens.clone();
            let lesson_id = lesson_id.clone();
            // Each in-flight update belongs to a different student (concurrency < clients).
            let u = i % tokens.len();
            let arrival = arrivals[u].clone();
            async move {
                let mut rx = arrival.lock().await;
                let sent = Instant::now();
                let res = ctx
                    .client
                    .put(format!("{}/me/lessons/{lesson_id}/progress", ctx.base))
                    .bearer_auth(&tokens[u])
                    .json(&json!({"status": "in_progress", "progress": (i as f64 / updates as f64).min(1.0)}))
                    .send()
                    .await
                    .ok()?;
                let ok = res.status().is_success();
                let _ = res.bytes().await;
                let responded = Instant::now();
                if !ok {
                    return None;
                }
                let arrived = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.ok()??;
                Some((
                    arrived.saturating_duration_since(responded),
                    arrived.saturating_duration_since(sent),
                    arrived < responded,
                ))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let wall = wall.elapsed();
    let ok: Vec<_> = results.iter().flatten().collect();
    let mut after_response: Vec<Duration> = ok.iter().map(|r| r.0).collect();
    let mut end_to_end: Vec<Duration> = ok.iter().map(|r| r.1).collect();
    after_response.sort();
    end_to_end.sort();
    let early = ok.iter().filter(|r| r.2).count();
    println!(
        "progress → event, {} clients, {} updates (c={concurrency}, {:.0}/s): lost={} arrived_before_response={}",
        tokens.len(),
        results.len(),
        results.len() as f64 / wall.as_secs_f64(),
        results.len() - ok.len(),
        early
    );
    println!(
        "  delay after HTTP response: p50={:.2}ms p99={:.2}ms max={:.2}ms",
        percentile(&after_response, 0.5),
        percentile(&after_response, 0.99),
        after_response.last().map(|d| d.as_secs_f64() * 1000.0).unwrap_or(f64::NAN)
    );
    println!(
        "  request start → event:     p50={:.2}ms p99={:.2}ms max={:.2}ms",
        percentile(&end_to_end, 0.5),
        percentile(&end_to_end, 0.99),
        end_to_end.last().map(|d| d.as_secs_f64() * 1000.0).unwrap_or(f64::NAN)
    );

    // ---- 2. capacity: idle connections, 5 per user ----
    let base_conns = hub.connection_count();
    let rss_before = rss_kib();
    let started = Instant::now();
    let mut held = 0usize;
    let mut failure = None;
    let mut user = 0usize;
    'open: while base_conns + held < max_connections {
        let (t, _) = match ctx.register(&format!("idle{user}@example.com")).await {
            Ok(t) => t,
            Err(e) => {
                failure = Some(format!("register: {e}"));
                break;
            }
        };
        user += 1;
        // 4 more per user: with the latency client above that is the cap of 5 for students,
        // and these idle users have no other connection.
        for _ in 0..cifix::state::MAX_LIVE_CONNECTIONS_PER_USER {
            if base_conns + held >= max_connections {
                break 'open;
            }
            match ctx.ws(&t).await {
                Ok(mut ws) => {
                    held += 1;
                    // Reading answers the server's pings, as a live client would.
                    readers.push(tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} }));
                }
                Err(e) => {
                    failure = Some(format!("connect: {e}"));
                    break 'open;
                }
            }
        }
        if held.is_multiple_of(2000) && held > 0 {
            println!("  … {} connections", base_conns + held);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let total = hub.connection_count();
    let rss_after = rss_kib();
    println!(
        "capacity: {total} concurrent WebSocket connections held (opened {held} idle in {:.1}s){}",
        started.elapsed().as_secs_f64(),
        failure.map(|f| format!("; stopped by {f}")).unwrap_or_default()
    );
    println!(
        "  process RSS {} MiB → {} MiB: {:.1} KiB per connection (server and client side together, \
         both in this process)",
        rss_before / 1024,
        rss_after / 1024,
        (rss_after.saturating_sub(rss_before)) as f64 / held.max(1) as f64
    );
    Ok(())
}
