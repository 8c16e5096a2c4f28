//! Assessment tool integration through real HTTP, on SQLite or PostgreSQL + Redis: machine
//! clients and signatures, assessments, results deliveries, learning paths.

use crate::support::catalog::{course, lesson, module, publish};
use crate::support::{TestApp, error_fields, problem};
use crate::support::{User, expect};
use chrono::{Duration, Utc};
use hmac::{Hmac, Mac};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const RESULTS: &str = "/api/v1/integrations/assessments/results";

#[derive(Clone)]
struct Client {
    id: String,
    secret: String,
}

/// Independent of the server's code: the scheme exactly as the README documents it.
fn signature(secret: &str, ts: &str, nonce: &str, method: &str, path: &str, body: &[u8]) -> String {
    let key = Sha256::digest(secret.as_bytes());
    let body_hash = hex::encode(Sha256::digest(body));
    let msg = format!("{ts}\n{nonce}\n{method}\n{path}\n{body_hash}");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(msg.as_bytes());
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

struct Signed<'a> {
    client: &'a Client,
    method: &'a str,
    path: &'a str,
    body: Vec<u8>,
    ts: i64,
    nonce: String,
    /// Sign these bytes instead of `body` (to forge a mismatch).
    signed_body: Option<Vec<u8>>,
    bearer: Option<&'a str>,
}

impl<'a> Signed<'a> {
    fn post(client: &'a Client, path: &'a str, body: &Value) -> Self {
        Signed {
            client,
            method: "POST",
            path,
            body: serde_json::to_vec(body).unwrap(),
            ts: Utc::now().timestamp(),
            nonce: nonce(),
            signed_body: None,
            bearer: None,
        }
    }

    async fn send(&self, app: &TestApp) -> Response {
        let ts = self.ts.to_string();
        let sig = signature(
            &self.client.secret,
            &ts,
            &self.nonce,
            self.method,
            self.path,
            self.signed_body.as_ref().unwrap_or(&self.body),
        );
        let mut r = app
            .client
            .request(Method::from_bytes(self.method.as_bytes()).unwrap(), format!("{}{}", app.base, self.path))
            .header("content-type", "application/json")
            .header("x-cifix-client", &self.client.id)
            .header("x-cifix-timestamp", ts)
            .header("x-cifix-nonce", &self.nonce)
            .header("x-cifix-signature", sig);
        if let Some(t) = self.bearer {
            r = r.bearer_auth(t);
        }
        r.body(self.body.clone()).send().await.unwrap()
    }
}

async fn deliver(app: &TestApp, c: &Client, body: &Value) -> Response {
    Signed::post(c, RESULTS, body).send(app).await
}

async fn new_client(app: &TestApp, admin: &User) -> Client {
    let res = app
        .send_json(Method::POST, "/admin/integrations/clients", admin.auth(), json!({"name": "Streamlit tool"}))
        .await;
    let b = expect(res, StatusCode::CREATED).await;
    Client { id: b["client_id"].as_str().unwrap().into(), secret: b["client_secret"].as_str().unwrap().into() }
}

async fn start(app: &TestApp, student: &User) -> Value {
    expect(app.send_json(Method::POST, "/me/assessments", student.auth(), json!({})).await, StatusCode::CREATED).await
}

fn results(assessment_id: &str, external_id: &str) -> Value {
    json!({
        "assessment_id": assessment_id,
        "external_id": external_id,
        "completed_at": (Utc::now() - Duration::minutes(5)).to_rfc3339(),
        "overall_score": 52.5,
        "skills": [{"skill": "python", "score": 35}, {"skill": "ai", "score": 70}, {"skill": "brand_new-skill", "score": 10}],
        "details": {"answers": [1, 2, 3], "duration_seconds": 1234},
    })
}

struct Setup {
    admin: User,
    student: User,
    client: Client,
}

async fn setup(app: &TestApp) -> Setup {
    let admin = app.user("admin", "admin").await;
    let student = app.user("student", "student").await;
    let client = new_client(app, &admin).await;
    Setup { admin, student, client }
}

mod clients;
mod deliveries;
mod learning_paths;
