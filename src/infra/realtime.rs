//! The real-time event bus and the per-instance hub of live connections.
//!
//! Flow: domain code commits, then calls [`EventBus::publish`]. Without Redis the bus is an
//! in-process broadcast. With `REDIS_URL` set, publish goes to Redis (`PUBLISH {prefix}events`)
//! and every instance runs exactly one subscriber task that feeds its own local broadcast, so an
//! event produced on instance A reaches clients on instance B. One dispatcher task per instance
//! reads the local broadcast and hands each event only to the live connections of the users
//! allowed to see it ([`Hub`]). Each connection has a small bounded queue; a connection that
//! cannot keep up is dropped (it reconnects and catches up from the stored notifications),
//! so one slow client never delays anyone else.
//!
//! Live delivery is best effort by design: the stored notification is the source of truth.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

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

/// What a live connection is told by the hub.
#[derive(Debug, Clone)]
pub enum Outgoing {
    Event(Arc<RealtimeEvent>),
}

/// Why the hub let go of a connection; the connection closes with this code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Its queue was full: the client does not read fast enough (WebSocket 1013, try again).
    Slow,
    /// The user's role changed or they were deactivated (WebSocket 1008, policy).
    Revoked,
    /// This instance missed events; the client must resync (WebSocket 1013).
    Resync,
}

struct Conn {
    id: u64,
    /// The session the connection was opened with: ending it ends the connection.
    session_id: Uuid,
    tx: mpsc::Sender<Outgoing>,
    dropped: Arc<OnceLock<DropReason>>,
}

/// The live connections of this instance, by user.
pub struct Hub {
    conns: Mutex<HashMap<Uuid, Vec<Conn>>>,
    next_id: AtomicU64,
    max_per_user: usize,
    queue: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("too many live connections for this user")]
pub struct TooManyConnections;

/// A connection's end of the hub. Dropping it unregisters the connection.
pub struct Registration {
    pub rx: mpsc::Receiver<Outgoing>,
    dropped: Arc<OnceLock<DropReason>>,
    hub: Arc<Hub>,
    user_id: Uuid,
    id: u64,
}

impl Registration {
    /// Why the hub closed this connection's queue, once `rx` has returned `None`.
    pub fn drop_reason(&self) -> Option<DropReason> {
        self.dropped.get().copied()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut conns = self.hub.conns.lock().unwrap();
        if let Some(list) = conns.get_mut(&self.user_id) {
            list.retain(|c| c.id != self.id);
            if list.is_empty() {
                conns.remove(&self.user_id);
            }
        }
        metrics::gauge!("realtime_connections").decrement(1.0);
    }
}

impl Hub {
    pub fn new(max_per_user: usize, queue: usize) -> Arc<Hub> {
        Arc::new(Hub { conns: Mutex::new(HashMap::new()), next_id: AtomicU64::new(1), max_per_user, queue })
    }

    /// Registers a live connection of `user_id` opened with `session_id`, or refuses past the
    /// per-user cap.
    pub fn register(self: &Arc<Self>, user_id: Uuid, session_id: Uuid) -> Result<Registration, TooManyConnections> {
        let mut conns = self.conns.lock().unwrap();
        let list = conns.entry(user_id).or_default();
        if list.len() >= self.max_per_user {
            return Err(TooManyConnections);
        }
        let (tx, rx) = mpsc::channel(self.queue);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let dropped = Arc::new(OnceLock::new());
        list.push(Conn { id, session_id, tx, dropped: dropped.clone() });
        metrics::gauge!("realtime_connections").increment(1.0);
        Ok(Registration { rx, dropped, hub: self.clone(), user_id, id })
    }

    pub fn connection_count(&self) -> usize {
        self.conns.lock().unwrap().values().map(Vec::len).sum()
    }

    /// Hands one bus message to the connections it concerns. Never blocks.
    pub fn dispatch(&self, msg: &BusMessage) {
        let mut conns = self.conns.lock().unwrap();
        match msg {
            BusMessage::Event { user_id, also_to, event } => {
                let event = Arc::new(event.clone());
                for uid in std::iter::once(user_id).chain(also_to.iter().filter(|u| *u != user_id)) {
                    let Some(list) = conns.get_mut(uid) else { continue };
                    list.retain(|c| match c.tx.try_send(Outgoing::Event(event.clone())) {
                        Ok(()) => true,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            metrics::counter!("realtime_slow_clients_dropped_total").increment(1);
                            let _ = c.dropped.set(DropReason::Slow);
                            false
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => false,
                    });
                }
            }
            BusMessage::Disconnect { user_id } => {
                // Dropping the senders closes each connection's queue; it then closes itself.
                if let Some(list) = conns.remove(user_id) {
                    for c in list {
                        let _ = c.dropped.set(DropReason::Revoked);
                    }
                }
            }
        }
    }

