//! Test data, made fast but honestly: users are inserted by SQL with a cheap (cost 4) hash so
//! that their first sign-in through the API is quick, then every hash is replaced by one cost-10
//! hash of the same password, so that every sign-in the benchmark measures pays production cost.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use anyhow::Context;
use cifix::{
    auth::password::Hasher,
    entities::{enums::Role, user},
};
use hyper::Method;
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, Set, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::http::Conn;

pub const PASSWORD: &str = "a long benchmark passphrase";
const TEACHER: &str = "teacher@bench.example.com";
const MODULES: usize = 5;
const LESSONS_PER_MODULE: usize = 6;

/// A request as the scenarios send it.
pub struct Call {
    pub method: Method,
    pub path: String,
    pub body: Option<Value>,
}

pub struct User {
    pub email: String,
    pub token: String,
    pub course_id: String,
    pub lessons: Arc<Vec<String>>,
    /// Progress updates sent so far; drives the next one (see `progress`).
    sent: AtomicU64,
}

impl User {
    pub fn me(&self) -> Call {
        Call { method: Method::GET, path: "/api/v1/me".into(), body: None }
    }

    pub fn dashboard(&self) -> Call {
        Call { method: Method::GET, path: "/api/v1/me/dashboard".into(), body: None }
    }

    pub fn outline(&self) -> Call {
        Call { method: Method::GET, path: format!("/api/v1/courses/{}", self.course_id), body: None }
    }

    pub fn notifications(&self) -> Call {
        Call { method: Method::GET, path: "/api/v1/me/notifications".into(), body: None }
    }

    pub fn login(&self) -> Call {
        Call {
            method: Method::POST,
            path: "/api/v1/auth/login".into(),
            body: Some(json!({"email": self.email, "password": PASSWORD})),
        }
    }

    /// The next step of working through the course: each lesson in outline order gets four
    /// updates (25 %, 50 %, 75 %, completed). `time_spent_seconds` grows with every update, so
    /// the `progress.updated` event of this very update can be told from earlier ones (the
    /// server keeps the larger of the stored and the sent value, so the event's is at least it).
    pub fn progress(&self) -> (Call, String, i64) {
        let k = self.sent.fetch_add(1, Ordering::Relaxed);
        let lesson = self.lessons[(k / 4) as usize % self.lessons.len()].clone();
        let step = k % 4 + 1;
        let time_spent = 30 * (k as i64 + 1);
        let body = if step == 4 {
            json!({"status": "completed", "progress": 1.0, "time_spent_seconds": time_spent})
        } else {
            json!({"status": "in_progress", "progress": step as f64 / 4.0, "time_spent_seconds": time_spent})
        };
        let call =
            Call { method: Method::PUT, path: format!("/api/v1/me/lessons/{lesson}/progress"), body: Some(body) };
        (call, lesson, time_spent)
    }
}

/// Who signs in, and which course they are enrolled in.
pub enum Plan {
    /// Fresh users and one published course of 5 × 6 lessons, created here.
    Fresh { users: usize },
    /// The seeded students of `tests/api/support/large_db.sql`.
    Large { users: usize },
}

pub struct Hashes {
    cheap: String,
    real: String,
}

pub async fn hashes() -> anyhow::Result<Hashes> {
    Ok(Hashes { cheap: Hasher::new(4, 1).hash(PASSWORD).await?, real: Hasher::new(10, 1).hash(PASSWORD).await? })
}

/// Before the server starts: the rows sign-in needs.
pub async fn insert_users(db: &DatabaseConnection, plan: &Plan, h: &Hashes) -> anyhow::Result<()> {
    match *plan {
        Plan::Fresh { users } => {
            let now = chrono::Utc::now();
            let row = |email: String, role: Role| user::ActiveModel {
                id: Set(Uuid::now_v7()),
                email: Set(email),
                display_name: Set("Bench".into()),
                password_hash: Set(h.cheap.clone()),
                role: Set(role),
                is_active: Set(true),
                email_verified: Set(true),
                failed_login_count: Set(0),
                failed_login_window_start: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            };
            user::Entity::insert(row(TEACHER.into(), Role::Instructor)).exec(db).await?;
            let all: Vec<usize> = (0..users).collect();
            for chunk in all.chunks(500) {
                let rows = chunk.iter().map(|i| row(student_email(*i), Role::Student));
                user::Entity::insert_many(rows).exec(db).await?;
            }
        }
        Plan::Large { users } => {
            // The seeded hashes are unusable on purpose; these students get the known password.
            let emails: Vec<String> = large_students(users).map(|s| format!("'student{s}@large.example'")).collect();
            db.execute_unprepared(&format!(
                "UPDATE users SET password_hash = '{}' WHERE email IN ({})",
                h.cheap,
                emails.join(",")
            ))
            .await?;
        }
    }
    Ok(())
}

/// After the first sign-ins: from now on every password check costs what it does in production.
pub async fn use_real_hashes(db: &DatabaseConnection, h: &Hashes) -> anyhow::Result<()> {
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => "UPDATE users SET password_hash = $1 WHERE password_hash = $2",
        _ => "UPDATE users SET password_hash = ? WHERE password_hash = ?",
    };
    db.execute_raw(Statement::from_sql_and_values(backend, sql, [h.real.clone().into(), h.cheap.clone().into()]))
        .await?;
    Ok(())
}

fn student_email(i: usize) -> String {
    format!("student{i}@bench.example.com")
}

