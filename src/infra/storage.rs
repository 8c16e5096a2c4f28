//! Uploaded files: a directory under the data dir, or an S3-compatible bucket, behind one API.
//!
//! Callers choose the keys (never from user-supplied names), so a key that is not made of
//! `[a-z0-9/-_.]` is a bug and is refused rather than escaped. Writes are staged by the store
//! (a temporary file renamed into place, or an S3 upload that only appears when completed), so
//! nobody ever reads half a file.

use std::{
    ops::Range,
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    task::{Context as TaskContext, Poll, ready},
    time::Duration,
};

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt, stream::BoxStream};
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig, WriteMultipart, aws::AmazonS3Builder, local::LocalFileSystem, path::Path as ObjectPath,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, ReadBuf};

use crate::config::{StorageConfig, is_key_text};

/// Files up to this size go up in one request; larger ones in parts of this size, so that no
/// more than a few parts are ever held in memory.
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploading at once for one file: the memory one upload holds is about this many parts
/// plus the one being filled.
const PARTS_IN_FLIGHT: usize = 2;
const READ_CHUNK: usize = 1024 * 1024;
/// Chunks of a local file as they are streamed out (the store's own 8 KiB would cost a trip to
/// the blocking pool for every 8 KiB of a download).
const LOCAL_STREAM_CHUNK: usize = 256 * 1024;
/// Longer keys would crowd S3's 1024-byte limit once a deployment prefix is added.
const MAX_KEY_LEN: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    Local,
    S3,
}

#[derive(thiserror::Error, Debug)]
pub enum StorageError {
    #[error("not found")]
    NotFound,
    /// A key or prefix outside the allowed characters: the caller's bug, never the user's.
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    /// The range starts at or after the end of the object (HTTP 416 with `bytes */{size}`).
    #[error("range not satisfiable: the object has {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// An object being read: its whole size, the range that `stream` yields, and the bytes.
pub struct StoredObject {
    pub size: u64,
    pub range: Range<u64>,
    pub stream: BoxStream<'static, Result<Bytes, StorageError>>,
}

impl StoredObject {
    /// The bytes as an `AsyncRead`, to scan an object read back from storage, say.
    pub fn into_reader(self) -> ObjectReader {
        ObjectReader { stream: self.stream, chunk: Bytes::new() }
    }
}

/// A [`StoredObject`]'s bytes as an `AsyncRead`.
pub struct ObjectReader {
    stream: BoxStream<'static, Result<Bytes, StorageError>>,
    chunk: Bytes,
}

impl AsyncRead for ObjectReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.chunk.is_empty() {
            match ready!(self.stream.poll_next_unpin(cx)) {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
                None => return Poll::Ready(Ok(())),
            }
        }
        let taken = self.chunk.len().min(buf.remaining());
        let part = self.chunk.split_to(taken);
        buf.put_slice(&part);
        Poll::Ready(Ok(()))
    }
}

#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// Put before every key in the bucket; `None` for local storage and an unprefixed bucket.
    prefix: Option<String>,
    kind: StorageKind,
    /// The directory of local storage, for the readiness check.
    root: Option<PathBuf>,
}

