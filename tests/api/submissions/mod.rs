//! Project submissions through the API: hand-in, review, resubmission and downloads; limits
//! and hostile files; malware scanning; what is left behind when an upload fails.
//!
//! On the PostgreSQL run the files go to a real S3-compatible store; on the default run to the
//! local store under the data directory.

mod content;
mod flow;
mod limits;
mod scanning;
mod throughput;

use std::collections::HashMap;

use chrono::Utc;
use reqwest::{
    Method, StatusCode,
    multipart::{Form, Part},
};
use serde_json::{Value, json};

use crate::support::{Backend, TestApp, User, catalog, expect};

/// A course with one module holding a reading lesson and a project lesson, its instructor
/// and an enrolled student.
pub struct Project {
    pub instructor: User,
    pub student: User,
    pub course_id: String,
    pub module_id: String,
    pub lesson_id: String,
    pub reading_id: String,
}

pub async fn project(app: &TestApp) -> Project {
    let instructor = app.user("teacher", "instructor").await;
    let student = app.user("student", "student").await;
    let course_id = catalog::course(app, &instructor, "projects-course").await;
    let module = catalog::module(app, &instructor, &course_id, "Build things", None).await;
    let module_id = module["id"].as_str().unwrap();
    let reading = catalog::lesson(app, &instructor, module_id, "Read first", None).await;
    let res = app
        .send_json(
            Method::POST,
            &format!("/modules/{module_id}/lessons"),
            instructor.auth(),
            json!({"title": "Your first game", "kind": "project", "content": "Build a game"}),
        )
        .await;
    let lesson = expect(res, StatusCode::CREATED).await;
    catalog::publish(app, &instructor, &course_id).await;
    enroll(app, &student, &course_id).await;
    Project {
        instructor,
        student,
        course_id,
        module_id: module_id.to_string(),
        lesson_id: lesson["id"].as_str().unwrap().to_string(),
        reading_id: reading["id"].as_str().unwrap().to_string(),
    }
}

pub async fn enroll(app: &TestApp, u: &User, course_id: &str) {
    let res = app.send_json(Method::POST, &format!("/courses/{course_id}/enrollments"), u.auth(), json!({})).await;
    expect(res, StatusCode::CREATED).await;
}

/// The application as uploads run in this suite: on PostgreSQL with the S3-compatible store.
pub async fn spawn(customize: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
    match Backend::of_run() {
        Backend::Postgres => {
            let s3 = crate::support::s3::S3Scratch::new().await;
            let s3_env = s3.env();
            TestApp::spawn_with(move |env| {
                env.extend(s3_env);
                customize(env);
            })
            .await
            .keeping(s3)
        }
        Backend::Embedded => TestApp::spawn_with(customize).await,
    }
}

/// A file part as a browser sends it.
pub fn file(name: &str, bytes: impl Into<Vec<u8>>, content_type: &str) -> Part {
    Part::bytes(bytes.into()).file_name(name.to_string()).mime_str(content_type).unwrap()
}

pub fn form(files: Vec<Part>, note: &str) -> Form {
    let mut form = Form::new().text("note", note.to_string());
    for f in files {
        form = form.part("files", f);
    }
    form
}

pub async fn submit(app: &TestApp, u: &User, lesson_id: &str, form: Form) -> reqwest::Response {
    app.req(Method::POST, &format!("/lessons/{lesson_id}/submissions"), u.auth()).multipart(form).send().await.unwrap()
}

/// Hands in one small Python file and returns the submission.
pub async fn submit_code(app: &TestApp, u: &User, lesson_id: &str, code: &str) -> Value {
    let res = submit(app, u, lesson_id, form(vec![file("game.py", code, "text/x-python")], "My game")).await;
    expect(res, StatusCode::CREATED).await
}

pub async fn review(app: &TestApp, u: &User, id: &str, body: Value) -> reqwest::Response {
    app.post(&format!("/submissions/{id}/review"), u.auth(), body).await
}

/// Every object in the application's store, whatever the store is.
pub async fn stored_objects(app: &TestApp) -> Vec<String> {
    let later = Utc::now() + chrono::Duration::hours(1);
    app.state.submissions.storage.list_older_than("", later).await.unwrap()
}

/// Nothing of a refused upload is kept: no row, no object, no staged bytes.
pub async fn nothing_kept(app: &TestApp) {
    assert_eq!(app.count("SELECT COUNT(*) FROM submissions").await, 0, "no submission row");
    assert_eq!(app.count("SELECT COUNT(*) FROM submission_files").await, 0, "no file row");
    assert_eq!(stored_objects(app).await, Vec::<String>::new(), "no object in the store");
    let staging = cifix::submissions::staging_root(&app.state.config.data_dir);
    let left: Vec<_> = std::fs::read_dir(&staging).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "no staged upload left: {left:?}");
}

pub async fn notifications(app: &TestApp, token: &str, kind: &str) -> Vec<Value> {
    let page = app.get_json("/me/notifications", Some(token)).await;
    page["items"].as_array().unwrap().iter().filter(|n| n["kind"] == kind).cloned().collect()
}

pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut out = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut out);
    for (name, bytes) in entries {
        z.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
    out.into_inner()
}
