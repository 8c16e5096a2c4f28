//! The real-time event bus. In-process broadcast by default; the WebSocket/SSE delivery and the
//! Redis transport across instances build on this one `publish` entry point.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::broadcast;
use uuid::Uuid;

/// One event for one user, as live clients receive it: `{id, type, data, created_at}`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RealtimeEvent {
    pub id: Uuid,
    /// Who may see it. Delivery checks this before sending anything.
    #[serde(skip_serializing)]
    pub user_id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct EventBus {
    local: broadcast::Sender<Arc<RealtimeEvent>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus { local: broadcast::channel(4096).0 }
    }
}

impl EventBus {
    /// Announces an already-committed event. Never fails the caller: the stored notification
    /// is the source of truth, and clients that miss a live event catch up from it.
    pub fn publish(&self, event: RealtimeEvent) {
        let _ = self.local.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<RealtimeEvent>> {
        self.local.subscribe()
    }
}
