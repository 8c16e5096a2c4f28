//! Generation-keyed caching: values are cached under the current "generation" of their data,
//! and an edit bumps the generation instead of hunting down keys.
//!
//! The generation lives in-process by default and in Redis when configured, so one `INCR` after
//! an edit makes every instance miss on its next read: a reader fetches the generation *before*
//! loading from the database, and an editor bumps it *after* committing, so a value cached under
//! a generation can never predate an edit that generation is supposed to reflect. The values
//! themselves stay in each instance's memory (moka): one Redis round trip per read, no payloads
//! over the network.
//!
//! Redis down: readers bypass the cache and read the database (correct, slower); an edit whose
//! bump fails owes it, and makes it on the first read once Redis answers again (an instance that
//! restarts meanwhile loses the debt: then the local time-to-live bounds staleness).

use std::{
    hash::Hash,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::AsyncCommands;

use super::{db::WriteTxn, redis::Redis};

pub enum Generation {
    Local(AtomicU64),
    Redis {
        redis: Arc<Redis>,
        key: String,
        /// An edit committed while Redis was unreachable: the bump is made as soon as Redis
        /// answers again, before anything is read under the old generation.
        owed: AtomicBool,
    },
}

impl Generation {
    pub fn local() -> Self {
        Generation::Local(AtomicU64::new(0))
    }

    pub fn redis(redis: Arc<Redis>, name: &str) -> Self {
        let key = redis.key(&format!("gen:{name}"));
        Generation::Redis { redis, key, owed: AtomicBool::new(false) }
    }

    /// The current generation, or `None` when it cannot be known (then do not use the cache).
    pub async fn current(&self) -> Option<u64> {
        match self {
            Generation::Local(n) => Some(n.load(Ordering::Acquire)),
            Generation::Redis { redis, key, owed } => {
                let mut conn = redis.conn().await?;
                if owed.swap(false, Ordering::AcqRel)
                    && let Err(e) = conn.incr::<_, _, u64>(key, 1).await
                {
                    owed.store(true, Ordering::Release);
                    redis.trip(&e);
                    return None;
                }
                match conn.get::<_, Option<u64>>(key).await {
                    Ok(v) => Some(v.unwrap_or(0)),
                    Err(e) => {
                        redis.trip(&e);
                        None
                    }
                }
            }
        }
    }

    /// Bumps the generation once `txn`, which edited the cached data, has committed: bumped
    /// earlier, a reader could cache the old data under the new generation.
    pub fn bump_after_commit(self: &Arc<Self>, txn: &WriteTxn) {
        let generation = self.clone();
        txn.on_commit(async move { generation.bump().await });
    }

    pub async fn bump(&self) {
        match self {
            Generation::Local(n) => {
                n.fetch_add(1, Ordering::AcqRel);
            }
            Generation::Redis { redis, key, owed } => {
                let Some(mut conn) = redis.conn().await else {
                    tracing::warn!("cache generation bump deferred until redis answers again");
                    owed.store(true, Ordering::Release);
                    return;
                };
                if let Err(e) = conn.incr::<_, _, u64>(key, 1).await {
                    tracing::warn!(error = %e, "cache generation bump deferred until redis answers again");
                    owed.store(true, Ordering::Release);
                    redis.trip(&e);
                }
            }
        }
    }
}

/// A local cache of values keyed by (generation, key).
pub struct GenCache<K, V> {
    inner: moka::future::Cache<(u64, K), V>,
}

impl<K, V> GenCache<K, V>
where
    K: Hash + Eq + Send + Sync + Clone + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        GenCache { inner: moka::future::Cache::builder().max_capacity(capacity).time_to_live(ttl).build() }
    }

    /// The cached value for `key` at `generation`, or the loader's (then cached). Errors are not cached.
    pub async fn get_or_load<E, F, Fut>(&self, generation: Option<u64>, key: K, load: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<V, E>>,
    {
        let Some(g) = generation else { return load().await };
        if let Some(v) = self.inner.get(&(g, key.clone())).await {
            return Ok(v);
        }
        let v = load().await?;
        self.inner.insert((g, key), v.clone()).await;
        Ok(v)
    }
}
