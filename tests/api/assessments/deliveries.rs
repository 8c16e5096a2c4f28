//! Assessments and their results deliveries: validation, expiry, idempotency.

use super::*;

#[tokio::test]
async fn assessments_are_started_by_students_and_read_by_owner_admin_and_instructors() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_ASSESSMENT_TOOL_URL".into(), "https://tool.example/app".into());
    })
    .await;
    let s = setup(&app).await;
    let a = start(&app, &s.student).await;
    assert_eq!(a["status"], "pending");
    let token = a["launch_token"].as_str().unwrap();
    assert_eq!(a["launch_url"], format!("https://tool.example/app?launch_token={token}"));
    let expires: chrono::DateTime<Utc> = a["expires_at"].as_str().unwrap().parse().unwrap();
    assert!((expires - Utc::now() - Duration::hours(2)).num_seconds().abs() < 60, "default 2 h");
    assert_eq!(app.count(&format!("SELECT COUNT(*) FROM assessments WHERE launch_token_hash = '{token}'")).await, 0);

    let list = app.get_json("/me/assessments", s.student.auth()).await;
    assert_eq!(list["items"][0]["id"], a["id"]);
    assert_eq!(list["items"][0]["status"], "pending");
    let path = format!("/assessments/{}", a["id"].as_str().unwrap());
    assert_eq!(app.get_json(&path, s.student.auth()).await["status"], "pending");
    assert_eq!(app.get_json(&path, s.admin.auth()).await["id"], a["id"]);

    // Another student, an unrelated instructor: 404. The student's own instructor: 200.
    let other = app.user("other", "student").await;
    let teacher = app.user("teacher", "instructor").await;
    let stranger = app.user("stranger", "instructor").await;
    problem(app.get(&path, Some(&other.token)).await, StatusCode::NOT_FOUND).await;
    problem(app.get(&path, Some(&stranger.token)).await, StatusCode::NOT_FOUND).await;
    problem(app.get("/assessments/not-a-uuid", Some(&s.student.token)).await, StatusCode::NOT_FOUND).await;
    let c = course(&app, &teacher, "rust-101").await;
    publish(&app, &teacher, &c).await;
    expect(
        app.send_json(Method::POST, &format!("/courses/{c}/enrollments"), s.student.auth(), json!({})).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(app.get_json(&path, teacher.auth()).await["id"], a["id"]);
    // Only students start assessments.
    problem(app.send_json(Method::POST, "/me/assessments", teacher.auth(), json!({})).await, StatusCode::NOT_FOUND)
        .await;
    problem(app.post("/me/assessments", None, json!({})).await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn expired_assessments_read_expired_and_refuse_results() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_ASSESSMENT_LAUNCH_TTL_SECS".into(), "1".into());
    })
    .await;
    let s = setup(&app).await;
    let a = start(&app, &s.student).await;
    let path = format!("/assessments/{}", a["id"].as_str().unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(app.get_json(&path, s.student.auth()).await["status"], "expired");
    assert_eq!(app.get_json("/me/assessments", s.student.auth()).await["items"][0]["status"], "expired");
    let p = problem(deliver(&app, &s.client, &results(a["id"].as_str().unwrap(), "late")).await, StatusCode::CONFLICT)
        .await;
    assert_eq!(p["type"], "urn:cifix:problem:assessment-expired");
    assert_eq!(app.count("SELECT COUNT(*) FROM skill_levels").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM assessments WHERE status = 'completed'").await, 0);
}

#[tokio::test]
async fn bad_results_are_refused_naming_the_field_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let a = start(&app, &s.student).await;
    let id = a["id"].as_str().unwrap();
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"overall_score": 101}), vec!["overall_score"]),
        (json!({"overall_score": -1}), vec!["overall_score"]),
        (json!({"skills": [{"skill": "python", "score": 100.5}]}), vec!["skills[0].score"]),
        (json!({"skills": []}), vec!["skills"]),
        (json!({"skills": [{"skill": "Python!", "score": 5}]}), vec!["skills[0].skill"]),
        (json!({"skills": [{"skill": "py", "score": 5}, {"skill": "py", "score": 6}]}), vec!["skills[1].skill"]),
        (json!({"completed_at": (Utc::now() + Duration::minutes(5)).to_rfc3339()}), vec!["completed_at"]),
        (json!({"external_id": ""}), vec!["external_id"]),
        (json!({"assessment_id": null}), vec!["assessment_id"]),
        (json!({"surprise": 1}), vec!["surprise"]),
        (json!({"details": {"blob": "x".repeat(70 * 1024)}}), vec!["details"]),
    ];
    for (patch, fields) in cases {
        let mut body = results(id, "e1");
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let p = problem(deliver(&app, &s.client, &body).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&p), fields, "{patch}");
    }
    // 60 s of clock skew is tolerated.
    let mut ok = results(id, "skew");
    ok["completed_at"] = json!((Utc::now() + Duration::seconds(30)).to_rfc3339());

    // A 5 MB details blob is refused before it is parsed.
    let mut big = results(id, "e1");
    big["details"] = json!({"blob": "x".repeat(5 * 1024 * 1024)});
    problem(deliver(&app, &s.client, &big).await, StatusCode::PAYLOAD_TOO_LARGE).await;
    // Malformed JSON (correctly signed) is 400.
    let mut r = Signed::post(&s.client, RESULTS, &json!(null));
    r.body = b"{not json".to_vec();
    problem(r.send(&app).await, StatusCode::BAD_REQUEST).await;

    // Unknown assessment: 404. A launch token of another student's assessment: 422.
    problem(deliver(&app, &s.client, &results(&uuid::Uuid::now_v7().to_string(), "e1")).await, StatusCode::NOT_FOUND)
        .await;
    let other = app.user("other", "student").await;
    let theirs = start(&app, &other).await;
    let mut body = results(id, "e1");
    body["launch_token"] = theirs["launch_token"].clone();
    let p = problem(deliver(&app, &s.client, &body).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&p), vec!["launch_token"]);
    let mut body = results(id, "e1");
    body["launch_token"] = json!("no-such-token");
    problem(deliver(&app, &s.client, &body).await, StatusCode::NOT_FOUND).await;

    assert_eq!(app.count("SELECT COUNT(*) FROM assessments WHERE status = 'completed'").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM skill_levels").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM learning_paths").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM notifications").await, 0);
    // Refusals that got past parsing are audited with the client as actor (10 invalid, 2 not
    // found, 1 mismatch); unparseable bodies are refused at the edge before the service.
    let log = app.get_json("/admin/audit-log?action=assessment.results_rejected&limit=100", s.admin.auth()).await;
    let rows = log["items"].as_array().unwrap();
    assert_eq!(rows.len(), 13);
    assert!(rows.iter().all(|r| r["actor_id"] == s.client.id.as_str()));

    // By launch token alone, with 30 s of clock skew: accepted.
    ok.as_object_mut().unwrap().remove("assessment_id");
    ok["launch_token"] = a["launch_token"].clone();
    let done = expect(deliver(&app, &s.client, &ok).await, StatusCode::CREATED).await;
    assert_eq!(done["id"], a["id"]);
    assert_eq!(done["status"], "completed");
}

