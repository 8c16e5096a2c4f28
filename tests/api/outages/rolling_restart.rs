//! Three replicas on one PostgreSQL behind haproxy that never retries nor redispatches: a
//! rolling restart must cost users nothing, because each replica turns its readiness off and
//! goes on serving until the balancer has moved away, then drains what it still has.

use std::{
    process::{Child, Command},
    time::{Duration, Instant},
};

use super::{Load, missing_events};
use crate::support::catalog::world;
use crate::support::process::Server;
use crate::support::{Backend, TestApp, free_port};

/// An `haproxy` of the test's own, in the foreground, stopped with the test.
struct Haproxy {
    child: Child,
    base: String,
    stats: String,
    log_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    async fn start(backends: &[(&str, u16)]) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let (port, stats_port) = (free_port(), free_port());
        let servers: String =
            backends.iter().map(|(name, p)| format!("    server {name} 127.0.0.1:{p} check\n")).collect();
        // No retries, no redispatch, no retry-on: a request sent to a replica that cannot
        // answer it reaches the client as an error, so the test sees every one.
        let config = format!(
            "global\n    maxconn 512\n\
             defaults\n    mode http\n    timeout connect 1s\n    timeout client 10s\n    timeout server 10s\n    timeout check 1s\n    retries 0\n    no option redispatch\n\
             frontend api\n    bind 127.0.0.1:{port}\n    default_backend replicas\n\
             frontend stats\n    bind 127.0.0.1:{stats_port}\n    stats enable\n    stats uri /stats\n\
             backend replicas\n    balance roundrobin\n    option httpchk GET /health/ready\n    http-check expect status 200\n    default-server inter 200ms fall 1 rise 2\n{servers}"
        );
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, config).unwrap();
        let log_path = dir.path().join("haproxy.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("this test needs haproxy on the PATH (apt-get install haproxy)");
        let h = Haproxy {
            child,
            base: format!("http://127.0.0.1:{port}"),
            stats: format!("http://127.0.0.1:{stats_port}/stats;csv"),
            log_path,
            _dir: dir,
        };
        let names: Vec<&str> = backends.iter().map(|(n, _)| *n).collect();
        for name in names {
            h.wait_for(name, "UP").await;
        }
        h
    }

    /// The status haproxy's health checks give `server` (`UP`, `DOWN`, `UP 1/2`, …).
    async fn status(&self, server: &str) -> Option<String> {
        let csv = reqwest::get(&self.stats).await.ok()?.text().await.ok()?;
        // Columns: pxname, svname, …, status is the 18th.
        csv.lines().find_map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            (cols.first() == Some(&"replicas") && cols.get(1) == Some(&server)).then(|| cols[17].to_string())
        })
    }

    async fn wait_for(&self, server: &str, status: &str) {
        for _ in 0..200 {
            if self.status(server).await.as_deref() == Some(status) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "haproxy never saw {server} {status} (it says {:?}): {}",
            self.status(server).await,
            std::fs::read_to_string(&self.log_path).unwrap_or_default()
        );
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_behind_a_balancer_that_never_retries_fails_no_request_and_loses_no_write() {
    // The in-process instance sets up the world; it owns the database, so it is declared
    // first and dropped last, after every process using the database has stopped.
    let app = TestApp::spawn_on(Backend::Postgres, |env| {
        env.insert("CIFIX_SHUTDOWN_DELAY_SECS".into(), "2".into());
        env.insert("CIFIX_SHUTDOWN_GRACE_SECS".into(), "10".into());
    })
    .await;
    let w = world(&app, 1, 2).await;
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let names = ["a", "b", "c"];
    let envs: Vec<_> = dirs
        .iter()
        .map(|d| {
            let mut env = app.env.clone();
            env.insert("CIFIX_DATA_DIR".into(), d.path().display().to_string());
            env
        })
        .collect();
    let mut replicas = Vec::new();
    for (i, name) in names.iter().enumerate() {
        replicas.push(Server::start(&envs[i], name).await);
    }
    let haproxy = Haproxy::start(&[("a", replicas[0].port), ("b", replicas[1].port), ("c", replicas[2].port)]).await;

    let load = Load::start(&haproxy.base, &w.student.token, &w.lesson_ids[0], 6, Duration::from_secs(45));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut restarts = 0;
    let rolling = Instant::now();
    for (i, name) in names.iter().enumerate() {
        let mut old = replicas.remove(i);
        let port = old.port;
        let (status, log) = tokio::task::spawn_blocking(move || {
            let s = old.terminate();
            (s, old.log())
        })
        .await
        .unwrap();
        assert!(status.success(), "replica {name} exited {status:?}: {log}");
        replicas.insert(i, Server::start_on(&envs[i], name, port).await);
        haproxy.wait_for(name, "UP").await;
        restarts += 1;
    }
    let rolling = rolling.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (tally, duration) = load.finish().await;
    println!(
        "rolling restart: {} requests ({} writes acknowledged), {} failed, {} unavailable, {restarts} restarts in {:.1} s, load ran {:.1} s",
        tally.requests,
        tally.acked.len(),
        tally.failed,
        tally.unavailable,
        rolling.as_secs_f64(),
        duration.as_secs_f64()
    );
    assert_eq!(restarts, 3);
    assert!(tally.requests > 0 && !tally.acked.is_empty(), "the load ran: {tally:?}");
    assert_eq!(tally.failed + tally.unavailable, 0, "every request answered 2xx; first failures: {:?}", tally.examples);
    let missing = missing_events(&app.db.conn, &w.student.id, &tally.acked).await;
    assert!(missing.is_empty(), "acknowledged but not stored: {missing:?}");
    drop(haproxy);
    drop(replicas);
}