impl std::fmt::Debug for Storage {
    // Only what identifies the store: its client's own Debug includes the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("kind", &self.kind)
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Storage {
    pub fn from_config(cfg: &StorageConfig, data_dir: &Path) -> anyhow::Result<Storage> {
        match cfg {
            StorageConfig::Local => {
                let root = data_dir.join("uploads");
                std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
                // Removing empty directories on delete keeps the janitor's listings short.
                let store = LocalFileSystem::new_with_prefix(&root)
                    .with_context(|| format!("opening {}", root.display()))?
                    .with_automatic_cleanup(true);
                Ok(Storage { store: Arc::new(store), prefix: None, kind: StorageKind::Local, root: Some(root) })
            }
            StorageConfig::S3(s3) => {
                let http = s3.endpoint.as_deref().is_some_and(|e| e.starts_with("http://"));
                // No overall request timeout: a download streams as fast as the user's
                // connection takes it. A stalled server is caught by the read timeout instead,
                // which only runs while a read is waiting.
                let client = ClientOptions::new()
                    .with_timeout_disabled()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_read_timeout(Duration::from_secs(60))
                    .with_allow_http(http);
                // A user is waiting on every call: a few quick retries ride out a blip, and an
                // outage is reported within seconds rather than after the default three minutes.
                let retry = RetryConfig {
                    backoff: BackoffConfig {
                        init_backoff: Duration::from_millis(100),
                        max_backoff: Duration::from_secs(2),
                        base: 2.0,
                    },
                    max_retries: 3,
                    retry_timeout: Duration::from_secs(15),
                };
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region)
                    .with_client_options(client)
                    .with_retry(retry)
                    .with_virtual_hosted_style_request(s3.endpoint.is_none());
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
                    builder = builder.with_access_key_id(id).with_secret_access_key(secret);
                }
                let store = builder.build().context("configuring the S3 client")?;
                Ok(Storage { store: Arc::new(store), prefix: s3.prefix.clone(), kind: StorageKind::S3, root: None })
            }
        }
    }

    pub fn kind(&self) -> StorageKind {
        self.kind
    }

    /// Streams the file at `path` to `key` and returns the bytes written. Above one part
    /// (8 MiB) it is a multipart upload with at most a few parts in memory, aborted on any
    /// failure (also when this future is dropped), so that no part is left behind. Only a drop
    /// before S3 has answered the upload's start escapes this: the bucket's lifecycle rule for
    /// incomplete uploads is the backstop.
    pub async fn put_file(&self, key: &str, path: &Path) -> Result<u64, StorageError> {
        let location = self.location(key)?;
        let reading = |e: std::io::Error| StorageError::Unavailable(format!("reading {}: {e}", path.display()));
        let mut file = tokio::fs::File::open(path).await.map_err(reading)?;
        let length = file.metadata().await.map_err(reading)?.len();
        if length <= PART_SIZE as u64 {
            let mut whole = Vec::with_capacity(length as usize);
            file.read_to_end(&mut whole).await.map_err(reading)?;
            let written = whole.len() as u64;
            self.store.put(&location, PutPayload::from(whole)).await.map_err(unavailable)?;
            return Ok(written);
        }

        let upload = self.store.put_multipart(&location).await.map_err(unavailable)?;
        let mut upload = AbortOnDrop(Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE)));
        let mut written = 0u64;
        loop {
            let mut chunk = BytesMut::with_capacity(READ_CHUNK);
            while chunk.len() < READ_CHUNK {
                match file.read_buf(&mut chunk).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Err(upload.abort(reading(e)).await),
                }
            }
            if chunk.is_empty() {
                break;
            }
            written += chunk.len() as u64;
            let writer = upload.writer();
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                return Err(upload.abort(unavailable(e)).await);
            }
            writer.put(chunk.freeze());
        }
        // `finish` aborts the upload itself when a part or the completion fails.
        upload.take().finish().await.map_err(unavailable)?;
        Ok(written)
    }

    /// The object's size and a stream of its bytes: all of them, or `range` (end exclusive; an
    /// end past the object stops at its end) for HTTP Range requests.
    pub async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<StoredObject, StorageError> {
        let location = self.location(key)?;
        if let Some(requested) = &range
            && requested.start >= requested.end
        {
            let size = self.size(key).await?;
            return Err(StorageError::RangeNotSatisfiable { size });
        }
        let options = GetOptions { range: range.clone().map(GetRange::Bounded), ..GetOptions::default() };
        let result = match self.store.get_opts(&location, options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Err(StorageError::NotFound),
            // Stores word a range past the end differently (an S3 416, a local error): the
            // size tells whether that is what happened.
            Err(e) => {
                return Err(match (range, self.size(key).await) {
                    (Some(requested), Ok(size)) if requested.start >= size => {
                        StorageError::RangeNotSatisfiable { size }
                    }
                    (_, Err(StorageError::NotFound)) => StorageError::NotFound,
                    _ => unavailable(e),
                });
            }
        };
        let (size, range) = (result.meta.size, result.range.clone());
        let stream = match result.payload {
            GetResultPayload::File(file, _) => local_stream(file, range.clone()),
            GetResultPayload::Stream(stream) => stream.map_err(unavailable).boxed(),
        };
        Ok(StoredObject { size, range, stream })
    }

    pub async fn size(&self, key: &str) -> Result<u64, StorageError> {
        let location = self.location(key)?;
        match self.store.head(&location).await {
            Ok(meta) => Ok(meta.size),
            Err(object_store::Error::NotFound { .. }) => Err(StorageError::NotFound),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Deleting a missing object is fine, so that a retried cleanup succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let location = self.location(key)?;
        match self.store.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Keys under `prefix` (whole path segments: `a/b` holds `a/b/c`, not `a/bc`; empty for
    /// every key) last modified before `older_than`, for the janitor. The listing is streamed
    /// page by page; only the matching keys are kept.
    pub async fn list_older_than(&self, prefix: &str, older_than: DateTime<Utc>) -> Result<Vec<String>, StorageError> {
        let trimmed = prefix.trim_end_matches('/');
        let location =
            if trimmed.is_empty() { self.prefix.clone().map(ObjectPath::from) } else { Some(self.location(trimmed)?) };
        let mut listing = self.store.list(location.as_ref());
        let mut keys = Vec::new();
        loop {
            match listing.next().await {
                None => return Ok(keys),
                Some(Ok(meta)) if meta.last_modified < older_than => keys.push(self.key_of(&meta.location)),
                Some(Ok(_)) => {}
                // A local directory that was never created holds nothing.
                Some(Err(object_store::Error::NotFound { .. })) => return Ok(keys),
                Some(Err(e)) => return Err(unavailable(e)),
            }
        }
    }

    /// A cheap readiness check: the local directory is there, or the bucket answers a listing
    /// of one level (which proves the address, the credentials and the bucket).
    pub async fn check(&self) -> Result<(), StorageError> {
        if let Some(root) = &self.root {
            return match tokio::fs::metadata(root).await {
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => Err(StorageError::Unavailable(format!("{} is not a directory", root.display()))),
                Err(e) => Err(StorageError::Unavailable(format!("{}: {e}", root.display()))),
            };
        }
        let prefix = self.prefix.clone().map(ObjectPath::from);
        self.store.list_with_delimiter(prefix.as_ref()).await.map(|_| ()).map_err(unavailable)
    }

    fn location(&self, key: &str) -> Result<ObjectPath, StorageError> {
        if !is_valid_key(key) {
            return Err(StorageError::InvalidKey(key.to_string()));
        }
        let full = match &self.prefix {
            Some(prefix) => format!("{prefix}/{key}"),
            None => key.to_string(),
        };
        ObjectPath::parse(full).map_err(|_| StorageError::InvalidKey(key.to_string()))
    }

    fn key_of(&self, location: &ObjectPath) -> String {
        let full = location.as_ref();
        match &self.prefix {
            Some(prefix) => full.strip_prefix(prefix.as_str()).and_then(|k| k.strip_prefix('/')).unwrap_or(full).into(),
            None => full.into(),
        }
    }
}

/// Whether `key` may name an object: `[a-z0-9/-_.]`, no empty segment, no `..`.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && is_key_text(key)
        && !key.contains("..")
        && key.split('/').all(|segment| !segment.is_empty() && segment != ".")
}

fn unavailable(e: object_store::Error) -> StorageError {
    StorageError::Unavailable(e.to_string())
}

/// A multipart upload that is aborted if it is neither finished nor aborted by hand: a caller
/// that gives up (a client gone, a request timed out) drops the future mid-upload, and the
/// parts already sent would otherwise stay in the bucket, billed and invisible.
struct AbortOnDrop(Option<WriteMultipart>);

impl AbortOnDrop {
    fn writer(&mut self) -> &mut WriteMultipart {
        self.0.as_mut().expect("the upload is still open")
    }

    fn take(&mut self) -> WriteMultipart {
        self.0.take().expect("the upload is still open")
    }

    /// Aborts now and returns `error`, with the abort's own failure added to it.
    async fn abort(&mut self, error: StorageError) -> StorageError {
        match self.take().abort().await {
            Ok(()) => error,
            Err(e) => StorageError::Unavailable(format!("{error}; aborting the upload also failed: {e}")),
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(upload) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(e) = upload.abort().await {
                    tracing::warn!(error = %e, "aborting an abandoned upload failed");
                }
            });
        }
    }
}

