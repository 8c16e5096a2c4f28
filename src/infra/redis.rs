//! A Redis handle that never makes a request wait on a Redis that is down.
//!
//! Redis is an accelerator and a fan-out here, never the source of truth, so its loss must cost
//! shared budgets and cross-instance delivery, not latency. A circuit breaker does that: the
//! first failed command opens it, and while it is open every caller is told at once that Redis
//! is unavailable and falls back to its local behaviour. A background probe (not a request)
//! pings Redis until it answers again and closes the breaker.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Mutex;

/// How long one command may take before it counts as a failure.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
/// The probe's first and longest pause between pings while Redis is down.
const PROBE_FIRST: Duration = Duration::from_millis(200);
const PROBE_MAX: Duration = Duration::from_secs(2);

pub struct Redis {
    client: redis::Client,
    pub prefix: String,
    conn: Mutex<Option<ConnectionManager>>,
    /// Open: Redis failed and has not answered a probe since.
    open: AtomicBool,
}

impl Redis {
    pub fn new(url: &str, prefix: &str) -> Result<Redis, redis::RedisError> {
        Ok(Redis {
            client: redis::Client::open(url)?,
            prefix: prefix.to_string(),
            conn: Mutex::new(None),
            open: AtomicBool::new(false),
        })
    }

    /// The underlying client, for connections that cannot share the manager (pub/sub).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    pub fn key(&self, suffix: &str) -> String {
        format!("{}{}", self.prefix, suffix)
    }

    /// Whether commands are being sent (the breaker is closed).
    pub fn is_available(&self) -> bool {
        !self.open.load(Ordering::Acquire)
    }

    /// A connection, or `None` at once while Redis is known to be down.
    pub async fn conn(self: &Arc<Self>) -> Option<ConnectionManager> {
        if !self.is_available() {
            return None;
        }
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Some(c.clone());
        }
        // Others may have waited here while one connect attempt failed: they skip Redis too
        // rather than each paying a connect timeout in turn.
        if !self.is_available() {
            return None;
        }
        match ConnectionManager::new_with_config(self.client.clone(), manager_config()).await {
            Ok(c) => {
                *slot = Some(c.clone());
                metrics::gauge!("redis_available").set(1.0);
                Some(c)
            }
            Err(e) => {
                drop(slot);
                self.trip(&e);
                None
            }
        }
    }

    /// Records a failed command: callers skip Redis from now on until the probe finds it
    /// answering again. Only the call that opens the breaker logs and starts the probe.
    pub fn trip(self: &Arc<Self>, error: &redis::RedisError) {
        if self.open.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(error = %error, "redis unavailable; falling back to local limits, cache reads and delivery");
        metrics::gauge!("redis_available").set(0.0);
        let redis = self.clone();
        tokio::spawn(async move { redis.probe_until_answered().await });
    }

    async fn probe_until_answered(&self) {
        let mut pause = PROBE_FIRST;
        loop {
            tokio::time::sleep(pause).await;
            if self.ping().await {
                self.open.store(false, Ordering::Release);
                metrics::gauge!("redis_available").set(1.0);
                tracing::info!("redis answers again");
                return;
            }
            pause = (pause * 2).min(PROBE_MAX);
        }
    }

    async fn ping(&self) -> bool {
        let mut slot = self.conn.lock().await;
        if slot.is_none() {
            *slot = ConnectionManager::new_with_config(self.client.clone(), manager_config()).await.ok();
        }
        let Some(conn) = slot.as_mut() else { return false };
        matches!(redis::cmd("PING").query_async::<String>(conn).await, Ok(pong) if pong == "PONG")
    }
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(COMMAND_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT))
        .set_number_of_retries(1)
}
