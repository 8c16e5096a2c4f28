//! The system under test: a scratch backend (a temp dir for SQLite; a fresh database and a
//! Redis key prefix for PostgreSQL), and the real `cifix` binary as a child process pinned to
//! its own core, configured as in production except for the rate limits.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tokio::process::{Child, Command};

use crate::os;

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct Env {
    pub bin: PathBuf,
    pub dir: tempfile::TempDir,
    /// The URL the server and the setup code use.
    pub database_url: String,
    /// PostgreSQL only: the maintenance database that creates and drops ours.
    admin_url: Option<String>,
    pub db_name: Option<String>,
    redis: Option<(String, String)>,
    pub metrics_token: String,
    /// Kept for the whole run, so that tokens stay valid when the server is restarted.
    jwt_secret: String,
    secrets_key: String,
    server_cpu: Option<usize>,
}

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

/// `postgres://host/db` with another database name.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl Env {
    pub async fn create(
        backend: Backend,
        bin: &Path,
        postgres_url: &str,
        redis_url: &str,
        server_cpu: Option<usize>,
    ) -> anyhow::Result<Env> {
        anyhow::ensure!(
            bin.exists(),
            "{} not found: build it first (`cargo build --release --bin cifix`, or use bench/run)",
            bin.display()
        );
        let dir = tempfile::Builder::new().prefix("cifix-bench-").tempdir()?;
        let id = random_hex(4);
        let mut env = Env {
            bin: bin.to_path_buf(),
            database_url: format!("sqlite://{}?mode=rwc", dir.path().join("data/cifix.db").display()),
            dir,
            admin_url: None,
            db_name: None,
            redis: None,
            metrics_token: random_hex(24),
            jwt_secret: random_hex(32),
            secrets_key: random_hex(32),
            server_cpu,
        };
        if backend == Backend::Postgres {
            let name = format!("cifix_bench_{id}");
            let admin = Database::connect(postgres_url).await.context("connecting to PostgreSQL")?;
            admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await?;
            admin.close().await?;
            env.database_url = with_database(postgres_url, &name);
            env.admin_url = Some(postgres_url.to_string());
            env.db_name = Some(name);
            env.redis = Some((redis_url.to_string(), format!("cifix-bench:{id}:")));
        }
        Ok(env)
    }

    /// Drops what `create` made. Best effort: a failure is reported, never hidden.
    pub async fn cleanup(&self) {
        if let (Some(admin), Some(name)) = (&self.admin_url, &self.db_name)
            && let Err(e) = drop_database(admin, name).await
        {
            eprintln!("warning: could not drop database {name}: {e}");
        }
        if let Some((url, prefix)) = &self.redis
            && let Err(e) = delete_keys(url, prefix).await
        {
            eprintln!("warning: could not delete Redis keys {prefix}*: {e}");
        }
    }

    pub async fn connect(&self) -> anyhow::Result<DatabaseConnection> {
        Ok(Database::connect(&self.database_url).await?)
    }

    fn command(&self, sub: &str) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg(sub);
        // Nothing from the caller's shell may change what is measured.
        for (k, _) in std::env::vars() {
            if k.starts_with("CIFIX_")
                || ["DATABASE_URL", "REDIS_URL", "SMTP_URL", "PORT", "CLAMD_ADDR", "RUST_LOG"].contains(&k.as_str())
            {
                cmd.env_remove(k);
            }
        }
        // A million a minute is far above any rate here; more would make the Redis limiter's
        // per-request interval round to 0 µs, which refuses everything.
        let unlimited = "1000000";
        let data = self.dir.path().join("data");
        let vars: Vec<(&str, String)> = vec![
            ("CIFIX_ENV", "production".into()),
            ("CIFIX_BIND", "127.0.0.1:0".into()),
            ("CIFIX_DATA_DIR", data.display().to_string()),
            ("DATABASE_URL", self.database_url.clone()),
            ("CIFIX_ALLOW_SQLITE_IN_PRODUCTION", "true".into()),
            ("CIFIX_ALLOW_FILE_EMAIL_IN_PRODUCTION", "true".into()),
            ("CIFIX_JWT_SECRET", self.jwt_secret.clone()),
            ("CIFIX_SECRETS_KEY", self.secrets_key.clone()),
            ("CIFIX_METRICS_TOKEN", self.metrics_token.clone()),
            ("CIFIX_BCRYPT_COST", "10".into()),
            ("CIFIX_LOG_FORMAT", "json".into()),
            // Long enough that no scenario needs a refresh; the default is 15 minutes.
            ("CIFIX_ACCESS_TOKEN_TTL_SECS", "7200".into()),
            ("CIFIX_SHUTDOWN_DELAY_SECS", "0".into()),
            ("CIFIX_SHUTDOWN_GRACE_SECS", "2".into()),
            // One client address sends everything here; production budgets are per client.
            ("CIFIX_RATE_LIMIT_PER_MINUTE", unlimited.into()),
            ("CIFIX_AUTH_RATE_LIMIT_PER_MINUTE", unlimited.into()),
            ("CIFIX_LOGIN_ACCOUNT_RATE_LIMIT_PER_MINUTE", unlimited.into()),
            ("CIFIX_AUTH_FAILURES_PER_MINUTE", unlimited.into()),
            ("CIFIX_REGISTRATIONS_PER_HOUR", unlimited.into()),
            ("CIFIX_MAX_FAILED_LOGINS_PER_HOUR", unlimited.into()),
        ];
        cmd.envs(vars);
        if let Some((url, prefix)) = &self.redis {
            cmd.env("REDIS_URL", url).env("CIFIX_REDIS_PREFIX", prefix);
        }
        if let Some(cpu) = self.server_cpu {
            // SAFETY: sched_setaffinity is async-signal-safe; nothing else runs in the child.
            unsafe {
                cmd.pre_exec(move || os::pin_current(&[cpu]));
            }
        }
        cmd.kill_on_drop(true).stdin(Stdio::null());
        cmd
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        let out = self.command("migrate").stdout(Stdio::null()).stderr(Stdio::piped()).output().await?;
        if !out.status.success() {
            bail!("cifix migrate failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    pub async fn start(&self) -> anyhow::Result<Server> {
        let log_path = self.dir.path().join("server.log");
        let log = std::fs::File::create(&log_path)?;
        // Production logs one JSON line per request to stderr: written to a file here, so
        // their cost stays in the server and none of it in the load generator.
        let mut child = self.command("serve").stdout(Stdio::null()).stderr(log).spawn()?;
        let pid = child.id().context("server pid")?;
        let started = Instant::now();
        let addr = loop {
            if let Some(status) = child.try_wait()? {
                bail!("cifix serve exited ({status}):\n{}", tail(&log_path));
            }
            if let Some(addr) = listening_addr(&log_path) {
                break addr;
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!("cifix serve did not start listening:\n{}", tail(&log_path));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let server = Server { child, addr, pid, log_path };
        server.wait_ready().await?;
        Ok(server)
    }
}

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub pid: u32,
    pub log_path: PathBuf,
}

impl Server {
    async fn wait_ready(&self) -> anyhow::Result<()> {
        let mut conn = crate::http::Conn::new(self.addr);
        let started = Instant::now();
        loop {
            if let Ok(r) = conn.send(hyper::Method::GET, "/health/ready", None, None).await
                && r.status.is_success()
            {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("/health/ready never answered 200:\n{}", tail(&self.log_path));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The server's resident memory, from the kernel.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|s| {
                s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// SIGTERM, as a deployment stops it; SIGKILL if it does not exit promptly.
    pub async fn stop(mut self) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

fn listening_addr(log: &Path) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        (v["message"] == "cifix listening").then(|| v["addr"].as_str()?.parse().ok())?
    })
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let admin = Database::connect(admin_url).await?;
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
    admin.close().await?;
    Ok(())
}

async fn delete_keys(url: &str, prefix: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
