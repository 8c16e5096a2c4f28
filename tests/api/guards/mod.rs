//! The guards every endpoint inherits, over real HTTP: request ids, error shapes, body rules,
//! SQL injection, security headers, CORS, rate limits, trusted proxies, operations endpoints and
//! the append-only audit trail.

use crate::support::{PASSWORD, TestApp, error_fields, expect, problem, s, sql_str, urlencode, use_postgres};
use reqwest::{Method, Response, StatusCode, header::HeaderMap};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Strings an error body must never contain: SQL, driver names, panics, backtraces, paths.
const LEAKS: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE ",
    "sqlx",
    "sea_orm",
    "SqlxError",
    "DbErr",
    "panicked",
    "stack backtrace",
    "RUST_BACKTRACE",
    "src/",
    ".rs:",
    "no such table",
    "relation \"",
    "syntax error",
];

fn assert_clean(text: &str, what: &str) {
    for leak in LEAKS {
        assert!(!text.contains(leak), "{what}: body leaks {leak:?}: {text}");
    }
}

/// Status, headers and body text, after checking that the body leaks nothing and that every
/// error is problem+json with the request id.
async fn checked(res: Response, what: &str) -> (StatusCode, HeaderMap, String) {
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    assert!(headers.contains_key("x-request-id"), "{what}: no x-request-id");
    if status.is_client_error() || status.is_server_error() {
        let ct = headers.get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        assert!(ct.starts_with("application/problem+json"), "{what}: {status} is {ct}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["request_id"], headers["x-request-id"].to_str().unwrap(), "{what}");
        assert_eq!(body["status"], status.as_u16(), "{what}");
        assert_clean(&text, what);
    }
    (status, headers, text)
}

fn header(res: &Response, name: &str) -> Option<String> {
    res.headers().get(name).map(|v| v.to_str().unwrap().to_string())
}

/// A raw body with a chosen content type.
async fn post_raw(app: &TestApp, path: &str, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> Response {
    let mut r = app.req(Method::POST, path, None).body(body);
    if let Some(ct) = content_type {
        r = r.header("content-type", ct);
    }
    r.send().await.unwrap()
}

fn register_body(email: &str) -> Value {
    json!({"email": email, "password": PASSWORD, "display_name": "Guard Test"})
}

mod headers_and_limits;
mod injection;
mod operations;
mod requests;
