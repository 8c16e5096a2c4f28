//! The life of a project: handed in, read by who may, downloaded, reviewed, handed in again.

use reqwest::{Method, StatusCode};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use super::{file, form, notifications, project, review, spawn, submit, submit_code};
use crate::support::{expect, problem, s, smtp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_is_handed_in_read_and_downloaded_by_who_may() {
    let app = spawn(|_| {}).await;
    let w = project(&app).await;
    let code = "print('hello')\n";
    let res = submit(
        &app,
        &w.student,
        &w.lesson_id,
        form(
            vec![file("game.py", code, "text/x-python"), file("notes.md", "# How it works", "text/markdown")],
            "Look!",
        ),
    )
    .await;
    let sub = expect(res, StatusCode::CREATED).await;
    assert_eq!(sub["status"], "submitted");
    assert_eq!(sub["lesson_id"], w.lesson_id.as_str());
    assert_eq!(sub["version"], 1);
    assert_eq!(sub["note"], "Look!");
    let files = sub["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["filename"], "game.py");
    assert_eq!(files[0]["size"], code.len());
    assert_eq!(files[0]["content_type"], "text/plain; charset=utf-8");
    use sha2::Digest;
    assert_eq!(files[0]["sha256"], hex::encode(sha2::Sha256::digest(code)));
    let id = s(&sub["id"]);
    let file_id = s(&files[0]["id"]);

    // The student, the course's instructor and admins read it; others get 404.
    let admin = app.user("admin", "admin").await;
    let other_teacher = app.user("other-teacher", "instructor").await;
    let other_student = app.user("other-student", "student").await;
    for u in [&w.student, &w.instructor, &admin] {
        let got = expect(app.get(&format!("/submissions/{id}"), u.auth()).await, StatusCode::OK).await;
        assert_eq!(got["versions"].as_array().unwrap().len(), 1);
        let res = app.get(&format!("/files/{file_id}"), u.auth()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.text().await.unwrap(), code);
    }
    for u in [&other_teacher, &other_student] {
        problem(app.get(&format!("/submissions/{id}"), u.auth()).await, StatusCode::NOT_FOUND).await;
        problem(app.get(&format!("/files/{file_id}"), u.auth()).await, StatusCode::NOT_FOUND).await;
        problem(review(&app, u, &id, json!({"status": "approved", "feedback": "ok"})).await, StatusCode::NOT_FOUND)
            .await;
    }
    let queue = format!("/courses/{}/submissions?status=submitted", w.course_id);
    problem(app.get(&queue, other_teacher.auth()).await, StatusCode::NOT_FOUND).await;
    problem(app.get(&queue, w.student.auth()).await, StatusCode::NOT_FOUND).await;
    let listed = app.get_json(&queue, w.instructor.auth()).await;
    assert_eq!(listed["items"][0]["id"], id.as_str());
    let mine = app.get_json("/me/submissions", w.student.auth()).await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    assert_eq!(app.get_json("/me/submissions", other_student.auth()).await["items"], json!([]));

    // Downloads are attachments that run nothing, and honour a range.
    let res = app.get(&format!("/files/{file_id}"), w.student.auth()).await;
    let h = res.headers();
    assert_eq!(h["content-disposition"], "attachment; filename=\"game.py\"; filename*=UTF-8''game.py");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h["content-security-policy"].to_str().unwrap().starts_with("sandbox"));
    assert_eq!(h["accept-ranges"], "bytes");
    let res = app
        .req(Method::GET, &format!("/files/{file_id}"), w.student.auth())
        .header("range", "bytes=6-12")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.headers()["content-range"], format!("bytes 6-12/{}", code.len()).as_str());
    assert_eq!(res.text().await.unwrap(), "'hello'");
    let res = app
        .req(Method::GET, &format!("/files/{file_id}"), w.student.auth())
        .header("range", "bytes=999-")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-range"], format!("bytes */{}", code.len()).as_str());
    problem(res, StatusCode::RANGE_NOT_SATISFIABLE).await;

    // Staff reading a child's file is on the audit trail; the child reading their own is not.
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'file.download'").await, 2);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'submission.create'").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_tell_the_student_and_a_new_version_follows_changes_requested() {
    let mailer = smtp::SmtpServer::start(smtp::Script::default()).await;
    let url = mailer.url();
    let app = spawn(move |env| {
        env.insert("SMTP_URL".into(), url);
        env.insert("CIFIX_EMAIL_POLL_MS".into(), "50".into());
    })
    .await;
    let w = project(&app).await;
    let first = submit_code(&app, &w.student, &w.lesson_id, "print(1)").await;
    let id = s(&first["id"]);

    // A second hand-in while the first waits for review is refused.
    let again =
        super::submit(&app, &w.student, &w.lesson_id, form(vec![file("b.py", "x = 1", "text/plain")], "")).await;
    assert!(
        problem(again, StatusCode::CONFLICT).await["type"].as_str().unwrap().ends_with("submission-awaiting-review")
    );

    // Bad reviews name the field.
    let bad = problem(
        review(&app, &w.instructor, &id, json!({"status": "approved", "feedback": "", "score": 101})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(crate::support::error_fields(&bad), vec!["feedback", "score"]);

    let reviewed = expect(
        review(
            &app,
            &w.instructor,
            &id,
            json!({"status": "changes_requested", "feedback": "Add a score counter", "score": 60}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(reviewed["status"], "changes_requested");
    assert_eq!(reviewed["feedback"], "Add a score counter");
    assert_eq!(reviewed["score"], 60);
    assert_eq!(reviewed["reviewed_by"], w.instructor.id.as_str());
    // Answered once: a second answer is a conflict.
    problem(
        review(&app, &w.instructor, &id, json!({"status": "approved", "feedback": "ok"})).await,
        StatusCode::CONFLICT,
    )
    .await;

    let told = notifications(&app, &w.student.token, "submission.reviewed").await;
    assert_eq!(told.len(), 1);
    assert_eq!(told[0]["data"]["status"], "changes_requested");
    // Two verification emails from signing up, then the review.
    let mail = mailer.wait_for(3).await;
    let review_mail =
        mail.iter().find(|m| m.header("subject").is_some_and(|s| s.contains("was reviewed"))).expect("a review email");
    assert_eq!(review_mail.rcpt_tos, vec![w.student.email.clone()]);
    assert!(review_mail.decoded().contains("changes requested"));

    // Version 2, with the history of versions.
    let second = submit_code(&app, &w.student, &w.lesson_id, "print(2)\nscore = 0").await;
    assert_eq!(second["version"], 2);
    let id2 = s(&second["id"]);
    let got = app.get_json(&format!("/submissions/{id2}"), w.student.auth()).await;
    let versions: Vec<_> =
        got["versions"].as_array().unwrap().iter().map(|v| (v["version"].clone(), v["status"].clone())).collect();
    assert_eq!(versions, vec![(json!(1), json!("changes_requested")), (json!(2), json!("submitted"))]);

    // Approval earns the first-project achievement, once.
    expect(
        review(&app, &w.instructor, &id2, json!({"status": "approved", "feedback": "Great game!", "score": 95})).await,
        StatusCode::OK,
    )
    .await;
    let awarded = notifications(&app, &w.student.token, "achievement.awarded").await;
    assert!(awarded.iter().any(|n| n["data"]["code"] == "first_project_approved"), "{awarded:?}");
    let approved_again =
        super::submit(&app, &w.student, &w.lesson_id, form(vec![file("c.py", "x = 2", "text/plain")], "")).await;
    problem(approved_again, StatusCode::CONFLICT).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'submission.review'").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_enrolled_students_hand_in_and_only_for_project_lessons() {
    let app = spawn(|_| {}).await;
    let w = project(&app).await;
    let stranger = app.user("stranger", "student").await;
    let one = || form(vec![file("a.py", "print(1)", "text/plain")], "");
    problem(submit(&app, &stranger, &w.lesson_id, one()).await, StatusCode::NOT_FOUND).await;
    problem(submit(&app, &w.instructor, &w.lesson_id, one()).await, StatusCode::NOT_FOUND).await;
    problem(submit(&app, &w.student, &uuid::Uuid::now_v7().to_string(), one()).await, StatusCode::NOT_FOUND).await;
    problem(submit(&app, &w.student, &w.reading_id, one()).await, StatusCode::CONFLICT).await;
    let res = app
        .req(Method::POST, &format!("/lessons/{}/submissions", w.lesson_id), None)
        .multipart(one())
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::UNAUTHORIZED).await;
    // Not multipart at all.
    let res = app.post(&format!("/lessons/{}/submissions", w.lesson_id), w.student.auth(), json!({"files": []})).await;
    problem(res, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    // No file at all, an unknown part, a file part without a name, a note given twice.
    let res = submit(&app, &w.student, &w.lesson_id, form(vec![], "only a note")).await;
    assert_eq!(crate::support::error_fields(&problem(res, StatusCode::UNPROCESSABLE_ENTITY).await), vec!["files"]);
    let odd = reqwest::multipart::Form::new().text("homework", "x");
    let res = submit(&app, &w.student, &w.lesson_id, odd).await;
    assert_eq!(crate::support::error_fields(&problem(res, StatusCode::UNPROCESSABLE_ENTITY).await), vec!["homework"]);
    let nameless = reqwest::multipart::Form::new().part("files", reqwest::multipart::Part::bytes(b"x".to_vec()));
    let res = submit(&app, &w.student, &w.lesson_id, nameless).await;
    assert_eq!(crate::support::error_fields(&problem(res, StatusCode::UNPROCESSABLE_ENTITY).await), vec!["files[0]"]);
    super::nothing_kept(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_upload_with_its_idempotency_key_is_handed_in_once() {
    let app = spawn(|_| {}).await;
    let w = project(&app).await;
    let send = |code: &'static str| {
        app.req(Method::POST, &format!("/lessons/{}/submissions", w.lesson_id), w.student.auth())
            .header("idempotency-key", "upload-1")
            .multipart(form(vec![file("game.py", code, "text/plain")], "retry me"))
            .send()
    };
    let first = expect(send("print(1)").await.unwrap(), StatusCode::CREATED).await;
    let res = send("print(1)").await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    let replay: Value = res.json().await.unwrap();
    assert_eq!(replay["id"], first["id"]);
    assert_eq!(app.count("SELECT COUNT(*) FROM submissions").await, 1);
    // The same key with other bytes is another request.
    problem(send("print(2)").await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_stats_count_what_the_platform_holds() {
    // The outbox stays as the requests left it, so its counts are known.
    let app = spawn(|env| {
        env.insert("CIFIX_EMAIL_WORKER".into(), "false".into());
    })
    .await;
    let w = project(&app).await;
    let admin = app.user("admin", "admin").await;
    let idle = app.user("idle", "student").await;
    super::enroll(&app, &idle, &w.course_id).await;
    let body = json!({"status": "completed", "progress": 1.0, "time_spent_seconds": 60});
    let res =
        app.send_json(Method::PUT, &format!("/me/lessons/{}/progress", w.reading_id), w.student.auth(), body).await;
    expect(res, StatusCode::OK).await;
    let submission = submit_code(&app, &w.student, &w.lesson_id, "print(1)").await;
    let stored = app.get_json(&format!("/submissions/{}", submission["id"].as_str().unwrap()), admin.auth()).await;
    for u in [&w.student, &w.instructor] {
        problem(app.get("/admin/stats", u.auth()).await, StatusCode::NOT_FOUND).await;
    }
    let queued = app.count("SELECT COUNT(*) FROM email_outbox").await;
    assert!(queued >= 4, "every sign-up queued a verification email");
    let failed =
        "UPDATE email_outbox SET status = 'failed' WHERE id = (SELECT id FROM email_outbox ORDER BY id LIMIT 1)";
    app.db.conn.execute_unprepared(failed).await.unwrap();
    let mut stats = app.get_json("/admin/stats", admin.auth()).await;
    let generated_at = stats.as_object_mut().unwrap().remove("generated_at");
    assert!(generated_at.is_some_and(|t| t.is_string()), "the answer says when it was computed");
    assert_eq!(
        stats,
        json!({
            "users_by_role": {"student": 2, "instructor": 1, "admin": 1},
            "active_students_7d": 1,
            "enrollments": 2,
            "completions": 0,
            "assessments_completed": 0,
            "submissions_pending": 1,
            "active_students": {"day": 1, "week": 1, "month": 1},
            "assessments": {"started": 0, "completed": 0},
            "review_queue": {"waiting": 1, "oldest_submitted_at": stored["created_at"]},
            "email_outbox": {"queued": queued - 1, "failed": 1},
            "top_courses": [
                {"course_id": w.course_id, "title": "Course projects-course", "enrollments": 2, "completions": 0},
            ],
        })
    );
}
