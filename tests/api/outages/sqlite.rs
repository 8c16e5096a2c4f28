//! The embedded database shared with another process: `cifix` CLI commands, or a second
//! instance, beside a serving one on the same SQLite file. A write transaction that reads before
//! it writes must wait for the other process's writer, not fail with "database is locked"
//! because the other committed while it was reading.

use std::time::{Duration, Instant};

use sea_orm::{
    ConnectionTrait,
    sqlx::{Connection, SqliteConnection},
};

use crate::support::{Backend, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_transaction_waits_for_another_process_writing_the_same_file() {
    let app = TestApp::spawn_on(Backend::Embedded, |_| {}).await;
    app.user("kid", "student").await;
    let mut other = SqliteConnection::connect(&app.env["DATABASE_URL"]).await.unwrap();
    sea_orm::sqlx::raw_sql("BEGIN IMMEDIATE; UPDATE users SET display_name = 'Other process';")
        .execute(&mut other)
        .await
        .unwrap();

    let db = app.db.clone();
    let started = Instant::now();
    let ours = tokio::spawn(async move {
        let txn = db.begin_write().await?;
        txn.execute_unprepared("SELECT COUNT(*) FROM users").await?;
        txn.execute_unprepared("UPDATE users SET display_name = display_name || ' and ours'").await?;
        txn.commit().await?;
        Ok::<_, sea_orm::DbErr>(started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sea_orm::sqlx::raw_sql("COMMIT").execute(&mut other).await.unwrap();

    let waited = ours.await.unwrap().expect("our transaction waits its turn and commits");
    assert!(waited >= Duration::from_millis(300), "it ran only after the other committed ({waited:?})");
    let names = app.count("SELECT COUNT(*) FROM users WHERE display_name = 'Other process and ours'").await;
    assert_eq!(names, 1, "both writes are kept, in order");
}
