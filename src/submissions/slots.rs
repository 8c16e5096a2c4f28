//! How many uploads and inspections run at once on this instance. An upload holds staging disk
//! for as long as its client takes, and decoding an image or unpacking an archive holds memory
//! and a core: without a bound, a few clients opening many uploads (or handing in many large
//! pictures) would fill the disk or the memory that every other request needs.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

/// Uploads one student may have in flight at once (two tabs, a retry).
pub const PER_USER: usize = 2;

#[derive(Clone)]
pub struct Slots {
    uploads: Arc<Semaphore>,
    per_user: Arc<Mutex<HashMap<Uuid, usize>>>,
    inspections: Arc<Semaphore>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Busy {
    /// This student already has [`PER_USER`] uploads in flight.
    User,
    /// The instance is at its upload limit.
    Instance,
}

/// Held while an upload runs; frees its place when dropped.
pub struct UploadSlot {
    _permit: OwnedSemaphorePermit,
    user_id: Uuid,
    per_user: Arc<Mutex<HashMap<Uuid, usize>>>,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut map = self.per_user.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.user_id) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.user_id);
            }
        }
    }
}

impl Slots {
    pub fn new(max_uploads: usize, max_inspections: usize) -> Slots {
        Slots {
            uploads: Arc::new(Semaphore::new(max_uploads)),
            per_user: Arc::default(),
            inspections: Arc::new(Semaphore::new(max_inspections)),
        }
    }

    pub fn take(&self, user_id: Uuid) -> Result<UploadSlot, Busy> {
        let mut map = self.per_user.lock().unwrap_or_else(|p| p.into_inner());
        let mine = map.entry(user_id).or_default();
        if *mine >= PER_USER {
            return Err(Busy::User);
        }
        let permit = self.uploads.clone().try_acquire_owned().map_err(|_| Busy::Instance)?;
        *mine += 1;
        Ok(UploadSlot { _permit: permit, user_id, per_user: self.per_user.clone() })
    }

    /// Waits for a turn to inspect a file (queued, first come first served).
    pub async fn inspection(&self) -> OwnedSemaphorePermit {
        self.inspections.clone().acquire_owned().await.expect("the semaphore is never closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_student_gets_two_places_and_the_instance_its_limit() {
        let slots = Slots::new(3, 1);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let a1 = slots.take(a).unwrap();
        let _a2 = slots.take(a).unwrap();
        assert_eq!(slots.take(a).err(), Some(Busy::User));
        let _b1 = slots.take(b).unwrap();
        assert_eq!(slots.take(b).err(), Some(Busy::Instance));
        drop(a1);
        assert!(slots.take(b).is_ok(), "a finished upload frees its place");
    }
}
