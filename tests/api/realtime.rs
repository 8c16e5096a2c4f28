//! Notifications and live delivery over real HTTP, WebSocket and SSE, on SQLite (in-process
//! fan-out) or PostgreSQL + Redis (`CIFIX_TEST_BACKEND=postgres`).

use std::{collections::HashSet, time::Duration};

use crate::support::catalog::{World, world};
use crate::support::live::{Got, Sse, connect, expect_close, expect_event, next, send_text, ticket, ws};
use crate::support::{TestApp, problem};
use crate::support::{User, expect};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn complete(app: &TestApp, w: &World, i: usize) {
    let path = format!("/me/lessons/{}/progress", w.lesson_ids[i]);
    expect(app.send_json(Method::PUT, &path, w.student.auth(), json!({"status": "completed"})).await, StatusCode::OK)
        .await;
}

/// Admin rules "complete n lessons" for n in 2..=max: every completion then stores one
/// `achievement.awarded` notification, a handy source of stored events.
async fn lesson_count_rules(app: &TestApp, max: usize) {
    let admin = app.user("admin", "admin").await;
    for n in 2..=max {
        let body = json!({"code": format!("lessons_{n}"), "title": format!("{n} lessons"), "description": "Keep going",
            "kind": "lessons_completed", "threshold": {"count": n}});
        expect(app.send_json(Method::POST, "/admin/achievements", admin.auth(), body).await, StatusCode::CREATED).await;
    }
}

#[tokio::test]
async fn tickets_are_single_use_short_lived_and_personal() {
    let app = TestApp::spawn().await;
    let w = world(&app, 1, 1).await;
    let other = app.user("other", "student").await;

    // No ticket, a made-up one: 401 before any upgrade.
    assert_eq!(connect(&app, "", &[]).await.err(), Some(401));
    assert_eq!(connect(&app, "not-a-ticket", &[]).await.err(), Some(401));
    problem(app.post("/realtime/ticket", None, json!({})).await, StatusCode::UNAUTHORIZED).await;

    // First use opens; reuse is refused, even while the first socket is open.
    let t = ticket(&app, &w.student.token).await;
    let _open = connect(&app, &t, &[]).await.expect("first use opens");
    assert_eq!(connect(&app, &t, &[]).await.err(), Some(401), "a ticket is single-use");

    // Concurrent uses of one ticket: exactly one wins.
    let t = ticket(&app, &w.student.token).await;
    let (a, b) = tokio::join!(connect(&app, &t, &[]), connect(&app, &t, &[]));
    assert_eq!([a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(), 1);

    // Expired (as if 30 seconds passed).
    let t = ticket(&app, &w.student.token).await;
    app.db.conn.execute_unprepared("UPDATE realtime_tickets SET expires_at = created_at").await.unwrap();
    assert_eq!(connect(&app, &t, &[]).await.err(), Some(401), "an expired ticket is refused");

    // Someone else's ticket, presented with one's own bearer token: refused.
    let t = ticket(&app, &w.student.token).await;
    let bearer = format!("Bearer {}", other.token);
    assert_eq!(connect(&app, &t, &[("authorization", &bearer)]).await.err(), Some(401));
    // The ticket is stored only as a hash.
    let t = ticket(&app, &w.student.token).await;
    let n = app.count(&format!("SELECT COUNT(*) FROM realtime_tickets WHERE token_hash = '{t}'")).await;
    assert_eq!(n, 0);

    // A signed-out session's ticket no longer opens anything.
    let t = ticket(&app, &w.student.token).await;
    expect(app.send_json(Method::POST, "/auth/logout-all", w.student.auth(), json!({})).await, StatusCode::NO_CONTENT)
        .await;
    assert_eq!(connect(&app, &t, &[]).await.err(), Some(401));
}

use sea_orm::ConnectionTrait;

#[tokio::test]
async fn origin_is_checked_against_the_allow_list() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_CORS_ORIGINS".into(), "https://app.example.com".into());
    })
    .await;
    let u = app.user("s", "student").await;
    let t = ticket(&app, &u.token).await;
    assert_eq!(connect(&app, &t, &[("origin", "https://evil.example.com")]).await.err(), Some(403));
    let t = ticket(&app, &u.token).await;
    connect(&app, &t, &[("origin", "https://app.example.com")]).await.expect("allowed origin");
    let t = ticket(&app, &u.token).await;
    connect(&app, &t, &[]).await.expect("no Origin: a non-browser client");

    // The refusal tells the page's developer which setting allows an origin.
    let t = ticket(&app, &u.token).await;
    let res = app
        .req(Method::GET, &format!("/ws?ticket={t}"), None)
        .header("origin", "https://evil.example.com")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    let body = problem(res, StatusCode::FORBIDDEN).await;
    assert!(body["detail"].as_str().unwrap().contains("CIFIX_CORS_ORIGINS"), "{body}");
    // A plain request that is no upgrade at all: a 400 that says so.
    let body = problem(app.get(&format!("/ws?ticket={t}"), None).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["type"], "urn:cifix:problem:websocket-upgrade-required");
}

