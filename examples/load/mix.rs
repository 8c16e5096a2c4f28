//! The open-model user mix: each virtual user thinks, then does one thing, for the whole run.
//!
//! Every user's schedule is fixed in advance (start + think times), independent of how fast
//! the server answers; a request that starts late because the user's previous one was slow is
//! charged from when it should have started (coordinated omission corrected).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use hyper::StatusCode;
use rand::Rng;

use crate::{
    http::Conn,
    server::Server,
    setup::{self, DASHBOARD, LOGIN, NOTIFICATIONS, OUTLINE, PUT, User},
    stats::{self, Recorder, Series},
    sweep::{self, Planned},
    ws::{self, Listener},
};

#[derive(Clone, Debug)]
pub struct MixOpts {
    pub users: usize,
    pub ws_users: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub think: (f64, f64),
    /// Weights of dashboard, progress, outline, notifications, login.
    pub weights: [u32; 5],
}

const ACTIONS: [&str; 5] = [DASHBOARD, PUT, OUTLINE, NOTIFICATIONS, LOGIN];

/// Parses `dashboard=30,progress=35,…`; names not given keep their default.
pub fn parse_weights(s: &str) -> Result<[u32; 5], String> {
    let mut w = DEFAULT_WEIGHTS;
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or(format!("{part:?}: expected name=weight"))?;
        let i = ["dashboard", "progress", "outline", "notifications", "login"]
            .iter()
            .position(|n| *n == k.trim())
            .ok_or(format!("{k:?}: one of dashboard, progress, outline, notifications, login"))?;
        w[i] = v.trim().parse().map_err(|_| format!("{v:?} is not a whole number"))?;
    }
    if w.iter().sum::<u32>() == 0 {
        return Err("the weights add up to 0".into());
    }
    Ok(w)
}

pub const DEFAULT_WEIGHTS: [u32; 5] = [30, 35, 15, 19, 1];

pub async fn run(server: &Server, metrics_token: &str, users: &[Arc<User>], o: &MixOpts) -> anyhow::Result<()> {
    let users = &users[..o.users.min(users.len())];
    let ws_users = o.ws_users.min(users.len());
    let total: u32 = o.weights.iter().sum();
    let mix: Vec<String> =
        ACTIONS.iter().zip(o.weights).map(|(a, w)| format!("{a} {:.0}%", 100.0 * w as f64 / total as f64)).collect();
    println!(
        "\n== mix: {} users ({} with a WebSocket), think {}–{} s, {:.0} s ({:.0} s warm-up not recorded)\n   {}",
        users.len(),
        ws_users,
        o.think.0,
        o.think.1,
        o.duration.as_secs_f64(),
        o.warmup.as_secs_f64(),
        mix.join(", ")
    );
    let recorder = Recorder::default();
    let mut conn = Conn::new(server.addr);
    let mut listeners = Vec::with_capacity(ws_users);
    for u in &users[..ws_users] {
        listeners.push(Listener::spawn(ws::open(server.addr, &mut conn, &u.token).await?, recorder.clone()));
    }

    let t0 = Instant::now();
    let (from, end) = (t0 + o.warmup, t0 + o.duration);
    let before = tokio::spawn({
        let (addr, token) = (server.addr, metrics_token.to_string());
        async move {
            tokio::time::sleep_until(from.into()).await;
            stats::scrape(addr, &token).await
        }
    });
    let mut tasks = Vec::with_capacity(users.len());
    for (i, user) in users.iter().enumerate() {
        let user = user.clone();
        let watch = listeners.get(i).map(Listener::watch);
        let (recorder, o) = (recorder.clone(), o.clone());
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let mut token = user.token.clone();
            // Spread the first actions over one mean think time, so the run starts steady.
            let mut next = t0 + Duration::from_secs_f64(rand::rng().random_range(0.0..o.think.1));
            while next < end {
                tokio::time::sleep_until(next.into()).await;
                let intended = next;
                let record = intended >= from;
                let action = pick(&o.weights);
                let p = match action {
                    DASHBOARD => Planned::plain(user.dashboard(), &token),
                    OUTLINE => Planned::plain(user.outline(), &token),
                    NOTIFICATIONS => Planned::plain(user.notifications(), &token),
                    LOGIN => Planned::plain(user.login(), &token),
                    _ => {
                        let (call, lesson, spent) = user.progress();
                        Planned { call, token: token.clone(), watch: watch.clone().map(|w| (w, lesson, spent)) }
                    }
                };
                let reply = sweep::timed(&mut conn, p, intended, &recorder, action, record).await;
                if action == LOGIN
                    && let Some(r) = reply.filter(|r| r.status == StatusCode::OK)
                    && let Some(t) = r.json()["access_token"].as_str()
                {
                    token = t.to_string();
                }
                next = intended + Duration::from_secs_f64(rand::rng().random_range(o.think.0..=o.think.1));
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let measured = (Instant::now().min(end) - from).as_secs_f64();
    ws::finish_all(listeners).await;
    let after = stats::scrape(server.addr, metrics_token).await;
    let before = before.await?;

    let mut series = recorder.take();
    stats::header();
    let mut all_but_login = Series::new();
    let mut requests = 0;
    for name in ACTIONS {
        let s = series.remove(name).unwrap_or_else(Series::new);
        stats::row(name, &s, after.mean_since(&before, &setup::route(name)));
        requests += s.count();
        if name != LOGIN {
            all_but_login.hist.add(&s.hist).expect("same bounds");
            for (k, v) in &s.errors {
                *all_but_login.errors.entry(k.clone()).or_default() += v;
            }
        }
    }
    stats::row("every request but login", &all_but_login, None);
    stats::row(ws::DELIVERY, &series.remove(ws::DELIVERY).unwrap_or_else(Series::new), None);
    println!("  requests/s: {:.1} over the {measured:.0} s recorded", requests as f64 / measured);
    Ok(())
}

fn pick(weights: &[u32; 5]) -> &'static str {
    let total: u32 = weights.iter().sum();
    let mut x = rand::rng().random_range(0..total);
    for (a, w) in ACTIONS.iter().zip(weights) {
        if x < *w {
            return a;
        }
        x -= w;
    }
    ACTIONS[0]
}
