//! File storage on both stores (a local directory and SeaweedFS over S3) and malware scanning
//! with a real clamd: what the submissions feature relies on, without the HTTP layer.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use chrono::Utc;
use cifix::{
    config::{ClamdAddress, S3Config, ScannerConfig, StorageConfig},
    infra::{
        scanner::{ScanError, Scanner, Verdict},
        storage::{Storage, StorageError, StorageKind, StoredObject},
    },
};
use futures::TryStreamExt;
use tempfile::TempDir;

use crate::support::{
    clamd::{self, EICAR, EICAR_SIGNATURE},
    s3::S3Scratch,
};

const MIB: usize = 1024 * 1024;
/// The size of one multipart part in `Storage`: ranges are read across its boundary.
const PART: u64 = 8 * MIB as u64;

/// Bytes that differ from one offset to the next, so a wrong range cannot pass for a right one.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_right(13) as u8).collect()
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

async fn read_all(object: StoredObject) -> Vec<u8> {
    let chunks: Vec<_> = object.stream.try_collect().await.expect("the whole object streams");
    chunks.concat()
}

fn local() -> (Storage, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::from_config(&StorageConfig::Local, dir.path()).unwrap();
    assert_eq!(storage.kind(), StorageKind::Local);
    (storage, dir)
}

async fn s3() -> (Storage, S3Scratch) {
    let scratch = S3Scratch::new().await;
    let storage = scratch.storage();
    assert_eq!(storage.kind(), StorageKind::S3);
    (storage, scratch)
}

