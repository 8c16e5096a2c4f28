//! Assessment tool integration through real HTTP, on SQLite or PostgreSQL + Redis: machine
//! clients and signatures, assessments, results deliveries, learning paths.

mod common;
#[path = "common/catalog.rs"]
mod fixtures;

use chrono::{Duration, Utc};
use common::{TestApp, error_fields, problem};
use fixtures::{User, count, course, expect, get_json, lesson, module, publish, send, user};
use hmac::{Hmac, Mac};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const RESULTS: &str = "/api/v1/integrations/assessments/results";

#[derive(Clone)]
struct Client {
    id: String,
    secret: String,
}

/// Independent of the server's code: the scheme exactly as the README documents it.
fn signature(secret: &str, ts: &str, nonce: &str, method: &str, path: &str, body: &[u8]) -> String {
    let key = Sha256::digest(secret.as_bytes());
    let body_hash = hex::encode(Sha256::digest(body));
    let msg = format!("{ts}\n{nonce}\n{method}\n{path}\n{body_hash}");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(msg.as_bytes());
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

struct Signed<'a> {
    client: &'a Client,
    method: &'a str,
    path: &'a str,
    body: Vec<u8>,
    ts: i64,
    nonce: String,
    /// Sign these bytes instead of `body` (to forge a mismatch).
    signed_body: Option<Vec<u8>>,
    bearer: Option<&'a str>,
}

impl<'a> Signed<'a> {
    fn post(client: &'a Client, path: &'a str, body: &Value) -> Self {
        Signed {
            client,
            method: "POST",
            path,
            body: serde_json::to_vec(body).unwrap(),
            ts: Utc::now().timestamp(),
            nonce: nonce(),
            signed_body: None,
            bearer: None,
        }
    }

    async fn send(&self, app: &TestApp) -> Response {
        let ts = self.ts.to_string();
        let sig = signature(
            &self.client.secret,
            &ts,
            &self.nonce,
            self.method,
            self.path,
            self.signed_body.as_ref().unwrap_or(&self.body),
        );
        let mut r = app
            .client
            .request(Method::from_bytes(self.method.as_bytes()).unwrap(), format!("{}{}", app.base, self.path))
            .header("content-type", "application/json")
            .header("x-cifix-client", &self.client.id)
            .header("x-cifix-timestamp", ts)
            .header("x-cifix-nonce", &self.nonce)
            .header("x-cifix-signature", sig);
        if let Some(t) = self.bearer {
            r = r.bearer_auth(t);
        }
        r.body(self.body.clone()).send().await.unwrap()
    }
}

async fn deliver(app: &TestApp, c: &Client, body: &Value) -> Response {
    Signed::post(c, RESULTS, body).send(app).await
}

async fn new_client(app: &TestApp, admin: &User) -> Client {
    let res = send(app, Method::POST, "/admin/integrations/clients", admin, json!({"name": "Streamlit tool"})).await;
    let b = expect(res, StatusCode::CREATED).await;
    Client { id: b["client_id"].as_str().unwrap().into(), secret: b["client_secret"].as_str().unwrap().into() }
}

async fn start(app: &TestApp, student: &User) -> Value {
    expect(send(app, Method::POST, "/me/assessments", student, json!({})).await, StatusCode::CREATED).await
}

fn results(assessment_id: &str, external_id: &str) -> Value {
    json!({
        "assessment_id": assessment_id,
        "external_id": external_id,
        "completed_at": (Utc::now() - Duration::minutes(5)).to_rfc3339(),
        "overall_score": 52.5,
        "skills": [{"skill": "python", "score": 35}, {"skill": "ai", "score": 70}, {"skill": "brand_new-skill", "score": 10}],
        "details": {"answers": [1, 2, 3], "duration_seconds": 1234},
    })
}

struct Setup {
    admin: User,
    student: User,
    client: Client,
}

async fn setup(app: &TestApp) -> Setup {
    let admin = user(app, "admin", "admin").await;
    let student = user(app, "student", "student").await;
    let client = new_client(app, &admin).await;
    Setup { admin, student, client }
}

