//! Things that are cheap to create are capped per user: pending assessments, realtime tickets.

use chrono::Utc;
use cifix::entities::{assessment, audit_log};
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, sea_query::Expr};
use serde_json::json;
use uuid::Uuid;

use crate::support::{TestApp, expect, problem};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_holds_at_most_five_pending_assessments() {
    let app = TestApp::spawn().await;
    let kid = app.user("kid", "student").await;
    let other = app.user("other", "student").await;
    for _ in 0..5 {
        expect(app.post("/me/assessments", kid.auth(), json!({})).await, StatusCode::CREATED).await;
    }
    let body = problem(app.post("/me/assessments", kid.auth(), json!({})).await, StatusCode::CONFLICT).await;
    assert!(body["type"].as_str().unwrap().contains("too-many-pending-assessments"), "{body}");
    assert_eq!(app.count("SELECT COUNT(*) FROM assessments").await, 5);
    // Expired ones no longer count.
    assessment::Entity::update_many()
        .col_expr(assessment::Column::ExpiresAt, Expr::value(Utc::now() - chrono::Duration::minutes(1)))
        .filter(assessment::Column::UserId.eq(Uuid::parse_str(&kid.id).unwrap()))
        .exec(&app.db.conn)
        .await
        .unwrap();
    expect(app.post("/me/assessments", kid.auth(), json!({})).await, StatusCode::CREATED).await;
    // The cap is per student.
    expect(app.post("/me/assessments", other.auth(), json!({})).await, StatusCode::CREATED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_holds_at_most_twenty_unspent_tickets_and_each_issue_is_audited() {
    let app = TestApp::spawn().await;
    let kid = app.user("kid", "student").await;
    for _ in 0..20 {
        expect(app.post("/realtime/ticket", kid.auth(), json!({})).await, StatusCode::CREATED).await;
    }
    let res = app.post("/realtime/ticket", kid.auth(), json!({})).await;
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "the oldest ticket expires within its 30 s: {retry}");
    problem(res, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM realtime_tickets").await, 20);
    let audited = audit_log::Entity::find()
        .filter(audit_log::Column::Action.eq("realtime.ticket"))
        .filter(audit_log::Column::ActorId.eq(Uuid::parse_str(&kid.id).unwrap()))
        .count(&app.db.conn)
        .await
        .unwrap();
    assert_eq!(audited, 20);
}
