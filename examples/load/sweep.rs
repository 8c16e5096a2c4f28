//! Per-endpoint sweeps: closed loop (c connections, each sending its next request as soon as
//! the last is answered: the most the server completes) and fixed rate (requests start on a
//! schedule whatever the answers do, latency counted from the scheduled start).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;

use crate::{
    http::{self, Conn, Reply},
    server::Server,
    setup::{self, Call, DASHBOARD, ME, PUT, User},
    stats::{self, Recorder, Series},
    ws::Watch,
};

/// One request to send, and the listener that will time its event, if any.
pub struct Planned {
    pub call: Call,
    pub token: String,
    pub watch: Option<(Watch, String, i64)>,
}

impl Planned {
    pub fn plain(call: Call, token: &str) -> Planned {
        Planned { call, token: token.to_string(), watch: None }
    }
}

/// Sends `p` and records its latency from `intended` (its scheduled start), so a request that
/// waited for the server (a busy connection, a full pool) is charged for the wait.
pub async fn timed(
    conn: &mut Conn,
    p: Planned,
    intended: Instant,
    recorder: &Recorder,
    name: &'static str,
    record: bool,
) -> Option<Reply> {
    if let Some((w, lesson, spent)) = &p.watch {
        w.expect(lesson.clone(), *spent, intended, record);
    }
    let res = conn.send(p.call.method, &p.call.path, Some(&p.token), p.call.body.as_ref()).await;
    let latency = intended.elapsed();
    let outcome = http::outcome(&res);
    if outcome.is_err()
        && let Some((w, ..)) = &p.watch
    {
        w.cancel();
    }
    if record {
        recorder.record(name, latency, outcome);
    }
    res.ok()
}

/// At most this many requests in flight in a fixed-rate run; beyond it requests wait (and the
/// wait is in their latency) instead of opening ever more sockets.
const MAX_IN_FLIGHT: usize = 1024;

/// `rate` requests per second for `duration`; returns the completed requests per second.
pub async fn fixed_rate(
    addr: SocketAddr,
    rate: f64,
    duration: Duration,
    recorder: &Recorder,
    name: &'static str,
    mut plan: impl FnMut(u64) -> Planned,
) -> f64 {
    let n = (rate * duration.as_secs_f64()).round() as u64;
    let pool: Arc<Mutex<Vec<Conn>>> = Arc::default();
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let t0 = Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(n as usize);
    for k in 0..n {
        let intended = t0 + Duration::from_secs_f64(k as f64 / rate);
        tokio::time::sleep_until(intended.into()).await;
        let p = plan(k);
        let (pool, permits, recorder) = (pool.clone(), permits.clone(), recorder.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let taken = pool.lock().unwrap().pop();
            let mut conn = taken.unwrap_or_else(|| Conn::new(addr));
            timed(&mut conn, p, intended, &recorder, name, true).await;
            pool.lock().unwrap().push(conn);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

/// How a closed loop makes each request.
pub type Plan = fn(&User) -> Planned;

/// `c` connections in a closed loop for `duration`, the first `warmup` not recorded; returns
/// the completed requests per second in the recorded window.
pub async fn closed_loop(
    addr: SocketAddr,
    users: &[Arc<User>],
    c: usize,
    (duration, warmup): (Duration, Duration),
    recorder: &Recorder,
    name: &'static str,
    plan: Plan,
) -> f64 {
    let t0 = Instant::now();
    let (from, end) = (t0 + warmup, t0 + duration);
    let mut tasks = Vec::new();
    for i in 0..c {
        let user = users[i % users.len()].clone();
        let recorder = recorder.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                timed(&mut conn, plan(&user), now, &recorder, name, now >= from).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let done = recorder.count(name);
    done as f64 / (duration - warmup).as_secs_f64()
}

pub struct SweepOpts {
    /// Which endpoints to sweep, in this order.
    pub endpoints: Vec<Endpoint>,
    pub concurrency: usize,
    pub closed_seconds: f64,
    pub rates: Vec<f64>,
    pub rate_seconds: f64,
}

/// An endpoint a sweep can drive.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Me,
    Dashboard,
    Progress,
}

impl Endpoint {
    fn plan(self) -> (&'static str, Plan) {
        match self {
            Endpoint::Me => (ME, plan_me),
            Endpoint::Dashboard => (DASHBOARD, plan_dashboard),
            Endpoint::Progress => (PUT, plan_put),
        }
    }
}

fn plan_me(u: &User) -> Planned {
    Planned::plain(u.me(), &u.token)
}

fn plan_dashboard(u: &User) -> Planned {
    Planned::plain(u.dashboard(), &u.token)
}

fn plan_put(u: &User) -> Planned {
    Planned::plain(u.progress().0, &u.token)
}

/// Runs the chosen sweeps; returns the closed-loop progress PUT rate, if it ran (for the
/// pgbench comparison).
pub async fn run(server: &Server, token: &str, users: &[Arc<User>], o: &SweepOpts) -> Option<f64> {
    let closed = Duration::from_secs_f64(o.closed_seconds);
    let warmup = Duration::from_secs_f64((o.closed_seconds / 5.0).min(2.0));
    println!(
        "\n== sweep: closed loop c={} for {:.0}s (first {:.0}s not recorded), then fixed rates {:?}/s for {:.0}s each",
        o.concurrency,
        o.closed_seconds,
        warmup.as_secs_f64(),
        o.rates,
        o.rate_seconds
    );
    stats::rate_header();
    let mut put_rate = None;
    for (name, plan) in o.endpoints.iter().map(|e| e.plan()) {
        let recorder = Recorder::default();
        let before = stats::scrape(server.addr, token).await;
        let rps = closed_loop(server.addr, users, o.concurrency, (closed, warmup), &recorder, name, plan).await;
        let sql = stats::scrape(server.addr, token).await.mean_since(&before, &setup::route(name));
        let series = recorder.take().remove(name).unwrap_or_else(Series::new);
        stats::rate_row(name, &format!("closed c={}", o.concurrency), rps, &series, sql);
        if name == PUT {
            put_rate = Some(rps);
        }
        for &rate in &o.rates {
            let recorder = Recorder::default();
            let users = users.to_vec();
            let duration = Duration::from_secs_f64(o.rate_seconds);
            let before = stats::scrape(server.addr, token).await;
            let rps = fixed_rate(server.addr, rate, duration, &recorder, name, move |k| {
                plan(&users[k as usize % users.len()])
            })
            .await;
            let sql = stats::scrape(server.addr, token).await.mean_since(&before, &setup::route(name));
            let series = recorder.take().remove(name).unwrap_or_else(Series::new);
            stats::rate_row(name, &format!("{rate}/s"), rps, &series, sql);
        }
    }
    put_rate
}