#[tokio::test]
async fn signatures_are_required_and_checked() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let a = start(&app, &s.student).await;
    let id = a["id"].as_str().unwrap();
    let body = results(id, "ext-1");

    // Unsigned, and a user's Bearer token (even an admin's), are 401 on integration endpoints.
    let res = app.client.post(app.url(RESULTS)).json(&body).send().await.unwrap();
    problem(res, StatusCode::UNAUTHORIZED).await;
    let res = app.client.post(app.url(RESULTS)).bearer_auth(&s.admin.token).json(&body).send().await.unwrap();
    problem(res, StatusCode::UNAUTHORIZED).await;

    // Wrong secret, unknown client, tampered body, another path, stale and future timestamps,
    // malformed signature.
    let wrong = Client { id: s.client.id.clone(), secret: "not-the-secret".into() };
    problem(deliver(&app, &wrong, &body).await, StatusCode::UNAUTHORIZED).await;
    let unknown = Client { id: uuid::Uuid::now_v7().to_string(), secret: s.client.secret.clone() };
    problem(deliver(&app, &unknown, &body).await, StatusCode::UNAUTHORIZED).await;
    let mut r = Signed::post(&s.client, RESULTS, &body);
    r.signed_body = Some(serde_json::to_vec(&results(id, "ext-other")).unwrap());
    problem(r.send(&app).await, StatusCode::UNAUTHORIZED).await;
    let mut r = Signed::post(&s.client, RESULTS, &body);
    r.path = "/api/v1/integrations/assessments/launch";
    let res = app
        .client
        .post(app.url(RESULTS))
        .header("x-cifix-client", &s.client.id)
        .header("x-cifix-timestamp", r.ts.to_string())
        .header("x-cifix-nonce", &r.nonce)
        .header("x-cifix-signature", signature(&s.client.secret, &r.ts.to_string(), &r.nonce, "POST", r.path, &r.body))
        .body(r.body.clone())
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::UNAUTHORIZED).await;
    for skew in [-301, 301] {
        let mut r = Signed::post(&s.client, RESULTS, &body);
        r.ts += skew;
        let p = problem(r.send(&app).await, StatusCode::UNAUTHORIZED).await;
        assert!(p["detail"].as_str().unwrap().contains("timestamp"), "{p}");
    }
    let res = app
        .client
        .post(app.url(RESULTS))
        .header("x-cifix-client", &s.client.id)
        .header("x-cifix-timestamp", Utc::now().timestamp().to_string())
        .header("x-cifix-nonce", nonce())
        .header("x-cifix-signature", "v1=zz")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::UNAUTHORIZED).await;
    assert_eq!(count(&app, "SELECT COUNT(*) FROM assessments WHERE status = 'completed'").await, 0);

    // A correct delivery works once; the same request replayed (same nonce) is refused even
    // though the body is a legitimate idempotent repeat.
    let r = Signed::post(&s.client, RESULTS, &body);
    expect(r.send(&app).await, StatusCode::CREATED).await;
    let p = problem(r.send(&app).await, StatusCode::UNAUTHORIZED).await;
    assert!(p["detail"].as_str().unwrap().contains("nonce"), "{p}");

    // A machine signature is useless on user endpoints: they need a Bearer JWT.
    let r = Signed { method: "GET", body: vec![], ..Signed::post(&s.client, "/api/v1/me/assessments", &json!(null)) };
    problem(r.send(&app).await, StatusCode::UNAUTHORIZED).await;
    // Launch lookup, signed: the tool learns who is assessed.
    let start2 = start(&app, &s.student).await;
    let r = Signed::post(
        &s.client,
        "/api/v1/integrations/assessments/launch",
        &json!({"launch_token": start2["launch_token"]}),
    );
    let info = expect(r.send(&app).await, StatusCode::OK).await;
    assert_eq!(info["user_id"], s.student.id.as_str());
    assert_eq!(info["assessment_id"], start2["id"]);
    assert_eq!(info["status"], "pending");
}