    /// The sessions this instance holds live connections for.
    pub fn sessions(&self) -> Vec<Uuid> {
        let conns = self.conns.lock().unwrap();
        let mut ids: Vec<Uuid> = conns.values().flatten().map(|c| c.session_id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Closes the connections of sessions that ended, also when this instance missed the
    /// message that said so (the fan-out was down).
    pub fn drop_sessions(&self, ended: &HashSet<Uuid>) {
        if ended.is_empty() {
            return;
        }
        let mut conns = self.conns.lock().unwrap();
        for list in conns.values_mut() {
            list.retain(|c| {
                let keep = !ended.contains(&c.session_id);
                if !keep {
                    let _ = c.dropped.set(DropReason::Revoked);
                }
                keep
            });
        }
        conns.retain(|_, list| !list.is_empty());
    }

    /// Lets go of every connection, e.g. when this instance missed events.
    fn drop_all(&self, reason: DropReason) {
        let mut conns = self.conns.lock().unwrap();
        for (_, list) in conns.drain() {
            for c in list {
                let _ = c.dropped.set(reason);
            }
        }
    }

    /// The instance's one dispatcher: bus → connections, until shutdown.
    pub fn spawn_dispatcher(self: &Arc<Self>, bus: &EventBus, shutdown: CancellationToken) {
        let hub = self.clone();
        let mut rx = bus.subscribe();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    m = rx.recv() => m,
                };
                match msg {
                    Ok(m) => hub.dispatch(&m),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        // Events were lost for everyone here: make every client resync rather
                        // than silently miss something.
                        tracing::warn!(missed = n, "realtime dispatcher lagged; dropping live connections");
                        hub.drop_all(DropReason::Resync);
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(user_id: Uuid) -> BusMessage {
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
    fn a_client_that_never_reads_is_dropped_without_slowing_others() {
        let hub = Hub::new(5, 4);
        let (slow_user, other_user) = (Uuid::now_v7(), Uuid::now_v7());
        let mut slow = hub.register(slow_user, Uuid::now_v7()).unwrap();
        let mut other = hub.register(other_user, Uuid::now_v7()).unwrap();
        for _ in 0..5 {
            hub.dispatch(&event(slow_user));
            hub.dispatch(&event(other_user));
            // The other client keeps up.
            assert!(other.rx.try_recv().is_ok());
        }
        // The slow one got its queue's worth, then was let go.
        let mut queued = 0;
        while let Ok(Outgoing::Event(_)) = slow.rx.try_recv() {
            queued += 1;
        }
        assert_eq!(queued, 4);
        assert!(slow.rx.is_closed());
        assert_eq!(slow.drop_reason(), Some(DropReason::Slow));
        assert_eq!(hub.connection_count(), 1);
        assert_eq!(other.drop_reason(), None);
    }

    #[test]
    fn events_reach_only_their_audience_and_the_cap_holds() {
        let hub = Hub::new(2, 8);
        let (student, teacher, stranger) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut s = hub.register(student, Uuid::now_v7()).unwrap();
        let mut t = hub.register(teacher, Uuid::now_v7()).unwrap();
        let mut x = hub.register(stranger, Uuid::now_v7()).unwrap();
        let _s2 = hub.register(student, Uuid::now_v7()).unwrap();
        assert!(hub.register(student, Uuid::now_v7()).is_err(), "per-user cap");
        let mut msg = event(student);
        if let BusMessage::Event { also_to, .. } = &mut msg {
            also_to.push(teacher);
        }
        hub.dispatch(&msg);
        assert!(s.rx.try_recv().is_ok());
        assert!(t.rx.try_recv().is_ok());
        assert!(x.rx.try_recv().is_err());
        hub.dispatch(&BusMessage::Disconnect { user_id: student });
        assert!(s.rx.try_recv().is_err() && s.rx.is_closed());
        assert_eq!(s.drop_reason(), Some(DropReason::Revoked));
        drop(_s2);
        assert!(hub.register(student, Uuid::now_v7()).is_ok(), "slots are freed");
    }

    #[test]
    fn ended_sessions_lose_their_connections_and_only_theirs() {
        let hub = Hub::new(5, 8);
        let user = Uuid::now_v7();
        let (phone, laptop) = (Uuid::now_v7(), Uuid::now_v7());
        let mut on_phone = hub.register(user, phone).unwrap();
        let on_laptop = hub.register(user, laptop).unwrap();
        assert_eq!(hub.sessions().len(), 2);
        hub.drop_sessions(&[phone].into_iter().collect());
        assert!(on_phone.rx.try_recv().is_err() && on_phone.rx.is_closed());
        assert_eq!(on_phone.drop_reason(), Some(DropReason::Revoked));
        assert_eq!(on_laptop.drop_reason(), None);
        assert_eq!(hub.sessions(), vec![laptop]);
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
