//! Accounts and sessions over real HTTP: registration, sign-in, refresh rotation, logout, the
//! account endpoints, password rules, lockout, and hostile access tokens.

use crate::support::{JWT_SECRET, PASSWORD, TestApp, access, error_fields, expect, problem, s, sql_str};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::{Method, Response, StatusCode};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The claims of a JWT, read without verifying (the client's view of its own token).
fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("three JWT segments");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn jwt_header(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

/// The session id carried by an access token.
fn sid_of(pair: &Value) -> String {
    s(&jwt_claims(&s(&pair["access_token"]))["sid"])
}

fn refresh_tok(pair: &Value) -> String {
    s(&pair["refresh_token"])
}

async fn me_status(app: &TestApp, token: &str) -> StatusCode {
    app.get("/me", Some(token)).await.status()
}

async fn refresh(app: &TestApp, token: &str) -> Response {
    app.post("/auth/refresh", None, json!({ "refresh_token": token })).await
}

async fn login_ok(app: &TestApp, email: &str, password: &str) -> Value {
    expect(app.login(email, password).await, StatusCode::OK).await
}

/// A problem body without its request id, for comparing two answers.
fn without_request_id(mut body: Value) -> Value {
    body.as_object_mut().unwrap().remove("request_id");
    body
}

/// The key id the server derives from its secret: hex of the first 6 bytes of
/// SHA-256("cifix-kid:" + secret).
fn kid_for(secret: &str) -> String {
    hex::encode(&Sha256::digest(format!("cifix-kid:{secret}").as_bytes())[..6])
}

/// Claims like the server issues, valid for ten minutes.
fn claims(sub: &str, sid: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": "cifix",
        "aud": "cifix-api",
        "sub": sub,
        "sid": sid,
        "role": "student",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    })
}

fn sign(claims: &Value, secret: &str, kid: Option<String>, alg: Algorithm) -> String {
    let mut header = Header::new(alg);
    header.kid = kid;
    encode(&header, claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

/// Signed exactly like the server signs: HS256, the server's secret and kid.
fn forge(claims: &Value) -> String {
    sign(claims, JWT_SECRET, Some(kid_for(JWT_SECRET)), Algorithm::HS256)
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// A registered user: (token pair, user id, session id).
async fn user(app: &TestApp, email: &str) -> (Value, String, String) {
    let pair = app.register(email).await;
    let id = s(&pair["user"]["id"]);
    let sid = sid_of(&pair);
    (pair, id, sid)
}

/// Asserts that `token` is refused on an authenticated endpoint with a 401 problem.
const INVALID_TOKEN: &str =
    r#"Bearer realm="cifix", error="invalid_token", error_description="the access token is invalid""#;
const EXPIRED_TOKEN: &str =
    r#"Bearer realm="cifix", error="invalid_token", error_description="the access token expired""#;

fn challenge(res: &reqwest::Response) -> String {
    res.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// Refused as a token to sign in again for: nothing says that refreshing would help.
async fn assert_rejected(app: &TestApp, token: &str, what: &str) {
    let res = app.get("/me", Some(token)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}: must be 401");
    assert_eq!(challenge(&res), INVALID_TOKEN, "{what}");
    let body = problem(res, StatusCode::UNAUTHORIZED).await;
    assert_eq!(body["type"], "urn:cifix:problem:unauthorized", "{what}");
    // The same token on a state-changing endpoint is refused too.
    let res = app.post("/auth/logout-all", Some(token), json!({})).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}: logout-all must be 401");
}

mod by_admin;
mod passwords;
mod registration;
mod sessions;
mod tokens;
