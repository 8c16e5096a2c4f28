//! Test harness: a real `cifix` router on a random port, on a fresh database per test.
//!
//! Backend: SQLite with in-process parts by default; PostgreSQL + Redis when
//! `CIFIX_TEST_BACKEND=postgres` (each test gets its own database and Redis key prefix, so tests
//! run in parallel). `CIFIX_TEST_PG_URL` and `CIFIX_TEST_REDIS_URL` point at the servers.
//!
//! Whatever a test creates on those servers is removed when its owner is dropped, also when the
//! test fails: an unwinding panic runs `Drop` like a normal return does.

pub mod browser;
pub mod catalog;
pub mod clamd;
pub mod live;
pub mod process;
pub mod s3;
pub mod services;
pub mod smtp;

use std::{collections::HashMap, time::Duration};

use cifix::{config::Config, infra::db::Db, state::AppState};
use reqwest::{Method, Response, StatusCode};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use tempfile::TempDir;
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery staple";
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

/// The prefix of every database a test creates, so that CI can prove none is left behind.
pub const DATABASE_PREFIX: &str = "cifix_t_";
/// The prefix of every Redis key prefix a test uses, for the same reason.
pub const REDIS_PREFIX: &str = "cifix-test:";

pub fn use_postgres() -> bool {
    std::env::var("CIFIX_TEST_BACKEND").is_ok_and(|v| v == "postgres")
}

/// Which services a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite and in-process parts.
    Embedded,
    /// PostgreSQL + Redis (`CIFIX_TEST_PG_URL`, `CIFIX_TEST_REDIS_URL`).
    Postgres,
}

impl Backend {
    /// The backend of this run: `CIFIX_TEST_BACKEND=postgres` or the embedded default.
    pub fn of_run() -> Backend {
        if use_postgres() { Backend::Postgres } else { Backend::Embedded }
    }
}

pub fn pg_base() -> String {
    std::env::var("CIFIX_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn redis_url() -> String {
    std::env::var("CIFIX_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

// ---------------------------------------------------------------------------------------------
// What a test creates outside its temporary directory
// ---------------------------------------------------------------------------------------------

/// A test's PostgreSQL database and Redis key prefix. Dropping it removes both; whoever holds it
/// must outlive every server using them (a second instance on the same database holds none).
#[must_use = "dropping it removes the test's database and Redis keys"]
pub struct Scratch {
    database: Option<String>,
    redis_prefix: Option<String>,
}

impl Scratch {
    fn none() -> Scratch {
        Scratch { database: None, redis_prefix: None }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let (database, redis_prefix) = (self.database.take(), self.redis_prefix.take());
        if database.is_none() && redis_prefix.is_none() {
            return;
        }
        // `Drop` cannot await, and the test's own runtime may be the current thread that is
        // running this very `drop`; so the cleanup gets a thread and a runtime of its own.
        let cleaned = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(remove(database, redis_prefix))
        })
        .join();
        match cleaned {
            Ok(problems) => {
                for problem in problems {
                    eprintln!("test cleanup: {problem}");
                }
            }
            Err(_) => eprintln!("test cleanup panicked"),
        }
    }
}

/// Removes a database and every Redis key under a prefix; returns what could not be removed
/// (never panics: it may run while a failed test unwinds).
async fn remove(database: Option<String>, redis_prefix: Option<String>) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(name) = database {
        match Database::connect(format!("{}/postgres", pg_base())).await {
            Ok(admin) => {
                // FORCE ends the connections the stopped server and the test still hold.
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                if let Err(e) = admin.execute_unprepared(&sql).await {
                    problems.push(format!("{sql}: {e}"));
                }
                admin.close().await.ok();
            }
            Err(e) => problems.push(format!("dropping {name}: PostgreSQL unreachable: {e}")),
        }
    }
    if let Some(prefix) = redis_prefix
        && let Err(e) = remove_redis_keys(&prefix).await
    {
        problems.push(format!("removing Redis keys {prefix}*: {e}"));
    }
    problems
}

