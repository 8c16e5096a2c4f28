//! A Redis handle that connects lazily and never blocks a request for long when Redis is down.

use std::{
    sync::Mutex as StdMutex,
    time::{Duration, Instant},
};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Mutex;

pub struct Redis {
    client: redis::Client,
    pub prefix: String,
    conn: Mutex<Option<ConnectionManager>>,
    /// After a failed connect, callers skip Redis until this instant instead of each paying a
    /// connect timeout.
    retry_after: StdMutex<Option<Instant>>,
}

impl Redis {
    pub fn new(url: &str, prefix: &str) -> Result<Redis, redis::RedisError> {
        Ok(Redis {
            client: redis::Client::open(url)?,
            prefix: prefix.to_string(),
            conn: Mutex::new(None),
            retry_after: StdMutex::new(None),
        })
    }

    /// The underlying client, for connections that cannot share the manager (pub/sub).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    pub fn key(&self, suffix: &str) -> String {
        format!("{}{}", self.prefix, suffix)
    }

    /// A connection, or `None` when Redis is unreachable right now.
    pub async fn conn(&self) -> Option<ConnectionManager> {
        if let Some(until) = *self.retry_after.lock().unwrap()
            && Instant::now() < until
        {
            return None;
        }
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Some(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(1);
        match ConnectionManager::new_with_config(self.client.clone(), config).await {
            Ok(c) => {
                *slot = Some(c.clone());
                Some(c)
            }
            Err(e) => {
                tracing::warn!(error = %e, "redis unavailable");
                *self.retry_after.lock().unwrap() = Some(Instant::now() + Duration::from_secs(1));
                None
            }
        }
    }
}
