//! PostgreSQL stopped, and restarted, under write load: meanwhile every request is answered at
//! once with 503 + `Retry-After` (never a 500, never a hang); once it is back the same instance
//! serves again without a restart, and every write it acknowledged is stored.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::json;

use super::{Load, Outcome, Tally, missing_events, outcome};
use crate::support::catalog::world;
use crate::support::{Backend, TestApp, free_port};

/// The server binaries: `CIFIX_TEST_PG_BIN`, or the newest `/usr/lib/postgresql/*/bin`.
fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("CIFIX_TEST_PG_BIN") {
        return dir.into();
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).expect("this test needs PostgreSQL's server binaries (initdb, pg_ctl)")
}

/// A PostgreSQL server of the test's own in a temporary directory, on its own port, with trust
/// authentication; stopped and removed with the test.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    /// PostgreSQL refuses to run as root: as root, its commands run as `postgres`.
    as_postgres: bool,
}

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = std::fs::metadata(dir.path()).unwrap().uid() == 0;
        if as_postgres {
            let ok = Command::new("chown").args(["postgres:"]).arg(dir.path()).status().unwrap().success();
            assert!(ok, "chown of the data directory to postgres");
        }
        let pg = PrivatePostgres { port: free_port(), bin: pg_bin(), as_postgres, dir };
        let data = pg.data();
        pg.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"],
        );
        pg.resume();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = c.args(args).current_dir(self.dir.path()).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("pg.log")).unwrap_or_default()
        );
    }

    /// `pg_ctl start`, waiting until it accepts connections.
    fn resume(&self) {
        let dir = self.dir.path().display().to_string();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={dir} -c fsync=off -c max_connections=50",
            self.port
        );
        let log = Path::new(&dir).join("pg.log").display().to_string();
        self.run("pg_ctl", &["-D", &self.data(), "-o", &options, "-l", &log, "-w", "-t", "30", "start"]);
    }

    /// `pg_ctl stop -m fast`: open sessions are ended, as in a failover or a restart.
    fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "-t", "30", "stop"]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Never panics: it may run while a failed test unwinds. Stopping a stopped server fails
        // harmlessly.
        let data = self.data();
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let exe = self.bin.join("pg_ctl");
        let _ = if self.as_postgres {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(exe).args(args).output()
        } else {
            Command::new(exe).args(args).output()
        };
    }
}

/// Sends progress writes until one is acknowledged; how long that took, and what the probes
/// saw meanwhile. Gives up after `patience`.
async fn until_a_write_succeeds(app: &TestApp, token: &str, lesson_id: &str, patience: Duration) -> (Duration, Tally) {
    let c = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let started = Instant::now();
    let mut tally = Tally::default();
    for n in 0.. {
        let event_id = format!("probe-{}-{n}", uuid::Uuid::new_v4().simple());
        let body = json!({"events": [{
            "event_id": event_id, "lesson_id": lesson_id, "status": "in_progress", "progress": 0.4,
            "time_spent_seconds": 1, "occurred_at": chrono::Utc::now().to_rfc3339(),
        }]});
        let o = outcome(c.post(app.url("/me/progress/batch")).bearer_auth(token).json(&body).send().await).await;
        let ok = matches!(o, Outcome::Ok);
        tally.count("probe write", &o);
        if ok {
            tally.acked.push(event_id);
            return (started.elapsed(), tally);
        }
        assert!(started.elapsed() < patience, "no write succeeded within {patience:?}: {:?}", tally.examples);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_outage_and_a_restart_under_write_load_answer_503_then_recover_without_losing_a_write() {
    let pg = PrivatePostgres::start();
    // Built by hand (the harness makes databases on the shared server): the private server's
    // own `postgres` database, no Redis. The app is declared after `pg`, so it stops first.
    let url = pg.url();
    let app = TestApp::spawn_on(Backend::Embedded, |env| {
        env.insert("DATABASE_URL".into(), url);
        env.insert("CIFIX_DB_ACQUIRE_TIMEOUT_MS".into(), "1000".into());
    })
    .await;
    let w = world(&app, 1, 2).await;
    let token = w.student.token.clone();
    let lesson = w.lesson_ids[0].clone();
    assert_eq!(app.get("/health/ready", None).await.status(), StatusCode::OK);

    let load = Load::start(&app.base, &token, &lesson, 4, Duration::from_secs(50));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // An outage of about 3 s.
    let down = Instant::now();
    // `pg_ctl` waits; the load goes on on the runtime's other threads meanwhile.
    tokio::task::block_in_place(|| pg.stop());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ready_during = app.get("/health/ready", None).await.status();
    tokio::task::block_in_place(|| pg.resume());
    let outage = down.elapsed();
    let (recovered_after_outage, probes_1) =
        until_a_write_succeeds(&app, &token, &lesson, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A restart: stopped and started again at once.
    let restart = Instant::now();
    tokio::task::block_in_place(|| {
        pg.stop();
        pg.resume()
    });
    let restart_took = restart.elapsed();
    let (recovered_after_restart, probes_2) =
        until_a_write_succeeds(&app, &token, &lesson, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (mut tally, duration) = load.finish().await;
    println!(
        "postgres outage: load {} requests in {:.1} s: {} ok, {} answered 503 + Retry-After, {} failed; outage {:.1} s, first write acknowledged {:.2} s after PostgreSQL was back ({} probes); restart took {:.1} s, first write {:.2} s after ({} probes)",
        tally.requests,
        duration.as_secs_f64(),
        tally.ok,
        tally.unavailable,
        tally.failed,
        outage.as_secs_f64(),
        recovered_after_outage.as_secs_f64(),
        probes_1.requests,
        restart_took.as_secs_f64(),
        recovered_after_restart.as_secs_f64(),
        probes_2.requests,
    );
    assert_eq!(ready_during, StatusCode::SERVICE_UNAVAILABLE, "not ready while the database is down");
    let examples: Vec<String> =
        tally.examples.iter().chain(&probes_1.examples).chain(&probes_2.examples).cloned().collect();
    assert_eq!(tally.failed + probes_1.failed + probes_2.failed, 0, "only 2xx or 503 + Retry-After: {examples:?}");
    assert!(tally.unavailable > 0, "the load met the outage: {tally:?}");
    tally.add(probes_1);
    tally.add(probes_2);
    let missing = missing_events(&app.db.conn, &w.student.id, &tally.acked).await;
    assert!(missing.is_empty(), "acknowledged but not stored: {missing:?}");
    drop(app);
    drop(pg);
}
