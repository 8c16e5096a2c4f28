//! The real-time event bus and the per-instance hub of live connections.
//!
//! Flow: an event registered with [`EventBus::publish_after_commit`] is published when its
//! transaction commits. It goes at once to this instance's local broadcast; with `REDIS_URL`
//! set it also goes to Redis (`PUBLISH {prefix}events`), where every other instance's one
//! subscriber task feeds it into their own local broadcast (an instance skips its own echo),
//! so an event produced on instance A reaches clients on instance B. One dispatcher task per instance
//! reads the local broadcast and hands each event only to the live connections of the users
//! allowed to see it ([`Hub`]). Each connection has a small bounded queue; a connection that
//! cannot keep up is dropped (it reconnects and catches up from the stored notifications),
//! so one slow client never delays anyone else.
//!
//! Live delivery is best effort by design: the stored notification is the source of truth.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

mod hub;

pub use hub::{DropReason, Hub, Outgoing, Registration, TooManyConnections};

use super::{db::WriteTxn, redis::Redis};

/// One event for one user, as live clients receive it: `{id, type, data, created_at}`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RealtimeEvent {
    pub id: Uuid,
    /// Who may see it. Delivery checks this before sending anything. Not sent to clients; on
    /// the Redis wire it travels beside the event (see [`BusMessage`]).
    #[serde(skip_serializing, default)]
    pub user_id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// What travels on the bus (and, as JSON, over Redis): an event with its audience, or a
/// control message for every instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum BusMessage {
    Event {
        /// Repeated here because `RealtimeEvent` does not serialize its owner to clients.
        user_id: Uuid,
        /// Others allowed to see this event (an instructor of the student's course). Decided
        /// by the producer from the database at publish time.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        also_to: Vec<Uuid>,
        event: RealtimeEvent,
    },
    /// Close every live connection of this user (role change, deactivation).
    Disconnect { user_id: Uuid },
}

/// A bus message as it travels over Redis: with the instance that produced it, which has
/// delivered it to its own clients already and skips its echo.
#[derive(Serialize, Deserialize)]
struct Wire {
    origin: Uuid,
    message: BusMessage,
}

/// Capacity of the in-process broadcast between the transport and the dispatcher. The
/// dispatcher only does non-blocking queue pushes, so it keeps up by a wide margin.
const LOCAL_CAPACITY: usize = 4096;
/// Events waiting for the Redis publisher. Beyond this (Redis very slow), events stay on this
/// instance; other instances' clients catch up from storage.
const PUBLISH_QUEUE: usize = 10_000;

#[derive(Clone)]
pub struct EventBus {
    local: broadcast::Sender<Arc<BusMessage>>,
    /// Set when Redis carries events between instances.
    remote: Option<mpsc::Sender<Arc<BusMessage>>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus { local: broadcast::channel(LOCAL_CAPACITY).0, remote: None }
    }
}

impl EventBus {
    /// A bus that fans out through Redis pub/sub on `{prefix}events`: one publisher task and
    /// one (reconnecting) subscriber task per instance, both stopped by `shutdown`.
    pub fn with_redis(redis: Arc<Redis>, shutdown: CancellationToken) -> EventBus {
        let local = broadcast::channel(LOCAL_CAPACITY).0;
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        let channel = redis.key("events");
        // Tells this instance's messages apart from other instances' on the shared channel.
        let origin = Uuid::now_v7();
        tokio::spawn(run_publisher(redis.clone(), channel.clone(), origin, rx));
        tokio::spawn(run_subscriber(redis, channel, origin, local.clone(), shutdown));
        EventBus { local, remote: Some(tx) }
    }

    /// Announces an already-committed event to its owner. Never fails the caller: the stored
    /// notification is the source of truth, and clients that miss a live event catch up from it.
    pub fn publish(&self, event: RealtimeEvent) {
        self.publish_to(event, Vec::new());
    }

    /// As [`publish`](Self::publish), also to `also_to` (e.g. the course's instructor).
    pub fn publish_to(&self, event: RealtimeEvent, also_to: Vec<Uuid>) {
        self.send(BusMessage::Event { user_id: event.user_id, also_to, event });
    }

    /// Drops every live connection of `user_id`, on every instance.
    pub fn disconnect_user(&self, user_id: Uuid) {
        self.send(BusMessage::Disconnect { user_id });
    }