async fn row_counts(app: &TestApp) -> Vec<i64> {
    let mut v = vec![];
    for t in ["assessments WHERE status = 'completed'", "skill_levels", "learning_paths", "notifications"] {
        v.push(app.count(&format!("SELECT COUNT(*) FROM {t}")).await);
    }
    v.push(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'assessment.complete'").await);
    v
}

#[tokio::test]
async fn deliveries_are_idempotent_by_external_id() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let a = start(&app, &s.student).await;
    let id = a["id"].as_str().unwrap();
    let body = results(id, "tool-run-42");
    let first = expect(deliver(&app, &s.client, &body).await, StatusCode::CREATED).await;
    assert_eq!(first["status"], "completed");
    assert_eq!(first["overall_score"], 52.5);
    assert_eq!(first["skills"].as_array().unwrap().len(), 3);
    let before = row_counts(&app).await;
    assert_eq!(before, vec![1, 3, 1, 2, 1]);
    let generated = app.get_json("/me/learning-path", s.student.auth()).await["generated_at"].clone();

    // A retry (fresh nonce, same body, keys in another order) is 200 and changes nothing.
    let reordered: Value = serde_json::from_str(&serde_json::to_string(&body).unwrap()).unwrap();
    let again = expect(deliver(&app, &s.client, &reordered).await, StatusCode::OK).await;
    assert_eq!(again, first);
    assert_eq!(row_counts(&app).await, before);
    assert_eq!(app.get_json("/me/learning-path", s.student.auth()).await["generated_at"], generated);

    // The same external_id with another body: 409, nothing changes.
    let mut changed = body.clone();
    changed["overall_score"] = json!(99);
    let p = problem(deliver(&app, &s.client, &changed).await, StatusCode::CONFLICT).await;
    assert_eq!(p["type"], "urn:cifix:problem:external-id-conflict");
    // Another external_id for an assessment that already has results: 409.
    let p = problem(deliver(&app, &s.client, &results(id, "tool-run-43")).await, StatusCode::CONFLICT).await;
    assert_eq!(p["type"], "urn:cifix:problem:assessment-completed");
    assert_eq!(row_counts(&app).await, before);
    assert_eq!(app.get_json(&format!("/assessments/{id}"), s.student.auth()).await["overall_score"], 52.5);

    // The raw body is stored as received.
    let raw = app
        .count(&format!(
            "SELECT COUNT(*) FROM assessments WHERE raw_payload = '{}'",
            String::from_utf8(serde_json::to_vec(&body).unwrap()).unwrap().replace('\'', "''")
        ))
        .await;
    assert_eq!(raw, 1);

    // Audited with the client as actor, the assessment as target.
    let log = app.get_json("/admin/audit-log?action=assessment.complete", s.admin.auth()).await;
    let e = &log["items"][0];
    assert_eq!(e["actor_id"], s.client.id.as_str());
    assert_eq!(e["target_id"], id);
    assert_eq!(e["details"]["client_id"], s.client.id.as_str());
    let log = app.get_json(&format!("/admin/audit-log?actor_id={}", s.client.id), s.admin.auth()).await;
    let actions: Vec<&str> = log["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"assessment.results_repeat") && actions.contains(&"learning_path.update"), "{actions:?}");
}

#[tokio::test]
async fn concurrent_duplicate_deliveries_complete_the_assessment_once() {
    let _ = tracing_subscriber::fmt().with_env_filter("error").with_test_writer().try_init();
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let a = start(&app, &s.student).await;
    let body = results(a["id"].as_str().unwrap(), "dup");
    let reqs: Vec<Signed> = (0..8).map(|_| Signed::post(&s.client, RESULTS, &body)).collect();
    let res = futures::future::join_all(reqs.iter().map(|r| r.send(&app))).await;
    let statuses: Vec<StatusCode> = res.iter().map(|r| r.status()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 7, "{statuses:?}");
    assert_eq!(row_counts(&app).await, vec![1, 3, 1, 2, 1]);

    // Concurrent deliveries with different external_ids for one assessment: one wins, the
    // others are 409.
    let b = start(&app, &s.student).await;
    let bodies: Vec<Value> = (0..8).map(|i| results(b["id"].as_str().unwrap(), &format!("race-{i}"))).collect();
    let reqs: Vec<Signed> = bodies.iter().map(|body| Signed::post(&s.client, RESULTS, body)).collect();
    let res = futures::future::join_all(reqs.iter().map(|r| r.send(&app))).await;
    let statuses: Vec<StatusCode> = res.iter().map(|r| r.status()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count(), 7, "{statuses:?}");
    assert_eq!(app.count("SELECT COUNT(*) FROM assessments WHERE status = 'completed'").await, 2);
}
