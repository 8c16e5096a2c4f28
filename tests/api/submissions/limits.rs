//! Size limits, quotas and broken uploads: each refused with a clear problem, and nothing of
//! it kept (no row, no object, no staged bytes).

use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{file, form, nothing_kept, project, spawn, submit};
use crate::support::{error_fields, expect, free_port, problem};

fn small(env: &mut std::collections::HashMap<String, String>) {
    env.insert("CIFIX_UPLOAD_MAX_FILE_BYTES".into(), "1000".into());
    env.insert("CIFIX_UPLOAD_MAX_SUBMISSION_BYTES".into(), "2000".into());
    env.insert("CIFIX_UPLOAD_QUOTA_BYTES".into(), "2000".into());
    env.insert("CIFIX_UPLOAD_MAX_FILES".into(), "3".into());
}

fn text(n: usize) -> String {
    "print('x')\n".repeat(n / 11 + 1)[..n].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_limit_is_413_naming_what_and_nothing_is_kept() {
    let app = spawn(small).await;
    let w = project(&app).await;
    // One file over its limit (the body has no length: found while streaming).
    let res = submit(&app, &w.student, &w.lesson_id, form(vec![file("big.py", text(1500), "text/plain")], "")).await;
    let p = problem(res, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(error_fields(&p), vec!["files[0]"]);
    assert!(p["detail"].as_str().unwrap().contains("big.py"), "{p}");
    // Files each within the limit, over it together.
    let three = vec![
        file("a.py", text(900), "text/plain"),
        file("b.py", text(900), "text/plain"),
        file("c.py", text(900), "text/plain"),
    ];
    assert_eq!(
        error_fields(
            &problem(submit(&app, &w.student, &w.lesson_id, form(three, "")).await, StatusCode::PAYLOAD_TOO_LARGE)
                .await
        ),
        vec!["files"]
    );
    // Too many files, however small.
    let many = (0..4).map(|i| file(&format!("f{i}.py"), "x = 1", "text/plain")).collect();
    assert_eq!(
        error_fields(
            &problem(submit(&app, &w.student, &w.lesson_id, form(many, "")).await, StatusCode::PAYLOAD_TOO_LARGE).await
        ),
        vec!["files"]
    );
    nothing_kept(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_over_the_limit_is_refused_before_the_body_is_read() {
    let app = spawn(small).await;
    let w = project(&app).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/lessons/{}/submissions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 100000000\r\n\r\n",
        w.lesson_id, w.student.token
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    // Not a byte of the body sent: the answer comes anyway.
    let mut answer = vec![0u8; 4096];
    let n =
        tokio::time::timeout(Duration::from_secs(10), conn.read(&mut answer)).await.expect("answered at once").unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    nothing_kept(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_uploads_racing_for_the_last_of_the_quota_cannot_both_fit() {
    let app = spawn(small).await;
    let w = project(&app).await;
    // A second project lesson, so that both hand-ins are allowed at once.
    let module_id = &w.module_id;
    let res = app
        .send_json(
            Method::POST,
            &format!("/modules/{module_id}/lessons"),
            w.instructor.auth(),
            serde_json::json!({"title": "Second game", "kind": "project"}),
        )
        .await;
    let second = expect(res, StatusCode::CREATED).await["id"].as_str().unwrap().to_string();
    let upload = |lesson: String| {
        let two = vec![file("a.py", text(700), "text/plain"), file("b.py", text(700), "text/plain")];
        let req =
            app.req(Method::POST, &format!("/lessons/{lesson}/submissions"), w.student.auth()).multipart(form(two, ""));
        async move { req.send().await.unwrap() }
    };
    let (a, b) = tokio::join!(upload(w.lesson_id.clone()), upload(second));
    let mut statuses = vec![a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, vec![StatusCode::CREATED, StatusCode::PAYLOAD_TOO_LARGE]);
    let refused = if a.status() == StatusCode::CREATED { b } else { a };
    assert!(
        problem(refused, StatusCode::PAYLOAD_TOO_LARGE).await["type"]
            .as_str()
            .unwrap()
            .ends_with("storage-quota-exceeded")
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM submissions").await, 1);
    assert_eq!(app.count("SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM submission_files").await, 1400);
    assert_eq!(super::stored_objects(&app).await.len(), 2, "the loser's objects are gone");
}

/// A multipart body that stops in the middle of a file: cut off (the stream ends early) or
/// abandoned (the client fails and the connection drops).
fn broken_body(lesson_fail: bool) -> reqwest::Body {
    let head = "--xyz\r\nContent-Disposition: form-data; name=\"files\"; filename=\"game.py\"\r\nContent-Type: text/plain\r\n\r\nprint(1)\n";
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = if lesson_fail {
        vec![Ok(head.as_bytes().to_vec()), Err(std::io::Error::other("the client went away"))]
    } else {
        vec![Ok(head.as_bytes().to_vec())]
    };
    reqwest::Body::wrap_stream(futures::stream::iter(chunks).then(|c| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        c
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_off_or_abandoned_mid_file_keeps_nothing() {
    let app = spawn(|_| {}).await;
    let w = project(&app).await;
    let send = |fail| {
        app.req(Method::POST, &format!("/lessons/{}/submissions", w.lesson_id), w.student.auth())
            .header("content-type", "multipart/form-data; boundary=xyz")
            .body(broken_body(fail))
            .send()
    };
    let cut = send(false).await.unwrap();
    assert!(problem(cut, StatusCode::BAD_REQUEST).await["detail"].as_str().unwrap().contains("cut off"));
    assert!(send(true).await.is_err(), "the client gave up");
    // The server notices the dropped connection and removes the staged bytes.
    for _ in 0..50 {
        if std::fs::read_dir(cifix::submissions::staging_root(&app.state.config.data_dir))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nothing_kept(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_be_reached_is_503_and_nothing_is_kept() {
    let port = free_port();
    let app = crate::support::TestApp::spawn_with(move |env| {
        env.insert("CIFIX_STORAGE".into(), "s3".into());
        env.insert("CIFIX_S3_BUCKET".into(), "nowhere".into());
        env.insert("CIFIX_S3_ENDPOINT".into(), format!("http://127.0.0.1:{port}"));
        env.insert("CIFIX_S3_ACCESS_KEY_ID".into(), "test".into());
        env.insert("CIFIX_S3_SECRET_ACCESS_KEY".into(), "test-secret".into());
    })
    .await;
    let w = project(&app).await;
    let res = submit(&app, &w.student, &w.lesson_id, form(vec![file("a.py", "print(1)", "text/plain")], "")).await;
    assert!(res.headers().contains_key("retry-after"));
    problem(res, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM submissions").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM submission_files").await, 0);
}
