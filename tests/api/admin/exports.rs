//! The CSV exports (`/admin/exports/{kind}.csv`): what a spreadsheet user opens.

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::support::{catalog, *};

/// A CSV answer: the headers checked, the text and its records (header first).
async fn csv(res: reqwest::Response, filename_prefix: &str) -> (String, Vec<Vec<String>>) {
    assert_eq!(res.status(), StatusCode::OK);
    let header = |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert_eq!(header("content-type"), "text/csv; charset=utf-8");
    let today = Utc::now().format("%Y-%m-%d");
    assert_eq!(header("content-disposition"), format!("attachment; filename=\"{filename_prefix}-{today}.csv\""));
    assert_eq!(header("cache-control"), "no-store");
    let text = res.text().await.unwrap();
    let records = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    (text, records)
}

fn secs(rfc3339: &Value) -> String {
    DateTime::parse_from_rfc3339(rfc3339.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn exports_audited(app: &TestApp, admin: &User) -> Vec<Value> {
    let log = app.get_json("/admin/audit-log?action=admin.export", admin.auth()).await;
    log["items"].as_array().unwrap().clone()
}

async fn rename(app: &TestApp, u: &User, display_name: &str) {
    let sql = "UPDATE users SET display_name = $1 WHERE email = $2";
    let stmt = Statement::from_sql_and_values(app.db.backend(), sql, [display_name.into(), u.email.clone().into()]);
    app.db.conn.execute_raw(stmt).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_export_lists_every_account_page_after_page_without_secrets() {
    let app = TestApp::spawn().await;
    let admin = app.user("admin", "admin").await;
    let mallory = app.user("mallory", "student").await;
    rename(&app, &mallory, "=HYPERLINK(\"http://evil.example\",\"x\")").await;
    // More accounts than one page of the export reads, so that pages follow each other.
    let bulk = 1105;
    let rows: Vec<String> = (0..bulk)
        .map(|i| format!("(${}, ${}, 'Bulk', '!', 'student', true, false, 0, $1, $1)", 2 * i + 2, 2 * i + 3))
        .collect();
    let sql = format!(
        "INSERT INTO users (id, email, display_name, password_hash, role, is_active, email_verified, \
         failed_login_count, created_at, updated_at) VALUES {}",
        rows.join(", ")
    );
    let mut values: Vec<sea_orm::Value> = vec![Utc::now().into()];
    for i in 0..bulk {
        values.push(uuid::Uuid::now_v7().into());
        values.push(format!("bulk{i}@example.com").into());
    }
    app.db.conn.execute_raw(Statement::from_sql_and_values(app.db.backend(), sql, values)).await.unwrap();

    let res = app.get("/admin/exports/users.csv", admin.auth()).await;
    let (text, records) = csv(res, "users").await;
    assert!(text.starts_with("id,email,display_name,role,is_active,email_verified,created_at\r\n"), "{}", &text[..80]);
    assert!(!text.contains("password") && !text.contains("!,"), "no password hashes");
    assert_eq!(records.len(), 1 + 2 + bulk);
    let ids: Vec<&str> = records[1..].iter().map(|r| r[0].as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ids, "every account once, in id order");

    let listed = app.get_json(&format!("/admin/users?q={}", urlencode("mallory@")), admin.auth()).await;
    let row = records.iter().find(|r| r[1] == "mallory@example.com").unwrap();
    assert_eq!(
        row,
        &vec![
            mallory.id.clone(),
            "mallory@example.com".into(),
            // Written as text: a spreadsheet would run it as a formula.
            "'=HYPERLINK(\"http://evil.example\",\"x\")".into(),
            "student".into(),
            "true".into(),
            "false".into(),
            secs(&listed["items"][0]["created_at"]),
        ]
    );

    let audited = exports_audited(&app, &admin).await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0]["actor_id"], admin.id.as_str());
    assert_eq!(audited[0]["details"], json!({"kind": "users"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_export_covers_a_time_range_and_records_itself_first() {
    let app = TestApp::spawn().await;
    let admin = app.user("admin", "admin").await;
    let since = Utc::now();
    let res = app
        .req(Method::POST, "/auth/register", None)
        .header("user-agent", "+cmd|' /C calc'!A0")
        .json(&json!({"email": "agent@example.com", "password": PASSWORD, "display_name": "Agent"}))
        .send()
        .await
        .unwrap();
    let agent = expect(res, StatusCode::CREATED).await;
    let agent_id = s(&agent["user"]["id"]);

    let query = format!("since={}", urlencode(&since.to_rfc3339()));
    let (text, records) =
        csv(app.get(&format!("/admin/exports/audit-log.csv?{query}"), admin.auth()).await, "audit-log").await;
    assert!(
        text.starts_with(
            "id,at,actor_id,actor_email,action,target_type,target_id,ip,user_agent,request_id,details\r\n"
        )
    );
    let register = records.iter().find(|r| r[4] == "auth.register").unwrap();
    assert_eq!(register[2], agent_id);
    assert_eq!(register[3], "agent@example.com");
    assert_eq!(register[8], "'+cmd|' /C calc'!A0", "the user agent is written as text");
    assert!(
        records[1..]
            .iter()
            .all(|r| DateTime::parse_from_rfc3339(&r[1]).unwrap() >= since - chrono::Duration::seconds(1))
    );
    assert!(!records.iter().any(|r| r[2] == admin.id && r[4] == "auth.register"), "before `since`");
    // The export's own record was committed before its first byte.
    let own = records.iter().find(|r| r[4] == "admin.export").unwrap();
    assert_eq!((own[2].as_str(), own[4].as_str()), (admin.id.as_str(), "admin.export"));
    let details: Value = serde_json::from_str(&own[10]).unwrap();
    assert_eq!(details["kind"], "audit-log");
    assert_eq!(DateTime::parse_from_rfc3339(details["since"].as_str().unwrap()).unwrap(), since);

    let query = format!("until={}", urlencode(&since.to_rfc3339()));
    let (_, before) =
        csv(app.get(&format!("/admin/exports/audit-log.csv?{query}"), admin.auth()).await, "audit-log").await;
    assert!(before.iter().any(|r| r[2] == admin.id && r[4] == "auth.register"));
    assert!(!before.iter().any(|r| r[2] == agent_id));

    for (query, field) in [
        ("since=yesterday", "since"),
        ("since=2026-03-02T00:00:00Z&until=2026-03-01T00:00:00Z", "until"),
        ("format=xlsx", "format"),
    ] {
        let res = app.get(&format!("/admin/exports/audit-log.csv?{query}"), admin.auth()).await;
        assert_eq!(error_fields(&problem(res, StatusCode::UNPROCESSABLE_ENTITY).await), vec![field], "{query}");
    }
    assert_eq!(exports_audited(&app, &admin).await.len(), 2, "refused exports are not audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_course_progress_export_has_one_row_per_enrolled_student() {
    let app = TestApp::spawn().await;
    let admin = app.user("admin", "admin").await;
    let teacher = app.user("teacher", "instructor").await;
    let course_id = catalog::course(&app, &teacher, "export-course").await;
    let basics = catalog::module(&app, &teacher, &course_id, "Basics", None).await;
    let more = catalog::module(&app, &teacher, &course_id, "More", None).await;
    let mut lessons = Vec::new();
    for (m, title) in [(&basics, "One"), (&basics, "Two"), (&more, "Three")] {
        lessons.push(s(&catalog::lesson(&app, &teacher, &s(&m["id"]), title, None).await["id"]));
    }
    catalog::publish(&app, &teacher, &course_id).await;
    let finisher = app.user("finisher", "student").await;
    let starter = app.user("starter", "student").await;
    let idle = app.user("idle", "student").await;
    app.user("bystander", "student").await;
    rename(&app, &starter, "@SUM(A1)").await;
    for u in [&finisher, &starter, &idle] {
        expect(app.post(&format!("/courses/{course_id}/enrollments"), u.auth(), json!({})).await, StatusCode::CREATED)
            .await;
    }
    let mut progress = vec![(&starter, &lessons[0], "completed"), (&starter, &lessons[1], "in_progress")];
    progress.extend(lessons.iter().map(|l| (&finisher, l, "completed")));
    for (u, lesson, status) in progress {
        let body = json!({"status": status, "progress": if status == "completed" { 1.0 } else { 0.5 }});
        let res = app.send_json(Method::PUT, &format!("/me/lessons/{lesson}/progress"), u.auth(), body).await;
        expect(res, StatusCode::OK).await;
    }

    let path = format!("/admin/exports/course-progress.csv?course_id={course_id}");
    let (text, records) = csv(app.get(&path, admin.auth()).await, "course-progress-export-course").await;
    assert!(text.starts_with(
        "user_id,email,display_name,enrolled_at,lessons_completed,lessons_in_course,percent,completed_at,last_activity_at\r\n"
    ));
    assert_eq!(records.len(), 4, "the three enrolled students: {text}");
    let row = |u: &User| records.iter().find(|r| r[0] == u.id).unwrap_or_else(|| panic!("{} missing", u.email)).clone();
    let stamp = |cell: &str| DateTime::parse_from_rfc3339(cell).is_ok() && cell.ends_with('Z');
    let (f, st, i) = (row(&finisher), row(&starter), row(&idle));
    assert_eq!(f[1..3], ["finisher@example.com".to_string(), "Test User".into()]);
    assert_eq!(f[4..7], ["3".to_string(), "3".into(), "100".into()]);
    assert!(stamp(&f[3]) && stamp(&f[7]) && stamp(&f[8]), "{f:?}");
    assert_eq!(st[2], "'@SUM(A1)", "written as text");
    assert_eq!(st[4..8], ["1".to_string(), "3".into(), "33.3".into(), String::new()]);
    assert!(stamp(&st[8]));
    assert_eq!(i[4..9], ["0".to_string(), "3".into(), "0".into(), String::new(), String::new()]);

    let audited = exports_audited(&app, &admin).await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0]["target_type"], "course");
    assert_eq!(audited[0]["target_id"], course_id.as_str());
    assert_eq!(audited[0]["details"], json!({"kind": "course-progress", "course_id": course_id}));

    let unknown = "/admin/exports/course-progress.csv?course_id=00000000-0000-4000-8000-000000000000";
    problem(app.get(unknown, admin.auth()).await, StatusCode::NOT_FOUND).await;
    for (query, field) in [("", "course_id"), ("?course_id=42", "course_id")] {
        let res = app.get(&format!("/admin/exports/course-progress.csv{query}"), admin.auth()).await;
        assert_eq!(error_fields(&problem(res, StatusCode::UNPROCESSABLE_ENTITY).await), vec![field]);
    }
    assert_eq!(exports_audited(&app, &admin).await.len(), 1, "nothing exported, nothing audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_exist_only_for_admins_and_only_for_known_kinds() {
    let app = TestApp::spawn().await;
    let admin = app.user("admin", "admin").await;
    let teacher = app.user("teacher", "instructor").await;
    let student = app.user("kid", "student").await;
    let course_id = catalog::course(&app, &teacher, "hidden-course").await;
    let paths = [
        "/admin/exports/users.csv".to_string(),
        "/admin/exports/audit-log.csv?since=yesterday".into(),
        format!("/admin/exports/course-progress.csv?course_id={course_id}"),
    ];
    for path in &paths {
        for u in [&teacher, &student] {
            problem(app.get(path, u.auth()).await, StatusCode::NOT_FOUND).await;
        }
        problem(app.get(path, None).await, StatusCode::UNAUTHORIZED).await;
    }
    for path in ["/admin/exports/grades.csv", "/admin/exports/users.json", "/admin/exports/users"] {
        problem(app.get(path, admin.auth()).await, StatusCode::NOT_FOUND).await;
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'admin.export'").await, 0);
}
