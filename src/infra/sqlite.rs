//! How every SQLite connection of the pool is set up. Per-connection settings belong here, in
//! the connect options, so that each connection the pool opens gets them, not just the first.

use sea_orm::{
    ConnectOptions,
    sqlx::{
        self,
        sqlite::{SqliteConnection, SqliteJournalMode, SqliteSynchronous},
    },
};

pub fn configure(opts: &mut ConnectOptions) {
    // WAL lets readers proceed while the single writer commits, and with it NORMAL syncs at
    // checkpoints instead of on every commit: a power cut may lose the last commits, never
    // corrupt the file (an application crash loses nothing).
    opts.map_sqlx_sqlite_opts(|o| o.journal_mode(SqliteJournalMode::Wal).synchronous(SqliteSynchronous::Normal));
    opts.map_sqlx_sqlite_pool_opts(|pool| {
        pool.after_connect(|conn, _meta| Box::pin(async move { stable_query_plans(conn).await }))
    });
}

/// Turns on SQLite's query planner stability guarantee. Without it, a statement whose plan
/// looked at a bound value (a bound `LIMIT`, which every `.one()` sends, or a `LIKE` pattern) is
/// marked to be compiled again whenever that parameter is rebound, so the statement cache
/// saves nothing and every execution pays the SQL parser and planner again.
async fn stable_query_plans(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is this connection's open handle, held locked for the duration of the call;
    // SQLITE_DBCONFIG_ENABLE_QPSG takes an int and an optional int* for the previous setting.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db,
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            1 as std::os::raw::c_int,
            std::ptr::null_mut::<std::os::raw::c_int>(),
        )
    };
    if rc != libsqlite3_sys::SQLITE_OK {
        return Err(sqlx::Error::Configuration(format!("SQLITE_DBCONFIG_ENABLE_QPSG failed with code {rc}").into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sea_orm::sqlx::{pool::PoolConnection, sqlite::Sqlite};

    use crate::infra::db::Db;

    async fn query_plan_stability(conn: &mut PoolConnection<Sqlite>) -> bool {
        let mut handle = conn.lock_handle().await.unwrap();
        let mut on: std::os::raw::c_int = -1;
        // SAFETY: as in `stable_query_plans`; -1 reads the setting without changing it.
        let rc = unsafe {
            libsqlite3_sys::sqlite3_db_config(
                handle.as_raw_handle().as_ptr(),
                libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
                -1 as std::os::raw::c_int,
                &mut on as *mut std::os::raw::c_int,
            )
        };
        assert_eq!(rc, libsqlite3_sys::SQLITE_OK);
        on == 1
    }

    #[tokio::test]
    async fn every_connection_of_the_pool_gets_the_settings_not_just_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/cifix.db?mode=rwc", dir.path().display());
        let db = Db::connect(&url, 4, Duration::from_secs(5)).await.unwrap();
        let pool = db.conn.get_sqlite_connection_pool();
        // Held at once, so these are four distinct connections.
        let mut held = Vec::new();
        for _ in 0..4 {
            let mut conn = pool.acquire().await.unwrap();
            let journal: String =
                sea_orm::sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut *conn).await.unwrap();
            let synchronous: i64 =
                sea_orm::sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *conn).await.unwrap();
            assert_eq!((journal.as_str(), synchronous), ("wal", 1), "WAL with synchronous=NORMAL");
            assert!(query_plan_stability(&mut conn).await, "the query planner stability guarantee is on");
            held.push(conn);
        }
    }
}
