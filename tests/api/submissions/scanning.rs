//! Malware scanning with a real ClamAV, and the janitor: an infected file is refused visibly,
//! a scanner that is down means "pending", never "clean", and stale uploads are swept.

use std::{sync::Arc, time::Duration};

use reqwest::StatusCode;

use super::{file, form, notifications, project, spawn, stored_objects, submit, zip_of};
use crate::support::{TestApp, clamd::EICAR, expect, free_port, problem, s};

async fn with_clamd() -> TestApp {
    let clamd = crate::support::clamd::clamd().env();
    spawn(move |env| env.extend(clamd)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infected_file_rejects_the_submission_visibly_and_is_never_served() {
    let app = with_clamd().await;
    let w = project(&app).await;
    for (i, infected) in
        [file("virus.txt", EICAR, "text/plain"), file("game.zip", zip_of(&[("x.txt", EICAR)]), "application/zip")]
            .into_iter()
            .enumerate()
    {
        let clean = file("game.py", "print(1)", "text/plain");
        let sub =
            expect(submit(&app, &w.student, &w.lesson_id, form(vec![clean, infected], "")).await, StatusCode::CREATED)
                .await;
        assert_eq!(sub["status"], "rejected");
        assert_eq!(sub["version"], i as i64 + 1, "a rejected version may be followed by a new one");
        assert_eq!(sub["files"][0]["scan_status"], "clean");
        assert_eq!(sub["files"][1]["scan_status"], "infected");
        let res = app.get(&format!("/files/{}", s(&sub["files"][1]["id"])), w.student.auth()).await;
        problem(res, StatusCode::CONFLICT).await;
        let res = app.get(&format!("/files/{}", s(&sub["files"][0]["id"])), w.student.auth()).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(notifications(&app, &w.student.token, "submission.rejected").await.len(), 2);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'file.scan'").await, 4);
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM submission_files WHERE scan_status = 'infected' AND scan_signature IS NOT NULL"
        )
        .await,
        2
    );
    // Only the clean files reached the store.
    assert_eq!(stored_objects(&app).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_scanner_down_files_wait_and_are_checked_when_it_is_back() {
    let down = format!("127.0.0.1:{}", free_port());
    let app = spawn(move |env| {
        env.insert("CLAMD_ADDR".into(), down);
        env.insert("CIFIX_CLAMD_TIMEOUT_SECS".into(), "2".into());
    })
    .await;
    let w = project(&app).await;
    let sub = expect(
        submit(
            &app,
            &w.student,
            &w.lesson_id,
            form(vec![file("game.py", "print(1)", "text/plain"), file("v.txt", EICAR, "text/plain")], ""),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(sub["status"], "submitted");
    assert!(sub["files"].as_array().unwrap().iter().all(|f| f["scan_status"] == "pending"));
    let first = s(&sub["files"][0]["id"]);
    problem(app.get(&format!("/files/{first}"), w.student.auth()).await, StatusCode::CONFLICT).await;
    let id = s(&sub["id"]);
    let review = super::review(&app, &w.instructor, &id, serde_json::json!({"status": "approved", "feedback": "ok"}));
    problem(review.await, StatusCode::CONFLICT).await;
    // Retrying while the scanner is still down changes nothing.
    assert_eq!(app.state.submissions.retry_scans().await.unwrap(), 0);

    // The scanner is back: a worker configured with it gives the verdicts.
    let svc = &app.state.submissions;
    let scanner = crate::support::clamd::clamd().scanner();
    let back = cifix::submissions::SubmissionService {
        db: svc.db.clone(),
        reactor: svc.reactor.clone(),
        storage: svc.storage.clone(),
        scanner: Arc::new(scanner),
        limits: cifix::config::UploadLimits { scan_retry_interval: Duration::ZERO, ..svc.limits.clone() },
        staging_root: svc.staging_root.clone(),
        slots: svc.slots.clone(),
    };
    // The failed attempt postponed them; make them due now.
    use sea_orm::ConnectionTrait;
    app.db.conn.execute_unprepared("UPDATE submission_files SET scan_next_at = created_at").await.unwrap();
    assert_eq!(back.retry_scans().await.unwrap(), 2);
    let got = app.get_json(&format!("/submissions/{}", s(&sub["id"])), w.student.auth()).await;
    assert_eq!(got["status"], "rejected");
    assert_eq!(got["files"][0]["scan_status"], "clean");
    assert_eq!(got["files"][1]["scan_status"], "infected");
    assert_eq!(app.get(&format!("/files/{first}"), w.student.auth()).await.status(), StatusCode::OK);
    assert_eq!(notifications(&app, &w.student.token, "submission.rejected").await.len(), 1);
    assert_eq!(stored_objects(&app).await.len(), 1, "the infected object was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_janitor_sweeps_what_failed_uploads_left_and_nothing_else() {
    let app = spawn(|env| {
        env.insert("CIFIX_UPLOAD_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    let w = project(&app).await;
    let kept = expect(
        submit(&app, &w.student, &w.lesson_id, form(vec![file("a.py", "print(1)", "text/plain")], "")).await,
        StatusCode::CREATED,
    )
    .await;
    // What a killed process leaves: an object no row refers to, and a staging directory.
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), b"half an upload").unwrap();
    let orphan = cifix::submissions::object_key(uuid::Uuid::now_v7());
    app.state.submissions.storage.put_file(&orphan, tmp.path()).await.unwrap();
    let staging = cifix::submissions::staging_root(&app.state.config.data_dir).join("upload-killed");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("file-0"), b"bytes").unwrap();

    // Too young to be stale: an upload could still be committing them.
    assert_eq!(app.state.submissions.sweep().await.unwrap(), Default::default());
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let swept = app.state.submissions.sweep().await.unwrap();
    assert_eq!((swept.objects, swept.stagings), (1, 1));
    let left = stored_objects(&app).await;
    assert_eq!(left.len(), 1);
    assert!(!left.contains(&orphan));
    let res = app.get(&format!("/files/{}", s(&kept["files"][0]["id"])), w.student.auth()).await;
    assert_eq!(res.text().await.unwrap(), "print(1)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_the_scanner_never_manages_to_check_is_refused_in_the_end() {
    let down = format!("127.0.0.1:{}", free_port());
    let app = spawn(move |env| {
        env.insert("CLAMD_ADDR".into(), down);
    })
    .await;
    let w = project(&app).await;
    let form = form(vec![file("game.py", "print(1)", "text/plain")], "");
    let sub = expect(submit(&app, &w.student, &w.lesson_id, form).await, StatusCode::CREATED).await;
    // One attempt short of the last, and due.
    use sea_orm::ConnectionTrait;
    let last = cifix::submissions::scan::MAX_ATTEMPTS - 1;
    let sql = format!("UPDATE submission_files SET scan_attempts = {last}, scan_next_at = created_at");
    app.db.conn.execute_unprepared(&sql).await.unwrap();
    assert_eq!(app.state.submissions.retry_scans().await.unwrap(), 1);
    let got = app.get_json(&format!("/submissions/{}", s(&sub["id"])), w.student.auth()).await;
    assert_eq!(got["status"], "rejected");
    assert_eq!(got["files"][0]["scan_status"], "unscannable");
    let told = notifications(&app, &w.student.token, "submission.rejected").await;
    assert!(told[0]["body"].as_str().unwrap().contains("could not check"), "{told:?}");
    assert_eq!(stored_objects(&app).await, Vec::<String>::new(), "its bytes are gone");
    problem(app.get(&format!("/files/{}", s(&got["files"][0]["id"])), w.student.auth()).await, StatusCode::CONFLICT)
        .await;
    // Not stuck: the student hands in again.
    let again =
        submit(&app, &w.student, &w.lesson_id, super::form(vec![file("game.py", "print(2)", "text/plain")], "")).await;
    assert_eq!(expect(again, StatusCode::CREATED).await["version"], 2);
}