async fn remove_redis_keys(prefix: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(redis_url())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let pattern = format!("{prefix}*");
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("UNLINK").arg(&keys).query_async::<()>(&mut conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// A fresh, empty database URL for one test, and the guard that drops the database.
async fn fresh_database(dir: &TempDir, backend: Backend) -> (String, Option<String>) {
    if backend == Backend::Postgres {
        let name = format!("{DATABASE_PREFIX}{}", Uuid::new_v4().simple());
        let admin = Database::connect(format!("{}/postgres", pg_base()))
            .await
            .unwrap_or_else(|e| panic!("this test needs PostgreSQL at {} (set CIFIX_TEST_PG_URL): {e}", pg_base()));
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
        admin.close().await.ok();
        (format!("{}/{name}", pg_base()), Some(name))
    } else {
        (format!("sqlite://{}?mode=rwc", dir.path().join("cifix.db").display()), None)
    }
}

/// The environment a test server starts with: fast hashing and budgets no normal test reaches.
/// The returned `Scratch` owns the database and Redis prefix named in it.
pub async fn base_env(dir: &TempDir) -> (HashMap<String, String>, Scratch) {
    base_env_on(dir, Backend::of_run()).await
}

/// As [`base_env`], on the given backend whatever this run's is.
pub async fn base_env_on(dir: &TempDir, backend: Backend) -> (HashMap<String, String>, Scratch) {
    let mut env = HashMap::new();
    let mut scratch = Scratch::none();
    let (url, database) = fresh_database(dir, backend).await;
    scratch.database = database;
    env.insert("CIFIX_DATA_DIR".into(), dir.path().display().to_string());
    env.insert("DATABASE_URL".into(), url);
    env.insert("CIFIX_JWT_SECRET".into(), JWT_SECRET.into());
    env.insert("CIFIX_BCRYPT_COST".into(), "4".into());
    env.insert("CIFIX_RATE_LIMIT_PER_MINUTE".into(), "100000".into());
    env.insert("CIFIX_AUTH_RATE_LIMIT_PER_MINUTE".into(), "100000".into());
    env.insert("CIFIX_LOGIN_ACCOUNT_RATE_LIMIT_PER_MINUTE".into(), "100000".into());
    env.insert("CIFIX_AUTH_FAILURES_PER_MINUTE".into(), "100000".into());
    env.insert("CIFIX_REGISTRATIONS_PER_HOUR".into(), "100000".into());
    if backend == Backend::Postgres {
        let prefix = format!("{REDIS_PREFIX}{}:", Uuid::new_v4().simple());
        env.insert("REDIS_URL".into(), redis_url());
        env.insert("CIFIX_REDIS_PREFIX".into(), prefix.clone());
        scratch.redis_prefix = Some(prefix);
    }
    (env, scratch)
}

// ---------------------------------------------------------------------------------------------
// The application under test
// ---------------------------------------------------------------------------------------------

/// A registered user, as a client holds it.
pub struct User {
    pub token: String,
    pub id: String,
    pub email: String,
}

impl User {
    /// The credentials to pass to a request.
    pub fn auth(&self) -> Option<&str> {
        Some(&self.token)
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub db: Db,
    /// The running application's own state: its services, exactly as the server uses them.
    pub state: AppState,
    pub env: HashMap<String, String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub dir: TempDir,
    /// Only the first instance on a database owns it; a peer leaves it to the owner.
    scratch: Option<Scratch>,
    /// Services of the test's own (a bucket prefix, say), removed after the application.
    kept: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(customize: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
        Self::spawn_on(Backend::of_run(), customize).await
    }

    /// For tests of several instances sharing one database and one Redis: they need PostgreSQL
    /// + Redis whatever backend the run is on, and fail naming them when they are missing.
    pub async fn spawn_on_postgres() -> TestApp {
        Self::spawn_on(Backend::Postgres, |_| {}).await
    }

    pub async fn spawn_on(backend: Backend, customize: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let (mut env, scratch) = base_env_on(&dir, backend).await;
        customize(&mut env);
        Self::spawn_env(dir, env, Some(scratch)).await
    }

    /// A second instance on the same database (and Redis prefix, when Redis is used), as a
    /// load balancer would run it beside this one. It must be dropped before this one.
    pub async fn spawn_sibling(&self) -> TestApp {
        self.spawn_peer().await
    }

    /// A second instance on the same database and Redis prefix (a second `cifix serve` behind
    /// the same load balancer). Only meaningful on PostgreSQL + Redis.
    pub async fn spawn_peer(&self) -> TestApp {
        self.spawn_peer_with(|_| {}).await
    }

    /// As [`TestApp::spawn_peer`], started with its environment changed by `customize` (a
    /// restart with new settings, say).
    pub async fn spawn_peer_with(&self, customize: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut env = self.env.clone();
        env.insert("CIFIX_DATA_DIR".into(), dir.path().display().to_string());
        customize(&mut env);
        Self::spawn_env(dir, env, None).await
    }

    async fn spawn_env(dir: TempDir, env: HashMap<String, String>, scratch: Option<Scratch>) -> TestApp {
        // `CIFIX_TEST_LOG=1` shows the server's logs (errors behind a 500, for one).
        if std::env::var("CIFIX_TEST_LOG").is_ok() {
            cifix::telemetry::init_logging(cifix::config::LogFormat::Text);
        }
        let config = Config::from_lookup(|k| env.get(k).cloned()).expect("valid test config");
        let state = AppState::build(config).await.expect("app builds");
        let db = state.db.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(cifix::app::serve(state.clone(), listener, async move {
            let _ = rx.await;
        }));
        TestApp {
            base,
            client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
            db,
            state,
            env,
            shutdown: Some(tx),
            server: Some(server),
            dir,
            scratch,
            kept: vec![],
        }
    }

    /// Keeps `guard` until this application is dropped, and drops it after.
    pub fn keeping(mut self, guard: impl std::any::Any + Send + Sync) -> TestApp {
        self.kept.push(Box::new(guard));
        self
    }

    /// Signals shutdown and returns the server task, to observe draining.
    pub fn begin_shutdown(&mut self) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        let _ = self.shutdown.take().map(|tx| tx.send(()));
        self.server.take().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with('/') && !path.starts_with("/api/") && !path.starts_with("/health") && path != "/metrics" {
            format!("{}/api/v1{path}", self.base)
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// Every request a test sends starts here; the methods below are shorthands for it.
    pub fn req(&self, method: Method, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let mut r = self.client.request(method, self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.req(Method::GET, path, token).send().await.unwrap()
    }

    pub async fn send_json(&self, method: Method, path: &str, token: Option<&str>, body: Value) -> Response {
        self.req(method, path, token).json(&body).send().await.unwrap()
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.send_json(Method::POST, path, token, body).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        self.req(Method::DELETE, path, token).send().await.unwrap()
    }

    /// GET that must answer 200; its JSON body.
    pub async fn get_json(&self, path: &str, token: Option<&str>) -> Value {
        expect(self.get(path, token).await, StatusCode::OK).await
    }

    /// Registers a fresh student and returns the token response.
    pub async fn register(&self, email: &str) -> Value {
        let res = self
            .post("/auth/register", None, json!({"email": email, "password": PASSWORD, "display_name": "Test User"}))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "register {email}");
        res.json().await.unwrap()
    }

    /// Registers `name@example.com` and gives them `role` (roles are re-read on every request;
    /// there is no endpoint to promote the first instructor or admin).
    pub async fn user(&self, name: &str, role: &str) -> User {
        let email = format!("{name}@example.com");
        let body = self.register(&email).await;
        if role != "student" {
            self.db
                .conn
                .execute_unprepared(&format!("UPDATE users SET role = '{role}' WHERE email = '{email}'"))
                .await
                .unwrap();
        }
        User { token: access(&body), id: s(&body["user"]["id"]), email }
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post("/auth/login", None, json!({"email": email, "password": password})).await
    }

    /// The first column of the first row of `sql`, run through the test's own connection, as a
    /// number (for asserting on rows).
    pub async fn count(&self, sql: &str) -> i64 {
        let row = self
            .db
            .conn
            .query_one_raw(sea_orm::Statement::from_string(self.db.backend(), sql.to_string()))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index::<i64>(0).unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.shutdown.take().map(|tx| tx.send(()));
        // Background tasks (the mail worker, event fan-out) stop too, so that nothing writes to
        // the database or Redis while they are being removed.
        self.state.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.abort();
        }
        drop(self.scratch.take());
        self.kept.clear();
    }
}

// ---------------------------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------------------------

/// Asserts the status (showing the body on mismatch) and returns the JSON body (Null if empty).
pub async fn expect(res: Response, status: StatusCode) -> Value {
    let got = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(got, status, "unexpected status; body: {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }
}

/// Asserts a problem+json response and returns its body.
pub async fn problem(res: Response, status: StatusCode) -> Value {
    assert_eq!(res.status(), status);
    let ct = res.headers().get("content-type").unwrap().to_str().unwrap().to_string();
    assert!(ct.starts_with("application/problem+json"), "content-type {ct}");
    let rid = res.headers().get("x-request-id").unwrap().to_str().unwrap().to_string();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert_eq!(body["request_id"], rid, "problem carries the request id");
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string());
    body
}

/// The fields named in a 422's `errors`.
pub fn error_fields(body: &Value) -> Vec<String> {
    body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap().to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Small readers
// ---------------------------------------------------------------------------------------------

pub fn s(v: &Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("expected a string, got {v}")).to_string()
}

/// The access token of a token response.
pub fn access(pair: &Value) -> String {
    s(&pair["access_token"])
}

/// A value quoted for an SQL string literal.
pub fn sql_str(v: &str) -> String {
    v.replace('\'', "''")
}

/// `s` percent-encoded for a query string (everything but RFC 3986's unreserved characters).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
