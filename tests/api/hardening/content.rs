//! What reaches a mailbox that nobody has proven, and inputs that only looked valid.

use reqwest::StatusCode;
use serde_json::json;

use super::{signed, tool_and_pending_assessment};
use crate::support::{
    PASSWORD, TestApp, error_fields, expect, problem,
    smtp::{Script, SmtpServer},
};

const RESULTS: &str = "/api/v1/integrations/assessments/results";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_to_an_unproven_address_carries_nothing_the_registrant_typed() {
    let smtp = SmtpServer::start(Script::default()).await;
    let url = smtp.url();
    let app = TestApp::spawn_with(move |env| {
        env.insert("SMTP_URL".into(), url);
        env.insert("CIFIX_EMAIL_POLL_MS".into(), "50".into());
    })
    .await;
    let name = "Eve <attacker@evil.example> see https://evil.example/win \u{202E}gnp.exe";
    let res = app
        .post(
            "/auth/register",
            None,
            json!({"email": "victim@example.com", "password": PASSWORD, "display_name": name}),
        )
        .await;
    expect(res, StatusCode::CREATED).await;
    let mail = &smtp.wait_for(1).await[0];
    assert_eq!(mail.rcpt_tos, vec!["victim@example.com"]);
    let whole = format!("{}\n{}", mail.data, mail.decoded());
    for typed in ["Eve", "evil.example", "\u{202E}", "gnp.exe"] {
        assert!(!whole.contains(typed), "{typed:?} reached an unproven address:\n{whole}");
    }
    assert!(mail.header("To").unwrap().contains("victim@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_of_spaces_or_one_repeated_character_is_refused() {
    let app = TestApp::spawn().await;
    for (i, weak) in ["        ", "                ", "aaaaaaaaaaaa", "ab ab ab ab "].iter().enumerate() {
        let body = json!({"email": format!("weak{i}@example.com"), "password": weak, "display_name": "Kid"});
        let p = problem(app.post("/auth/register", None, body).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&p), vec!["password"], "{weak:?}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_dated_before_the_assessment_started_are_refused() {
    let app = TestApp::spawn().await;
    let (id, key, a) = tool_and_pending_assessment(&app).await;
    let started = chrono::DateTime::parse_from_rfc3339(a["expires_at"].as_str().unwrap()).unwrap()
        - chrono::Duration::seconds(7200);
    let deliver = |external_id: &str, completed_at: String| {
        json!({"assessment_id": a["id"], "external_id": external_id, "completed_at": completed_at,
               "overall_score": 70, "skills": [{"skill": "python", "score": 70}]})
    };
    for (n, when) in
        ["1970-01-01T00:00:00Z".to_string(), (started - chrono::Duration::days(1)).to_rfc3339()].into_iter().enumerate()
    {
        let res = signed(&app, RESULTS, &id, &key, &deliver(&format!("run-{n}"), when.clone())).send().await.unwrap();
        let p = problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&p), vec!["completed_at"], "{when}");
    }
    let now = chrono::Utc::now().to_rfc3339();
    expect(signed(&app, RESULTS, &id, &key, &deliver("run-ok", now)).send().await.unwrap(), StatusCode::CREATED).await;
}
