//! Test harness: a real `cifix` router on a random port, on a fresh database per test.
//!
//! Backend: SQLite with in-process parts by default; PostgreSQL + Redis when
//! `CIFIX_TEST_BACKEND=postgres` (each test gets its own database and Redis key prefix, so tests
//! run in parallel). `CIFIX_TEST_PG_URL` and `CIFIX_TEST_REDIS_URL` point at the servers.
#![allow(dead_code)]

use std::{collections::HashMap, time::Duration};

use cifix::{app, config::Config, infra::db::Db, state::AppState};
use reqwest::{Method, Response, StatusCode};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use tempfile::TempDir;
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery staple";
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

pub fn use_postgres() -> bool {
    std::env::var("CIFIX_TEST_BACKEND").is_ok_and(|v| v == "postgres")
}

pub fn pg_base() -> String {
    std::env::var("CIFIX_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn redis_url() -> String {
    std::env::var("CIFIX_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A fresh, empty database URL for one test.
pub async fn fresh_database_url(dir: &TempDir) -> String {
    if use_postgres() {
        let name = format!("cifix_t_{}", Uuid::new_v4().simple());
        let admin = Database::connect(format!("{}/postgres", pg_base())).await.expect("PostgreSQL reachable");
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
        admin.close().await.ok();
        format!("{}/{name}", pg_base())
    } else {
        format!("sqlite://{}?mode=rwc", dir.path().join("cifix.db").display())
    }
}

/// The environment a test server starts with: fast hashing and budgets no normal test reaches.
pub async fn base_env(dir: &TempDir) -> HashMap<String, String> {
    let mut env = HashMap::new();
    env.insert("CIFIX_DATA_DIR".into(), dir.path().display().to_string());
    env.insert("DATABASE_URL".into(), fresh_database_url(dir).await);
    env.insert("CIFIX_JWT_SECRET".into(), JWT_SECRET.into());
    env.insert("CIFIX_BCRYPT_COST".into(), "4".into());
    env.insert("CIFIX_RATE_LIMIT_PER_MINUTE".into(), "100000".into());
    env.insert("CIFIX_AUTH_RATE_LIMIT_PER_MINUTE".into(), "100000".into());
    env.insert("CIFIX_LOGIN_ACCOUNT_RATE_LIMIT_PER_MINUTE".into(), "100000".into());
    if use_postgres() {
        env.insert("REDIS_URL".into(), redis_url());
        env.insert("CIFIX_REDIS_PREFIX".into(), format!("cifix-test:{}:", Uuid::new_v4().simple()));
    }
    env
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
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(customize: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut env = base_env(&dir).await;
        customize(&mut env);
        Self::spawn_env(dir, env).await
    }

    /// A second instance on the same database (and Redis prefix, when Redis is used), as a
    /// load balancer would run it beside this one.
    pub async fn spawn_sibling(&self) -> TestApp {
        self.spawn_peer().await
    }

    /// A second instance on the same database and Redis prefix (a second `cifix serve` behind
    /// the same load balancer). Only meaningful on PostgreSQL + Redis.
    pub async fn spawn_peer(&self) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut env = self.env.clone();
        env.insert("CIFIX_DATA_DIR".into(), dir.path().display().to_string());
        Self::spawn_env(dir, env).await
    }

    async fn spawn_env(dir: TempDir, env: HashMap<String, String>) -> TestApp {
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
        let server = tokio::spawn(app::serve(state.clone(), listener, async move {
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
        }
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

    /// Registers a fresh student and returns the token response.
    pub async fn register(&self, email: &str) -> Value {
        let res = self
            .post("/auth/register", None, json!({"email": email, "password": PASSWORD, "display_name": "Test User"}))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "register {email}");
        res.json().await.unwrap()
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post("/auth/login", None, json!({"email": email, "password": password})).await
    }

    /// Runs SQL through the test's own connection and returns the first column of each row
    /// as text (for asserting on rows).
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
