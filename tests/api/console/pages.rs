//! What an admin does in the console: every action goes through the API's services, so each
//! test checks the outcome where the rest of the platform sees it (the API, the rows, the
//! audit trail).

use reqwest::StatusCode;
use sea_orm::ConnectionTrait;

use super::{Console, location};
use crate::support::{catalog, *};

/// The figure a stat card shows, by its id.
fn figure(html: &str, id: &str) -> String {
    let marker = format!(r#"id="{id}">"#);
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {id} in the page")) + marker.len();
    html[start..start + html[start..].find('<').unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_the_numbers_the_api_gives() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_EMAIL_WORKER".into(), "false".into());
    })
    .await;
    let admin = app.user("root", "admin").await;
    catalog::world(&app, 2, 1).await;
    app.user("other-kid", "student").await;

    let stats = app.get_json("/admin/stats", Some(&admin.token)).await;
    let mut console = Console::signed_in(&app, &admin.email).await;
    let page = console.page("/admin").await;
    assert_eq!(figure(&page, "stat-students"), stats["users_by_role"]["student"].to_string());
    assert_eq!(figure(&page, "stat-students"), "2");
    assert_eq!(figure(&page, "stat-instructors"), "1");
    assert_eq!(figure(&page, "stat-admins"), "1");
    assert_eq!(figure(&page, "stat-enrollments"), stats["enrollments"].to_string());
    assert_eq!(figure(&page, "stat-enrollments"), "1");
    assert_eq!(figure(&page, "stat-outbox-queued"), stats["email_outbox"]["queued"].to_string());
    assert!(page.contains("<svg class=\"chart\"") && page.contains("Course ai-for-kids"), "the top courses are drawn");
    let today = chrono::Utc::now().date_naive();
    let series = app.get_json("/admin/stats/series", Some(&admin.token)).await;
    let last = &series["days"][29];
    assert_eq!(last["date"], today.to_string());
    assert_eq!(last["sign_ups"], 4);
    assert!(page.contains(r#"aria-label="Sign-ups per day""#));
    assert!(page.contains(&format!("<title>{today}: 4</title>")), "today's sign-ups, drawn: {page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivating_a_student_asks_first_then_their_api_token_stops_working() {
    let app = TestApp::spawn().await;
    let admin = app.user("root", "admin").await;
    let kid = app.user("kid", "student").await;
    let mut console = Console::signed_in(&app, &admin.email).await;

    let list = console.page("/admin/users?q=kid").await;
    assert!(list.contains(&format!("/admin/users/{}", kid.id)));
    assert!(!list.contains("root@example.com"), "the search filters");
    console.page(&format!("/admin/users/{}", kid.id)).await;

    let path = format!("/admin/users/{}/active", kid.id);
    let res = console.submit(&path, &[("active", "false")]).await;
    assert_eq!(res.status(), StatusCode::OK, "first the question");
    let question = res.text().await.unwrap();
    assert!(question.contains("Deactivate kid@example.com?"), "{question}");
    expect(app.get("/me", Some(&kid.token)).await, StatusCode::OK).await;

    console.keep_csrf(&question);
    let res = console.submit(&path, &[("active", "false"), ("confirm", "yes")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), format!("/admin/users/{}?notice=deactivated", kid.id));
    let page = console.page(&location(&res)).await;
    assert!(page.contains("The account was deactivated"));
    assert!(page.contains(r#"id="user-status">deactivated"#));

    problem(app.get("/me", Some(&kid.token)).await, StatusCode::UNAUTHORIZED).await;
    problem(app.login(&kid.email, PASSWORD).await, StatusCode::UNAUTHORIZED).await;
    let path = format!("/admin/audit-log?actor_id={}&action=admin.user_update", admin.id);
    let audited = app.get_json(&path, Some(&admin.token)).await;
    assert_eq!(audited["items"].as_array().unwrap().len(), 1, "the same audit row as the API writes: {audited}");
    assert_eq!(audited["items"][0]["target_id"], kid.id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_changes_session_ends_and_verification_links_go_through_the_services() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_EMAIL_WORKER".into(), "false".into());
    })
    .await;
    let admin = app.user("root", "admin").await;
    let kid = app.user("kid", "student").await;
    let mut console = Console::signed_in(&app, &admin.email).await;
    let user_page = format!("/admin/users/{}", kid.id);

    console.page(&user_page).await;
    let res = console.submit(&format!("{user_page}/role"), &[("role", "instructor")]).await;
    let question = res.text().await.unwrap();
    assert!(question.contains("from student to instructor"), "{question}");
    let res = console.submit(&format!("{user_page}/role"), &[("role", "instructor"), ("confirm", "yes")]).await;
    assert_eq!(location(&res), format!("{user_page}?notice=role-changed"));
    assert_eq!(app.get_json("/me", Some(&kid.token)).await["role"], "instructor");
    let res = console.submit(&format!("{user_page}/role"), &[("role", "superuser"), ("confirm", "yes")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let verify = "SELECT COUNT(*) FROM email_outbox WHERE template = 'verify_email'";
    let before = app.count(verify).await;
    let res = console.submit(&format!("{user_page}/verification"), &[]).await;
    assert_eq!(location(&res), format!("{user_page}?notice=verification-sent"));
    assert_eq!(app.count(verify).await, before + 1, "a new link is queued");

    let res = console.submit(&format!("{user_page}/sessions"), &[("confirm", "yes")]).await;
    assert_eq!(location(&res), format!("{user_page}?notice=sessions-ended"));
    problem(app.get("/me", Some(&kid.token)).await, StatusCode::UNAUTHORIZED).await;
    expect(app.login(&kid.email, PASSWORD).await, StatusCode::OK).await;
    let audited =
        format!("SELECT COUNT(*) FROM audit_log WHERE action = 'admin.sessions_ended' AND target_id = '{}'", kid.id);
    assert_eq!(app.count(&audited).await, 1);

    // The admin's own page offers none of these, and the service refuses them anyway.
    let own = console.page(&format!("/admin/users/{}", admin.id)).await;
    assert!(!own.contains("Deactivate"));
    let res =
        console.submit(&format!("/admin/users/{}/active", admin.id), &[("active", "false"), ("confirm", "yes")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_email_is_retried_from_the_outbox_page() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_EMAIL_WORKER".into(), "false".into());
    })
    .await;
    let admin = app.user("root", "admin").await;
    app.user("kid", "student").await;
    let failed = "UPDATE email_outbox SET status = 'failed', attempts = 8, last_error = 'mailbox unavailable' \
                  WHERE to_address = 'kid@example.com'";
    app.db.conn.execute_unprepared(failed).await.unwrap();
    let mut console = Console::signed_in(&app, &admin.email).await;

    let page = console.page("/admin/emails?status=failed").await;
    assert!(page.contains("kid@example.com") && page.contains("mailbox unavailable"), "{page}");
    assert!(!page.contains("root@example.com"), "filtered by status");
    let id = page.split("data-retry=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let res = console.submit(&format!("/admin/emails/{id}/retry"), &[]).await;
    assert_eq!(location(&res), "/admin/emails?status=failed&notice=email-retried");
    let status = app.get_json("/admin/emails?status=queued", Some(&admin.token)).await;
    assert!(status["items"].as_array().unwrap().iter().any(|e| e["id"] == id.as_str()), "queued again: {status}");
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'email.retry'").await, 1);
    // Retrying again is the service's 409, shown as a page.
    let res = console.submit(&format!("/admin/emails/{id}/retry"), &[]).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integration_secret_is_shown_once_and_a_bad_name_is_shown_by_its_field() {
    let app = TestApp::spawn().await;
    let admin = app.user("root", "admin").await;
    let mut console = Console::signed_in(&app, &admin.email).await;
    console.page("/admin/clients").await;

    let res = console.submit("/admin/clients", &[("name", "")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = res.text().await.unwrap();
    assert!(page.contains(r#"id="client-name-error""#), "{page}");

    let res = console.submit("/admin/clients", &[("name", "Streamlit (prod)")]).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let page = res.text().await.unwrap();
    let secret = page.split(r#"id="client-secret">"#).nth(1).unwrap().split('<').next().unwrap().to_string();
    assert!(secret.len() >= 32, "{secret}");
    let clients = app.get_json("/admin/integrations/clients", Some(&admin.token)).await;
    assert_eq!(clients["items"][0]["name"], "Streamlit (prod)");
    let again = console.page("/admin/clients").await;
    assert!(again.contains("Streamlit (prod)") && !again.contains(&secret), "never shown again");

    let id = clients["items"][0]["id"].as_str().unwrap();
    console.keep_csrf(&again);
    let res = console.submit(&format!("/admin/clients/{id}/rotate"), &[]).await;
    assert!(res.text().await.unwrap().contains("Make a new secret"), "asks first");
    let res = console.submit(&format!("/admin/clients/{id}/rotate"), &[("confirm", "yes")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    let rotated = page.split(r#"id="client-secret">"#).nth(1).unwrap().split('<').next().unwrap().to_string();
    assert!(rotated.len() >= 32 && rotated != secret, "a new secret, shown once");
    let clients = app.get_json("/admin/integrations/clients", Some(&admin.token)).await;
    assert!(clients["items"][0]["rotated_at"].is_string());
    // The confirmation sent a second time (a reload) does not end the secret just shown.
    let ask = console.submit(&format!("/admin/clients/{id}/rotate"), &[]).await.text().await.unwrap();
    let seen = super::hidden(&ask, "rotated").unwrap();
    let fields = [("confirm", "yes"), ("rotated", seen.as_str())];
    assert_eq!(console.submit(&format!("/admin/clients/{id}/rotate"), &fields).await.status(), StatusCode::OK);
    assert_eq!(console.submit(&format!("/admin/clients/{id}/rotate"), &fields).await.status(), StatusCode::CONFLICT);
    let res = console.submit(&format!("/admin/clients/{id}/revoke"), &[]).await;
    assert!(res.text().await.unwrap().contains("Revoke “Streamlit (prod)”?"));
    let res = console.submit(&format!("/admin/clients/{id}/revoke"), &[("confirm", "yes")]).await;
    assert_eq!(location(&res), "/admin/clients?notice=client-revoked");
    let clients = app.get_json("/admin/integrations/clients", Some(&admin.token)).await;
    assert!(clients["items"][0]["revoked_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn courses_are_published_and_unpublished_and_the_audit_log_filters_by_action() {
    let app = TestApp::spawn().await;
    let admin = app.user("root", "admin").await;
    let teacher = app.user("teacher", "instructor").await;
    let course = catalog::course(&app, &teacher, "scratch-games").await;
    catalog::module(&app, &teacher, &course, "Sprites", None).await;
    let mut console = Console::signed_in(&app, &admin.email).await;

    let list = console.page("/admin/courses").await;
    assert!(list.contains("teacher@example.com") && list.contains("draft"), "{list}");
    let page = console.page(&format!("/admin/courses/{course}")).await;
    assert!(page.contains("Sprites"), "the funnel names the module");
    let res = console.submit(&format!("/admin/courses/{course}/published"), &[("published", "true")]).await;
    assert_eq!(location(&res), format!("/admin/courses/{course}?notice=published"));
    assert_eq!(app.get_json(&format!("/courses/{course}"), Some(&teacher.token)).await["published"], true);

    let res = console.submit(&format!("/admin/courses/{course}/published"), &[("published", "false")]).await;
    assert!(res.text().await.unwrap().contains("Unpublish"), "asks first");
    let res = console
        .submit(&format!("/admin/courses/{course}/published"), &[("published", "false"), ("confirm", "yes")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.get_json(&format!("/courses/{course}"), Some(&teacher.token)).await["published"], false);

    let audit = console.page("/admin/audit?action=course.update").await;
    assert_eq!(audit.matches("<td><a href=\"/admin/audit?action=course.update\">").count(), 2, "{audit}");
    assert!(!audit.contains("auth.login<"), "filtered");
    let next = console.page("/admin/audit?action=course.update&since=2000-01-01T00:00").await;
    assert!(next.contains(r#"value="2000-01-01T00:00""#), "the filter keeps its state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_csv_exports_download_from_the_console_and_are_audited() {
    let app = TestApp::spawn().await;
    let admin = app.user("root", "admin").await;
    let world = catalog::world(&app, 1, 1).await;
    let mut console = Console::new(&app);
    let res = console.get("/admin/exports/users.csv").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "signed out: no file");

    let mut console = Console::signed_in(&app, &admin.email).await;
    let users = console.page("/admin/users").await;
    assert!(users.contains(r#"href="/admin/exports/users.csv""#));
    let res = console.get("/admin/exports/users.csv").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = res.text().await.unwrap();
    assert!(csv.starts_with("id,email,display_name,role"), "{csv}");
    assert!(csv.contains("student@example.com") && csv.contains("root@example.com"));

    let course = console.page(&format!("/admin/courses/{}", world.course_id)).await;
    assert!(course.contains("id=\"progress-csv\""));
    let csv = console.get(&format!("/admin/exports/course-progress.csv?course_id={}", world.course_id)).await;
    assert!(csv.text().await.unwrap().contains("student@example.com"));

    let res = console.get_with("/admin/exports/users.csv", &[("sec-fetch-site", "same-site")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "another host of the site may not start a download");

    let audit = console.page("/admin/audit?action=admin.export").await;
    assert!(audit.contains(r#"href="/admin/exports/audit-log.csv?action=admin.export""#), "{audit}");
    let csv = console
        .get("/admin/exports/audit-log.csv?action=admin.export&since=2000-01-01T00:00")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(csv.matches(",admin.export,").count(), 3, "each download is in the trail: {csv}");
}
