//! Database connection for both backends, and the write-transaction discipline SQLite needs.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::migration::Migrator;

tokio::task_local! {
    /// Statements run by the current request, so the access log and metrics can show how many
    /// queries each endpoint costs.
    pub static STATEMENTS: std::cell::Cell<u32>;
}

#[derive(Clone)]
pub struct Db {
    pub conn: DatabaseConnection,
    /// SQLite allows one writer at a time. Our own write transactions queue here in order
    /// rather than poll the file lock against each other; PostgreSQL needs none.
    sqlite_writer: Option<Arc<Mutex<()>>>,
}

/// Work that must happen only once the transaction's changes are visible to everyone:
/// publishing live events, waking a queue worker, bumping a cache generation, closing the
/// connections of ended sessions.
pub type Effect = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A write transaction; on SQLite it also holds the writer lock until commit or drop.
///
/// Effects registered with [`WriteTxn::on_commit`] run, in order, after a successful
/// [`WriteTxn::commit`]; a rollback, a failed commit or a drop never runs them, so nothing
/// announces a change that did not happen.
pub struct WriteTxn {
    pub txn: DatabaseTransaction,
    _guard: Option<OwnedMutexGuard<()>>,
    after_commit: std::sync::Mutex<Vec<Effect>>,
}

impl std::ops::Deref for WriteTxn {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

impl WriteTxn {
    /// Registers an effect to run after this transaction commits (and never otherwise).
    pub fn on_commit(&self, effect: impl Future<Output = ()> + Send + 'static) {
        self.after_commit.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(Box::pin(effect));
    }

    /// Commits, releases the SQLite writer lock, then runs the registered effects before
    /// returning, so a client that gets its response can already see what they did. They run
    /// in a task of their own: a request cancelled meanwhile (a timeout, a client that hung
    /// up) cannot skip the effects of a change that did commit.
    pub async fn commit(self) -> Result<(), DbErr> {
        let WriteTxn { txn, _guard, after_commit } = self;
        txn.commit().await?;
        drop(_guard);
        let effects = after_commit.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !effects.is_empty() {
            let run = tokio::spawn(async move {
                for effect in effects {
                    effect.await;
                }
            });
            if let Err(e) = run.await {
                tracing::error!(error = %e, "an after-commit effect failed");
            }
        }
        Ok(())
    }

    /// Rolls back before the SQLite writer lock is released. Dropping a transaction that wrote
    /// (even an UPDATE matching no rows takes SQLite's write lock) only queues its rollback, so
    /// the next writer could find the database still locked and fail with SQLITE_BUSY.
    pub async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }
}

