//! Sweeps what failed uploads leave behind: objects in the store that no file row refers to
//! (an upload refused after storing, a process killed before its commit, files of submissions
//! deleted with their lesson) and staging directories of killed processes. Only what is older
//! than any upload can still be running is touched, so a commit in flight never loses its
//! objects; every instance may sweep, since deleting twice is harmless.

use std::collections::HashSet;

use chrono::Utc;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

use super::{OBJECT_PREFIX, SubmissionService, SubmitError};
use crate::entities::submission_file;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub objects: usize,
    pub stagings: usize,
}

impl SubmissionService {
    pub async fn sweep(&self) -> Result<Swept, SubmitError> {
        let stale = self.limits.stale_after();
        let before = Utc::now() - chrono::Duration::from_std(stale).unwrap_or_default();
        let mut swept = Swept::default();
        let keys = self.storage.list_older_than(OBJECT_PREFIX, before).await?;
        for chunk in keys.chunks(500) {
            let live: HashSet<String> = submission_file::Entity::find()
                .select_only()
                .column(submission_file::Column::ObjectKey)
                .filter(submission_file::Column::ObjectKey.is_in(chunk.iter().cloned()))
                .into_tuple::<String>()
                .all(&self.db.conn)
                .await?
                .into_iter()
                .collect();
            for key in chunk.iter().filter(|k| !live.contains(*k)) {
                self.storage.delete(key).await?;
                swept.objects += 1;
            }
        }
        swept.stagings = sweep_stagings(&self.staging_root, stale).await;
        if swept != Swept::default() {
            tracing::info!(objects = swept.objects, stagings = swept.stagings, "swept stale uploads");
        }
        Ok(swept)
    }
}

async fn sweep_stagings(root: &std::path::Path, stale: std::time::Duration) -> usize {
    let Ok(mut entries) = tokio::fs::read_dir(root).await else { return 0 };
    let mut removed = 0;
    while let Ok(Some(entry)) = entries.next_entry().await {
        let old = entry
            .metadata()
            .await
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > stale);
        if old && tokio::fs::remove_dir_all(entry.path()).await.is_ok() {
            removed += 1;
        }
    }
    removed
}