#[tokio::test]
async fn clients_are_admin_only_revocable_and_rotate_with_overlap() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let instructor = user(&app, "teacher", "instructor").await;
    for u in [&s.student, &instructor] {
        problem(
            send(&app, Method::POST, "/admin/integrations/clients", u, json!({"name": "x"})).await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    let p = problem(
        send(&app, Method::POST, "/admin/integrations/clients", &s.admin, json!({"name": ""})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&p), vec!["name"]);
    let list = get_json(&app, "/admin/integrations/clients", &s.admin).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(&s.client.secret), "secrets are shown once");
    // Only the hash is stored.
    assert_eq!(
        count(&app, &format!("SELECT COUNT(*) FROM integration_clients WHERE key_hash = '{}'", s.client.secret)).await,
        0
    );

    // Rotate: the new secret works at once and the old one during the overlap.
    let res =
        send(&app, Method::POST, &format!("/admin/integrations/clients/{}/rotate", s.client.id), &s.admin, json!({}))
            .await;
    let rot = expect(res, StatusCode::OK).await;
    let new = Client { id: s.client.id.clone(), secret: rot["client_secret"].as_str().unwrap().into() };
    assert_ne!(new.secret, s.client.secret);
    let a1 = start(&app, &s.student).await;
    let a2 = start(&app, &s.student).await;
    expect(deliver(&app, &s.client, &results(a1["id"].as_str().unwrap(), "old-secret")).await, StatusCode::CREATED)
        .await;
    expect(deliver(&app, &new, &results(a2["id"].as_str().unwrap(), "new-secret")).await, StatusCode::CREATED).await;

    // Revoked: every signature fails; rotating a revoked client is 404; revoking twice is fine.
    let path = format!("/admin/integrations/clients/{}", s.client.id);
    expect(fixtures::delete(&app, &path, &s.admin).await, StatusCode::NO_CONTENT).await;
    expect(fixtures::delete(&app, &path, &s.admin).await, StatusCode::NO_CONTENT).await;
    let a3 = start(&app, &s.student).await;
    problem(deliver(&app, &new, &results(a3["id"].as_str().unwrap(), "after-revoke")).await, StatusCode::UNAUTHORIZED)
        .await;
    problem(send(&app, Method::POST, &format!("{path}/rotate"), &s.admin, json!({})).await, StatusCode::NOT_FOUND)
        .await;
    problem(fixtures::delete(&app, &path, &s.student).await, StatusCode::NOT_FOUND).await;
    assert_eq!(count(&app, "SELECT COUNT(*) FROM audit_log WHERE action LIKE 'integration_client.%'").await, 3);
}