impl Db {
    /// Connects a pool of at most `max_connections`; a request that waits `acquire_timeout` for
    /// a connection fails (the database is down or saturated) rather than waiting on.
    pub async fn connect(url: &str, max_connections: u32, acquire_timeout: Duration) -> Result<Db, DbErr> {
        let is_sqlite = url.starts_with("sqlite:");
        if is_sqlite
            && let Some(path) = sqlite_path(url)
            && let Some(parent) = std::path::Path::new(&path).parent()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| DbErr::Custom(format!("cannot create {}: {e}", parent.display())))?;
        }
        let mut opts = ConnectOptions::new(url.to_string());
        opts.max_connections(if is_sqlite { max_connections.min(8) } else { max_connections })
            .min_connections(1)
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(acquire_timeout)
            .sqlx_logging(false);
        if is_sqlite {
            super::sqlite::configure(&mut opts);
        }
        let mut conn = Database::connect(opts).await?;
        conn.set_metric_callback(|info| {
            metrics::counter!("db_queries_total", "failed" => if info.failed { "true" } else { "false" }).increment(1);
            metrics::histogram!("db_query_duration_seconds").record(info.elapsed.as_secs_f64());
            let _ = STATEMENTS.try_with(|n| n.set(n.get() + 1));
        });
        Ok(Db { conn, sqlite_writer: is_sqlite.then(|| Arc::new(Mutex::new(()))) })
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// Applies pending migrations. Safe to run from any number of replicas at once: on
    /// PostgreSQL they take turns under an advisory lock (the second finds nothing to do), so
    /// replicas started together never race on the same `CREATE`. SQLite has one writer anyway.
    pub async fn migrate(&self) -> Result<(), DbErr> {
        if self.backend() != DbBackend::Postgres {
            return Migrator::up(&self.conn, None).await;
        }
        // The lock belongs to a session, so it is held on one connection taken out of the pool
        // while the migrations run on others; dropping that connection would release it too.
        let mut holder = self.conn.get_postgres_connection_pool().acquire().await.map_err(sqlx_error)?;
        sea_orm::sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut *holder)
            .await
            .map_err(sqlx_error)?;
        let migrated = Migrator::up(&self.conn, None).await;
        let unlocked = sea_orm::sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut *holder)
            .await
            .map_err(sqlx_error);
        if unlocked.is_err() {
            // A connection whose unlock failed must not go back to the pool holding the lock.
            holder.detach();
        }
        migrated?;
        unlocked.map(|_| ())
    }

    /// True when every known migration has been applied.
    pub async fn is_migrated(&self) -> Result<bool, DbErr> {
        Ok(Migrator::get_pending_migrations(&self.conn).await?.is_empty())
    }

    pub async fn begin_write(&self) -> Result<WriteTxn, DbErr> {
        let guard = match &self.sqlite_writer {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        // IMMEDIATE takes SQLite's write lock at BEGIN, where the busy timeout applies. A
        // deferred transaction that read first and then writes fails at once with
        // SQLITE_BUSY if another process (the CLI, a second instance on the same file)
        // committed in between. PostgreSQL ignores the option.
        let options = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        let txn = self.conn.begin_with_options(options).await?;
        Ok(WriteTxn { txn, _guard: guard, after_commit: Default::default() })
    }

    pub async fn ping(&self) -> Result<(), DbErr> {
        self.conn.execute_unprepared("SELECT 1").await.map(|_| ())
    }

    /// (connections in the pool, idle connections) for the metrics endpoint.
    pub fn pool_usage(&self) -> (u32, usize) {
        match self.backend() {
            DbBackend::Postgres => {
                let p = self.conn.get_postgres_connection_pool();
                (p.size(), p.num_idle())
            }
            DbBackend::Sqlite => {
                let p = self.conn.get_sqlite_connection_pool();
                (p.size(), p.num_idle())
            }
            _ => (0, 0),
        }
    }
}

/// The advisory lock key of schema migrations: any fixed number no other code uses.
const MIGRATION_LOCK_KEY: i64 = 0x0C1F_1C5E_D0C0_FFEE;

fn sqlx_error(e: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e.into()))
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}

/// Maps a unique-constraint violation to `true` so callers can turn races into 409s.
pub fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    async fn db() -> Db {
        Db::connect("sqlite::memory:", 1, Duration::from_secs(1)).await.unwrap()
    }

    fn counting(ran: &Arc<AtomicUsize>) -> impl Future<Output = ()> + Send + 'static {
        let ran = ran.clone();
        async move {
            ran.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn effects_run_after_commit_in_order_and_never_otherwise() {
        let db = db().await;
        let ran = Arc::new(AtomicUsize::new(0));

        let txn = db.begin_write().await.unwrap();
        txn.on_commit(counting(&ran));
        txn.rollback().await.unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 0, "rolled back");

        let txn = db.begin_write().await.unwrap();
        txn.on_commit(counting(&ran));
        drop(txn);
        assert_eq!(ran.load(Ordering::SeqCst), 0, "dropped");

        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let txn = db.begin_write().await.unwrap();
        for i in 0..3 {
            let order = order.clone();
            txn.on_commit(async move { order.lock().unwrap().push(i) });
        }
        txn.on_commit(counting(&ran));
        txn.commit().await.unwrap();
        assert_eq!(*order.lock().unwrap(), [0, 1, 2]);
        assert_eq!(ran.load(Ordering::SeqCst), 1, "committed");
    }
}