/// `range` of a local file, in chunks large enough to keep a download cheap.
fn local_stream(file: std::fs::File, range: Range<u64>) -> BoxStream<'static, Result<Bytes, StorageError>> {
    let failed = |e: std::io::Error| StorageError::Unavailable(format!("reading a stored file: {e}"));
    let start = range.start;
    let opened = async move {
        let mut file = tokio::fs::File::from_std(file);
        file.seek(std::io::SeekFrom::Start(start)).await.map_err(failed)?;
        Ok::<_, StorageError>(file)
    };
    futures_util::stream::once(opened)
        .map_ok(move |file| {
            futures_util::stream::try_unfold((file, range.end - range.start), move |(mut file, left)| async move {
                if left == 0 {
                    return Ok(None);
                }
                let mut chunk = BytesMut::with_capacity(LOCAL_STREAM_CHUNK.min(left as usize));
                let read = file.read_buf(&mut chunk).await.map_err(failed)?;
                if read == 0 {
                    return Err(StorageError::Unavailable("a stored file ended early".into()));
                }
                chunk.truncate(left.min(read as u64) as usize);
                let left = left - chunk.len() as u64;
                Ok(Some((chunk.freeze(), (file, left))))
            })
        })
        .try_flatten()
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::is_valid_key;

    #[test]
    fn keys_are_plain_paths() {
        for good in ["submissions/2024/abc-123.zip", "a", "a_b/c.d", "0/1/2"] {
            assert!(is_valid_key(good), "{good}");
        }
        let long = "a".repeat(513);
        for bad in ["", "/a", "a/", "a//b", "../a", "a/../b", "a..b", "./a", "A", "a b", "a%2f", "a\\b", &long] {
            assert!(!is_valid_key(bad), "{bad}");
        }
    }
}