#[tokio::test]
async fn a_rotated_secret_stops_working_after_the_overlap() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_INTEGRATION_SECRET_OVERLAP_SECS".into(), "0".into());
    })
    .await;
    let s = setup(&app).await;
    let res =
        send(&app, Method::POST, &format!("/admin/integrations/clients/{}/rotate", s.client.id), &s.admin, json!({}))
            .await;
    let rot = expect(res, StatusCode::OK).await;
    let a = start(&app, &s.student).await;
    let body = results(a["id"].as_str().unwrap(), "x");
    problem(deliver(&app, &s.client, &body).await, StatusCode::UNAUTHORIZED).await;
    let new = Client { id: s.client.id.clone(), secret: rot["client_secret"].as_str().unwrap().into() };
    expect(deliver(&app, &new, &body).await, StatusCode::CREATED).await;
}

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
    assert_eq!(count(&app, &format!("SELECT COUNT(*) FROM assessments WHERE launch_token_hash = '{token}'")).await, 0);

    let list = get_json(&app, "/me/assessments", &s.student).await;
    assert_eq!(list["items"][0]["id"], a["id"]);
    assert_eq!(list["items"][0]["status"], "pending");
    let path = format!("/assessments/{}", a["id"].as_str().unwrap());
    assert_eq!(get_json(&app, &path, &s.student).await["status"], "pending");
    assert_eq!(get_json(&app, &path, &s.admin).await["id"], a["id"]);

    // Another student, an unrelated instructor: 404. The student's own instructor: 200.
    let other = user(&app, "other", "student").await;
    let teacher = user(&app, "teacher", "instructor").await;
    let stranger = user(&app, "stranger", "instructor").await;
    problem(app.get(&path, Some(&other.token)).await, StatusCode::NOT_FOUND).await;
    problem(app.get(&path, Some(&stranger.token)).await, StatusCode::NOT_FOUND).await;
    problem(app.get("/assessments/not-a-uuid", Some(&s.student.token)).await, StatusCode::NOT_FOUND).await;
    let c = course(&app, &teacher, "rust-101").await;
    publish(&app, &teacher, &c).await;
    expect(
        send(&app, Method::POST, &format!("/courses/{c}/enrollments"), &s.student, json!({})).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(get_json(&app, &path, &teacher).await["id"], a["id"]);
    // Only students start assessments.
    problem(send(&app, Method::POST, "/me/assessments", &teacher, json!({})).await, StatusCode::NOT_FOUND).await;
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
    assert_eq!(get_json(&app, &path, &s.student).await["status"], "expired");
    assert_eq!(get_json(&app, "/me/assessments", &s.student).await["items"][0]["status"], "expired");
    let p = problem(deliver(&app, &s.client, &results(a["id"].as_str().unwrap(), "late")).await, StatusCode::CONFLICT)
        .await;
    assert_eq!(p["type"], "urn:cifix:problem:assessment-expired");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM skill_levels").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM assessments WHERE status = 'completed'").await, 0);
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
    let other = user(&app, "other", "student").await;
    let theirs = start(&app, &other).await;
    let mut body = results(id, "e1");
    body["launch_token"] = theirs["launch_token"].clone();
    let p = problem(deliver(&app, &s.client, &body).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&p), vec!["launch_token"]);
    let mut body = results(id, "e1");
    body["launch_token"] = json!("no-such-token");
    problem(deliver(&app, &s.client, &body).await, StatusCode::NOT_FOUND).await;

    assert_eq!(count(&app, "SELECT COUNT(*) FROM assessments WHERE status = 'completed'").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM skill_levels").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM learning_paths").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM notifications").await, 0);
    // Refusals that got past parsing are audited with the client as actor (10 invalid, 2 not
    // found, 1 mismatch); unparseable bodies are refused at the edge before the service.
    let log = get_json(&app, "/admin/audit-log?action=assessment.results_rejected&limit=100", &s.admin).await;
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
        v.push(count(app, &format!("SELECT COUNT(*) FROM {t}")).await);
    }
    v.push(count(app, "SELECT COUNT(*) FROM audit_log WHERE action = 'assessment.complete'").await);
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
    let generated = get_json(&app, "/me/learning-path", &s.student).await["generated_at"].clone();

    // A retry (fresh nonce, same body, keys in another order) is 200 and changes nothing.
    let reordered: Value = serde_json::from_str(&serde_json::to_string(&body).unwrap()).unwrap();
    let again = expect(deliver(&app, &s.client, &reordered).await, StatusCode::OK).await;
    assert_eq!(again, first);
    assert_eq!(row_counts(&app).await, before);
    assert_eq!(get_json(&app, "/me/learning-path", &s.student).await["generated_at"], generated);

    // The same external_id with another body: 409, nothing changes.
    let mut changed = body.clone();
    changed["overall_score"] = json!(99);
    let p = problem(deliver(&app, &s.client, &changed).await, StatusCode::CONFLICT).await;
    assert_eq!(p["type"], "urn:cifix:problem:external-id-conflict");
    // Another external_id for an assessment that already has results: 409.
    let p = problem(deliver(&app, &s.client, &results(id, "tool-run-43")).await, StatusCode::CONFLICT).await;
    assert_eq!(p["type"], "urn:cifix:problem:assessment-completed");
    assert_eq!(row_counts(&app).await, before);
    assert_eq!(get_json(&app, &format!("/assessments/{id}"), &s.student).await["overall_score"], 52.5);

    // The raw body is stored as received.
    let raw = count(
        &app,
        &format!(
            "SELECT COUNT(*) FROM assessments WHERE raw_payload = '{}'",
            String::from_utf8(serde_json::to_vec(&body).unwrap()).unwrap().replace('\'', "''")
        ),
    )
    .await;
    assert_eq!(raw, 1);

    // Audited with the client as actor, the assessment as target.
    let log = get_json(&app, "/admin/audit-log?action=assessment.complete", &s.admin).await;
    let e = &log["items"][0];
    assert_eq!(e["actor_id"], s.client.id.as_str());
    assert_eq!(e["target_id"], id);
    assert_eq!(e["details"]["client_id"], s.client.id.as_str());
    let log = get_json(&app, &format!("/admin/audit-log?actor_id={}", s.client.id), &s.admin).await;
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
    assert_eq!(count(&app, "SELECT COUNT(*) FROM assessments WHERE status = 'completed'").await, 2);
}

async fn course_with_lesson(app: &TestApp, teacher: &User, slug: &str, published: bool) -> (String, String, String) {
    let c = course(app, teacher, slug).await;
    let m = module(app, teacher, &c, &format!("{slug} module"), None).await["id"].as_str().unwrap().to_string();
    let l = lesson(app, teacher, &m, "Lesson", None).await["id"].as_str().unwrap().to_string();
    if published {
        publish(app, teacher, &c).await;
    }
    (c, m, l)
}

