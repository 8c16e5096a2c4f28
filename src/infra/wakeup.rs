//! Wakes idle queue workers the moment work queued for them is committed, instead of at their
//! next poll. A wake-up is only ever sent after commit: a worker woken earlier would find
//! nothing (the row is not visible yet) and go back to sleep until the poll.

use std::sync::Arc;

use tokio::sync::Notify;

use super::db::WriteTxn;

#[derive(Clone, Default)]
pub struct Wakeup(Arc<Notify>);

impl Wakeup {
    /// Wakes every waiting worker once `txn` has committed.
    pub fn after_commit(&self, txn: &WriteTxn) {
        let notify = self.0.clone();
        txn.on_commit(async move { notify.notify_waiters() });
    }

    /// Resolves at the next wake-up.
    pub async fn woken(&self) {
        self.0.notified().await
    }
}
