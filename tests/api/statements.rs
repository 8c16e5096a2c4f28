//! The SQL budget of the hot paths, read from `Server-Timing`: the home screen and a lesson
//! update run at most five statements, the session check included, however much the student
//! has done; `GET /me` runs the session check alone.

use reqwest::{Method, Response, StatusCode};
use serde_json::json;

use crate::support::{TestApp, catalog::world, expect};

fn statements(res: &Response) -> u32 {
    let timing = res.headers().get("server-timing").expect("Server-Timing is on").to_str().unwrap();
    let desc = timing.split("db;desc=\"").nth(1).and_then(|d| d.split(' ').next()).expect(timing);
    desc.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_a_lesson_update_run_at_most_five_statements() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_SERVER_TIMING".into(), "true".into());
    })
    .await;
    let w = world(&app, 3, 4).await;
    let put = |lesson: &str, body: serde_json::Value| {
        let path = format!("/me/lessons/{lesson}/progress");
        let (app, token) = (&app, w.student.auth());
        async move { app.send_json(Method::PUT, &path, token, body).await }
    };
    // A history: lessons completed (so awards and notifications exist), one lesson started.
    for lesson in &w.lesson_ids[..5] {
        expect(put(lesson, json!({"status": "completed"})).await, StatusCode::OK).await;
    }
    let watching = &w.lesson_ids[5];
    expect(put(watching, json!({"status": "in_progress", "progress": 0.2})).await, StatusCode::OK).await;

    // The update a student watching a video sends every few seconds.
    let res = put(watching, json!({"status": "in_progress", "progress": 0.4, "time_spent_seconds": 30})).await;
    let n = statements(&res);
    let body = expect(res, StatusCode::OK).await;
    assert!(n <= 5, "a lesson update ran {n} statements");
    assert_eq!(body["lesson"]["progress"], 0.4);
    assert_eq!(
        (body["course"]["completed_lessons"].as_u64(), body["course"]["total_lessons"].as_u64()),
        (Some(5), Some(12))
    );

    let res = app.get("/me/dashboard", w.student.auth()).await;
    let n = statements(&res);
    let dashboard = expect(res, StatusCode::OK).await;
    assert!(n <= 5, "the dashboard ran {n} statements");
    assert_eq!(dashboard["user"]["email"], w.student.email);
    let course = &dashboard["enrollments_progress"][0];
    assert_eq!((course["completed_lessons"].as_u64(), course["total_lessons"].as_u64()), (Some(5), Some(12)));
    assert_eq!(course["next_lesson_id"], watching.as_str());
    assert_eq!(course["modules"].as_array().unwrap().len(), 3);
    assert!(!dashboard["recent_achievements"].as_array().unwrap().is_empty(), "{dashboard}");
    assert!(dashboard["unread_notifications"].as_u64().unwrap() >= 1, "{dashboard}");
    assert_eq!(dashboard["streak_days"], 1);

    let res = app.get("/me", w.student.auth()).await;
    assert_eq!(statements(&res), 1, "the session check reads the user too");
    assert_eq!(expect(res, StatusCode::OK).await["email"], w.student.email);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_no_server_timing_unless_configured() {
    let app = TestApp::spawn().await;
    let student = app.user("kid", "student").await;
    let res = app.get("/me", student.auth()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("server-timing").is_none());
}
