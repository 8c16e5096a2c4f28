//! Machine clients' signing keys are sealed at rest under a server key: what the table holds
//! cannot sign, while the wire scheme the tool uses is unchanged. Old rows are sealed at start,
//! and a rotated server key seals them again.

use cifix::entities::integration_client;
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::signed;
use crate::support::{TestApp, User, expect, s};

const KEY_1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const KEY_2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const LAUNCH: &str = "/api/v1/integrations/assessments/launch";

/// A launch call signed as the tool signs it: the key is SHA-256 of the secret.
async fn launch_with_secret(app: &TestApp, client_id: &str, secret: &str, student: &User) -> StatusCode {
    let a = expect(app.post("/me/assessments", student.auth(), json!({})).await, StatusCode::CREATED).await;
    let body = json!({"launch_token": a["launch_token"]});
    signed(app, LAUNCH, client_id, &Sha256::digest(secret.as_bytes()), &body).send().await.unwrap().status()
}

async fn new_client(app: &TestApp, admin: &User, name: &str) -> (String, String) {
    let c =
        expect(app.post("/admin/integrations/clients", admin.auth(), json!({"name": name})).await, StatusCode::CREATED)
            .await;
    (s(&c["client_id"]), s(&c["client_secret"]))
}

async fn stored(app: &TestApp, id: &str) -> String {
    integration_client::Entity::find_by_id(Uuid::parse_str(id).unwrap())
        .one(&app.db.conn)
        .await
        .unwrap()
        .unwrap()
        .key_hash
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_table_holds_cannot_sign_and_the_tool_still_can() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_SECRETS_KEY".into(), KEY_1.into());
    })
    .await;
    let admin = app.user("admin", "admin").await;
    let student = app.user("kid", "student").await;
    let (id, secret) = new_client(&app, &admin, "Assessment tool").await;

    let at_rest = stored(&app, &id).await;
    let signing_key = hex::encode(Sha256::digest(secret.as_bytes()));
    assert!(at_rest.starts_with("sealed:v1:"), "{at_rest}");
    assert!(!at_rest.contains(&signing_key) && !at_rest.contains(&secret));

    // Someone who read the table tries the stored value as the key, as it was before.
    let a = expect(app.post("/me/assessments", student.auth(), json!({})).await, StatusCode::CREATED).await;
    let body = json!({"launch_token": a["launch_token"]});
    // (Before sealing, the hex-decoded value was the key itself.)
    let candidates = [
        hex::decode(&at_rest).unwrap_or_default(),
        at_rest.as_bytes().to_vec(),
        Sha256::digest(at_rest.as_bytes()).to_vec(),
    ];
    for key in candidates {
        let res = signed(&app, LAUNCH, &id, &key, &body).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // The tool, with its secret and the unchanged scheme.
    assert_eq!(launch_with_secret(&app, &id, &secret, &student).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_stored_before_sealing_and_under_a_rotated_server_key_are_sealed_again_at_start() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_SECRETS_KEY".into(), KEY_1.into());
    })
    .await;
    let admin = app.user("admin", "admin").await;
    let student = app.user("kid", "student").await;
    let (sealed_id, sealed_secret) = new_client(&app, &admin, "Sealed under key 1").await;
    let (old_id, old_secret) = new_client(&app, &admin, "From before sealing").await;
    // As an older release wrote it: the bare signing key.
    integration_client::Entity::update_many()
        .col_expr(integration_client::Column::KeyHash, Expr::value(hex::encode(Sha256::digest(old_secret.as_bytes()))))
        .filter(integration_client::Column::Id.eq(Uuid::parse_str(&old_id).unwrap()))
        .exec(&app.db.conn)
        .await
        .unwrap();
    assert_eq!(launch_with_secret(&app, &old_id, &old_secret, &student).await, StatusCode::OK, "old rows still work");
    let under_key_1 = stored(&app, &sealed_id).await;

    // The next start, with the server key rotated: both rows are sealed under the new key.
    let rotated = app
        .spawn_peer_with(|env| {
            env.insert("CIFIX_SECRETS_KEY".into(), KEY_2.into());
            env.insert("CIFIX_SECRETS_PREVIOUS_KEYS".into(), KEY_1.into());
        })
        .await;
    let (a, b) = (stored(&app, &sealed_id).await, stored(&app, &old_id).await);
    assert!(a.starts_with("sealed:v1:") && b.starts_with("sealed:v1:"), "{a} {b}");
    assert_ne!(a, under_key_1);
    assert_eq!(a.split(':').nth(2), b.split(':').nth(2), "one key id for both");
    assert_ne!(a.split(':').nth(2), under_key_1.split(':').nth(2), "the new key's id");
    drop(rotated);

    // Key 1 is gone for good now; everything opens with key 2 alone.
    let only_new = app
        .spawn_peer_with(|env| {
            env.insert("CIFIX_SECRETS_KEY".into(), KEY_2.into());
        })
        .await;
    assert_eq!(launch_with_secret(&only_new, &sealed_id, &sealed_secret, &student).await, StatusCode::OK);
    assert_eq!(launch_with_secret(&only_new, &old_id, &old_secret, &student).await, StatusCode::OK);
}
