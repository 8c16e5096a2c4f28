//! The service under the faults production brings: Redis lost (`redis`), replicas restarted one
//! by one behind a load balancer that does not retry (`rolling_restart`), and PostgreSQL stopped
//! and restarted under write load (`postgres`). Each test runs the failing part itself (its own
//! Redis, PostgreSQL or haproxy, on loopback), drives a bounded load through it, and asserts
//! what users saw and that every acknowledged write is stored.

mod postgres;
mod redis;
mod rolling_restart;
mod sqlite;

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::{Response, StatusCode};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::json;

/// How one request ended, as the client saw it.
#[derive(Debug)]
enum Outcome {
    Ok,
    /// 503 problem+json with `Retry-After`: the service said "not now" and changed nothing.
    Unavailable,
    /// Anything else: another status, a connection error, a timeout.
    Failed(String),
}

async fn outcome(res: Result<Response, reqwest::Error>) -> Outcome {
    let res = match res {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("transport: {e}")),
    };
    let status = res.status();
    if status.is_success() {
        // The whole body must arrive: a response cut off mid-way is a failure too.
        return match res.bytes().await {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::Failed(format!("{status}, body cut off: {e}")),
        };
    }
    let retry_after = res.headers().contains_key("retry-after");
    let problem_json = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/problem+json"));
    let body = res.text().await.unwrap_or_default();
    if status == StatusCode::SERVICE_UNAVAILABLE && retry_after && problem_json {
        Outcome::Unavailable
    } else {
        Outcome::Failed(format!("{status} retry-after={retry_after} problem+json={problem_json}: {body}"))
    }
}

/// What the load's clients saw.
#[derive(Default, Debug)]
struct Tally {
    requests: u64,
    ok: u64,
    unavailable: u64,
    failed: u64,
    /// The first few failures, to show when the test fails.
    examples: Vec<String>,
    /// `event_id`s of the progress events the service acknowledged (200).
    acked: Vec<String>,
}

impl Tally {
    fn count(&mut self, what: &str, o: &Outcome) {
        self.requests += 1;
        match o {
            Outcome::Ok => self.ok += 1,
            Outcome::Unavailable => self.unavailable += 1,
            Outcome::Failed(why) => {
                self.failed += 1;
                if self.examples.len() < 5 {
                    self.examples.push(format!("{what}: {why}"));
                }
            }
        }
    }

    fn add(&mut self, other: Tally) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.unavailable += other.unavailable;
        self.failed += other.failed;
        self.examples.extend(other.examples.into_iter().take(5usize.saturating_sub(self.examples.len())));
        self.acked.extend(other.acked);
    }
}

/// `tasks` clients, each in a loop of: one progress event with an `event_id` of its own (a
/// batch of one), `GET /me`, `GET /courses`; until [`Load::finish`] or `max` has passed.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Tally>>,
    started: Instant,
}

impl Load {
    fn start(base: &str, token: &str, lesson_id: &str, tasks: usize, max: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let tasks = (0..tasks)
            .map(|t| {
                let (base, token, lesson_id, stop) =
                    (base.to_string(), token.to_string(), lesson_id.to_string(), stop.clone());
                tokio::spawn(async move {
                    // A client that gives up after 5 s: an answer that slow is a failure too.
                    let c = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
                    let mut tally = Tally::default();
                    let mut n: i64 = 0;
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < max {
                        n += 1;
                        let event_id = format!("load-{t}-{n}");
                        let body = json!({"events": [{
                            "event_id": event_id,
                            "lesson_id": lesson_id,
                            "status": "in_progress",
                            "progress": 0.5,
                            "time_spent_seconds": n,
                            "occurred_at": chrono::Utc::now().to_rfc3339(),
                        }]});
                        let write = c
                            .post(format!("{base}/api/v1/me/progress/batch"))
                            .bearer_auth(&token)
                            .json(&body)
                            .send()
                            .await;
                        let o = outcome(write).await;
                        if matches!(o, Outcome::Ok) {
                            tally.acked.push(event_id);
                        }
                        tally.count("POST /me/progress/batch", &o);
                        for path in ["/api/v1/me", "/api/v1/courses"] {
                            let o = outcome(c.get(format!("{base}{path}")).bearer_auth(&token).send().await).await;
                            tally.count(&format!("GET {path}"), &o);
                        }
                        // Steady, not flat out: the machine is shared with the service under test.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    tally
                })
            })
            .collect();
        Load { stop, tasks, started }
    }

    async fn finish(mut self) -> (Tally, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        for t in std::mem::take(&mut self.tasks) {
            total.add(t.await.unwrap());
        }
        (total, self.started.elapsed())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The acknowledged events missing from `progress_events`.
async fn missing_events(db: &DatabaseConnection, user_id: &str, acked: &[String]) -> Vec<String> {
    let sql = format!("SELECT event_id FROM progress_events WHERE user_id = '{user_id}'");
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    let stored: HashSet<String> = rows.iter().map(|r| r.try_get_by_index::<String>(0).unwrap()).collect();
    acked.iter().filter(|e| !stored.contains(*e)).cloned().collect()
}