/// Active seeded students (every 50th is deactivated by the seed).
fn large_students(n: usize) -> impl Iterator<Item = u64> {
    (1u64..).filter(|s| s % 50 != 0).take(n)
}

/// The seed's ids: `seed_id(kind, n)` in its header.
fn seed_id(kind: u32, n: u64) -> String {
    format!("{kind:08x}-0000-7000-8000-{n:012x}")
}

/// With the server up: the course (fresh plan), a token per user, enrollments.
pub async fn sign_in(addr: SocketAddr, plan: &Plan) -> anyhow::Result<Vec<Arc<User>>> {
    match *plan {
        Plan::Fresh { users } => {
            let (course_id, lessons) = create_course(addr).await?;
            let lessons = Arc::new(lessons);
            let emails: Vec<String> = (0..users).map(student_email).collect();
            let tokens = parallel_logins(addr, &emails, Some(&course_id)).await?;
            Ok(emails
                .into_iter()
                .zip(tokens)
                .map(|(email, token)| {
                    Arc::new(User {
                        email,
                        token,
                        course_id: course_id.clone(),
                        lessons: lessons.clone(),
                        sent: AtomicU64::new(0),
                    })
                })
                .collect())
        }
        Plan::Large { users } => {
            let students: Vec<u64> = large_students(users).collect();
            let emails: Vec<String> = students.iter().map(|s| format!("student{s}@large.example")).collect();
            let tokens = parallel_logins(addr, &emails, None).await?;
            Ok(students
                .iter()
                .zip(emails)
                .zip(tokens)
                .map(|((s, email), token)| {
                    // Student s is enrolled in course s % 10, one of the 10,000-student courses.
                    let course = s % 10;
                    let lessons = (0..20).map(|i| seed_id(5, course * 20 + i)).collect();
                    Arc::new(User {
                        email,
                        token,
                        course_id: seed_id(3, course),
                        lessons: Arc::new(lessons),
                        sent: AtomicU64::new(0),
                    })
                })
                .collect())
        }
    }
}

async fn create_course(addr: SocketAddr) -> anyhow::Result<(String, Vec<String>)> {
    let mut c = Conn::new(addr);
    let login = json!({"email": TEACHER, "password": PASSWORD});
    let t = c.expect(Method::POST, "/api/v1/auth/login", None, Some(&login)).await?;
    let t = t["access_token"].as_str().context("teacher token")?.to_string();
    let slug = format!("bench-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let course = json!({"slug": slug, "title": "Benchmark course", "summary": "Load", "level": "beginner"});
    let course = c.expect(Method::POST, "/api/v1/courses", Some(&t), Some(&course)).await?;
    let course_id = course["id"].as_str().context("course id")?.to_string();
    let mut lessons = Vec::new();
    for m in 0..MODULES {
        let body = json!({"title": format!("Module {m}")});
        let module =
            c.expect(Method::POST, &format!("/api/v1/courses/{course_id}/modules"), Some(&t), Some(&body)).await?;
        let module_id = module["id"].as_str().context("module id")?;
        for l in 0..LESSONS_PER_MODULE {
            let body = json!({"title": format!("Lesson {m}.{l}"), "kind": "reading"});
            let lesson =
                c.expect(Method::POST, &format!("/api/v1/modules/{module_id}/lessons"), Some(&t), Some(&body)).await?;
            lessons.push(lesson["id"].as_str().context("lesson id")?.to_string());
        }
    }
    let publish = json!({"published": true});
    c.expect(Method::PATCH, &format!("/api/v1/courses/{course_id}"), Some(&t), Some(&publish)).await?;
    Ok((course_id, lessons))
}

/// Signs every email in (and enrolls it in `course`), a few at a time.
async fn parallel_logins(addr: SocketAddr, emails: &[String], course: Option<&str>) -> anyhow::Result<Vec<String>> {
    let emails = Arc::new(emails.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let course = course.map(str::to_string);
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (emails, next, course) = (emails.clone(), next.clone(), course.clone());
        workers.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(email) = emails.get(i) else { return anyhow::Ok(out) };
                let body = json!({"email": email, "password": PASSWORD});
                let r = conn.expect(Method::POST, "/api/v1/auth/login", None, Some(&body)).await?;
                let token = r["access_token"].as_str().context("access token")?.to_string();
                if let Some(course) = &course {
                    conn.expect(Method::POST, &format!("/api/v1/courses/{course}/enrollments"), Some(&token), None)
                        .await?;
                }
                out.push((i, token));
            }
        }));
    }
    let mut tokens = vec![String::new(); emails.len()];
    for w in workers {
        for (i, t) in w.await?? {
            tokens[i] = t;
        }
    }
    Ok(tokens)
}

/// Endpoint names in the tables, and the server's route template for each (its `/metrics`
/// labels).
pub const ME: &str = "GET /me";
pub const DASHBOARD: &str = "GET /me/dashboard";
pub const PUT: &str = "PUT /me/lessons/{id}/progress";
pub const OUTLINE: &str = "GET /courses/{id}";
pub const NOTIFICATIONS: &str = "GET /me/notifications";
pub const LOGIN: &str = "POST /auth/login";

pub fn route(name: &str) -> String {
    // Path parameters match whatever they are named (see `stats::Statements`).
    let path = name.split_once(' ').map_or(name, |(_, p)| p);
    format!("/api/v1{path}")
}