/// Every file under the local store's directory, relative to it.
fn files_under(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                pending.push(entry.path());
            } else {
                found.push(entry.path().strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

async fn round_trip(storage: &Storage) {
    let dir = tempfile::tempdir().unwrap();
    let small = pattern(1000);
    let big = pattern(20 * MIB + 123);
    let written = storage.put_file("t/small.bin", &write_file(dir.path(), "small", &small)).await.unwrap();
    assert_eq!(written, 1000);
    let written = storage.put_file("t/big.bin", &write_file(dir.path(), "big", &big)).await.unwrap();
    assert_eq!(written, big.len() as u64, "three parts");

    let whole = storage.get("t/big.bin", None).await.unwrap();
    assert_eq!((whole.size, whole.range.clone()), (big.len() as u64, 0..big.len() as u64));
    assert!(read_all(whole).await == big, "the big file reads back byte for byte");
    let len = big.len() as u64;
    for range in [0..1, 100..200, PART - 5..PART + 5, 2 * PART..2 * PART + 1, len - 10..len] {
        let part = storage.get("t/big.bin", Some(range.clone())).await.unwrap();
        assert_eq!((part.size, part.range.clone()), (len, range.clone()));
        let expected = &big[range.start as usize..range.end as usize];
        assert!(read_all(part).await == expected, "bytes {range:?}");
    }
    let past_the_end = storage.get("t/big.bin", Some(len - 10..len + 1000)).await.unwrap();
    assert_eq!(past_the_end.range, len - 10..len, "an end past the object stops at its end");
    assert_eq!(read_all(past_the_end).await, &big[big.len() - 10..]);
    assert_eq!(read_all(storage.get("t/small.bin", Some(999..1000)).await.unwrap()).await, &small[999..]);
    for unsatisfiable in [1000..1001, 5000..6000, 5..5] {
        match storage.get("t/small.bin", Some(unsatisfiable.clone())).await {
            Err(StorageError::RangeNotSatisfiable { size: 1000 }) => {}
            other => panic!("{unsatisfiable:?}: {:?}", other.map(|o| o.range)),
        }
    }

    assert_eq!(storage.size("t/small.bin").await.unwrap(), 1000);
    assert_eq!(storage.size("t/big.bin").await.unwrap(), len);
    assert!(matches!(storage.size("t/missing.bin").await, Err(StorageError::NotFound)));
    assert!(matches!(storage.get("t/missing.bin", None).await, Err(StorageError::NotFound)));
    assert!(matches!(storage.get("t/missing.bin", Some(0..1)).await, Err(StorageError::NotFound)));

    let replaced = pattern(10);
    storage.put_file("t/small.bin", &write_file(dir.path(), "replaced", &replaced)).await.unwrap();
    assert_eq!(read_all(storage.get("t/small.bin", None).await.unwrap()).await, replaced, "a put replaces");

    storage.delete("t/small.bin").await.unwrap();
    storage.delete("t/small.bin").await.expect("deleting twice is fine");
    storage.delete("t/never-there.bin").await.expect("deleting what never was is fine");
    assert!(matches!(storage.get("t/small.bin", None).await, Err(StorageError::NotFound)));
    storage.delete("t/big.bin").await.unwrap();
    assert!(matches!(storage.size("t/big.bin").await, Err(StorageError::NotFound)));
    storage.check().await.expect("ready");
}

#[tokio::test]
async fn local_files_round_trip_whole_and_by_range() {
    let (storage, data) = local();
    round_trip(&storage).await;
    let root = data.path().join("uploads");
    assert_eq!(files_under(&root), Vec::<String>::new(), "no staging file or part left");
}

#[tokio::test]
async fn s3_objects_round_trip_whole_and_by_range() {
    let (storage, scratch) = s3().await;
    round_trip(&storage).await;
    assert_eq!(scratch.objects().await, Vec::<String>::new());
    assert_eq!(scratch.unfinished_uploads().await, Vec::new(), "every multipart upload completed");
}

async fn janitor_listing(storage: &Storage) {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "f", b"x");
    for key in ["old/a", "older/d", "keep/e"] {
        storage.put_file(key, &file).await.unwrap();
    }
    // Stores keep modification times to the second: the cut-off sits well clear of both sides.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cutoff = Utc::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    storage.put_file("old/b/c", &file).await.unwrap();

    let sorted = |mut keys: Vec<String>| {
        keys.sort();
        keys
    };
    let later = Utc::now() + chrono::Duration::seconds(5);
    assert_eq!(sorted(storage.list_older_than("old", later).await.unwrap()), ["old/a", "old/b/c"], "whole segments");
    assert_eq!(sorted(storage.list_older_than("old/", later).await.unwrap()), ["old/a", "old/b/c"]);
    assert_eq!(storage.list_older_than("old", cutoff).await.unwrap(), ["old/a"]);
    assert_eq!(sorted(storage.list_older_than("", later).await.unwrap()), ["keep/e", "old/a", "old/b/c", "older/d"]);
    assert_eq!(storage.list_older_than("nothing/here", later).await.unwrap(), Vec::<String>::new());
    for key in storage.list_older_than("", later).await.unwrap() {
        storage.delete(&key).await.unwrap();
    }
}

#[tokio::test]
async fn local_janitor_lists_keys_older_than_a_time() {
    let (storage, data) = local();
    janitor_listing(&storage).await;
    assert_eq!(files_under(&data.path().join("uploads")), Vec::<String>::new());
}

#[tokio::test]
async fn s3_janitor_lists_keys_older_than_a_time() {
    let (storage, scratch) = s3().await;
    janitor_listing(&storage).await;
    assert_eq!(scratch.objects().await, Vec::<String>::new());
}

#[tokio::test]
async fn keys_outside_the_allowed_characters_are_refused() {
    let (storage, data) = local();
    let file = write_file(data.path(), "f", b"x");
    for key in ["", "../etc/passwd", "a/../../b", "/abs", "Upper.txt", "a b", "a//b", "dir/", "naïve"] {
        assert!(matches!(storage.put_file(key, &file).await, Err(StorageError::InvalidKey(_))), "{key:?}");
        assert!(matches!(storage.get(key, None).await, Err(StorageError::InvalidKey(_))), "{key:?}");
        assert!(matches!(storage.size(key).await, Err(StorageError::InvalidKey(_))), "{key:?}");
        assert!(matches!(storage.delete(key).await, Err(StorageError::InvalidKey(_))), "{key:?}");
    }
    assert!(matches!(storage.list_older_than("../x", Utc::now()).await, Err(StorageError::InvalidKey(_))));
    assert_eq!(files_under(&data.path().join("uploads")), Vec::<String>::new());
}

#[tokio::test]
async fn local_storage_is_not_ready_without_its_directory() {
    let (storage, data) = local();
    storage.check().await.unwrap();
    std::fs::remove_dir_all(data.path().join("uploads")).unwrap();
    assert!(matches!(storage.check().await, Err(StorageError::Unavailable(_))));
}

#[tokio::test]
async fn s3_with_a_wrong_secret_is_unavailable_and_stores_nothing() {
    let scratch = S3Scratch::new().await;
    let mut config = scratch.server.config(Some(&scratch.prefix));
    config.secret_access_key = Some("not-the-secret".into());
    let storage = Storage::from_config(&StorageConfig::S3(config), Path::new("/nonexistent")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (key, len) in [("small.bin", 1000), ("big.bin", 20 * MIB)] {
        let result = storage.put_file(key, &write_file(dir.path(), key, &pattern(len))).await;
        assert!(matches!(result, Err(StorageError::Unavailable(_))), "{key}: {result:?}");
    }
    assert!(matches!(storage.check().await, Err(StorageError::Unavailable(_))), "not ready");
    assert!(matches!(storage.get("small.bin", None).await, Err(StorageError::Unavailable(_))), "not a 404");
    assert_eq!(scratch.objects().await, Vec::<String>::new());
    assert_eq!(scratch.unfinished_uploads().await, Vec::new());
}

#[tokio::test]
async fn s3_that_is_down_is_unavailable_within_seconds() {
    let config = S3Config {
        bucket: "cifix-test".into(),
        endpoint: Some(format!("http://127.0.0.1:{}", crate::support::free_port())),
        region: "us-east-1".into(),
        access_key_id: Some("cifix".into()),
        secret_access_key: Some("cifix-secret".into()),
        prefix: Some("cifix-test-down".into()),
        allow_http: true,
    };
    let storage = Storage::from_config(&StorageConfig::S3(config), Path::new("/nonexistent")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "f", &pattern(1000));
    let started = Instant::now();
    assert!(matches!(storage.put_file("f.bin", &file).await, Err(StorageError::Unavailable(_))));
    assert!(matches!(storage.get("f.bin", None).await, Err(StorageError::Unavailable(_))), "not a 404");
    assert!(matches!(storage.delete("f.bin").await, Err(StorageError::Unavailable(_))));
    assert!(matches!(storage.check().await, Err(StorageError::Unavailable(_))));
    assert!(started.elapsed() < Duration::from_secs(20), "retries are few: {:?}", started.elapsed());
}

/// Polls an upload of a 20 MiB file just until the store shows it begun, then drops it, as a
/// request that times out or loses its client does; the abandoned parts must go away.
async fn abandon_upload<F, Fut>(storage: &Storage, mut begun: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "big", &pattern(20 * MIB));
    let mut upload = Box::pin(storage.put_file("abandoned/big.bin", &file));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Unpolled, the upload cannot complete: it is only ever polled once between checks.
        if futures::poll!(&mut upload).is_ready() {
            panic!("the upload finished before it could be abandoned");
        }
        if begun().await {
            break;
        }
        assert!(Instant::now() < deadline, "the upload never began");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    drop(upload);
}

#[tokio::test]
async fn local_upload_dropped_midway_leaves_no_staging_file() {
    let (storage, data) = local();
    let root = data.path().join("uploads");
    abandon_upload(&storage, || {
        let any = !files_under(&root).is_empty();
        async move { any }
    })
    .await;
    eventually(|| async { files_under(&root).is_empty() }, "the staging file removed").await;
    assert!(matches!(storage.size("abandoned/big.bin").await, Err(StorageError::NotFound)));
}

#[tokio::test]
async fn s3_upload_dropped_midway_is_aborted() {
    let (storage, scratch) = s3().await;
    // Begun means a part is stored: the upload's id is known to the client, which can abort it.
    // (Dropped before CreateMultipartUpload answers, the id would never be known: the bucket's
    // lifecycle rule for incomplete uploads is the backstop for that, see the README.)
    let begun = || async {
        match scratch.unfinished_uploads().await.first() {
            Some((key, id)) => scratch.parts_of(key, id).await > 0,
            None => false,
        }
    };
    abandon_upload(&storage, begun).await;
    eventually(|| async { scratch.unfinished_uploads().await.is_empty() }, "the multipart upload aborted").await;
    assert_eq!(scratch.objects().await, Vec::<String>::new());
}

async fn eventually<F, Fut>(mut condition: F, what: &str)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Scanning
// ---------------------------------------------------------------------------------------------

fn infected(verdict: Result<Verdict, ScanError>) -> String {
    match verdict {
        Ok(Verdict::Infected { signature }) => signature,
        other => panic!("expected a detection, got {other:?}"),
    }
}

#[tokio::test]
async fn clamd_finds_eicar_and_passes_clean_files() {
    let scanner = clamd::clamd().scanner();
    assert!(scanner.enabled());
    scanner.ping().await.unwrap();
    let signature = infected(scanner.scan(EICAR).await);
    assert!(signature.starts_with(EICAR_SIGNATURE), "{signature}");
    assert_eq!(scanner.scan(&b"my project: a drawing of a cat\n"[..]).await.unwrap(), Verdict::Clean);
    assert_eq!(scanner.scan(&b""[..]).await.unwrap(), Verdict::Clean, "an empty file");
    // Several INSTREAM chunks, and EICAR's bytes not at the start: clean.
    let mut large = pattern(3 * MIB);
    large.extend_from_slice(EICAR);
    assert_eq!(scanner.scan(&large[..]).await.unwrap(), Verdict::Clean);
}

#[tokio::test]
async fn clamd_finds_eicar_inside_a_zip() {
    let signature = infected(clamd::clamd().scanner().scan(&clamd::eicar_zip()[..]).await);
    assert!(signature.starts_with(EICAR_SIGNATURE), "{signature}");
}

#[tokio::test]
async fn clamd_scans_a_temp_file_and_an_object_read_back_from_storage() {
    let scanner = clamd::clamd().scanner();
    let (storage, data) = local();
    let path = write_file(data.path(), "upload.zip", &clamd::eicar_zip());
    let file = tokio::fs::File::open(&path).await.unwrap();
    assert!(infected(scanner.scan(file).await).starts_with(EICAR_SIGNATURE));
    storage.put_file("scan/upload.zip", &path).await.unwrap();
    let object = storage.get("scan/upload.zip", None).await.unwrap();
    assert!(infected(scanner.scan(object.into_reader()).await).starts_with(EICAR_SIGNATURE));
}

#[tokio::test]
async fn clamd_over_its_unix_socket() {
    let clamd = clamd::clamd();
    let Some(socket) = &clamd.socket else {
        panic!("CIFIX_TEST_CLAMD_ADDR names one address; this test needs the private clamd's socket (unset it)")
    };
    let config = ScannerConfig { clamd: Some(ClamdAddress::Unix(socket.clone())), ..ScannerConfig::default() };
    let scanner = Scanner::from_config(&config);
    scanner.ping().await.unwrap();
    assert!(infected(scanner.scan(EICAR).await).starts_with(EICAR_SIGNATURE));
}

#[tokio::test]
async fn clamd_not_listening_is_unavailable() {
    let port = crate::support::free_port();
    let config =
        ScannerConfig { clamd: Some(ClamdAddress::Tcp(format!("127.0.0.1:{port}"))), ..ScannerConfig::default() };
    let scanner = Scanner::from_config(&config);
    assert!(matches!(scanner.scan(EICAR).await, Err(ScanError::Unavailable(_))));
    assert!(matches!(scanner.ping().await, Err(ScanError::Unavailable(_))));
    let gone =
        ScannerConfig { clamd: Some(ClamdAddress::Unix("/nonexistent/clamd.sock".into())), ..ScannerConfig::default() };
    assert!(matches!(Scanner::from_config(&gone).scan(EICAR).await, Err(ScanError::Unavailable(_))));
}

#[tokio::test]
async fn clamd_that_never_answers_is_unavailable_after_the_timeout() {
    // Accepts, reads everything, says nothing: as a wedged clamd would.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        loop {
            let (mut connection, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut sink = Vec::new();
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut connection, &mut sink).await;
            });
        }
    });
    let timeout = Duration::from_millis(700);
    let config = ScannerConfig { clamd: Some(ClamdAddress::Tcp(address.to_string())), timeout };
    let scanner = Scanner::from_config(&config);
    for _ in 0..2 {
        let started = Instant::now();
        let small = scanner.scan(EICAR).await;
        assert!(matches!(small, Err(ScanError::Unavailable(_))), "{small:?}");
        let waited = started.elapsed();
        assert!(waited >= timeout && waited < timeout + Duration::from_secs(5), "gave up after {waited:?}");
    }
    let started = Instant::now();
    assert!(matches!(scanner.ping().await, Err(ScanError::Unavailable(_))));
    assert!(started.elapsed() >= timeout);
    silent.abort();
}

