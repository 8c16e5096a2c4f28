//! Every door that completes a course has the same consequences: the student is told (stored
//! notification), the trail has one `course.completed` row, a learning path is recomputed,
//! course achievements are awarded and their email queued. The doors: the last lesson completed
//! by one update, by an offline batch, or the instructor removing the lessons the student had
//! left (one lesson, or a whole module).

use crate::support::catalog::{World, world};
use crate::support::{TestApp, User, expect};
use chrono::{DateTime, TimeZone, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

async fn complete(app: &TestApp, w: &World, lesson: &str) {
    let path = format!("/me/lessons/{lesson}/progress");
    expect(app.send_json(Method::PUT, &path, w.student.auth(), json!({"status": "completed"})).await, StatusCode::OK)
        .await;
}

/// Gives the student a learning path generated long ago, as an assessment would have.
async fn old_learning_path(app: &TestApp, student: &User) {
    let long_ago = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
    let rules = cifix::assessments::engine::LearningRules::bundled();
    let txn = app.db.begin_write().await.unwrap();
    let student = Uuid::parse_str(&student.id).unwrap();
    cifix::assessments::paths::recompute(&*txn, &rules, student, None, long_ago).await.unwrap();
    txn.commit().await.unwrap();
}

fn at(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

/// What the student and the trail show once the course is complete, whichever door did it.
async fn assert_completed_with_every_consequence(app: &TestApp, w: &World) {
    let progress = app.get_json("/me/progress", w.student.auth()).await;
    assert!(progress["items"][0]["completed_at"].is_string(), "{progress}");

    let feed = app.get_json("/me/notifications", w.student.auth()).await;
    let completed: Vec<&Value> =
        feed["items"].as_array().unwrap().iter().filter(|n| n["kind"] == "course.completed").collect();
    assert_eq!(completed.len(), 1, "{feed}");
    assert_eq!(completed[0]["data"]["course_id"], w.course_id.as_str());
    assert!(completed[0]["title"].as_str().unwrap().contains("Course ai-for-kids"));
    assert!(
        feed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "achievement.awarded" && n["data"]["code"] == "first_course")
    );

    let sql =
        format!("SELECT COUNT(*) FROM audit_log WHERE action = 'course.completed' AND target_id = '{}'", w.course_id);
    assert_eq!(app.count(&sql).await, 1);

    let awards = app.get_json("/me/achievements", w.student.auth()).await;
    assert!(awards["items"].as_array().unwrap().iter().any(|a| a["achievement"]["code"] == "first_course"), "{awards}");
    let sql = "SELECT COUNT(*) FROM email_outbox WHERE template = 'achievement_awarded' AND subject LIKE '%Graduate%'";
    assert_eq!(app.count(sql).await, 1, "the award's email is queued once");

    let path = app.get_json("/me/learning-path", w.student.auth()).await;
    assert!(at(&path["generated_at"]) > Utc.with_ymd_and_hms(2021, 1, 1, 0, 0, 0).unwrap(), "{path}");
}

#[tokio::test]
async fn completing_the_last_lesson_by_one_update() {
    let app = TestApp::spawn().await;
    let w = world(&app, 1, 2).await;
    old_learning_path(&app, &w.student).await;
    complete(&app, &w, &w.lesson_ids[0]).await;
    complete(&app, &w, &w.lesson_ids[1]).await;
    assert_completed_with_every_consequence(&app, &w).await;
}

#[tokio::test]
async fn completing_the_last_lesson_in_an_offline_batch() {
    let app = TestApp::spawn().await;
    let w = world(&app, 1, 2).await;
    old_learning_path(&app, &w.student).await;
    let events: Vec<Value> = w
        .lesson_ids
        .iter()
        .enumerate()
        .map(|(i, l)| {
            json!({"event_id": format!("e{i}"), "lesson_id": l, "status": "completed",
                   "occurred_at": Utc::now().to_rfc3339()})
        })
        .collect();
    let res = app.send_json(Method::POST, "/me/progress/batch", w.student.auth(), json!({"events": events})).await;
    assert_eq!(expect(res, StatusCode::OK).await["applied"], 2);
    assert_completed_with_every_consequence(&app, &w).await;
}

#[tokio::test]
async fn the_instructor_deleting_the_lesson_a_student_had_left() {
    let app = TestApp::spawn().await;
    let w = world(&app, 1, 2).await;
    // A classmate who has not started: the smaller course is not complete for them.
    let classmate = app.user("classmate", "student").await;
    let res = app
        .send_json(Method::POST, &format!("/courses/{}/enrollments", w.course_id), classmate.auth(), json!({}))
        .await;
    expect(res, StatusCode::CREATED).await;
    old_learning_path(&app, &w.student).await;
    complete(&app, &w, &w.lesson_ids[0]).await;

    let res = app.delete(&format!("/lessons/{}", w.lesson_ids[1]), w.instructor.auth()).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_completed_with_every_consequence(&app, &w).await;

    let theirs = app.get_json("/me/notifications", classmate.auth()).await;
    assert_eq!(theirs["items"].as_array().unwrap().len(), 0, "{theirs}");
    assert!(app.get_json("/me/progress", classmate.auth()).await["items"][0]["completed_at"].is_null());
    // The instructor acted: the trail says so, and whose course it completed.
    let admin = app.user("admin", "admin").await;
    let trail = app.get_json("/admin/audit-log?action=course.completed", admin.auth()).await;
    let rows = trail["items"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{trail}");
    assert_eq!(rows[0]["actor_id"], w.instructor.id.as_str());
    assert_eq!(rows[0]["details"]["user_id"], w.student.id.as_str());
}

#[tokio::test]
async fn the_instructor_deleting_the_module_a_student_had_left() {
    let app = TestApp::spawn().await;
    let w = world(&app, 2, 1).await;
    old_learning_path(&app, &w.student).await;
    complete(&app, &w, &w.lesson_ids[0]).await;

    let res = app.delete(&format!("/modules/{}", w.module_ids[1]), w.instructor.auth()).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_completed_with_every_consequence(&app, &w).await;
}