#[tokio::test]
async fn results_build_an_explained_learning_path_that_follows_progress() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let teacher = user(&app, "teacher", "instructor").await;
    let stranger = user(&app, "stranger", "instructor").await;
    // Slugs of the bundled config/learning-rules.json.
    let (first_steps, _, first_lesson) = course_with_lesson(&app, &teacher, "python-first-steps", true).await;
    let (beginners, beginners_module, _) = course_with_lesson(&app, &teacher, "python-for-beginners", true).await;
    course_with_lesson(&app, &teacher, "python-intermediate", false).await; // unpublished: never suggested
    let (chatbot, _, _) = course_with_lesson(&app, &teacher, "build-a-chatbot", true).await;
    expect(
        send(&app, Method::POST, &format!("/courses/{beginners}/enrollments"), &s.student, json!({})).await,
        StatusCode::CREATED,
    )
    .await;

    // Before any assessment: an empty path.
    let empty = get_json(&app, "/me/learning-path", &s.student).await;
    assert_eq!(empty, json!({"generated_at": null, "based_on_assessment_id": null, "steps": []}));

    let a = start(&app, &s.student).await;
    expect(deliver(&app, &s.client, &results(a["id"].as_str().unwrap(), "lp")).await, StatusCode::CREATED).await;
    // The follow-up email was queued with the results, once.
    let sql = format!(
        "SELECT COUNT(*) FROM email_outbox WHERE template = 'assessment_results' AND to_address = '{}'",
        s.student.email
    );
    assert_eq!(app.count(&sql).await, 1);
    let lp = get_json(&app, "/me/learning-path", &s.student).await;
    assert_eq!(lp["based_on_assessment_id"], a["id"]);
    let steps = lp["steps"].as_array().unwrap();
    // python 35 (weakest) first, then ai 70; the unknown skill is stored and ignored.
    let courses: Vec<&str> = steps.iter().map(|s| s["course_id"].as_str().unwrap()).collect();
    assert_eq!(courses, vec![first_steps.as_str(), beginners.as_str(), chatbot.as_str()]);
    assert_eq!(steps.iter().map(|s| s["position"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(
        steps[0]["reason"],
        "Your python score was 35/100, so we start with the beginner course “Course python-first-steps”."
    );
    assert!(steps[0].get("module_id").is_none());
    assert_eq!(steps[1]["module_id"], beginners_module.as_str(), "enrolled: continue at the open module");
    assert!(steps[1]["reason"].as_str().unwrap().contains("continue with “python-for-beginners module”"));
    assert!(steps[2]["reason"].as_str().unwrap().starts_with("Your ai score was 70/100"));
    assert_eq!(count(&app, "SELECT COUNT(*) FROM skill_levels WHERE skill = 'brand_new-skill'").await, 1);

    // The dashboard shows it; admins and the student's instructors read it; others get 404.
    let d = get_json(&app, "/me/dashboard", &s.student).await;
    assert_eq!(d["learning_path"], lp);
    let path = format!("/users/{}/learning-path", s.student.id);
    assert_eq!(get_json(&app, &path, &s.admin).await, lp);
    assert_eq!(get_json(&app, &path, &teacher).await, lp);
    problem(app.get(&path, Some(&stranger.token)).await, StatusCode::NOT_FOUND).await;
    let other = user(&app, "other", "student").await;
    problem(app.get(&path, Some(&other.token)).await, StatusCode::NOT_FOUND).await;
    problem(app.get(&format!("/users/{}/learning-path", other.id), Some(&teacher.token)).await, StatusCode::NOT_FOUND)
        .await;

    // Notifications were stored for the student.
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM notifications WHERE kind IN ('assessment.completed', 'learning_path.updated')"
        )
        .await,
        2
    );

    // Completing a course recomputes the path: the finished course drops out.
    expect(
        send(&app, Method::POST, &format!("/courses/{first_steps}/enrollments"), &s.student, json!({})).await,
        StatusCode::CREATED,
    )
    .await;
    let res = send(
        &app,
        Method::PUT,
        &format!("/me/lessons/{first_lesson}/progress"),
        &s.student,
        json!({"status": "completed"}),
    )
    .await;
    let r = expect(res, StatusCode::OK).await;
    assert!(r["course"]["completed_at"].is_string());
    let lp2 = get_json(&app, "/me/learning-path", &s.student).await;
    let courses: Vec<&str> =
        lp2["steps"].as_array().unwrap().iter().map(|s| s["course_id"].as_str().unwrap()).collect();
    assert_eq!(courses, vec![beginners.as_str(), chatbot.as_str()]);
    assert_eq!(lp2["steps"][0]["position"], 1);
    assert_eq!(lp2["based_on_assessment_id"], a["id"], "still based on the same assessment");
}

