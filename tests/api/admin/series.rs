//! The statistics per day (`/admin/stats/series`) and the brief caching of the statistics.

use chrono::{DateTime, NaiveDate, Utc};
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::support::{catalog, *};

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
}

/// Runs `sql` with `values` bound, so that timestamps are stored exactly as the service stores
/// them on either backend.
async fn exec(app: &TestApp, sql: &str, values: Vec<sea_orm::Value>) {
    let stmt = Statement::from_sql_and_values(app.db.backend(), sql, values);
    app.db.conn.execute_raw(stmt).await.unwrap();
}

async fn signed_up(app: &TestApp, u: &User, when: &str) {
    exec(app, "UPDATE users SET created_at = $1 WHERE email = $2", vec![at(when).into(), u.email.clone().into()]).await;
}

async fn active(app: &TestApp, u: &User, when: &str) {
    let hour = at(when).timestamp().div_euclid(3600);
    let id: uuid::Uuid = u.id.parse().unwrap();
    exec(app, "INSERT INTO activity_hours (user_id, hour) VALUES ($1, $2)", vec![id.into(), hour.into()]).await;
}

fn day(date: &str, sign_ups: i64, lesson_completions: i64, active_students: i64) -> Value {
    json!({"date": date, "sign_ups": sign_ups, "lesson_completions": lesson_completions, "active_students": active_students})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_counts_each_utc_day_of_the_window_and_fills_quiet_days_with_zeros() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_ADMIN_STATS_CACHE_SECS".into(), "0".into());
    })
    .await;
    let admin = app.user("admin", "admin").await;
    let teacher = app.user("teacher", "instructor").await;
    let ann = app.user("ann", "student").await;
    let bob = app.user("bob", "student").await;
    let early = app.user("early", "student").await;
    let course_id = catalog::course(&app, &teacher, "series-course").await;
    let module = catalog::module(&app, &teacher, &course_id, "Basics", None).await;
    let mut lessons = Vec::new();
    for title in ["One", "Two", "Three"] {
        lessons.push(s(&catalog::lesson(&app, &teacher, &s(&module["id"]), title, None).await["id"]));
    }
    catalog::publish(&app, &teacher, &course_id).await;
    for u in [&ann, &bob] {
        expect(app.post(&format!("/courses/{course_id}/enrollments"), u.auth(), json!({})).await, StatusCode::CREATED)
            .await;
    }
    for (u, lesson, status) in [
        (&ann, &lessons[0], "completed"),
        (&ann, &lessons[1], "completed"),
        (&bob, &lessons[0], "completed"),
        (&bob, &lessons[1], "in_progress"),
    ] {
        let body = json!({"status": status, "progress": if status == "completed" { 1.0 } else { 0.5 }});
        let res = app.send_json(Method::PUT, &format!("/me/lessons/{lesson}/progress"), u.auth(), body).await;
        expect(res, StatusCode::OK).await;
    }

    // Sign-ups count every account created that day, whatever its role now.
    signed_up(&app, &admin, "2026-03-01T00:00:00Z").await;
    signed_up(&app, &ann, "2026-03-01T23:59:59.999Z").await;
    signed_up(&app, &teacher, "2026-03-03T08:00:00Z").await;
    signed_up(&app, &bob, "2026-03-03T12:30:00Z").await;
    signed_up(&app, &early, "2026-02-28T23:59:59Z").await;
    let completed = "UPDATE lesson_progress SET completed_at = $1 \
        WHERE lesson_id = $2 AND user_id = (SELECT id FROM users WHERE email = $3)";
    for (when, lesson, u) in [
        ("2026-03-02T10:00:00Z", &lessons[0], &ann),
        ("2026-03-02T23:00:00Z", &lessons[1], &ann),
        ("2026-03-05T00:00:00Z", &lessons[0], &bob),
    ] {
        let lesson: uuid::Uuid = lesson.parse().unwrap();
        exec(&app, completed, vec![at(when).into(), lesson.into(), u.email.clone().into()]).await;
    }
    // Two hours of one student on one day are one active student; an instructor's are none.
    active(&app, &ann, "2026-03-01T10:00:00Z").await;
    active(&app, &ann, "2026-03-01T11:00:00Z").await;
    active(&app, &bob, "2026-03-01T23:00:00Z").await;
    active(&app, &teacher, "2026-03-02T09:00:00Z").await;
    active(&app, &ann, "2026-03-05T00:00:00Z").await;
    active(&app, &bob, "2026-03-06T00:00:00Z").await;

    let series = app.get_json("/admin/stats/series?from=2026-03-01&to=2026-03-05", admin.auth()).await;
    assert_eq!(series["from"], "2026-03-01");
    assert_eq!(series["to"], "2026-03-05");
    assert!(series["generated_at"].as_str().is_some_and(|t| DateTime::parse_from_rfc3339(t).is_ok()));
    assert_eq!(
        series["days"],
        json!([
            day("2026-03-01", 2, 0, 2),
            day("2026-03-02", 0, 2, 0),
            day("2026-03-03", 2, 0, 0),
            day("2026-03-04", 0, 0, 0),
            day("2026-03-05", 0, 1, 1),
        ])
    );
    let one = app.get_json("/admin/stats/series?from=2026-02-28&to=2026-02-28", admin.auth()).await;
    assert_eq!(one["days"], json!([day("2026-02-28", 1, 0, 0)]));

    // By default: the last 30 days, today included. Everything above happened long before.
    let today = Utc::now().date_naive();
    let default = app.get_json("/admin/stats/series", admin.auth()).await;
    let days = default["days"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    assert_eq!(default["to"], today.to_string());
    assert_eq!(default["from"], (today - chrono::Days::new(29)).to_string());
    let dates: Vec<NaiveDate> = days.iter().map(|d| d["date"].as_str().unwrap().parse().unwrap()).collect();
    assert!(dates.windows(2).all(|w| w[1] == w[0].succ_opt().unwrap()), "every day, in order");
    assert!(days.iter().all(|d| d["sign_ups"] == 0 && d["lesson_completions"] == 0));
    // The progress sent above was activity, recorded for the hour it arrived in.
    assert_eq!(days[29]["active_students"], 2);
    let since = app.get_json(&format!("/admin/stats/series?from={today}"), admin.auth()).await;
    assert_eq!(since["days"].as_array().unwrap().len(), 1);
    let until = app.get_json("/admin/stats/series?to=2026-03-05", admin.auth()).await;
    assert_eq!(until["from"], "2026-02-04");
    assert_eq!(until["days"][25], day("2026-03-01", 2, 0, 2));

    // A year, a leap day included, is the longest window.
    app.get_json("/admin/stats/series?from=2027-03-01&to=2028-02-29", admin.auth()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_refuses_a_bad_window_naming_the_parameter_and_hides_from_others() {
    let app = TestApp::spawn().await;
    let admin = app.user("admin", "admin").await;
    let student = app.user("kid", "student").await;
    for (query, field) in [
        ("from=2026-03-05&to=2026-03-01", "from"),
        ("from=2025-03-01&to=2026-03-02", "from"),
        ("from=2026-13-01", "from"),
        ("to=yesterday", "to"),
        ("days=7", "days"),
    ] {
        let res = app.get(&format!("/admin/stats/series?{query}"), admin.auth()).await;
        let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&body), vec![field], "{query}");
    }
    // To anyone else the route does not exist, whatever the query.
    for path in ["/admin/stats/series", "/admin/stats/series?from=2026-13-01"] {
        problem(app.get(path, student.auth()).await, StatusCode::NOT_FOUND).await;
        problem(app.get(path, None).await, StatusCode::UNAUTHORIZED).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_are_reused_for_a_few_seconds_and_say_when_they_were_computed() {
    let app = TestApp::spawn().await;
    let admin = app.user("admin", "admin").await;
    let first = app.get_json("/admin/stats", admin.auth()).await;
    let series = app.get_json("/admin/stats/series", admin.auth()).await;
    assert_eq!(first["users_by_role"], json!({"student": 0, "instructor": 0, "admin": 1}));
    let generated = at(first["generated_at"].as_str().unwrap());
    assert!((Utc::now() - generated).num_seconds().abs() < 60);

    app.user("newcomer", "student").await;
    let again = app.get_json("/admin/stats", admin.auth()).await;
    assert_eq!(again, first, "the same answer, with the time it was computed");
    assert_eq!(app.get_json("/admin/stats/series", admin.auth()).await, series);

    // With the cache off, the next request sees the newcomer.
    let fresh = TestApp::spawn_with(|env| {
        env.insert("CIFIX_ADMIN_STATS_CACHE_SECS".into(), "0".into());
    })
    .await;
    let admin = fresh.user("admin", "admin").await;
    fresh.get_json("/admin/stats", admin.auth()).await;
    fresh.user("newcomer", "student").await;
    let stats = fresh.get_json("/admin/stats", admin.auth()).await;
    assert_eq!(stats["users_by_role"], json!({"student": 1, "instructor": 0, "admin": 1}));
    let today = fresh.get_json("/admin/stats/series", admin.auth()).await;
    assert_eq!(today["days"][29]["sign_ups"], 2);
}