    /// Publishes `event` (also to `also_to`) once `txn` has committed, and never if it does
    /// not: a live event must not announce something that was rolled back.
    pub fn publish_after_commit(&self, txn: &WriteTxn, event: RealtimeEvent, also_to: Vec<Uuid>) {
        let bus = self.clone();
        txn.on_commit(async move { bus.publish_to(event, also_to) });
    }

    /// Drops every live connection of `user_id` once `txn`, which ended its sessions or
    /// changed what it may see, has committed.
    pub fn disconnect_after_commit(&self, txn: &WriteTxn, user_id: Uuid) {
        let bus = self.clone();
        txn.on_commit(async move { bus.disconnect_user(user_id) });
    }

    /// This instance's clients get the message at once, whatever Redis is doing; other
    /// instances get it through Redis when it is up.
    fn send(&self, msg: BusMessage) {
        let msg = Arc::new(msg);
        let _ = self.local.send(msg.clone());
        if let Some(remote) = &self.remote
            && remote.try_send(msg).is_err()
        {
            metrics::counter!("realtime_publish_fallback_total").increment(1);
            tracing::warn!("realtime publish queue full; this event stays on this instance");
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<BusMessage>> {
        self.local.subscribe()
    }
}

/// Publishes to the other instances in order. An event Redis cannot take stays on this
/// instance (its clients have it already); other instances' clients catch up from storage.
async fn run_publisher(redis: Arc<Redis>, channel: String, origin: Uuid, mut rx: mpsc::Receiver<Arc<BusMessage>>) {
    while let Some(msg) = rx.recv().await {
        let Ok(payload) = serde_json::to_string(&Wire { origin, message: (*msg).clone() }) else { continue };
        let sent = match redis.conn().await {
            Some(mut c) => match redis::cmd("PUBLISH").arg(&channel).arg(payload).query_async::<i64>(&mut c).await {
                Ok(_) => true,
                Err(e) => {
                    redis.trip(&e);
                    false
                }
            },
            None => false,
        };
        if !sent {
            metrics::counter!("realtime_publish_fallback_total").increment(1);
        }
    }
}

/// The instance's one subscription. Reconnects with backoff for as long as the process runs.
async fn run_subscriber(
    redis: Arc<Redis>,
    channel: String,
    origin: Uuid,
    local: broadcast::Sender<Arc<BusMessage>>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let session = async {
            let mut pubsub = redis.client().get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            tracing::info!("realtime: subscribed to redis channel");
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = session => r,
        };
        match pubsub {
            Ok(pubsub) => {
                backoff = Duration::from_millis(100);
                let mut messages = pubsub.into_on_message();
                loop {
                    let next = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        m = messages.next() => m,
                    };
                    let Some(m) = next else { break };
                    match serde_json::from_slice::<Wire>(m.get_payload_bytes()) {
                        Ok(wire) if wire.origin == origin => {}
                        Ok(Wire { mut message, .. }) => {
                            if let BusMessage::Event { user_id, event, .. } = &mut message {
                                event.user_id = *user_id;
                            }
                            let _ = local.send(Arc::new(message));
                        }
                        Err(e) => tracing::warn!(error = %e, "realtime: ignoring a malformed bus message"),
                    }
                }
                tracing::warn!("realtime: redis subscription ended; reconnecting");
            }
            Err(e) => tracing::warn!(error = %e, "realtime: redis subscribe failed; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A live-only event for `user_id`, as the bus carries it.
    pub(super) fn event(user_id: Uuid) -> BusMessage {
        BusMessage::Event {
            user_id,
            also_to: vec![],
            event: RealtimeEvent {
                id: Uuid::now_v7(),
                user_id,
                kind: "progress.updated".into(),
                data: serde_json::Value::Null,
                created_at: Utc::now(),
            },
        }
    }

    #[test]
    fn the_redis_wire_format_keeps_the_owner() {
        let msg = event(Uuid::now_v7());
        let wire = serde_json::to_string(&Wire { origin: Uuid::now_v7(), message: msg.clone() }).unwrap();
        let back: Wire = serde_json::from_str(&wire).unwrap();
        match (msg, back.message) {
            (BusMessage::Event { user_id: a, .. }, BusMessage::Event { user_id: b, .. }) => assert_eq!(a, b),
            _ => panic!("wrong variant"),
        }
    }
}
