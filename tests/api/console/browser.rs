//! The console in a real browser (headless Chromium): what an admin sees and clicks, under the
//! console's own Content-Security-Policy, with no console error on any page. Each page is saved
//! as a screenshot under `target/screenshots/console-*.png`, on a laptop and on a phone.

use reqwest::StatusCode;
use sea_orm::ConnectionTrait;

use crate::support::{browser::Browser, catalog, *};

fn at(app: &TestApp, path: &str) -> String {
    format!("{}{path}", app.base)
}

async fn sign_in(app: &TestApp, browser: &Browser, email: &str) {
    browser.goto(&at(app, "/admin")).await;
    browser.wait_for("#email").await;
    browser.fill("#email", email).await;
    browser.fill("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
}

/// Looks at a page the way an admin would, on both screens, and fails on any console error
/// (a refused script or style, a failed request, an exception).
async fn look(browser: &Browser, name: &str) {
    browser.assert_no_console_errors().await;
    browser.screenshot_full_page(&format!("console-{name}")).await;
    browser.phone().await;
    browser.screenshot_full_page(&format!("console-{name}-phone")).await;
    browser.desktop().await;
    browser.assert_no_console_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_signs_in_reads_the_overview_and_deactivates_a_student() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_EMAIL_WORKER".into(), "false".into());
    })
    .await;
    let admin = app.user("root", "admin").await;
    let world = catalog::world(&app, 3, 2).await;
    let browser = Browser::new().await;

    sign_in(&app, &browser, &admin.email).await;
    browser.wait_for("#stat-students").await;
    let stats = app.get_json("/admin/stats", Some(&admin.token)).await;
    assert_eq!(browser.text("#stat-students").await, stats["users_by_role"]["student"].to_string());
    assert_eq!(browser.text("#stat-enrollments").await, stats["enrollments"].to_string());
    assert_eq!(browser.text("#stat-outbox-queued").await, stats["email_outbox"]["queued"].to_string());
    let session = browser.cookie("cifix_console").await;
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(session.same_site().map(|s| s.to_string()).as_deref(), Some("Strict"));
    look(&browser, "overview").await;

    // The search narrows the table as the admin types (htmx), and the URL keeps the filter.
    browser.click("nav a[href='/admin/users']").await;
    browser.wait_for("#q").await;
    browser.wait_for_text("root@example.com").await;
    browser.fill("#q", "stud").await;
    wait_until(|| async { !browser.page_text().await.contains("root@example.com") }, "the table to filter").await;
    assert!(browser.url().await.contains("q=stud"), "{}", browser.url().await);
    look(&browser, "users").await;

    browser.click(&format!("a[href='/admin/users/{}']", world.student.id)).await;
    browser.wait_for("#deactivate").await;
    look(&browser, "user").await;
    browser.click("#deactivate").await;
    browser.wait_for_text("Deactivate student@example.com?").await;
    look(&browser, "confirm").await;
    expect(app.get("/me", Some(&world.student.token)).await, StatusCode::OK).await;
    browser.click("button.danger").await;
    browser.wait_for_text("The account was deactivated").await;
    assert_eq!(browser.text("#user-status").await, "deactivated");
    problem(app.get("/me", Some(&world.student.token)).await, StatusCode::UNAUTHORIZED).await;

    // The other pages, each looked at once.
    for (tab, name, marker) in [
        ("/admin/courses", "courses", "Course ai-for-kids"),
        ("/admin/audit", "audit", "admin.user_update"),
        ("/admin/clients", "clients", "New client"),
    ] {
        browser.click(&format!("nav a[href='{tab}']")).await;
        browser.wait_for_text(marker).await;
        look(&browser, name).await;
    }
    browser.goto(&at(&app, &format!("/admin/courses/{}", world.course_id))).await;
    browser.wait_for_text("Where students drop off").await;
    look(&browser, "course").await;
    browser.goto(&at(&app, &format!("/admin/reviews?course_id={}", world.course_id))).await;
    browser.wait_for_text("Nothing waits for review").await;
    look(&browser, "reviews").await;

    browser.click(".sign-out button").await;
    browser.wait_for("#email").await;
    browser.goto(&at(&app, "/admin/users")).await;
    browser.wait_for("#email").await;
    assert!(browser.url().await.contains("/admin/sign-in?next="), "signed out: {}", browser.url().await);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_email_is_retried_and_a_secret_is_shown_once() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_EMAIL_WORKER".into(), "false".into());
    })
    .await;
    let admin = app.user("root", "admin").await;
    app.user("kid", "student").await;
    let failed = "UPDATE email_outbox SET status = 'failed', attempts = 8, last_error = '550 mailbox unavailable' \
                  WHERE to_address = 'kid@example.com'";
    app.db.conn.execute_unprepared(failed).await.unwrap();
    let browser = Browser::new().await;
    sign_in(&app, &browser, &admin.email).await;
    browser.wait_for("#stat-outbox-failed").await;
    assert_eq!(browser.text("#stat-outbox-failed").await, "1");

    browser.click("a[href='/admin/emails?status=failed']").await;
    browser.wait_for_text("550 mailbox unavailable").await;
    look(&browser, "emails").await;
    browser.click("button[data-retry]").await;
    browser.wait_for_text("The email is queued again.").await;
    assert!(!browser.page_text().await.contains("550 mailbox unavailable"), "no failed email left");
    let queued = app.get_json("/admin/emails?status=failed", Some(&admin.token)).await;
    assert!(queued["items"].as_array().unwrap().is_empty(), "{queued}");

    browser.click("nav a[href='/admin/clients']").await;
    browser.fill("#client-name", "Streamlit (prod)").await;
    browser.click("form[action='/admin/clients'] button").await;
    let secret = browser.text("#client-secret").await;
    assert!(secret.len() >= 32, "{secret}");
    look(&browser, "client-secret").await;
    browser.click("nav a[href='/admin/clients']").await;
    browser.wait_for_text("Streamlit (prod)").await;
    assert!(!browser.page_text().await.contains(&secret), "the secret is never shown again");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_students_credentials_and_a_form_without_its_token_are_refused() {
    let app = TestApp::spawn().await;
    let admin = app.user("root", "admin").await;
    let kid = app.user("kid", "student").await;
    let browser = Browser::new().await;

    sign_in(&app, &browser, &kid.email).await;
    browser.wait_for("#sign-in-error").await;
    assert!(browser.text("#sign-in-error").await.contains("do not open the admin console"));
    assert_eq!(
        browser
            .client()
            .find(fantoccini::Locator::Css("#email"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some(kid.email.as_str())
    );
    // The 401 of the refused sign-in is the one console error the page may have.
    let errors = browser.take_console_errors().await;
    assert!(errors.iter().all(|e| e.source == "network" && e.message.contains("401")), "{errors:?}");
    browser.screenshot_full_page("console-sign-in-refused").await;
    assert!(browser.cookies().await.iter().all(|c| c.name() != "cifix_console"), "no session");

    sign_in(&app, &browser, &admin.email).await;
    browser.wait_for("#stat-students").await;
    browser.goto(&at(&app, &format!("/admin/users/{}", kid.id))).await;
    browser.wait_for("#end-sessions").await;
    // A page that lost its token (as a forged form would lack it) is refused.
    browser
        .client()
        .execute("document.querySelectorAll('input[name=csrf]').forEach(i => i.remove())", vec![])
        .await
        .unwrap();
    browser.click("#end-sessions").await;
    browser.wait_for_text("security token").await;
    browser.take_console_errors().await;
    browser.screenshot_full_page("console-csrf-refused").await;
    expect(app.get("/me", Some(&kid.token)).await, StatusCode::OK).await;
    browser.close().await;
}

async fn wait_until<F, Fut>(condition: F, what: &str)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + crate::support::browser::WAIT;
    while !condition().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
