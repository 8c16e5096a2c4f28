//! This instance's live connections, by user: each has a small bounded queue, and one that
//! cannot keep up is let go alone.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{BusMessage, EventBus, RealtimeEvent};

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
    use super::{super::tests::event, *};

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
}