#[tokio::test]
async fn a_stream_over_clamds_limit_is_unavailable_not_clean() {
    let limited = clamd::Clamd::start_private_with_stream_limit("1M");
    let scanner = limited.scanner();
    let result = scanner.scan(&pattern(3 * MIB)[..]).await;
    match result {
        Err(ScanError::Unavailable(why)) => assert!(why.contains("size limit"), "{why}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(infected(scanner.scan(EICAR).await).starts_with(EICAR_SIGNATURE), "small files still scan");
}

#[tokio::test]
async fn the_test_environment_configures_the_application_on_s3_and_clamd() {
    let dir = tempfile::tempdir().unwrap();
    let (mut env, _database) = crate::support::base_env(&dir).await;
    let scratch = crate::support::s3::with_s3(&mut env).await;
    env.extend(clamd::clamd().env());
    let config = cifix::config::Config::from_lookup(|k| env.get(k).cloned()).expect("the variables are valid");
    let storage = Storage::from_config(&config.storage, &config.data_dir).unwrap();
    assert_eq!(storage.kind(), StorageKind::S3);
    let file = write_file(dir.path(), "upload.zip", &clamd::eicar_zip());
    storage.put_file("submissions/upload.zip", &file).await.unwrap();
    assert_eq!(scratch.objects().await, [format!("{}/submissions/upload.zip", scratch.prefix)]);
    let scanner = Scanner::from_config(&config.scanner);
    let object = storage.get("submissions/upload.zip", None).await.unwrap();
    assert!(infected(scanner.scan(object.into_reader()).await).starts_with(EICAR_SIGNATURE));
}
