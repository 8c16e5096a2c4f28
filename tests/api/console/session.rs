//! Signing in and out of the console, and what guards every state change.

use reqwest::{StatusCode, header};

use super::{Console, location};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_signs_in_with_a_strict_cookie_and_lands_where_they_were_going() {
    let app = TestApp::spawn().await;
    let admin = app.user("root", "admin").await;
    let mut console = Console::new(&app);

    let res = console.get("/admin/users?role=student").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "signed out: to the sign-in page");
    assert_eq!(location(&res), "/admin/sign-in?next=%2Fadmin%2Fusers%3Frole%3Dstudent");

    let form = console.page(&location(&res)).await;
    assert!(form.contains(r#"name="next" value="/admin/users?role=student""#), "{form}");
    let csrf = super::hidden(&form, "csrf").unwrap();
    let res = console
        .post_raw(
            "/admin/sign-in",
            &[("csrf", &csrf), ("email", &admin.email), ("password", PASSWORD), ("next", "/admin/users?role=student")],
            &[],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/admin/users?role=student");
    let set: Vec<_> =
        res.headers().get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_string()).collect();
    let session = set.iter().find(|c| c.starts_with("cifix_console=")).expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age=43200"] {
        assert!(session.contains(flag), "{flag} in {session}");
    }
    assert!(!session.contains("Secure"), "plain http in tests: a Secure cookie would never come back");

    let page = console.page("/admin/users?role=student").await;
    assert!(page.contains("<h1>Users</h1>"));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.login'").await,
        1,
        "audited as a sign-in"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_is_secure_behind_https() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_PUBLIC_URL".into(), "https://learn.example".into());
    })
    .await;
    let admin = app.user("root", "admin").await;
    let mut console = Console::new(&app);
    let res = console.sign_in(&admin.email, PASSWORD).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let session = res.headers().get(header::SET_COOKIE).unwrap().to_str().unwrap().to_string();
    assert!(session.contains("; Secure"), "{session}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_students_and_an_instructors_right_password_do_not_open_the_console() {
    let app = TestApp::spawn().await;
    for role in ["student", "instructor"] {
        let user = app.user(role, role).await;
        let sessions_before = app.count("SELECT COUNT(*) FROM sessions").await;
        let mut console = Console::new(&app);
        let res = console.sign_in(&user.email, PASSWORD).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{role}");
        let body = res.text().await.unwrap();
        assert!(body.contains("do not open the admin console"), "{body}");
        assert!(console.cookie("cifix_console").is_none());
        assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, sessions_before, "no session started");
        assert_eq!(console.get("/admin").await.status(), StatusCode::SEE_OTHER, "still signed out");
    }
    let refused = "SELECT COUNT(*) FROM audit_log WHERE action = 'auth.login_failed' AND CAST(details AS TEXT) LIKE '%role_not_allowed%'";
    assert_eq!(app.count(refused).await, 2);
    // The API is unchanged: the same student signs in there.
    expect(app.login("student@example.com", PASSWORD).await, StatusCode::OK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_shows_the_error_by_the_form_and_the_account_locks_as_in_the_api() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_MAX_FAILED_LOGINS_PER_HOUR".into(), "3".into());
    })
    .await;
    let admin = app.user("root", "admin").await;
    let mut console = Console::new(&app);
    for _ in 0..3 {
        let res = console.sign_in(&admin.email, "not the password").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let body = res.text().await.unwrap();
        assert!(body.contains(r#"aria-invalid="true""#) && body.contains(&admin.email), "the email is kept: {body}");
    }
    let res = console.sign_in(&admin.email, PASSWORD).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "locked, even with the right password");
    assert!(res.headers().contains_key(header::RETRY_AFTER));
    assert!(res.text().await.unwrap().to_lowercase().contains("too many failed attempts"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_without_its_csrf_token_or_sent_from_another_site_changes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.user("root", "admin").await;
    let student = app.user("kid", "student").await;
    let mut console = Console::signed_in(&app, &admin.email).await;
    let path = format!("/admin/users/{}/active", student.id);

    let res = console.post_raw(&path, &[("active", "false"), ("confirm", "yes")], &[]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = console.post_raw(&path, &[("csrf", "0000"), ("active", "false"), ("confirm", "yes")], &[]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body = res.text().await.unwrap();
    assert!(body.contains("security token"), "shown as a page: {body}");

    console.page(&format!("/admin/users/{}", student.id)).await;
    let csrf = console.csrf.clone().unwrap();
    let fields = [("csrf", csrf.as_str()), ("active", "false"), ("confirm", "yes")];
    let res = console.post_raw(&path, &fields, &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "the right token, sent by another site's page");

    assert_eq!(app.count("SELECT COUNT(*) FROM users WHERE is_active = false").await, 0, "nobody was deactivated");
    expect(app.get("/me", Some(&student.token)).await, StatusCode::OK).await;

    // A sign-in form posted without the token its page set is refused too.
    let mut stranger = Console::new(&app);
    let res = stranger
        .post_raw("/admin/sign-in", &[("csrf", "x"), ("email", &admin.email), ("password", PASSWORD)], &[])
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(stranger.cookie("cifix_console").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_or_ending_the_admins_sessions_elsewhere_ends_the_console_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.user("root", "admin").await;

    let mut console = Console::signed_in(&app, &admin.email).await;
    console.page("/admin").await;
    let res = console.submit("/admin/sign-out", &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(console.cookie("cifix_console").is_none(), "the cookie is deleted");
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.logout'").await, 1);

    let mut console = Console::signed_in(&app, &admin.email).await;
    let stolen = console.cookie("cifix_console").unwrap().to_string();
    console.page("/admin").await;
    expect(app.post("/auth/logout-all", Some(&admin.token), serde_json::json!({})).await, StatusCode::NO_CONTENT).await;
    let res = console.get("/admin").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "signed out everywhere means the console too");
    // A copy of the old cookie is worth nothing either.
    let mut copy = Console::new(&app);
    copy.cookies.push(("cifix_console".into(), stolen));
    assert_eq!(copy.get("/admin").await.status(), StatusCode::SEE_OTHER);

    // Demoted: the console closes on the next request.
    let other = app.user("boss", "admin").await;
    let mut console = Console::signed_in(&app, &admin.email).await;
    console.page("/admin").await;
    let body = serde_json::json!({"role": "student"});
    let res =
        app.send_json(reqwest::Method::PATCH, &format!("/admin/users/{}", admin.id), Some(&other.token), body).await;
    expect(res, StatusCode::OK).await;
    assert_eq!(console.get("/admin").await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pages_carry_the_strict_policy_and_errors_are_pages() {
    let app = TestApp::spawn().await;
    let admin = app.user("root", "admin").await;
    let mut console = Console::signed_in(&app, &admin.email).await;
    let res = console.get("/admin").await;
    assert_eq!(res.status(), StatusCode::OK);
    let csp = res.headers().get("content-security-policy").unwrap().to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(res.headers().get(header::CACHE_CONTROL).unwrap(), "no-store");
    assert_eq!(res.headers().get("x-frame-options").unwrap(), "DENY");

    let res = console.get("/admin/users/not-a-uuid").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "as the API answers a malformed id");
    assert!(res.headers().get(header::CONTENT_TYPE).unwrap().to_str().unwrap().starts_with("text/html"));
    let res = console.get(&format!("/admin/users/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(res.text().await.unwrap().contains("Back to the console"));
    let res = console.get("/admin/audit?since=yesterday").await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("<strong>since</strong>"), "names the field");

    let res = console.get("/admin/assets/console-1.css").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get(header::CACHE_CONTROL).unwrap().to_str().unwrap().contains("immutable"));
    assert_eq!(console.get("/admin/assets/htmx-2.0.11.min.js").await.status(), StatusCode::OK);
    assert_eq!(console.get("/admin/assets/nothing.js").await.status(), StatusCode::NOT_FOUND);

    // The JSON API under /api/v1/admin still answers problem+json.
    let res = app.get("/admin/users/not-a-uuid", Some(&admin.token)).await;
    assert!(res.headers().get(header::CONTENT_TYPE).unwrap().to_str().unwrap().starts_with("application/problem+json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_cookie_traded_at_the_api_ends_the_session_for_both() {
    let app = TestApp::spawn().await;
    let admin = app.user("root", "admin").await;
    let mut console = Console::signed_in(&app, &admin.email).await;
    let cookie = console.cookie("cifix_console").unwrap().to_string();

    let pair =
        expect(app.post("/auth/refresh", None, serde_json::json!({"refresh_token": cookie})).await, StatusCode::OK)
            .await;
    assert_eq!(console.get("/admin").await.status(), StatusCode::SEE_OTHER, "the console's token was spent elsewhere");
    problem(app.get("/me", Some(&access(&pair))).await, StatusCode::UNAUTHORIZED).await;
    let refreshed = serde_json::json!({"refresh_token": pair["refresh_token"]});
    problem(app.post("/auth/refresh", None, refreshed).await, StatusCode::UNAUTHORIZED).await;
    let reuse = "SELECT COUNT(*) FROM audit_log WHERE action = 'auth.refresh_reuse_detected'";
    assert_eq!(app.count(reuse).await, 1, "read as a stolen token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_sends_htmx_to_the_sign_in_page_instead_of_swapping_it_in() {
    let app = TestApp::spawn().await;
    let mut console = Console::new(&app);
    let res = console.get_with("/admin/users?q=a", &[("hx-request", "true")]).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(res.headers()["hx-redirect"], "/admin/sign-in?next=%2Fadmin%2Fusers%3Fq%3Da");
}
