//! Catalog fixtures shared by `tests/catalog.rs` and `tests/progress.rs`: users of each role,
//! courses with modules and lessons, enrollments. Everything goes through the HTTP API except
//! the role change, which has no endpoint yet.
#![allow(dead_code)]

use reqwest::{Method, Response, StatusCode};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::common::TestApp;

pub struct User {
    pub token: String,
    pub id: String,
    pub email: String,
}

/// Registers a user and gives them `role` (roles are re-read on every request).
pub async fn user(app: &TestApp, name: &str, role: &str) -> User {
    let email = format!("{name}@example.com");
    let body = app.register(&email).await;
    if role != "student" {
        app.db
            .conn
            .execute_unprepared(&format!("UPDATE users SET role = '{role}' WHERE email = '{email}'"))
            .await
            .unwrap();
    }
    User {
        token: body["access_token"].as_str().unwrap().to_string(),
        id: body["user"]["id"].as_str().unwrap().to_string(),
        email,
    }
}

pub async fn send(app: &TestApp, method: Method, path: &str, u: &User, body: Value) -> Response {
    app.send_json(method, path, Some(&u.token), body).await
}

pub async fn delete(app: &TestApp, path: &str, u: &User) -> Response {
    app.req(Method::DELETE, path, Some(&u.token)).send().await.unwrap()
}

pub async fn get_json(app: &TestApp, path: &str, u: &User) -> Value {
    let res = app.get(path, Some(&u.token)).await;
    assert_eq!(res.status(), StatusCode::OK, "GET {path}");
    res.json().await.unwrap()
}

pub async fn expect(res: Response, status: StatusCode) -> Value {
    let got = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "body: {body}");
    body
}

pub async fn course(app: &TestApp, u: &User, slug: &str) -> String {
    let res = send(
        app,
        Method::POST,
        "/courses",
        u,
        json!({"slug": slug, "title": format!("Course {slug}"), "summary": "About it", "level": "beginner"}),
    )
    .await;
    expect(res, StatusCode::CREATED).await["id"].as_str().unwrap().to_string()
}

pub async fn publish(app: &TestApp, u: &User, course_id: &str) {
    let res = send(app, Method::PATCH, &format!("/courses/{course_id}"), u, json!({"published": true})).await;
    expect(res, StatusCode::OK).await;
}

pub async fn module(app: &TestApp, u: &User, course_id: &str, title: &str, position: Option<i32>) -> Value {
    let mut body = json!({"title": title});
    if let Some(p) = position {
        body["position"] = json!(p);
    }
    let res = send(app, Method::POST, &format!("/courses/{course_id}/modules"), u, body).await;
    expect(res, StatusCode::CREATED).await
}

pub async fn lesson(app: &TestApp, u: &User, module_id: &str, title: &str, position: Option<i32>) -> Value {
    let mut body = json!({"title": title, "kind": "reading", "content": "# Hello"});
    if let Some(p) = position {
        body["position"] = json!(p);
    }
    let res = send(app, Method::POST, &format!("/modules/{module_id}/lessons"), u, body).await;
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
    let instructor = user(app, "teacher", "instructor").await;
    let student = user(app, "student", "student").await;
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
    let res = send(app, Method::POST, &format!("/courses/{course_id}/enrollments"), &student, json!({})).await;
    expect(res, StatusCode::CREATED).await;
    World { instructor, student, course_id, module_ids, lesson_ids }
}

pub async fn count(app: &TestApp, sql: &str) -> i64 {
    app.count(sql).await
}