#[tokio::test]
async fn learning_rules_are_data_overridable_by_a_file() {
    let rules_dir = tempfile::tempdir().unwrap();
    let path = rules_dir.path().join("rules.json");
    std::fs::write(
        &path,
        r#"{"version": 1, "rules": [{"skill": "python", "max_score": 40, "courses": ["snakes"],
            "reason": "Custom: {skill} at {score} means “{course_title}” first."}]}"#,
    )
    .unwrap();
    let p = path.display().to_string();
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_LEARNING_RULES_PATH".into(), p);
    })
    .await;
    let s = setup(&app).await;
    let teacher = user(&app, "teacher", "instructor").await;
    let (snakes, _, _) = course_with_lesson(&app, &teacher, "snakes", true).await;
    course_with_lesson(&app, &teacher, "python-first-steps", true).await; // bundled rules only
    let a = start(&app, &s.student).await;
    expect(deliver(&app, &s.client, &results(a["id"].as_str().unwrap(), "custom")).await, StatusCode::CREATED).await;
    let lp = get_json(&app, "/me/learning-path", &s.student).await;
    assert_eq!(
        lp["steps"],
        json!([{"position": 1, "course_id": snakes, "reason": "Custom: python at 35 means “Course snakes” first."}])
    );

    // A broken rules file stops the start with the variable's name.
    std::fs::write(&path, r#"{"version": 1, "rules": [{"skill": "Bad Code", "courses": ["x"], "reason": ""}]}"#)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = common::base_env(&dir).await;
    env.insert("CIFIX_LEARNING_RULES_PATH".into(), path.display().to_string());
    let config = cifix::config::Config::from_lookup(|k| env.get(k).cloned()).unwrap();
    let err = cifix::state::AppState::build(config).await.err().expect("refused").to_string();
    assert!(err.contains("CIFIX_LEARNING_RULES_PATH") && err.contains("skill"), "{err}");
}

/// A score at or above the rule's threshold earns the assessment achievement, once; a lower one
/// does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_score_earns_the_assessment_achievement_once() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let low = start(&app, &s.student).await;
    expect(deliver(&app, &s.client, &results(low["id"].as_str().unwrap(), "low")).await, StatusCode::CREATED).await;
    let mine = get_json(&app, "/me/achievements", &s.student).await;
    let codes = |v: &Value| -> Vec<String> {
        let items = v.get("items").unwrap_or(v).as_array().unwrap().clone();
        items.iter().map(|a| a["achievement"]["code"].as_str().unwrap_or_default().to_string()).collect()
    };
    assert!(!codes(&mine).contains(&"assessment_score_90".to_string()), "52.5 is below the threshold");

    for ext in ["high-1", "high-2"] {
        let a = start(&app, &s.student).await;
        let mut body = results(a["id"].as_str().unwrap(), ext);
        body["overall_score"] = json!(95);
        expect(deliver(&app, &s.client, &body).await, StatusCode::CREATED).await;
    }
    let mine = get_json(&app, "/me/achievements", &s.student).await;
    assert_eq!(codes(&mine).iter().filter(|c| *c == "assessment_score_90").count(), 1, "{mine}");
    let sql = format!(
        "SELECT COUNT(*) FROM notifications n JOIN users u ON u.id = n.user_id \
         WHERE u.email = '{}' AND n.kind = 'achievement.awarded'",
        s.student.email
    );
    assert_eq!(app.count(&sql).await, 1);
    let sql = format!(
        "SELECT COUNT(*) FROM email_outbox WHERE template = 'achievement_awarded' AND to_address = '{}'",
        s.student.email
    );
    assert_eq!(app.count(&sql).await, 1, "the achievement email is queued once");
}