/// A browser's `EventSource` sends no headers: it opens `/events` with a ticket instead.
#[tokio::test]
async fn an_event_source_opens_the_stream_with_a_single_use_ticket() {
    let app = TestApp::spawn().await;
    let w = world(&app, 1, 1).await;
    let t = ticket(&app, &w.student.token).await;
    let mut sse = Sse::open_with_ticket(&app, &t).await;
    complete(&app, &w, 0).await;
    let got = sse.collect("progress.updated", 1).await;
    assert_eq!(got[0].data["type"], "progress.updated");
    // Spent: the same ticket again is refused, as are a made-up one and none at all.
    problem(app.get(&format!("/events?ticket={t}"), None).await, StatusCode::UNAUTHORIZED).await;
    problem(app.get("/events?ticket=not-a-ticket", None).await, StatusCode::UNAUTHORIZED).await;
    problem(app.get("/events", None).await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn websocket_gets_own_events_only_and_survives_hostile_frames() {
    let app = TestApp::spawn().await;
    let w = world(&app, 1, 3).await;
    let bystander = app.user("bystander", "student").await;
    let mut mine = ws(&app, &w.student.token).await;
    let mut theirs = ws(&app, &bystander.token).await;
    let mut teacher = ws(&app, &w.instructor.token).await;

    complete(&app, &w, 0).await;
    let e = expect_event(&mut mine, "progress.updated").await;
    assert!(e["id"].is_string() && e["created_at"].is_string());
    assert_eq!(e["data"]["lesson"]["lesson_id"], w.lesson_ids[0]);
    assert_eq!(e["data"]["course"]["completed_lessons"], 1);
    let a = expect_event(&mut mine, "achievement.awarded").await;
    assert_eq!(a["data"]["data"]["code"], "first_lesson");
    // The instructor sees their student's progress live; a stranger sees nothing.
    let t = expect_event(&mut teacher, "progress.updated").await;
    assert_eq!(t["data"]["user_id"], w.student.id);
    assert!(matches!(next(&mut theirs, Duration::from_millis(800)).await, Got::Timeout));

    // A message the server does not understand: an error frame, and the socket lives on.
    send_text(&mut mine, "hello?").await;
    let err = expect_event(&mut mine, "error").await;
    assert_eq!(err["data"]["code"], "unsupported_message");
    send_text(&mut mine, r#"{"type":"ping"}"#).await;
    expect_event(&mut mine, "pong").await;
    complete(&app, &w, 1).await;
    expect_event(&mut mine, "progress.updated").await;

    // An oversized message closes that socket (1009) and nobody else's.
    let mut second = ws(&app, &w.student.token).await;
    send_text(&mut mine, &"x".repeat(64 * 1024)).await;
    let code = expect_close(&mut mine).await;
    assert!(code == Some(1009) || code.is_none(), "closed with {code:?}");
    complete(&app, &w, 2).await;
    expect_event(&mut second, "progress.updated").await;
    expect_event(&mut teacher, "progress.updated").await;
}

#[tokio::test]
async fn per_user_connection_cap() {
    let app = TestApp::spawn().await;
    let u = app.user("s", "student").await;
    let mut open = Vec::new();
    for _ in 0..5 {
        open.push(ws(&app, &u.token).await);
    }
    let t = ticket(&app, &u.token).await;
    assert_eq!(connect(&app, &t, &[]).await.err(), Some(429));
    // SSE shares the cap.
    problem(app.get("/events", Some(&u.token)).await, StatusCode::TOO_MANY_REQUESTS).await;
    drop(open.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _again = ws(&app, &u.token).await;
}

#[tokio::test]
async fn notifications_are_listed_marked_read_and_counted() {
    let app = TestApp::spawn().await;
    let w = world(&app, 1, 1).await;
    let other = app.user("other", "student").await;
    // One lesson completes a lesson, a module and a course: 3 achievements + course.completed.
    complete(&app, &w, 0).await;
    let all = app.get_json("/me/notifications", w.student.auth()).await;
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "{all}");
    let ids: Vec<&str> = items.iter().map(|n| n["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    let kinds: HashSet<&str> = items.iter().map(|n| n["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, HashSet::from(["achievement.awarded", "course.completed"]));
    for n in items {
        for f in ["id", "kind", "title", "body", "data", "read_at", "created_at"] {
            assert!(n.get(f).is_some(), "{f} in {n}");
        }
    }
    assert_eq!(all["next_cursor"], Value::Null);
    // progress.updated is live-only: never stored.
    assert_eq!(app.count("SELECT COUNT(*) FROM notifications WHERE kind = 'progress.updated'").await, 0);

    let p1 = app.get_json("/me/notifications?limit=3", w.student.auth()).await;
    assert_eq!(p1["items"].as_array().unwrap().len(), 3);
    let p2 = app
        .get_json(
            &format!("/me/notifications?limit=3&cursor={}", p1["next_cursor"].as_str().unwrap()),
            w.student.auth(),
        )
        .await;
    assert_eq!(p2["items"].as_array().unwrap().len(), 1);
    assert_eq!(p2["items"][0]["id"], ids[3]);

    // Someone else's notification is 404, reading one's own is 204 (twice too).
    let first = ids[0];
    let path = format!("/me/notifications/{first}/read");
    problem(app.send_json(Method::POST, &path, other.auth(), json!({})).await, StatusCode::NOT_FOUND).await;
    problem(
        app.send_json(Method::POST, "/me/notifications/nope/read", w.student.auth(), json!({})).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    expect(app.send_json(Method::POST, &path, w.student.auth(), json!({})).await, StatusCode::NO_CONTENT).await;
    expect(app.send_json(Method::POST, &path, w.student.auth(), json!({})).await, StatusCode::NO_CONTENT).await;
    let unread = app.get_json("/me/notifications?unread=true", w.student.auth()).await;
    assert_eq!(unread["items"].as_array().unwrap().len(), 3);
    let dash = app.get_json("/me/dashboard", w.student.auth()).await;
    assert_eq!(dash["unread_notifications"], 3);
    assert_eq!(dash["recent_achievements"].as_array().unwrap().len(), 3);
    assert!(dash["recent_achievements"][0]["achievement"]["code"].is_string());

    // Read-all touches only the caller's.
    complete_other(&app, &w, &other).await;
    let others_before =
        app.get_json("/me/notifications?unread=true", other.auth()).await["items"].as_array().unwrap().len();
    expect(
        app.send_json(Method::POST, "/me/notifications/read-all", w.student.auth(), json!({})).await,
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(
        app.get_json("/me/notifications?unread=true", w.student.auth()).await["items"].as_array().unwrap().len(),
        0
    );
    assert_eq!(app.get_json("/me/dashboard", w.student.auth()).await["unread_notifications"], 0);
    let others_after =
        app.get_json("/me/notifications?unread=true", other.auth()).await["items"].as_array().unwrap().len();
    assert_eq!(others_before, others_after);
    assert!(others_after > 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'notification.read_all'").await, 1);
}

async fn complete_other(app: &TestApp, w: &World, other: &User) {
    let path = format!("/courses/{}/enrollments", w.course_id);
    expect(app.send_json(Method::POST, &path, other.auth(), json!({})).await, StatusCode::CREATED).await;
    let path = format!("/me/lessons/{}/progress", w.lesson_ids[0]);
    expect(app.send_json(Method::PUT, &path, other.auth(), json!({"status": "completed"})).await, StatusCode::OK).await;
}

#[tokio::test]
async fn sse_resume_with_last_event_id_loses_nothing() {
    let app = TestApp::spawn().await;
    let w = world(&app, 1, 6).await;
    lesson_count_rules(&app, 6).await;
    let mut seen: HashSet<String> = HashSet::new();

    let mut sse = Sse::open(&app, &w.student.token, None).await;
    complete(&app, &w, 0).await;
    let got = sse.collect("achievement.awarded", 1).await;
    let last_id = got.last().unwrap().id.clone().unwrap();
    seen.extend(got.iter().filter_map(|e| e.id.clone()));
    drop(sse);

    // While disconnected: three more stored notifications.
    for i in 1..4 {
        complete(&app, &w, i).await;
    }
    let mut sse = Sse::open(&app, &w.student.token, Some(&last_id)).await;
    let got = sse.collect("achievement.awarded", 3).await;
    seen.extend(got.iter().filter_map(|e| e.id.clone()));
    // Then live, on the same stream.
    complete(&app, &w, 4).await;
    let got = sse.collect("achievement.awarded", 1).await;
    seen.extend(got.iter().filter_map(|e| e.id.clone()));
    assert!(got.iter().any(|e| e.data["type"] == "progress.updated"), "live-only events flow after the replay");

    let stored = app.get_json("/me/notifications?limit=100", w.student.auth()).await;
    let stored: Vec<String> =
        stored["items"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(stored.len(), 5);
    for id in &stored {
        assert!(seen.contains(id), "notification {id} never reached the SSE client");
    }
    // SSE without a token: 401.
    problem(app.get("/events", None).await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn deactivation_and_role_change_drop_live_connections() {
    let app = TestApp::spawn().await;
    let admin = app.user("admin", "admin").await;
    let s = app.user("s", "student").await;
    let t = app.user("t", "student").await;
    let mut s_ws = ws(&app, &s.token).await;
    let mut s_sse = Sse::open(&app, &s.token, None).await;
    let mut t_ws = ws(&app, &t.token).await;

    let res = app
        .send_json(Method::PATCH, &format!("/admin/users/{}", s.id), admin.auth(), json!({"is_active": false}))
        .await;
    expect(res, StatusCode::OK).await;
    assert_eq!(expect_close(&mut s_ws).await, Some(1008));
    assert!(s_sse.ends_within(Duration::from_secs(5)).await, "the SSE stream ends");
    // And cannot come back.
    problem(app.post("/realtime/ticket", Some(&s.token), json!({})).await, StatusCode::UNAUTHORIZED).await;

    let res = app
        .send_json(Method::PATCH, &format!("/admin/users/{}", t.id), admin.auth(), json!({"role": "instructor"}))
        .await;
    expect(res, StatusCode::OK).await;
    assert_eq!(expect_close(&mut t_ws).await, Some(1008));
    // A role change is not a ban: a new ticket works.
    let _again = ws(&app, &t.token).await;
}

/// An instructor who is no longer one keeps their courses (they are not deleted with the role),
/// but no longer watches the students in them: live, exactly as over the API.
#[tokio::test]
async fn a_demoted_instructor_no_longer_sees_students_live() {
    let app = TestApp::spawn().await;
    let w = world(&app, 1, 2).await;
    let admin = app.user("admin", "admin").await;
    let res = app
        .send_json(
            Method::PATCH,
            &format!("/admin/users/{}", w.instructor.id),
            admin.auth(),
            json!({"role": "student"}),
        )
        .await;
    expect(res, StatusCode::OK).await;
    let mut former = ws(&app, &w.instructor.token).await;
    let mut student = ws(&app, &w.student.token).await;
    complete(&app, &w, 0).await;
    expect_event(&mut student, "progress.updated").await;
    assert!(matches!(next(&mut former, Duration::from_millis(500)).await, Got::Timeout), "nothing for them");
    let path = format!("/users/{}/progress", w.student.id);
    problem(app.get(&path, w.instructor.auth()).await, StatusCode::NOT_FOUND).await;
}

/// Ending sessions (logout-all, a password change, revoking a session, a replayed refresh
/// token) also ends the user's live connections: a shared computer left signed out must not
/// keep receiving a child's notifications.
#[tokio::test]
async fn ending_sessions_drops_live_connections() {
    let app = TestApp::spawn().await;
    let s = app.user("s", "student").await;
    let other = app.user("o", "student").await;
    let mut s_ws = ws(&app, &s.token).await;
    let mut s_sse = Sse::open(&app, &s.token, None).await;
    let mut other_ws = ws(&app, &other.token).await;

    expect(app.post("/auth/logout-all", Some(&s.token), json!({})).await, StatusCode::NO_CONTENT).await;
    assert_eq!(expect_close(&mut s_ws).await, Some(1008));
    assert!(s_sse.ends_within(Duration::from_secs(5)).await, "the SSE stream ends");
    problem(app.post("/realtime/ticket", Some(&s.token), json!({})).await, StatusCode::UNAUTHORIZED).await;

    // Someone else's connection is untouched.
    assert!(matches!(next(&mut other_ws, Duration::from_millis(300)).await, Got::Timeout), "no close for others");

    // A password change ends the other sessions, and the live connections with them.
    let res = app
        .send_json(
            Method::POST,
            "/me/password",
            other.auth(),
            json!({"current_password": crate::support::PASSWORD, "new_password": "a different long passphrase"}),
        )
        .await;
    expect(res, StatusCode::NO_CONTENT).await;
    assert_eq!(expect_close(&mut other_ws).await, Some(1008));
}

#[tokio::test]
async fn shutdown_closes_websockets_with_1001_and_ends_sse() {
    let mut app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_SHUTDOWN_GRACE_SECS".into(), "5".into());
    })
    .await;
    let u = app.user("s", "student").await;
    let mut socket = ws(&app, &u.token).await;
    let mut sse = Sse::open(&app, &u.token, None).await;
    let started = std::time::Instant::now();
    let server = app.begin_shutdown();
    assert_eq!(expect_close(&mut socket).await, Some(1001));
    assert!(sse.ends_within(Duration::from_secs(5)).await, "the SSE stream ends");
    tokio::time::timeout(Duration::from_secs(10), server).await.expect("server stops").unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "within the drain deadline: {:?}", started.elapsed());
}

#[tokio::test]
async fn an_event_on_one_instance_reaches_clients_on_another() {
    let a = TestApp::spawn_on_postgres().await;
    let b = a.spawn_peer().await;
    let w = world(&a, 1, 2).await;
    let admin = a.user("admin", "admin").await;
    // Clients on B, tickets from B (the ticket store is shared, so A's would do too).
    let mut socket = ws(&b, &w.student.token).await;
    let mut sse = Sse::open(&b, &w.student.token, None).await;
    let mut teacher = ws(&b, &w.instructor.token).await;
    let t = ticket(&a, &w.student.token).await;
    let mut via_a_ticket = connect(&b, &t, &[]).await.expect("a ticket from A opens on B");

    complete(&a, &w, 0).await;
    // In publish order: the progress first, then what it earned.
    expect_event(&mut socket, "progress.updated").await;
    let e = expect_event(&mut socket, "achievement.awarded").await;
    assert_eq!(e["data"]["data"]["code"], "first_lesson");
    expect_event(&mut via_a_ticket, "achievement.awarded").await;
    let got = sse.collect("achievement.awarded", 1).await;
    assert_eq!(got.iter().find(|e| e.data["type"] == "achievement.awarded").unwrap().data["id"], e["id"]);
    let t = expect_event(&mut teacher, "progress.updated").await;
    assert_eq!(t["data"]["user_id"], w.student.id);

    // A deactivation on A drops the student's sockets on B.
    let res = a
        .send_json(Method::PATCH, &format!("/admin/users/{}", w.student.id), admin.auth(), json!({"is_active": false}))
        .await;
    expect(res, StatusCode::OK).await;
    assert_eq!(expect_close(&mut socket).await, Some(1008));
    assert!(sse.ends_within(Duration::from_secs(5)).await);
}
