//! The browser harness end to end, on the one page the binary serves to browsers today: the API
//! documentation (Swagger UI) at `/api/docs`.

use futures::FutureExt;

use crate::support::{TestApp, browser::Browser};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_docs_render_their_operations_without_console_errors() {
    let app = TestApp::spawn().await;
    let browser = Browser::new().await;

    browser.goto(&app.url("/api/docs")).await;
    browser.wait_for(".opblock").await;
    assert!(browser.find_all(".opblock").await.len() > 10, "the docs list the API's operations");
    browser.wait_for_text("/api/v1/auth/login").await;
    browser.assert_no_console_errors().await;
    browser.screenshot("api-docs").await;

    browser.phone().await;
    browser.wait_for(".opblock").await;
    browser.screenshot("api-docs-phone").await;
    browser.assert_no_console_errors().await;
    browser.close().await;
}

/// The absence of console errors above means something only if a violation of the page's
/// Content-Security-Policy shows up: here an image from another origin, which the docs' policy
/// (`img-src 'self' data:`) refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_security_policy_violation_is_a_console_error() {
    let app = TestApp::spawn().await;
    let browser = Browser::new().await;
    browser.goto(&app.url("/api/docs")).await;
    browser.wait_for(".opblock").await;
    browser.assert_no_console_errors().await;

    // The policy refuses the image before any request; its `error` event follows the report.
    let foreign_image = "const done = arguments[0]; const img = document.createElement('img'); \
                         img.onerror = () => done(true); img.onload = () => done(false); \
                         img.src = 'http://localhost:9/elsewhere.png'; document.body.appendChild(img);";
    let refused = browser.client().execute_async(foreign_image, vec![]).await.unwrap();
    assert_eq!(refused, true, "the image is refused");
    let errors = browser.take_console_errors().await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].source, "security", "{errors:?}");
    assert!(errors[0].message.contains("violates the following Content Security Policy directive"), "{errors:?}");
    assert!(errors[0].message.contains("http://localhost:9/elsewhere.png"), "{errors:?}");

    browser.client().execute_async(foreign_image, vec![]).await.unwrap();
    let asserted = std::panic::AssertUnwindSafe(browser.assert_no_console_errors()).catch_unwind().await;
    let message = asserted.expect_err("the assertion fails on a violation");
    let message = message.downcast_ref::<String>().expect("a message");
    assert!(message.contains("console errors on http://127.0.0.1:") && message.contains("elsewhere.png"), "{message}");
}

/// The helpers a page's test uses, on a page made here: a form that sets a session cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_is_filled_and_sent_and_its_cookie_flags_are_seen() {
    use axum::{Form, Router, http::header, response::Html, routing::get};

    // Without the viewport a phone lays the page out 980 pixels wide and shrinks it, as phones
    // do; without an icon the browser asks for /favicon.ico, and its 404 is a console error.
    const HEAD: &str = r#"<meta name="viewport" content="width=device-width"><link rel="icon" href="data:,">"#;
    let form = Html(format!(
        r#"<!doctype html><title>Sign in</title>{HEAD}<form method="post" action="/signed-in">
           <input name="email"> <input id="password" type="password" name="password">
           <button id="go">Sign in</button></form>"#
    ));
    let signed_in = |Form(fields): Form<std::collections::HashMap<String, String>>| async move {
        let cookie = "session=s3cr3t; Path=/; HttpOnly; SameSite=Strict";
        ([(header::SET_COOKIE, cookie)], Html(format!("{HEAD}<p id=\"who\">Signed in as {}</p>", fields["email"])))
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let site =
        Router::new().route("/", get(move || async move { form })).route("/signed-in", axum::routing::post(signed_in));
    tokio::spawn(async move { axum::serve(listener, site).await });

    let browser = Browser::new().await;
    browser.goto(&base).await;
    browser.fill_by_name("email", "ada@example.com").await;
    browser.fill("#password", "not this one").await;
    browser.fill("#password", "correct horse").await;
    browser.click("#go").await;
    browser.wait_for_text("Signed in as ada@example.com").await;
    assert_eq!(browser.text("#who").await, "Signed in as ada@example.com");
    assert_eq!(browser.url().await, format!("{base}/signed-in"));

    let cookie = browser.cookie("session").await;
    let same_site = cookie.same_site().map(|s| s.to_string());
    assert_eq!((cookie.value(), cookie.http_only(), same_site.as_deref()), ("s3cr3t", Some(true), Some("Strict")));
    assert_eq!(browser.cookies().await.len(), 1);
    let from_script = browser.client().execute("return document.cookie", vec![]).await.unwrap();
    assert_eq!(from_script, "", "an HttpOnly cookie is hidden from the page's scripts");

    browser.phone().await;
    let width = browser.client().execute("return window.innerWidth", vec![]).await.unwrap();
    assert_eq!(width, 390);
    browser.desktop().await;
    let width = browser.client().execute("return window.innerWidth", vec![]).await.unwrap();
    assert_eq!(width, 1280);
    browser.screenshot_full_page("harness-form").await;
    browser.assert_no_console_errors().await;
}
