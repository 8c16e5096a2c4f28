//! Security refusals leave an audit row, and an attacker repeating them cannot fill the table.

use cifix::entities::audit_log;
use reqwest::{Method, StatusCode};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

use super::{signed, tool_and_pending_assessment};
use crate::support::TestApp;

const LAUNCH: &str = "/api/v1/integrations/assessments/launch";

async fn rows(app: &TestApp, action: &str) -> Vec<audit_log::Model> {
    audit_log::Entity::find().filter(audit_log::Column::Action.eq(action)).all(&app.db.conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_and_replays_are_audited_and_repeats_are_aggregated() {
    let app = TestApp::spawn().await;
    let (id, key, a) = tool_and_pending_assessment(&app).await;
    let body = json!({"launch_token": a["launch_token"]});

    // Forty forged signatures from one address: a few rows, then one saying more follow.
    for _ in 0..40 {
        let res = signed(&app, LAUNCH, &id, b"not the key, not the key, not it", &body).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let forged = rows(&app, "integration.request_refused").await;
    assert_eq!(forged.len(), 6, "five rows and one summary, not forty");
    assert!(
        forged
            .iter()
            .all(|r| r.details.as_ref().unwrap()["reason"] == "the request signature is invalid" && r.ip.is_some())
    );
    assert!(forged.iter().filter(|r| r.details.as_ref().unwrap().get("repeats").is_some()).count() == 1);

    // A replay: the same signed request twice.
    let once = signed(&app, LAUNCH, &id, &key, &body).build().unwrap();
    let again = once.try_clone().unwrap();
    assert_eq!(app.client.execute(once).await.unwrap().status(), StatusCode::OK);
    assert_eq!(app.client.execute(again).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let replays = rows(&app, "integration.request_refused").await;
    assert!(
        replays.iter().any(|r| r.details.as_ref().unwrap()["reason"].as_str().unwrap().contains("replayed")),
        "the replay is audited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_webhook_secret_is_audited() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_SES_WEBHOOK_SECRET".into(), "the-right-webhook-secret".into());
    })
    .await;
    let res = app
        .req(Method::POST, "/integrations/ses/notifications", None)
        .header("x-cifix-webhook-secret", "a-guessed-webhook-secret")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let refused = rows(&app, "email.webhook_refused").await;
    assert_eq!(refused.len(), 1);
    assert!(
        !refused[0].details.as_ref().unwrap().to_string().contains("guessed"),
        "the presented secret is not stored"
    );
}
