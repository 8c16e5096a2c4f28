//! This machine's PostgreSQL write-transaction rate, measured in the same run, so that the
//! progress PUT's throughput can be read as a fraction of what the database itself does.
//!
//! `pgbench -i -s 1` into a scratch database, then the built-in "simple update" script
//! (`-N`: per transaction one UPDATE, one SELECT and one INSERT, committed with fsync as the
//! server is configured), 8 clients on 2 threads. pgbench inherits the load generator's core.

use std::time::Duration;

use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, Database};
use tokio::process::Command;

use crate::server::with_database;

pub async fn write_tps(postgres_url: &str, name: &str, seconds: u64) -> anyhow::Result<f64> {
    let scratch = format!("{name}_pgbench");
    let admin = Database::connect(postgres_url).await?;
    admin.execute_unprepared(&format!("CREATE DATABASE {scratch}")).await?;
    let result = run(&with_database(postgres_url, &scratch), seconds).await;
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {scratch} WITH (FORCE)")).await?;
    admin.close().await?;
    result
}

async fn run(url: &str, seconds: u64) -> anyhow::Result<f64> {
    let init = Command::new("pgbench").args(["-i", "-s", "1", "-q", url]).output().await.context("running pgbench")?;
    if !init.status.success() {
        bail!("pgbench -i: {}", String::from_utf8_lossy(&init.stderr));
    }
    let run = tokio::time::timeout(
        Duration::from_secs(seconds + 60),
        Command::new("pgbench").args(["-N", "-c", "8", "-j", "2", "-T", &seconds.to_string(), url]).output(),
    )
    .await
    .context("pgbench did not finish")??;
    let out = String::from_utf8_lossy(&run.stdout);
    if !run.status.success() {
        bail!("pgbench: {}{}", out, String::from_utf8_lossy(&run.stderr));
    }
    // "tps = 4923.116 (without initial connection time)"
    out.lines()
        .find_map(|l| l.trim().strip_prefix("tps = ")?.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no tps in pgbench's output:\n{out}"))
}
