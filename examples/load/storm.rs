//! A login storm: more sign-ins at once than the server has cores (so the password hasher is
//! saturated and sign-ins queue), while GET /me arrives at a fixed rate. What it shows is
//! whether hashing starves everything else.

use std::{sync::Arc, time::Duration};

use crate::{
    server::Server,
    setup::{LOGIN, ME, User},
    stats::{self, Recorder, Series},
    sweep::{self, Planned},
};

pub struct StormOpts {
    pub logins: usize,
    pub seconds: f64,
    pub me_rate: f64,
}

fn plan_login(u: &User) -> Planned {
    Planned::plain(u.login(), &u.token)
}

pub async fn run(server: &Server, users: &[Arc<User>], o: &StormOpts) {
    let duration = Duration::from_secs_f64(o.seconds);
    let baseline_for = Duration::from_secs_f64((o.seconds / 3.0).max(2.0));
    println!(
        "\n== storm: {} sign-ins in a closed loop for {:.0}s, with GET /me at {}/s (baseline: GET /me alone for {:.0}s)",
        o.logins,
        o.seconds,
        o.me_rate,
        baseline_for.as_secs_f64()
    );
    let me_users = users.to_vec();
    let me = move |k: u64| {
        let u = &me_users[k as usize % me_users.len()];
        Planned::plain(u.me(), &u.token)
    };
    let baseline = Recorder::default();
    let rps = sweep::fixed_rate(server.addr, o.me_rate, baseline_for, &baseline, ME, me.clone()).await;
    stats::rate_header();
    let series = baseline.take().remove(ME).unwrap_or_else(Series::new);
    stats::rate_row(ME, "alone", rps, &series, None);

    let storm = Recorder::default();
    // The sign-ins use users other than the GET /me ones where there are enough.
    let login_users: Vec<Arc<User>> = users.iter().rev().take(o.logins.max(1)).cloned().collect();
    let (addr, rec) = (server.addr, storm.clone());
    let logins = tokio::spawn(async move {
        sweep::closed_loop(addr, &login_users, login_users.len(), (duration, Duration::ZERO), &rec, LOGIN, plan_login)
            .await
    });
    let me_rps = sweep::fixed_rate(server.addr, o.me_rate, duration, &storm, ME, me).await;
    let login_rps = logins.await.unwrap_or(0.0);
    let mut series = storm.take();
    let me_series = series.remove(ME).unwrap_or_else(Series::new);
    stats::rate_row(ME, "during storm", me_rps, &me_series, None);
    let login_series = series.remove(LOGIN).unwrap_or_else(Series::new);
    stats::rate_row(LOGIN, &format!("closed c={}", o.logins), login_rps, &login_series, None);
}
