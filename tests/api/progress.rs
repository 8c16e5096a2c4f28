//! Enrollment, progress, rollups and the dashboard, through real HTTP, on SQLite or PostgreSQL.

use crate::support::catalog::{World, course, lesson, publish, world};
use crate::support::expect;
use crate::support::{TestApp, error_fields, problem};
use chrono::{DateTime, Utc};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

async fn put(app: &TestApp, w: &World, lesson: &str, body: Value) -> Response {
    app.send_json(Method::PUT, &format!("/me/lessons/{lesson}/progress"), w.student.auth(), body).await
}

async fn put_ok(app: &TestApp, w: &World, lesson: &str, body: Value) -> Value {
    expect(put(app, w, lesson, body).await, StatusCode::OK).await
}

async fn my_course(app: &TestApp, w: &World) -> Value {
    let p = app.get_json("/me/progress", w.student.auth()).await;
    let items = p["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    items[0].clone()
}

fn ts(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn enrolling_twice_is_the_same_enrollment() {
    let app = TestApp::spawn().await;
    let w = world(&app, 1, 1).await;
    let path = format!("/courses/{}/enrollments", w.course_id);
    let again = expect(app.send_json(Method::POST, &path, w.student.auth(), json!({})).await, StatusCode::OK).await;
    let list = app.get_json("/me/enrollments", w.student.auth()).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["id"], again["id"]);
    assert_eq!(list["items"][0]["enrolled_at"], again["enrolled_at"]);
    assert_eq!(again["course_id"], w.course_id);

    // Concurrent first enrollments of another student: one row, one 201.
    let s2 = app.user("s2", "student").await;
    let futs = (0..10).map(|_| app.send_json(Method::POST, &path, s2.auth(), json!({})));
    let statuses: Vec<StatusCode> = futures::future::join_all(futs).await.iter().map(|r| r.status()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 9);
    assert_eq!(app.count("SELECT COUNT(*) FROM enrollments").await, 2);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'enrollment.create'").await, 2);

    // Instructors do not enroll (API.md: students only).
    problem(app.send_json(Method::POST, &path, w.instructor.auth(), json!({})).await, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn progress_is_monotonic_and_idempotent() {
    let app = TestApp::spawn().await;
    let w = world(&app, 1, 2).await;
    let l = &w.lesson_ids[0];
    let r =
        put_ok(&app, &w, l, json!({"status": "in_progress", "progress": 0.5, "time_spent_seconds": 100, "score": 40}))
            .await;
    assert_eq!(r["lesson"]["status"], "in_progress");
    assert_eq!(r["lesson"]["progress"], 0.5);
    assert_eq!(
        r["course"],
        json!({"course_id": w.course_id, "completed_lessons": 0, "total_lessons": 2, "percent": 0.0, "completed_at": null})
    );

    // Lower values never win.
    let r =
        put_ok(&app, &w, l, json!({"status": "in_progress", "progress": 0.3, "time_spent_seconds": 50, "score": 30}))
            .await;
    assert_eq!(r["lesson"]["progress"], 0.5);
    assert_eq!(r["lesson"]["time_spent_seconds"], 100);
    assert_eq!(r["lesson"]["score"], 40.0);
    // A score left out keeps the best one.
    let r = put_ok(&app, &w, l, json!({"status": "in_progress"})).await;
    assert_eq!(r["lesson"]["score"], 40.0);

    let done = put_ok(&app, &w, l, json!({"status": "completed", "score": 90})).await;
    assert_eq!(done["lesson"]["status"], "completed");
    assert_eq!(done["lesson"]["progress"], 1.0);
    assert_eq!(done["lesson"]["score"], 90.0);
    assert_eq!(done["course"]["completed_lessons"], 1);
    assert_eq!(done["course"]["percent"], 50.0);
    let completed_at = done["lesson"]["completed_at"].clone();
    assert!(completed_at.is_string());

    // Completed stays completed, with its first completion time; repeats change nothing.
    for body in [json!({"status": "in_progress", "progress": 0.1}), json!({"status": "completed", "score": 90})] {
        let r = put_ok(&app, &w, l, body).await;
        assert_eq!(r["lesson"]["status"], "completed");
        assert_eq!(r["lesson"]["progress"], 1.0);
        assert_eq!(r["lesson"]["completed_at"], completed_at);
        assert_eq!(r["course"]["completed_lessons"], 1);
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM lesson_progress").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'progress.update'").await, 6);
}

#[tokio::test]
async fn time_spent_grows_by_at_most_a_day_per_update() {
    let app = TestApp::spawn().await;
    let w = world(&app, 1, 1).await;
    let l = &w.lesson_ids[0];
    let r = put_ok(&app, &w, l, json!({"status": "in_progress", "time_spent_seconds": 10_000_000})).await;
    assert_eq!(r["lesson"]["time_spent_seconds"], 86_400);
    let r = put_ok(&app, &w, l, json!({"status": "in_progress", "time_spent_seconds": 10_000_000})).await;
    assert_eq!(r["lesson"]["time_spent_seconds"], 172_800);
    let r = put_ok(&app, &w, l, json!({"status": "in_progress", "time_spent_seconds": 172_900})).await;
    assert_eq!(r["lesson"]["time_spent_seconds"], 172_900);
    let r = put_ok(&app, &w, l, json!({"status": "in_progress", "time_spent_seconds": 5})).await;
    assert_eq!(r["lesson"]["time_spent_seconds"], 172_900);
}

#[tokio::test]
async fn bad_progress_is_rejected_naming_the_field_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let w = world(&app, 1, 1).await;
    let l = &w.lesson_ids[0];
    let cases = [
        (json!({"status": "in_progress", "progress": 1.5}), "progress"),
        (json!({"status": "in_progress", "progress": -0.1}), "progress"),
        (json!({"status": "completed", "score": 100.5}), "score"),
        (json!({"status": "completed", "score": -1}), "score"),
        (json!({"status": "in_progress", "time_spent_seconds": -1}), "time_spent_seconds"),
        (json!({"status": "done"}), "status"),
        (json!({"progress": 0.5}), "status"),
        (json!({"status": "completed", "user_id": w.instructor.id}), "user_id"),
    ];
    for (body, field) in cases {
        let p = problem(put(&app, &w, l, body.clone()).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&p), vec![field], "{body}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM lesson_progress").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'progress.%'").await, 0);
}

#[tokio::test]
async fn progress_outside_enrolled_courses_is_404() {
    let app = TestApp::spawn().await;
    let w = world(&app, 1, 1).await;
    let outsider = app.user("outsider", "student").await;
    let body = json!({"status": "completed"});
    let l = &w.lesson_ids[0];
    // Not enrolled, unknown lesson, malformed id.
    for path in [
        format!("/me/lessons/{l}/progress"),
        "/me/lessons/00000000-0000-0000-0000-000000000000/progress".to_string(),
        "/me/lessons/nope/progress".to_string(),
    ] {
        problem(app.send_json(Method::PUT, &path, outsider.auth(), body.clone()).await, StatusCode::NOT_FOUND).await;
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM lesson_progress").await, 0);
    problem(
        app.req(Method::PUT, &format!("/me/lessons/{l}/progress"), None).json(&body).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn others_progress_is_visible_only_to_their_instructors_and_admins() {
    let app = TestApp::spawn().await;
    let w = world(&app, 1, 2).await;
    put_ok(&app, &w, &w.lesson_ids[0], json!({"status": "completed"})).await;
    let other_student = app.user("nosy", "student").await;
    let other_teacher = app.user("rival", "instructor").await;
    let admin = app.user("boss", "admin").await;
    let path = format!("/users/{}/progress", w.student.id);

    problem(app.get(&path, Some(&other_student.token)).await, StatusCode::NOT_FOUND).await;
    problem(app.get(&path, Some(&other_teacher.token)).await, StatusCode::NOT_FOUND).await;
    problem(
        app.get(&format!("/users/{}/progress", other_student.id), Some(&w.instructor.token)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    // A student cannot read even their own through this endpoint; `/me/progress` is theirs.
    problem(app.get(&path, Some(&w.student.token)).await, StatusCode::NOT_FOUND).await;

    for u in [&w.instructor, &admin] {
        let p = app.get_json(&path, u.auth()).await;
        assert_eq!(p["items"][0]["course_id"], w.course_id);
        assert_eq!(p["items"][0]["completed_lessons"], 1);
    }
    // The other instructor's student, once enrolled in the rival's course, is still not visible
    // through it to our instructor: only their own courses show.
    let rival_course = course(&app, &other_teacher, "rival-course").await;
    publish(&app, &other_teacher, &rival_course).await;
    expect(
        app.send_json(Method::POST, &format!("/courses/{rival_course}/enrollments"), w.student.auth(), json!({})).await,
        StatusCode::CREATED,
    )
    .await;
    let p = app.get_json(&path, w.instructor.auth()).await;
    assert_eq!(p["items"].as_array().unwrap().len(), 1);
    let p = app.get_json(&path, admin.auth()).await;
    assert_eq!(p["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn rollups_follow_lessons_added_and_removed() {
    let app = TestApp::spawn().await;
    let w = world(&app, 2, 2).await;
    let [a, b, c, d] = [0, 1, 2, 3].map(|i| w.lesson_ids[i].clone());
    put_ok(&app, &w, &a, json!({"status": "completed"})).await;
    put_ok(&app, &w, &c, json!({"status": "completed"})).await;
    let p = my_course(&app, &w).await;
    assert_eq!(
        (p["completed_lessons"].as_u64(), p["total_lessons"].as_u64(), p["percent"].as_f64()),
        (Some(2), Some(4), Some(50.0))
    );
    assert_eq!(p["next_lesson_id"], b.as_str());
    assert_eq!(p["modules"][0]["module_id"], w.module_ids[0].as_str());
    assert_eq!(p["modules"][0]["completed_lessons"], 1);
    assert_eq!(p["modules"][0]["total_lessons"], 2);
    assert_eq!(p["modules"][0]["percent"], 50.0);

    // A new lesson at the front of module 1 becomes the next one and lowers the percentage.
    let e = lesson(&app, &w.instructor, &w.module_ids[0], "new first", Some(1)).await;
    let p = my_course(&app, &w).await;
    assert_eq!(
        (p["completed_lessons"].as_u64(), p["total_lessons"].as_u64(), p["percent"].as_f64()),
        (Some(2), Some(5), Some(40.0))
    );
    assert_eq!(p["next_lesson_id"], e["id"]);
    assert_eq!(p["modules"][0]["total_lessons"], 3);

    // Removing a completed lesson removes it from both counts.
    expect(app.delete(&format!("/lessons/{a}"), w.instructor.auth()).await, StatusCode::NO_CONTENT).await;
    let p = my_course(&app, &w).await;
    assert_eq!((p["completed_lessons"].as_u64(), p["total_lessons"].as_u64()), (Some(1), Some(4)));
    assert_eq!(p["percent"], 25.0);
    assert_eq!(app.count("SELECT COUNT(*) FROM lesson_progress").await, 1);

    // Removing the whole first module leaves module 2 only: c done, d next.
    expect(app.delete(&format!("/modules/{}", w.module_ids[0]), w.instructor.auth()).await, StatusCode::NO_CONTENT)
        .await;
    let p = my_course(&app, &w).await;
    assert_eq!((p["completed_lessons"].as_u64(), p["total_lessons"].as_u64()), (Some(1), Some(2)));
    assert_eq!(p["next_lesson_id"], d.as_str());
    assert_eq!(p["modules"].as_array().unwrap().len(), 1);
    assert_eq!(p["completed_at"], Value::Null);

    // Removing the last unfinished lesson finishes the course for the student.
    expect(app.delete(&format!("/lessons/{d}"), w.instructor.auth()).await, StatusCode::NO_CONTENT).await;
    let p = my_course(&app, &w).await;
    assert_eq!(p["percent"], 100.0);
    assert_eq!(p["next_lesson_id"], Value::Null);
    assert!(p["completed_at"].is_string());
}

#[tokio::test]
async fn completing_the_last_lesson_sets_completed_at_once() {
    let app = TestApp::spawn().await;
    let w = world(&app, 2, 1).await;
    let r = put_ok(&app, &w, &w.lesson_ids[0], json!({"status": "completed"})).await;
    assert_eq!(r["course"]["completed_at"], Value::Null);
    let r = put_ok(&app, &w, &w.lesson_ids[1], json!({"status": "completed"})).await;
    assert_eq!(r["course"]["percent"], 100.0);
    let first = r["course"]["completed_at"].clone();
    assert!(first.is_string());
    let r = put_ok(&app, &w, &w.lesson_ids[1], json!({"status": "completed"})).await;
    assert_eq!(r["course"]["completed_at"], first);

    // A lesson added later lowers the percentage; the course was still finished back then.
    let extra = lesson(&app, &w.instructor, &w.module_ids[1], "bonus", None).await;
    let p = my_course(&app, &w).await;
    assert_eq!(p["percent"], 66.7);
    assert_eq!(p["completed_at"], first);
    let r = put_ok(&app, &w, extra["id"].as_str().unwrap(), json!({"status": "completed"})).await;
    assert_eq!(r["course"]["completed_at"], first);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'course.completed'").await, 1);
    let e = app.get_json("/me/enrollments", w.student.auth()).await;
    assert_eq!(e["items"][0]["completed_at"], first);
}

#[tokio::test]
async fn parallel_updates_end_with_exact_counts() {
    let app = TestApp::spawn().await;
    let w = world(&app, 2, 2).await;
    // 20 requests at once: every lesson completed five times over, from "two devices".
    let futs = (0..20).map(|i| {
        let l = w.lesson_ids[i % 4].clone();
        let w = &w;
        let app = &app;
        async move {
            put(app, w, &l, json!({"status": "completed", "time_spent_seconds": 60 + i, "score": i})).await.status()
        }
    });
    for s in futures::future::join_all(futs).await {
        assert_eq!(s, StatusCode::OK);
    }
    let p = my_course(&app, &w).await;
    assert_eq!(
        (p["completed_lessons"].as_u64(), p["total_lessons"].as_u64(), p["percent"].as_f64()),
        (Some(4), Some(4), Some(100.0))
    );
    assert!(p["completed_at"].is_string());
    assert_eq!(app.count("SELECT COUNT(*) FROM lesson_progress").await, 4);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'course.completed'").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'progress.update'").await, 20);
    // Best score and longest time survive, whatever the order they landed in.
    let r = put_ok(&app, &w, &w.lesson_ids[3], json!({"status": "in_progress"})).await;
    assert_eq!(r["lesson"]["score"], 19.0);
    assert_eq!(r["lesson"]["time_spent_seconds"], 79);

    // 20 parallel partial updates of one fresh lesson: the largest progress wins.
    let l = lesson(&app, &w.instructor, &w.module_ids[0], "fresh", None).await["id"].as_str().unwrap().to_string();
    let futs = (1..=20).map(|i| {
        let (app, w, l) = (&app, &w, &l);
        async move { put(app, w, l, json!({"status": "in_progress", "progress": f64::from(i) / 20.0})).await.status() }
    });
    for s in futures::future::join_all(futs).await {
        assert_eq!(s, StatusCode::OK);
    }
    let r = put_ok(&app, &w, &l, json!({"status": "in_progress"})).await;
    assert_eq!(r["lesson"]["progress"], 1.0);
    assert_eq!(r["lesson"]["status"], "in_progress");
    assert_eq!(r["course"]["completed_lessons"], 4);
    assert_eq!(r["course"]["total_lessons"], 5);
}

fn ev(id: &str, lesson: &str, status: &str, at: &str) -> Value {
    json!({"event_id": id, "lesson_id": lesson, "status": status, "occurred_at": at})
}

async fn batch(app: &TestApp, w: &World, events: Value) -> Response {
    app.send_json(Method::POST, "/me/progress/batch", w.student.auth(), json!({ "events": events })).await
}

#[tokio::test]
async fn batches_are_deduplicated_and_applied_in_time_order() {
    let app = TestApp::spawn().await;
    let w = world(&app, 1, 2).await;
    let (a, b) = (&w.lesson_ids[0], &w.lesson_ids[1]);
    // Out of order on the wire: the earlier completion must win for completed_at.
    let events = json!([
        ev("e3", a, "completed", "2025-03-01T12:00:00Z"),
        ev("e1", a, "in_progress", "2025-03-01T10:00:00Z"),
        ev("e2", a, "completed", "2025-03-01T11:00:00Z"),
        ev("e2", a, "completed", "2025-03-01T11:00:00Z"),
    ]);
    let r = expect(batch(&app, &w, events).await, StatusCode::OK).await;
    assert_eq!((r["received"].as_u64(), r["applied"].as_u64(), r["duplicates"].as_u64()), (Some(4), Some(3), Some(1)));
    assert_eq!(r["courses"][0]["completed_lessons"], 1);
    let l = put_ok(&app, &w, a, json!({"status": "in_progress"})).await;
    assert_eq!(ts(&l["lesson"]["completed_at"]), "2025-03-01T11:00:00Z".parse::<DateTime<Utc>>().unwrap());

    // A resend of the same events plus a new one: only the new one applies.
    let events = json!([
        ev("e1", a, "in_progress", "2025-03-01T10:00:00Z"),
        ev("e2", a, "completed", "2025-03-01T11:00:00Z"),
        {"event_id": "e4", "lesson_id": b, "status": "completed", "progress": 1.0, "time_spent_seconds": 300, "occurred_at": "2025-03-02T09:00:00Z"},
        ev("e5", "00000000-0000-0000-0000-000000000000", "completed", "2025-03-02T09:00:00Z"),
    ]);
    let r = expect(batch(&app, &w, events).await, StatusCode::OK).await;
    assert_eq!((r["applied"].as_u64(), r["duplicates"].as_u64()), (Some(1), Some(2)));
    assert_eq!(r["rejected"], json!([{"event_id": "e5", "reason": "not_found"}]));
    assert_eq!(r["courses"][0]["percent"], 100.0);
    // The course was finished when its last lesson was, offline.
    assert_eq!(ts(&r["courses"][0]["completed_at"]), "2025-03-02T09:00:00Z".parse::<DateTime<Utc>>().unwrap());
    assert_eq!(app.count("SELECT COUNT(*) FROM progress_events").await, 4);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'progress.batch'").await, 2);
}

#[tokio::test]
async fn hostile_batches_are_refused_whole() {
    let app = TestApp::spawn().await;
    let w = world(&app, 1, 1).await;
    let a = &w.lesson_ids[0];
    let at = "2025-03-01T10:00:00Z";

    let many: Vec<Value> = (0..501).map(|i| ev(&format!("e{i}"), a, "completed", at)).collect();
    let p = problem(batch(&app, &w, json!(many)).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&p), vec!["events"]);

    // 10,000 events do not even fit the body limit.
    let huge: Vec<Value> = (0..10_000).map(|i| ev(&format!("event-{i}"), a, "completed", at)).collect();
    let res = batch(&app, &w, json!(huge)).await;
    assert!(
        [StatusCode::PAYLOAD_TOO_LARGE, StatusCode::UNPROCESSABLE_ENTITY].contains(&res.status()),
        "{}",
        res.status()
    );

    // One bad event spoils the batch; its place is named.
    let mut events: Vec<Value> = (0..5).map(|i| ev(&format!("ok{i}"), a, "in_progress", at)).collect();
    events[3]["progress"] = json!(2.0);
    events[4]["score"] = json!(101);
    let p = problem(batch(&app, &w, json!(events)).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&p), vec!["events[3].progress", "events[4].score"]);
    let p = problem(batch(&app, &w, json!([ev("", a, "completed", at)])).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&p), vec!["events[0].event_id"]);
    let p = problem(
        batch(&app, &w, json!([ev("x", "not-a-uuid", "completed", at)])).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&p), vec!["events[0].lesson_id"]);

    // Another student's lesson ids apply to nobody: rejected, nothing stored.
    let outsider = app.user("outsider", "student").await;
    let r = expect(
        app.send_json(
            Method::POST,
            "/me/progress/batch",
            outsider.auth(),
            json!({"events": [ev("x", a, "completed", at)]}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(r["applied"], 0);
    assert_eq!(r["rejected"][0]["event_id"], "x");

    assert_eq!(app.count("SELECT COUNT(*) FROM progress_events").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM lesson_progress").await, 0);
}

#[tokio::test]
async fn dashboard_shows_progress_and_streak() {
    let app = TestApp::spawn().await;
    let w = world(&app, 1, 2).await;
    let d = app.get_json("/me/dashboard", w.student.auth()).await;
    assert_eq!(d["user"]["id"], w.student.id);
    assert_eq!(d["streak_days"], 0);
    // The same object as /me/learning-path in the same state: no path yet.
    assert_eq!(d["learning_path"], app.get_json("/me/learning-path", w.student.auth()).await);
    assert_eq!(d["learning_path"], json!({"generated_at": null, "based_on_assessment_id": null, "steps": []}));
    assert_eq!(d["recent_achievements"], json!([]));
    assert_eq!(d["unread_notifications"], 0);
    assert_eq!(d["enrollments_progress"][0]["total_lessons"], 2);

    // Learning yesterday and today (offline yesterday, live today) makes a two-day streak.
    let yesterday = (Utc::now() - chrono::Duration::hours(24)).to_rfc3339();
    expect(batch(&app, &w, json!([ev("y", &w.lesson_ids[0], "in_progress", &yesterday)])).await, StatusCode::OK).await;
    put_ok(&app, &w, &w.lesson_ids[0], json!({"status": "completed"})).await;
    let d = app.get_json("/me/dashboard", w.student.auth()).await;
    assert_eq!(d["streak_days"], 2);
    assert_eq!(d["enrollments_progress"][0]["completed_lessons"], 1);
    assert_eq!(d["enrollments_progress"][0]["next_lesson_id"], w.lesson_ids[1].as_str());
    let d = app.get_json("/me/dashboard?tz_offset_minutes=-300", w.student.auth()).await;
    assert!(d["streak_days"].as_u64().unwrap() >= 1);
    problem(
        app.get("/me/dashboard?tz_offset_minutes=900", Some(&w.student.token)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    problem(app.get("/me/dashboard?tz=UTC", Some(&w.student.token)).await, StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test]
async fn deleting_lessons_while_students_complete_them_stays_consistent() {
    let app = TestApp::spawn().await;
    let w = world(&app, 1, 6).await;
    let puts = w.lesson_ids.iter().map(|l| {
        let (app, w) = (&app, &w);
        async move { put(app, w, l, json!({"status": "completed"})).await.status() }
    });
    let deletes = w.lesson_ids[..3].iter().map(|l| {
        let (app, w) = (&app, &w);
        async move { app.delete(&format!("/lessons/{l}"), w.instructor.auth()).await.status() }
    });
    let (puts, deletes) =
        futures::future::join(futures::future::join_all(puts), futures::future::join_all(deletes)).await;
    for s in &puts {
        assert!([StatusCode::OK, StatusCode::NOT_FOUND].contains(s), "{s}");
    }
    for s in &deletes {
        assert_eq!(*s, StatusCode::NO_CONTENT);
    }
    let p = my_course(&app, &w).await;
    assert_eq!((p["completed_lessons"].as_u64(), p["total_lessons"].as_u64()), (Some(3), Some(3)));
    assert!(p["completed_at"].is_string());
    assert_eq!(app.count("SELECT COUNT(*) FROM lesson_progress").await, 3);
    // Completed by the last PUT or by the last delete, whichever came last: either door
    // records the completion, exactly once.
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'course.completed'").await, 1);
}
