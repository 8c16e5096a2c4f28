//! How every SQLite connection of the pool is set up. Per-connection settings belong here, in
//! the connect options, so that each connection the pool opens gets them, not just the first.

use std::os::raw::c_int;

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
    match query_plan_stability(conn, 1).await? {
        true => Ok(()),
        false => Err(sqlx::Error::Configuration("SQLite kept the query planner stability guarantee off".into())),
    }
}

/// Sets the guarantee (`mode` 1 on, 0 off) or only reads it (-1); returns whether it is on.
async fn query_plan_stability(conn: &mut SqliteConnection, mode: c_int) -> Result<bool, sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let mut on: c_int = -1;
    // SAFETY: the handle is this connection's open database, held locked for the duration of
    // the call; SQLITE_DBCONFIG_ENABLE_QPSG takes an int and an int* for the setting after it.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            handle.as_raw_handle().as_ptr(),
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            mode,
            &mut on as *mut c_int,
        )
    };
    if rc != libsqlite3_sys::SQLITE_OK {
        return Err(sqlx::Error::Configuration(format!("SQLITE_DBCONFIG_ENABLE_QPSG failed with code {rc}").into()));
    }
    Ok(on == 1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::query_plan_stability;
    use crate::infra::db::Db;

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
            assert!(query_plan_stability(&mut conn, -1).await.unwrap(), "the query planner stability guarantee is on");
            held.push(conn);
        }
    }
}
