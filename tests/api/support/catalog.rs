//! Catalog fixtures: courses with modules and lessons, enrollments, all through the HTTP API.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{TestApp, User, expect};

pub async fn course(app: &TestApp, u: &User, slug: &str) -> String {
    let res = app
        .send_json(
            Method::POST,
            "/courses",
            u.auth(),
            json!({"slug": slug, "title": format!("Course {slug}"), "summary": "About it", "level": "beginner"}),
        )
        .await;
    expect(res, StatusCode::CREATED).await["id"].as_str().unwrap().to_string()
}

pub async fn publish(app: &TestApp, u: &User, course_id: &str) {
    let res =
        app.send_json(Method::PATCH, &format!("/courses/{course_id}"), u.auth(), json!({"published": true})).await;
    expect(res, StatusCode::OK).await;
}

pub async fn module(app: &TestApp, u: &User, course_id: &str, title: &str, position: Option<i32>) -> Value {
    let mut body = json!({"title": title});
    if let Some(p) = position {
        body["position"] = json!(p);
    }
    let res = app.send_json(Method::POST, &format!("/courses/{course_id}/modules"), u.auth(), body).await;
    expect(res, StatusCode::CREATED).await
}

pub async fn lesson(app: &TestApp, u: &User, module_id: &str, title: &str, position: Option<i32>) -> Value {
    let mut body = json!({"title": title, "kind": "reading", "content": "# Hello"});
    if let Some(p) = position {
        body["position"] = json!(p);
    }
    let res = app.send_json(Method::POST, &format!("/modules/{module_id}/lessons"), u.auth(), body).await;
    expect(res, StatusCode::CREATED).await
}

/// A published course by an instructor: `modules` modules of `per_module` lessons each, and a
/// student enrolled in it.
pub struct World {
    pub instructor: User,
    pub student: User,
    pub course_id: String,
    pub module_ids: Vec<String>,
    /// In outline order.
    pub lesson_ids: Vec<String>,
}

pub async fn world(app: &TestApp, modules: usize, per_module: usize) -> World {
    let instructor = app.user("teacher", "instructor").await;
    let student = app.user("student", "student").await;
    let course_id = course(app, &instructor, "ai-for-kids").await;
    let mut module_ids = vec![];
    let mut lesson_ids = vec![];
    for m in 0..modules {
        let mid = module(app, &instructor, &course_id, &format!("Module {m}"), None).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        for l in 0..per_module {
            let lid = lesson(app, &instructor, &mid, &format!("Lesson {m}.{l}"), None).await["id"]
                .as_str()
                .unwrap()
                .to_string();
            lesson_ids.push(lid);
        }
        module_ids.push(mid);
    }
    publish(app, &instructor, &course_id).await;
    let res =
        app.send_json(Method::POST, &format!("/courses/{course_id}/enrollments"), student.auth(), json!({})).await;
    expect(res, StatusCode::CREATED).await;
    World { instructor, student, course_id, module_ids, lesson_ids }
}
