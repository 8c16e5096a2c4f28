//! Timings of the admin statistics on a large database (PostgreSQL; ignored by default, it
//! seeds about 10 million rows):
//!
//! `cargo test --test api large_admin_stats -- --ignored --nocapture`
//!
//! It seeds `support/large_db.sql` into its own database, then prints the best of three runs
//! (cache off) of each statistic as an admin sees it over HTTP, and the plans of the statistics
//! statements. Timings are printed, not asserted: load targets belong in a benchmark.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement};

use crate::support::*;

/// The seed, split at its `-- step:` lines.
const SEED: &str = include_str!("../support/large_db.sql");

/// Seeds the large database into the (migrated) database at `url`, on one connection since the
/// seed keeps settings per session. Returns each step's name and duration.
pub async fn seed_large_database(url: &str) -> Vec<(String, Duration)> {
    let mut opts = ConnectOptions::new(url.to_string());
    opts.max_connections(1).min_connections(1).sqlx_logging(false);
    let db: DatabaseConnection = Database::connect(opts).await.expect("connecting to seed");
    let mut steps = Vec::new();
    for step in SEED.split("\n-- step: ").skip(1) {
        let (name, sql) = step.split_once('\n').unwrap();
        let started = Instant::now();
        db.execute_unprepared(sql).await.unwrap_or_else(|e| panic!("seed step {name}: {e}"));
        steps.push((name.to_string(), started.elapsed()));
    }
    db.close().await.ok();
    steps
}

async fn best_of_3(app: &TestApp, token: &str, path: &str) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut size = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let res = app.get(path, Some(token)).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        size = res.bytes().await.unwrap().len();
        best = best.min(started.elapsed());
    }
    (best, size)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "seeds ~10 million rows on PostgreSQL: run by name with --ignored"]
async fn large_admin_stats_timings() {
    let mut app = TestApp::spawn_on(Backend::Postgres, |env| {
        env.insert("CIFIX_ADMIN_STATS_CACHE_SECS".into(), "0".into());
        env.insert("CIFIX_EMAIL_WORKER".into(), "false".into());
    })
    .await;
    // An export of 100,000 rows takes longer than the harness's default client timeout.
    app.client = reqwest::Client::builder().timeout(Duration::from_secs(600)).build().unwrap();
    let admin = app.user("admin", "admin").await;

    let started = Instant::now();
    let steps = seed_large_database(&app.env["DATABASE_URL"]).await;
    println!("\nseeding took {:.1} s", started.elapsed().as_secs_f64());
    for (name, took) in &steps {
        println!("  {name:<18} {:>8.1} s", took.as_secs_f64());
    }
    let count = |table: &str| format!("SELECT COUNT(*) FROM {table}");
    for table in ["users", "courses", "lessons", "enrollments", "lesson_progress", "activity_hours"] {
        println!("  {table:<18} {:>10} rows", app.count(&count(table)).await);
    }

    let big_course = "00000003-0000-7000-8000-000000000000";
    let timed = [
        ("GET /admin/stats", "/admin/stats".to_string()),
        ("GET /admin/stats/series (30 days)", "/admin/stats/series".into()),
        ("GET /admin/stats/series (366 days)", {
            let today = chrono::Utc::now().date_naive();
            format!("/admin/stats/series?from={}&to={today}", today - chrono::Days::new(365))
        }),
        ("GET /admin/courses/{big}/funnel", format!("/admin/courses/{big_course}/funnel")),
        ("GET /admin/users (first page)", "/admin/users".into()),
        ("GET /admin/exports/users.csv", "/admin/exports/users.csv".into()),
        (
            "GET /admin/exports/course-progress.csv (big)",
            format!("/admin/exports/course-progress.csv?course_id={big_course}"),
        ),
    ];
    println!("\nbest of 3, cache off:");
    for (name, path) in &timed {
        let (took, bytes) = best_of_3(&app, &admin.token, path).await;
        println!("  {name:<46} {:>9.1} ms  ({bytes} bytes)", took.as_secs_f64() * 1000.0);
    }

    println!("\nplans:");
    for (name, stmt) in cifix::admin::statistics_statements(app.db.backend()) {
        let explain = Statement::from_sql_and_values(
            stmt.db_backend,
            format!("EXPLAIN (ANALYZE, BUFFERS) {}", stmt.sql),
            stmt.values.map(|v| v.0).unwrap_or_default(),
        );
        let rows = app.db.conn.query_all_raw(explain).await.unwrap();
        println!("\n-- {name}");
        for row in rows {
            println!("{}", row.try_get_by_index::<String>(0).unwrap());
        }
    }
}
