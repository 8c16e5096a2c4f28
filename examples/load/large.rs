//! The large database (PostgreSQL): `tests/api/support/large_db.sql` seeded into the freshly
//! migrated database, and which tables and indexes the hot paths then touch.

use std::{collections::HashMap, time::Instant};

use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tokio::process::Command;

const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/support/large_db.sql");
const SIZE_LINE: &str = "SELECT 100000 AS students";

/// Runs the seed with `students` students (the file's own size is 100,000).
pub async fn seed(database_url: &str, students: u64, dir: &std::path::Path) -> anyhow::Result<()> {
    let sql = std::fs::read_to_string(SEED).with_context(|| format!("reading {SEED}"))?;
    anyhow::ensure!(sql.contains(SIZE_LINE), "{SEED} no longer has the line {SIZE_LINE:?}");
    let path = dir.join("large_db.sql");
    std::fs::write(&path, sql.replace(SIZE_LINE, &format!("SELECT {students} AS students")))?;
    println!("seeding the large database ({students} students; {SEED}) …");
    let started = Instant::now();
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database_url, "-f"])
        .arg(&path)
        .output()
        .await
        .context("running psql")?;
    if !out.status.success() {
        bail!("psql -f large_db.sql: {}", String::from_utf8_lossy(&out.stderr));
    }
    println!("  seeded in {:.0}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Scan counters of our tables and indexes (`pg_stat_user_*`).
pub struct Scans(HashMap<String, i64>);

pub async fn scans(db: &DatabaseConnection) -> anyhow::Result<Scans> {
    let sql = "SELECT 'seq ' || relname, seq_scan FROM pg_stat_user_tables \
               UNION ALL SELECT 'idx ' || relname || '.' || indexrelname, idx_scan FROM pg_stat_user_indexes";
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await?;
    let mut out = HashMap::new();
    for r in rows {
        let name: String = r.try_get_by_index(0)?;
        let n: Option<i64> = r.try_get_by_index(1)?;
        out.insert(name, n.unwrap_or(0));
    }
    Ok(Scans(out))
}

/// Prints the scans between two snapshots, most used first: a sequential scan of a big table
/// here is a hot query without an index.
pub fn print_delta(before: &Scans, after: &Scans) {
    let mut rows: Vec<(&String, i64)> =
        after.0.iter().map(|(k, v)| (k, v - before.0.get(k).copied().unwrap_or(0))).filter(|(_, d)| *d > 0).collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    println!("  scans during the mix (pg_stat_user_tables / _indexes; seq = sequential scan of the table):");
    for (name, d) in rows.iter().take(25) {
        println!("    {d:>9}  {name}");
    }
}
