//! Admin endpoints: user management (role changes, deactivation), the audit-trail reader and a
//! course's funnel; the statistics series and cache, the CSV exports and the timings on a large
//! database in the modules below.

mod exports;
mod large;
mod series;

use crate::support::{catalog, *};
use reqwest::{Method, StatusCode};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

async fn admin(app: &TestApp, email: &str) -> (String, String) {
    let reg = app.register(email).await;
    app.db.conn.execute_unprepared(&format!("UPDATE users SET role = 'admin' WHERE email = '{email}'")).await.unwrap();
    (reg["access_token"].as_str().unwrap().to_string(), reg["user"]["id"].as_str().unwrap().to_string())
}

fn tok(v: &Value) -> &str {
    v["access_token"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_see_admin_endpoints_and_others_get_404() {
    let app = TestApp::spawn().await;
    let student = app.register("student@example.com").await;
    for path in ["/admin/users", "/admin/audit-log"] {
        problem(app.get(path, Some(tok(&student))).await, StatusCode::NOT_FOUND).await;
        problem(app.get(path, None).await, StatusCode::UNAUTHORIZED).await;
    }
    let id = student["user"]["id"].as_str().unwrap();
    let res = app
        .send_json(Method::PATCH, &format!("/admin/users/{id}"), Some(tok(&student)), json!({"role": "admin"}))
        .await;
    problem(res, StatusCode::NOT_FOUND).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM users WHERE role = 'admin'").await, 0, "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_search_users_by_text_and_role_with_literal_wildcards() {
    let app = TestApp::spawn().await;
    let (token, _) = admin(&app, "boss@example.com").await;
    app.register("ann_smith@example.com").await;
    app.register("annxsmith@example.com").await;
    app.register("bob@example.com").await;

    let list: Value = app.get("/admin/users?q=ANN", Some(&token)).await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let list: Value = app.get("/admin/users?q=ann_", Some(&token)).await.json().await.unwrap();
    let emails: Vec<&str> = list["items"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap()).collect();
    assert_eq!(emails, vec!["ann_smith@example.com"], "_ is a literal, not a wildcard");
    let list: Value = app.get("/admin/users?q=%25", Some(&token)).await.json().await.unwrap();
    assert!(list["items"].as_array().unwrap().is_empty(), "% is a literal too");

    let list: Value = app.get("/admin/users?role=admin", Some(&token)).await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["email"], "boss@example.com");

    let page1: Value = app.get("/admin/users?limit=3", Some(&token)).await.json().await.unwrap();
    assert_eq!(page1["items"].as_array().unwrap().len(), 3);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2: Value =
        app.get(&format!("/admin/users?limit=3&cursor={cursor}"), Some(&token)).await.json().await.unwrap();
    assert_eq!(page2["items"].as_array().unwrap().len(), 1);
    assert!(page2["next_cursor"].is_null());

    let bad =
        problem(app.get("/admin/users?role=superuser", Some(&token)).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(!error_fields(&bad).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_applies_to_the_next_request_and_is_audited() {
    let app = TestApp::spawn().await;
    let (token, admin_id) = admin(&app, "boss@example.com").await;
    let student = app.register("kid@example.com").await;
    let id = student["user"]["id"].as_str().unwrap();

    let res =
        app.send_json(Method::PATCH, &format!("/admin/users/{id}"), Some(&token), json!({"role": "instructor"})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["role"], "instructor");
    // The same access token now carries the new role's rights, without signing in again.
    let me: Value = app.get("/me", Some(tok(&student))).await.json().await.unwrap();
    assert_eq!(me["role"], "instructor");

    let log: Value = app.get("/admin/audit-log?action=admin.user_update", Some(&token)).await.json().await.unwrap();
    let entry = &log["items"][0];
    assert_eq!(entry["actor_id"], admin_id.as_str());
    assert_eq!(entry["target_id"], id);
    assert_eq!(entry["details"]["role"], json!({"from": "student", "to": "instructor"}));
    assert!(entry["request_id"].is_string() && entry["ip"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivation_ends_every_session_at_once() {
    let app = TestApp::spawn().await;
    let (token, _) = admin(&app, "boss@example.com").await;
    let student = app.register("gone@example.com").await;
    let id = student["user"]["id"].as_str().unwrap();
    assert_eq!(app.get("/me", Some(tok(&student))).await.status(), StatusCode::OK);

    let res =
        app.send_json(Method::PATCH, &format!("/admin/users/{id}"), Some(&token), json!({"is_active": false})).await;
    assert_eq!(res.status(), StatusCode::OK);
    problem(app.get("/me", Some(tok(&student))).await, StatusCode::UNAUTHORIZED).await;
    let refresh = app.post("/auth/refresh", None, json!({"refresh_token": student["refresh_token"]})).await;
    problem(refresh, StatusCode::UNAUTHORIZED).await;
    problem(app.login("gone@example.com", PASSWORD).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.email = 'gone@example.com' AND s.revoked_at IS NULL").await,
        0
    );

    app.send_json(Method::PATCH, &format!("/admin/users/{id}"), Some(&token), json!({"is_active": true})).await;
    assert_eq!(app.login("gone@example.com", PASSWORD).await.status(), StatusCode::OK, "reactivated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_cannot_lock_themselves_out_and_bad_input_is_refused() {
    let app = TestApp::spawn().await;
    let (token, admin_id) = admin(&app, "boss@example.com").await;
    let res = app
        .send_json(Method::PATCH, &format!("/admin/users/{admin_id}"), Some(&token), json!({"is_active": false}))
        .await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    let res = app
        .send_json(Method::PATCH, &format!("/admin/users/{admin_id}"), Some(&token), json!({"role": "student"}))
        .await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    let res =
        app.send_json(Method::PATCH, &format!("/admin/users/{admin_id}"), Some(&token), json!({"role": "root"})).await;
    let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&body), vec!["role"]);
    let res = app
        .send_json(
            Method::PATCH,
            "/admin/users/00000000-0000-0000-0000-000000000000",
            Some(&token),
            json!({"role": "student"}),
        )
        .await;
    problem(res, StatusCode::NOT_FOUND).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM users WHERE role = 'admin' AND is_active").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_filters_by_actor_action_and_time() {
    let app = TestApp::spawn().await;
    let (token, _) = admin(&app, "boss@example.com").await;
    let s = app.register("s@example.com").await;
    let sid = s["user"]["id"].as_str().unwrap();
    app.login("s@example.com", "wrong password here").await;

    let mine: Value = app.get(&format!("/admin/audit-log?actor_id={sid}"), Some(&token)).await.json().await.unwrap();
    assert!(mine["items"].as_array().unwrap().iter().all(|e| e["actor_id"] == sid));
    assert!(mine["items"].as_array().unwrap().iter().any(|e| e["action"] == "auth.register"));

    let failed: Value = app.get("/admin/audit-log?action=auth.login_failed", Some(&token)).await.json().await.unwrap();
    assert_eq!(failed["items"].as_array().unwrap().len(), 1);
    assert_eq!(failed["items"][0]["details"]["reason"], "bad_password");

    let future: Value =
        app.get("/admin/audit-log?since=2999-01-01T00:00:00Z", Some(&token)).await.json().await.unwrap();
    assert!(future["items"].as_array().unwrap().is_empty());
    let past: Value = app.get("/admin/audit-log?until=2000-01-01T00:00:00Z", Some(&token)).await.json().await.unwrap();
    assert!(past["items"].as_array().unwrap().is_empty());
    problem(app.get("/admin/audit-log?since=yesterday", Some(&token)).await, StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_course_funnel_counts_who_started_and_finished_each_module_in_outline_order() {
    let app = TestApp::spawn().await;
    let admin = app.user("admin", "admin").await;
    let teacher = app.user("teacher", "instructor").await;
    let course_id = catalog::course(&app, &teacher, "funnel-course").await;
    let basics = catalog::module(&app, &teacher, &course_id, "Basics", None).await;
    let loops = catalog::module(&app, &teacher, &course_id, "Loops", None).await;
    let empty = catalog::module(&app, &teacher, &course_id, "Coming soon", None).await;
    let first = s(&catalog::lesson(&app, &teacher, &s(&basics["id"]), "Hello", None).await["id"]);
    let second = s(&catalog::lesson(&app, &teacher, &s(&basics["id"]), "Variables", None).await["id"]);
    let loop_lesson = s(&catalog::lesson(&app, &teacher, &s(&loops["id"]), "For", None).await["id"]);
    catalog::publish(&app, &teacher, &course_id).await;

    let finisher = app.user("finisher", "student").await;
    let starter = app.user("starter", "student").await;
    let idle = app.user("idle", "student").await;
    for u in [&finisher, &starter, &idle] {
        let res = app.post(&format!("/courses/{course_id}/enrollments"), u.auth(), json!({})).await;
        expect(res, StatusCode::CREATED).await;
    }
    for (u, lesson, status) in [
        (&finisher, &first, "completed"),
        (&finisher, &second, "completed"),
        (&finisher, &loop_lesson, "in_progress"),
        (&starter, &first, "completed"),
    ] {
        let body = json!({"status": status, "progress": if status == "completed" { 1.0 } else { 0.5 }});
        let res = app.send_json(Method::PUT, &format!("/me/lessons/{lesson}/progress"), u.auth(), body).await;
        expect(res, StatusCode::OK).await;
    }

    let path = format!("/admin/courses/{course_id}/funnel");
    for u in [&teacher, &finisher] {
        problem(app.get(&path, u.auth()).await, StatusCode::NOT_FOUND).await;
    }
    problem(app.get(&path, None).await, StatusCode::UNAUTHORIZED).await;
    let unknown = "/admin/courses/00000000-0000-4000-8000-000000000000/funnel";
    problem(app.get(unknown, admin.auth()).await, StatusCode::NOT_FOUND).await;

    let funnel = app.get_json(&path, admin.auth()).await;
    assert_eq!(
        funnel,
        json!([
            {"module_id": basics["id"], "title": "Basics", "started": 2, "completed": 1},
            {"module_id": loops["id"], "title": "Loops", "started": 1, "completed": 0},
            {"module_id": empty["id"], "title": "Coming soon", "started": 0, "completed": 0},
        ])
    );
}
