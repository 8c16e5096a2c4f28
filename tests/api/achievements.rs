//! Achievements: the seeded catalog, rules as data, awards exactly once under concurrency, on
//! SQLite or PostgreSQL + Redis (`CIFIX_TEST_BACKEND=postgres`, where a second instance joins).

use crate::support::catalog::{World, course, lesson, module, publish, world};
use crate::support::{TestApp, problem};
use crate::support::{User, expect};
use reqwest::{Method, StatusCode};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use uuid::Uuid;

async fn codes(app: &TestApp, u: &User) -> Vec<String> {
    let mine = app.get_json("/me/achievements?limit=100", u.auth()).await;
    let mut v: Vec<String> = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["achievement"]["code"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

async fn complete(app: &TestApp, w: &World, lesson: &str) -> StatusCode {
    let path = format!("/me/lessons/{lesson}/progress");
    app.send_json(Method::PUT, &path, w.student.auth(), json!({"status": "completed"})).await.status()
}

#[tokio::test]
async fn the_catalog_is_seeded_and_awards_follow_progress() {
    let app = TestApp::spawn().await;
    let w = world(&app, 2, 2).await;
    let cat = app.get_json("/achievements", w.student.auth()).await;
    let all: Vec<&str> = cat["items"].as_array().unwrap().iter().map(|a| a["code"].as_str().unwrap()).collect();
    for code in [
        "first_lesson",
        "first_module",
        "first_course",
        "streak_3",
        "streak_7",
        "streak_30",
        "assessment_score_90",
        "first_project_approved",
    ] {
        assert!(all.contains(&code), "{code} in {all:?}");
    }
    let score = cat["items"].as_array().unwrap().iter().find(|a| a["code"] == "assessment_score_90").unwrap();
    assert_eq!(score["threshold"], json!({"min_score": 90}));
    for f in ["id", "code", "title", "description", "icon"] {
        assert!(score.get(f).is_some());
    }
    problem(app.get("/achievements", None).await, StatusCode::UNAUTHORIZED).await;

    assert_eq!(complete(&app, &w, &w.lesson_ids[0]).await, StatusCode::OK);
    assert_eq!(codes(&app, &w.student).await, ["first_lesson"]);
    assert_eq!(complete(&app, &w, &w.lesson_ids[1]).await, StatusCode::OK);
    assert_eq!(codes(&app, &w.student).await, ["first_lesson", "first_module"]);
    // Repeating a completion awards nothing new.
    assert_eq!(complete(&app, &w, &w.lesson_ids[1]).await, StatusCode::OK);
    for l in &w.lesson_ids[2..] {
        assert_eq!(complete(&app, &w, l).await, StatusCode::OK);
    }
    assert_eq!(codes(&app, &w.student).await, ["first_course", "first_lesson", "first_module"]);
    // Each award queued its email in the same transaction, once.
    let sql = format!(
        "SELECT COUNT(*) FROM email_outbox WHERE template = 'achievement_awarded' AND to_address = '{}'",
        w.student.email
    );
    assert_eq!(app.count(&sql).await, 3);
    let mine = app.get_json("/me/achievements", w.student.auth()).await;
    assert!(mine["items"][0]["awarded_at"].is_string());
    assert_eq!(
        app.count("SELECT COUNT(*) FROM notifications WHERE kind = 'achievement.awarded'").await,
        3,
        "one notification per award"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'achievement.award'").await, 3);
    let dash = app.get_json("/me/dashboard", w.student.auth()).await;
    assert_eq!(dash["recent_achievements"].as_array().unwrap().len(), 3);
    // The instructor earned nothing from the student's work.
    assert!(codes(&app, &w.instructor).await.is_empty());
}

#[tokio::test]
async fn admins_add_rules_without_a_rebuild() {
    let app = TestApp::spawn().await;
    let w = world(&app, 1, 3).await;
    let admin = app.user("admin", "admin").await;
    let rule = json!({"code": "three_lessons", "title": "Three lessons", "description": "Complete three lessons.",
        "icon": "3", "kind": "lessons_completed", "threshold": {"count": 3}});
    // Only admins (others get 404), valid input only.
    problem(
        app.send_json(Method::POST, "/admin/achievements", w.instructor.auth(), rule.clone()).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let mut bad = rule.clone();
    bad["kind"] = json!("logins");
    let body = problem(
        app.send_json(Method::POST, "/admin/achievements", admin.auth(), bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(crate::support::error_fields(&body), ["kind"]);
    let mut bad = rule.clone();
    bad["threshold"] = json!({"days": 3});
    let body = problem(
        app.send_json(Method::POST, "/admin/achievements", admin.auth(), bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(crate::support::error_fields(&body), ["threshold"]);
    let mut bad = rule.clone();
    bad["code"] = json!("Bad Code");
    problem(
        app.send_json(Method::POST, "/admin/achievements", admin.auth(), bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    let created = expect(
        app.send_json(Method::POST, "/admin/achievements", admin.auth(), rule.clone()).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(created["code"], "three_lessons");
    problem(app.send_json(Method::POST, "/admin/achievements", admin.auth(), rule).await, StatusCode::CONFLICT).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'achievement.create'").await, 1);

    for l in &w.lesson_ids[..2] {
        complete(&app, &w, l).await;
    }
    assert!(!codes(&app, &w.student).await.contains(&"three_lessons".to_string()));
    complete(&app, &w, &w.lesson_ids[2]).await;
    assert!(codes(&app, &w.student).await.contains(&"three_lessons".to_string()));
}

#[tokio::test]
async fn streaks_and_assessment_scores() {
    let app = TestApp::spawn().await;
    let w = world(&app, 1, 2).await;
    // Two earlier days of activity (yesterday, the day before), then learning today: 3 days.
    let hour = chrono::Utc::now().timestamp().div_euclid(3600);
    for days_ago in [1, 2] {
        app.db
            .conn
            .execute_unprepared(&format!(
                "INSERT INTO activity_hours (user_id, hour) SELECT id, {} FROM users WHERE email = '{}'",
                hour - 24 * days_ago,
                w.student.email
            ))
            .await
            .unwrap();
    }
    app.send_json(
        Method::PUT,
        &format!("/me/lessons/{}/progress", w.lesson_ids[0]),
        w.student.auth(),
        json!({"status": "in_progress", "progress": 0.3}),
    )
    .await;
    assert_eq!(codes(&app, &w.student).await, ["streak_3"]);

    // The assessments code calls this inside its transaction; the threshold is the rule's data.
    let student = Uuid::parse_str(&w.student.id).unwrap();
    let txn = app.db.begin_write().await.unwrap();
    let outbox = cifix::achievements::on_assessment_score(&*txn, student, 89.5).await.unwrap();
    assert!(outbox.is_empty());
    let outbox = cifix::achievements::on_assessment_score(&*txn, student, 90.0).await.unwrap();
    assert!(!outbox.is_empty());
    txn.commit().await.unwrap();
    let txn = app.db.begin_write().await.unwrap();
    assert!(cifix::achievements::on_assessment_score(&*txn, student, 100.0).await.unwrap().is_empty());
    assert!(!cifix::achievements::on_project_approved(&*txn, student, 1).await.unwrap().is_empty());
    txn.commit().await.unwrap();
    assert_eq!(codes(&app, &w.student).await, ["assessment_score_90", "first_project_approved", "streak_3"]);
}

/// Courses each with one lesson, all taken by one student: completions in different courses
/// do not share an enrollment lock, so only the unique index stands between them and a
/// duplicate award.
async fn many_courses(app: &TestApp, n: usize) -> World {
    let mut w = world(app, 1, 1).await;
    for i in 0..n - 1 {
        let c = course(app, &w.instructor, &format!("extra-{i}")).await;
        let m = module(app, &w.instructor, &c, "M", None).await["id"].as_str().unwrap().to_string();
        let l = lesson(app, &w.instructor, &m, "L", None).await["id"].as_str().unwrap().to_string();
        publish(app, &w.instructor, &c).await;
        expect(
            app.send_json(Method::POST, &format!("/courses/{c}/enrollments"), w.student.auth(), json!({})).await,
            StatusCode::CREATED,
        )
        .await;
        w.lesson_ids.push(l);
    }
    w
}

async fn assert_awarded_once(app: &TestApp, w: &World) {
    let got = codes(app, &w.student).await;
    assert_eq!(got, ["first_course", "first_lesson", "first_module"]);
    let dupes = app
        .count(&format!(
            "SELECT COUNT(*) FROM notifications n JOIN users u ON u.id = n.user_id \
             WHERE u.email = '{}' AND n.kind = 'achievement.awarded'",
            w.student.email
        ))
        .await;
    assert_eq!(dupes, 3, "one notification per award");
    let rows = app.count("SELECT COUNT(*) FROM user_achievements").await;
    assert_eq!(rows, 3);
}

#[tokio::test]
async fn awarded_once_under_parallel_completions() {
    let app = TestApp::spawn().await;
    let w = many_courses(&app, 8).await;
    let futs = w.lesson_ids.iter().map(|l| complete(&app, &w, l));
    let statuses = futures::future::join_all(futs).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    assert_awarded_once(&app, &w).await;
    let notes = app.get_json("/me/notifications?limit=100", w.student.auth()).await;
    let completed = notes["items"].as_array().unwrap().iter().filter(|n| n["kind"] == "course.completed").count();
    assert_eq!(completed, 8);
}

#[tokio::test]
async fn awarded_once_under_parallel_completions_on_two_instances() {
    let a = TestApp::spawn_on_postgres().await;
    let b = a.spawn_peer().await;
    let w = many_courses(&a, 10).await;
    let futs = w.lesson_ids.iter().enumerate().map(|(i, l)| {
        let app = if i % 2 == 0 { &a } else { &b };
        complete(app, &w, l)
    });
    let statuses = futures::future::join_all(futs).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    assert_awarded_once(&a, &w).await;
    let _: Value = b.get_json("/me/achievements", w.student.auth()).await;
}
