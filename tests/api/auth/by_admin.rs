//! What an admin does to someone else's account: end every session, send a new verification
//! link. Only admins (others 404); each is audited with the admin as the actor.

use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_ends_every_session_of_a_user_and_nobody_else_can() {
    let app = TestApp::spawn().await;
    let admin = app.user("root", "admin").await;
    let teacher = app.user("teacher", "instructor").await;
    let kid = app.user("kid", "student").await;
    let second = access(&expect(app.login(&kid.email, PASSWORD).await, StatusCode::OK).await);
    let path = format!("/admin/users/{}/logout-all", kid.id);

    for outsider in [&teacher, &kid] {
        problem(app.post(&path, Some(&outsider.token), json!({})).await, StatusCode::NOT_FOUND).await;
    }
    expect(app.get("/me", Some(&second)).await, StatusCode::OK).await;

    expect(app.post(&path, Some(&admin.token), json!({})).await, StatusCode::NO_CONTENT).await;
    for token in [&kid.token, &second] {
        problem(app.get("/me", Some(token)).await, StatusCode::UNAUTHORIZED).await;
    }
    expect(app.get("/me", Some(&admin.token)).await, StatusCode::OK).await;
    let audit = app.get_json("/admin/audit-log?action=admin.sessions_ended", Some(&admin.token)).await;
    assert_eq!(audit["items"][0]["actor_id"], admin.id.as_str());
    assert_eq!(audit["items"][0]["target_id"], kid.id.as_str());
    assert_eq!(audit["items"][0]["details"]["sessions"], 2);

    let own = format!("/admin/users/{}/logout-all", admin.id);
    let refused = problem(app.post(&own, Some(&admin.token), json!({})).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(refused["errors"][0]["field"], "id");
    expect(app.get("/me", Some(&admin.token)).await, StatusCode::OK).await;

    let unknown = format!("/admin/users/{}/logout-all", uuid::Uuid::new_v4());
    problem(app.post(&unknown, Some(&admin.token), json!({})).await, StatusCode::NOT_FOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_resends_a_verification_link_only_to_an_unverified_address() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_EMAIL_WORKER".into(), "false".into());
    })
    .await;
    let admin = app.user("root", "admin").await;
    let kid = app.user("kid", "student").await;
    let links =
        format!("SELECT COUNT(*) FROM email_outbox WHERE template = 'verify_email' AND to_address = '{}'", kid.email);
    let before = app.count(&links).await;
    let path = format!("/admin/users/{}/verification-email", kid.id);

    problem(app.post(&path, Some(&kid.token), json!({})).await, StatusCode::NOT_FOUND).await;
    expect(app.post(&path, Some(&admin.token), json!({})).await, StatusCode::ACCEPTED).await;
    assert_eq!(app.count(&links).await, before + 1);

    app.db
        .conn
        .execute_unprepared(&format!("UPDATE users SET email_verified = true WHERE email = '{}'", kid.email))
        .await
        .unwrap();
    expect(app.post(&path, Some(&admin.token), json!({})).await, StatusCode::ACCEPTED).await;
    assert_eq!(app.count(&links).await, before + 1, "already verified: nothing sent");
    let audit = app.get_json("/admin/audit-log?action=auth.verification_resent", Some(&admin.token)).await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1);
    assert_eq!(audit["items"][0]["actor_id"], admin.id.as_str());
}
