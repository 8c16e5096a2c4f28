//! Catalog authoring and browsing, through real HTTP, on SQLite or PostgreSQL.

// Fixtures live beside the harness but are not part of it, so other suites need not change.

use crate::support::catalog::{course, lesson, module, publish};
use crate::support::{TestApp, error_fields, problem};
use crate::support::{User, expect};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn positions(items: &Value) -> Vec<(String, i64)> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["title"].as_str().unwrap().to_string(), i["position"].as_i64().unwrap()))
        .collect()
}

fn titles(items: &Value) -> Vec<String> {
    positions(items).into_iter().map(|(t, _)| t).collect()
}

#[tokio::test]
async fn only_instructors_and_admins_create_courses_and_slugs_are_checked() {
    let app = TestApp::spawn().await;
    let student = app.user("s", "student").await;
    let teacher = app.user("t", "instructor").await;
    let admin = app.user("a", "admin").await;
    let body = json!({"slug": "intro-to-ai", "title": "Intro to AI", "summary": "Robots!", "level": "beginner"});

    problem(app.send_json(Method::POST, "/courses", student.auth(), body.clone()).await, StatusCode::NOT_FOUND).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM courses").await, 0);

    let c =
        expect(app.send_json(Method::POST, "/courses", teacher.auth(), body.clone()).await, StatusCode::CREATED).await;
    assert_eq!(c["slug"], "intro-to-ai");
    assert_eq!(c["published"], false);
    assert_eq!(c["instructor_id"], teacher.id);
    assert_eq!(c["modules"], json!([]));

    // Taken slug, whoever asks.
    let p =
        problem(app.send_json(Method::POST, "/courses", admin.auth(), body.clone()).await, StatusCode::CONFLICT).await;
    assert!(p["type"].as_str().unwrap().contains("slug-taken"));

    for bad in ["ab", "Has-Caps", "under_score", "spa ce", &"x".repeat(65), "ünï"] {
        let mut b = body.clone();
        b["slug"] = json!(bad);
        let p =
            problem(app.send_json(Method::POST, "/courses", teacher.auth(), b).await, StatusCode::UNPROCESSABLE_ENTITY)
                .await;
        assert_eq!(error_fields(&p), vec!["slug"], "slug {bad:?}");
    }
    let p = problem(
        app.send_json(
            Method::POST,
            "/courses",
            teacher.auth(),
            json!({"slug": "ok-slug", "title": " ", "summary": "", "level": "expert"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&p), vec!["level"]);
    let p = problem(
        app.send_json(
            Method::POST,
            "/courses",
            teacher.auth(),
            json!({"slug": "ok-slug", "title": " ", "summary": "", "level": "advanced"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&p), vec!["title"]);
    let p = problem(
        app.send_json(
            Method::POST,
            "/courses",
            teacher.auth(),
            json!({"slug": "ok-slug", "title": "T", "summary": "", "level": "advanced", "owner": "me"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&p), vec!["owner"]);

    assert_eq!(app.count("SELECT COUNT(*) FROM courses").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'course.create'").await, 1);
}

#[tokio::test]
async fn only_the_courses_instructor_or_an_admin_edits_it() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner", "instructor").await;
    let other = app.user("other", "instructor").await;
    let student = app.user("s", "student").await;
    let admin = app.user("a", "admin").await;
    let cid = course(&app, &owner, "owned-course").await;
    let m = module(&app, &owner, &cid, "M1", None).await;
    let mid = m["id"].as_str().unwrap();
    let l = lesson(&app, &owner, mid, "L1", None).await;
    let lid = l["id"].as_str().unwrap();
    publish(&app, &owner, &cid).await;
    let audits = app.count("SELECT COUNT(*) FROM audit_log").await;

    for u in [&other, &student] {
        let attempts = [
            app.send_json(Method::PATCH, &format!("/courses/{cid}"), u.auth(), json!({"title": "Hijacked"})).await,
            app.send_json(Method::POST, &format!("/courses/{cid}/modules"), u.auth(), json!({"title": "X"})).await,
            app.send_json(Method::PATCH, &format!("/modules/{mid}"), u.auth(), json!({"title": "X"})).await,
            app.send_json(
                Method::POST,
                &format!("/modules/{mid}/lessons"),
                u.auth(),
                json!({"title": "X", "kind": "video"}),
            )
            .await,
            app.send_json(Method::PATCH, &format!("/lessons/{lid}"), u.auth(), json!({"title": "X"})).await,
            app.delete(&format!("/lessons/{lid}"), u.auth()).await,
            app.delete(&format!("/modules/{mid}"), u.auth()).await,
        ];
        for res in attempts {
            problem(res, StatusCode::NOT_FOUND).await;
        }
    }
    // Nothing was written: same outline, no audit rows.
    let outline = app.get_json(&format!("/courses/{cid}"), student.auth()).await;
    assert_eq!(outline["title"], "Course owned-course");
    assert_eq!(titles(&outline["modules"]), vec!["M1"]);
    assert_eq!(titles(&outline["modules"][0]["lessons"]), vec!["L1"]);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log").await, audits);

    // An admin may edit anyone's course.
    let c = expect(
        app.send_json(
            Method::PATCH,
            &format!("/courses/{cid}"),
            admin.auth(),
            json!({"title": "Renamed", "level": "advanced"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(c["title"], "Renamed");
    assert_eq!(c["level"], "advanced");
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'course.update'").await, 2);

    // A demoted instructor loses edit rights at once.
    use sea_orm::ConnectionTrait;
    app.db
        .conn
        .execute_unprepared(&format!("UPDATE users SET role = 'student' WHERE email = '{}'", owner.email))
        .await
        .unwrap();
    problem(
        app.send_json(Method::PATCH, &format!("/courses/{cid}"), owner.auth(), json!({"title": "Mine"})).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn students_see_published_courses_only() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner", "instructor").await;
    let other = app.user("other", "instructor").await;
    let student = app.user("s", "student").await;
    let admin = app.user("a", "admin").await;
    let draft = course(&app, &owner, "draft-course").await;
    let live = course(&app, &owner, "live-course").await;
    let m = module(&app, &owner, &draft, "M", None).await;
    let draft_lesson = lesson(&app, &owner, m["id"].as_str().unwrap(), "L", None).await;
    publish(&app, &owner, &live).await;

    let slugs = |v: &Value| -> Vec<String> {
        v["items"].as_array().unwrap().iter().map(|c| c["slug"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(slugs(&app.get_json("/courses", student.auth()).await), vec!["live-course"]);
    assert_eq!(slugs(&app.get_json("/courses", other.auth()).await), vec!["live-course"]);
    assert_eq!(slugs(&app.get_json("/courses", owner.auth()).await), vec!["draft-course", "live-course"]);
    assert_eq!(slugs(&app.get_json("/courses", admin.auth()).await), vec!["draft-course", "live-course"]);

    for u in [&student, &other] {
        problem(app.get(&format!("/courses/{draft}"), Some(&u.token)).await, StatusCode::NOT_FOUND).await;
        problem(
            app.get(&format!("/lessons/{}", draft_lesson["id"].as_str().unwrap()), Some(&u.token)).await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    problem(
        app.send_json(Method::POST, &format!("/courses/{draft}/enrollments"), student.auth(), json!({})).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(app.count("SELECT COUNT(*) FROM enrollments").await, 0);
    // Unknown and malformed ids look the same as hidden ones.
    problem(
        app.get("/courses/00000000-0000-0000-0000-000000000000", Some(&student.token)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(app.get("/courses/not-a-uuid", Some(&student.token)).await, StatusCode::NOT_FOUND).await;
    problem(app.get("/courses", None).await, StatusCode::UNAUTHORIZED).await;

    app.get_json(&format!("/courses/{draft}"), owner.auth()).await;
    app.get_json(&format!("/courses/{draft}"), admin.auth()).await;
    publish(&app, &owner, &draft).await;
    let c = app.get_json(&format!("/courses/{draft}"), student.auth()).await;
    assert_eq!(c["module_count"], 1);
    assert_eq!(c["lesson_count"], 1);
    let l = app.get_json(&format!("/lessons/{}", draft_lesson["id"].as_str().unwrap()), student.auth()).await;
    assert_eq!(l["content"], "# Hello");
}

#[tokio::test]
async fn course_list_is_paginated_with_counts() {
    let app = TestApp::spawn().await;
    let t = app.user("t", "instructor").await;
    for i in 0..5 {
        let c = course(&app, &t, &format!("course-{i}")).await;
        let m = module(&app, &t, &c, "M", None).await;
        for _ in 0..i {
            lesson(&app, &t, m["id"].as_str().unwrap(), "L", None).await;
        }
    }
    let p1 = app.get_json("/courses?limit=2", t.auth()).await;
    assert_eq!(p1["items"].as_array().unwrap().len(), 2);
    let cursor = p1["next_cursor"].as_str().unwrap();
    let p2 = app.get_json(&format!("/courses?limit=2&cursor={cursor}"), t.auth()).await;
    let cursor = p2["next_cursor"].as_str().unwrap();
    let p3 = app.get_json(&format!("/courses?limit=2&cursor={cursor}"), t.auth()).await;
    assert_eq!(p3["next_cursor"], Value::Null);
    let all: Vec<Value> = [p1, p2, p3].iter().flat_map(|p| p["items"].as_array().unwrap().clone()).collect();
    assert_eq!(all.len(), 5);
    for (i, c) in all.iter().enumerate() {
        assert_eq!(c["slug"], format!("course-{i}"));
        assert_eq!(c["module_count"], 1);
        assert_eq!(c["lesson_count"], i as u64);
    }
    problem(app.get("/courses?limit=0", Some(&t.token)).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    problem(app.get("/courses?limit=101", Some(&t.token)).await, StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test]
async fn positions_stay_dense_and_unique_through_inserts_moves_and_deletes() {
    let app = TestApp::spawn().await;
    let t = app.user("t", "instructor").await;
    let cid = course(&app, &t, "ordered").await;
    module(&app, &t, &cid, "B", None).await;
    module(&app, &t, &cid, "D", None).await;
    let a = module(&app, &t, &cid, "A", Some(1)).await;
    assert_eq!(a["position"], 1);
    let c = module(&app, &t, &cid, "C", Some(3)).await;
    let e = module(&app, &t, &cid, "E", Some(5)).await;
    let outline = app.get_json(&format!("/courses/{cid}"), t.auth()).await;
    assert_eq!(
        positions(&outline["modules"]),
        vec![("A".into(), 1), ("B".into(), 2), ("C".into(), 3), ("D".into(), 4), ("E".into(), 5)]
    );

    // Beyond the end is the end: the client cannot know the count, and wants it last.
    let last = expect(
        app.send_json(
            Method::POST,
            &format!("/courses/{cid}/modules"),
            t.auth(),
            json!({"title": "Z", "position": 70}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(last["position"], 6);
    expect(app.delete(&format!("/modules/{}", last["id"].as_str().unwrap()), t.auth()).await, StatusCode::NO_CONTENT)
        .await;
    // Before the start is no position at all.
    for bad in [0, -1] {
        let p = problem(
            app.send_json(
                Method::POST,
                &format!("/courses/{cid}/modules"),
                t.auth(),
                json!({"title": "X", "position": bad}),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(error_fields(&p), vec!["position"]);
    }

    // Delete the middle one: the gap closes.
    expect(app.delete(&format!("/modules/{}", c["id"].as_str().unwrap()), t.auth()).await, StatusCode::NO_CONTENT)
        .await;
    let outline = app.get_json(&format!("/courses/{cid}"), t.auth()).await;
    assert_eq!(
        positions(&outline["modules"]),
        vec![("A".into(), 1), ("B".into(), 2), ("D".into(), 3), ("E".into(), 4)]
    );

    // Move last to first and first to last.
    let eid = e["id"].as_str().unwrap();
    let moved = expect(
        app.send_json(Method::PATCH, &format!("/modules/{eid}"), t.auth(), json!({"position": 1})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(moved["position"], 1);
    let outline = app.get_json(&format!("/courses/{cid}"), t.auth()).await;
    assert_eq!(titles(&outline["modules"]), vec!["E", "A", "B", "D"]);
    expect(
        app.send_json(Method::PATCH, &format!("/modules/{eid}"), t.auth(), json!({"position": 4, "title": "E2"})).await,
        StatusCode::OK,
    )
    .await;
    let outline = app.get_json(&format!("/courses/{cid}"), t.auth()).await;
    assert_eq!(
        positions(&outline["modules"]),
        vec![("A".into(), 1), ("B".into(), 2), ("D".into(), 3), ("E2".into(), 4)]
    );
    // A move past the end stays last.
    let moved = expect(
        app.send_json(Method::PATCH, &format!("/modules/{eid}"), t.auth(), json!({"position": 5})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(moved["position"], 4);

    // Lessons follow the same rules within their module.
    let mid = outline["modules"][0]["id"].as_str().unwrap().to_string();
    lesson(&app, &t, &mid, "l2", None).await;
    lesson(&app, &t, &mid, "l1", Some(1)).await;
    let l4 = lesson(&app, &t, &mid, "l4", None).await;
    lesson(&app, &t, &mid, "l3", Some(3)).await;
    let outline = app.get_json(&format!("/courses/{cid}"), t.auth()).await;
    assert_eq!(
        positions(&outline["modules"][0]["lessons"]),
        vec![("l1".into(), 1), ("l2".into(), 2), ("l3".into(), 3), ("l4".into(), 4)]
    );
    let l4id = l4["id"].as_str().unwrap();
    let moved = expect(
        app.send_json(Method::PATCH, &format!("/lessons/{l4id}"), t.auth(), json!({"position": 2, "kind": "quiz"}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(moved["kind"], "quiz");
    let outline = app.get_json(&format!("/courses/{cid}"), t.auth()).await;
    assert_eq!(titles(&outline["modules"][0]["lessons"]), vec!["l1", "l4", "l2", "l3"]);
    let second = outline["modules"][0]["lessons"][2]["id"].as_str().unwrap();
    expect(app.delete(&format!("/lessons/{second}"), t.auth()).await, StatusCode::NO_CONTENT).await;
    let outline = app.get_json(&format!("/courses/{cid}"), t.auth()).await;
    assert_eq!(
        positions(&outline["modules"][0]["lessons"]),
        vec![("l1".into(), 1), ("l4".into(), 2), ("l3".into(), 3)]
    );
    assert_eq!(outline["lesson_count"], 3);
    problem(app.delete(&format!("/lessons/{second}"), t.auth()).await, StatusCode::NOT_FOUND).await;

    // Deleting a module removes its lessons.
    expect(app.delete(&format!("/modules/{mid}"), t.auth()).await, StatusCode::NO_CONTENT).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM lessons").await, 0);
    let outline = app.get_json(&format!("/courses/{cid}"), t.auth()).await;
    assert_eq!(positions(&outline["modules"]), vec![("B".into(), 1), ("D".into(), 2), ("E2".into(), 3)]);

    // Every change left an audit row.
    for (action, n) in [
        ("module.create", 6),
        ("module.update", 2),
        ("module.delete", 3),
        ("lesson.create", 4),
        ("lesson.update", 1),
        ("lesson.delete", 1),
    ] {
        assert_eq!(
            app.count(&format!("SELECT COUNT(*) FROM audit_log WHERE action = '{action}'")).await,
            n,
            "{action}"
        );
    }
}

#[tokio::test]
async fn parallel_inserts_keep_positions_dense() {
    let app = TestApp::spawn().await;
    let t = app.user("t", "instructor").await;
    let cid = course(&app, &t, "busy").await;
    let futs = (0..12).map(|i| {
        let (app, t, cid) = (&app, &t, &cid);
        async move {
            // Half insert at the front, half append.
            let body = if i % 2 == 0 {
                json!({"title": format!("m{i}"), "position": 1})
            } else {
                json!({"title": format!("m{i}")})
            };
            app.send_json(Method::POST, &format!("/courses/{cid}/modules"), t.auth(), body).await.status()
        }
    });
    for s in futures::future::join_all(futs).await {
        assert_eq!(s, StatusCode::CREATED);
    }
    let outline = app.get_json(&format!("/courses/{cid}"), t.auth()).await;
    let pos: Vec<i64> = positions(&outline["modules"]).into_iter().map(|(_, p)| p).collect();
    assert_eq!(pos, (1..=12).collect::<Vec<_>>());
}

#[tokio::test]
async fn seed_demo_loads_a_living_catalog_once() {
    use cifix::demo;
    let app = TestApp::spawn().await;
    let report = demo::seed(&app.state.auth, &app.state.catalog, &app.state.progress).await.unwrap();
    let password = report.password.expect("first run seeds");

    let res = app.login(demo::STUDENT_EMAILS[0], &password).await;
    assert_eq!(res.status(), StatusCode::OK);
    let token: Value = res.json().await.unwrap();
    let token = token["access_token"].as_str().unwrap();
    let list: Value = app.get("/courses", Some(token)).await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["published"] == true && c["lesson_count"].as_u64().unwrap() >= 5)
    );
    let d: Value = app.get("/me/dashboard", Some(token)).await.json().await.unwrap();
    assert_eq!(d["enrollments_progress"].as_array().unwrap().len(), 2);
    assert_eq!(d["enrollments_progress"][0]["completed_lessons"], 3);
    assert_eq!(d["streak_days"], 1);

    let again = demo::seed(&app.state.auth, &app.state.catalog, &app.state.progress).await.unwrap();
    assert!(again.password.is_none());
    assert_eq!(app.count("SELECT COUNT(*) FROM courses").await, 3);
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 3);
}

/// The catalog is cached; an edit must be visible to the very next read, on this instance and
/// (with PostgreSQL + Redis) on another instance sharing the database and Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_is_visible_at_once_despite_the_catalog_cache() {
    let a = TestApp::spawn().await;
    let teacher = a.user("teacher", "instructor").await;
    let student = a.user("student", "student").await;
    let id = course(&a, &teacher, "cache-me").await;
    let m = module(&a, &teacher, &id, "First", None).await;
    publish(&a, &teacher, &id).await;

    // On SQLite the second instance is the same process's only instance; the generation is
    // in-process there, and shared through Redis on PostgreSQL.
    let siblings = if crate::support::use_postgres() { Some(a.spawn_sibling().await) } else { None };
    let b = siblings.as_ref().unwrap_or(&a);

    // Warm the caches on the reading instance.
    assert_eq!(b.get_json(&format!("/courses/{id}"), student.auth()).await["title"], "Course cache-me");
    let list = b.get_json("/courses", student.auth()).await;
    assert_eq!(list["items"][0]["module_count"], 1);

    let res = a.send_json(Method::PATCH, &format!("/courses/{id}"), teacher.auth(), json!({"title": "Renamed"})).await;
    expect(res, StatusCode::OK).await;
    assert_eq!(b.get_json(&format!("/courses/{id}"), student.auth()).await["title"], "Renamed", "outline not stale");
    assert_eq!(b.get_json("/courses", student.auth()).await["items"][0]["title"], "Renamed", "list not stale");

    lesson(&a, &teacher, m["id"].as_str().unwrap(), "New lesson", None).await;
    let outline = b.get_json(&format!("/courses/{id}"), student.auth()).await;
    assert_eq!(outline["modules"][0]["lessons"].as_array().unwrap().len(), 1, "new lesson visible");
    assert_eq!(b.get_json("/courses", student.auth()).await["items"][0]["lesson_count"], 1);

    let res = a.send_json(Method::PATCH, &format!("/courses/{id}"), teacher.auth(), json!({"published": false})).await;
    expect(res, StatusCode::OK).await;
    problem(b.get(&format!("/courses/{id}"), Some(&student.token)).await, StatusCode::NOT_FOUND).await;
    assert!(
        b.get_json("/courses", student.auth()).await["items"].as_array().unwrap().is_empty(),
        "unpublished is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_makes_a_retried_create_return_the_first_response() {
    let app = TestApp::spawn().await;
    let teacher = app.user("teacher", "instructor").await;
    let other = app.user("other", "instructor").await;
    let body = json!({"slug": "retry-safe", "title": "Retry", "summary": "S", "level": "beginner"});
    let post = |u: &User, key: &str, body: Value| {
        app.req(Method::POST, "/courses", Some(&u.token)).header("idempotency-key", key).json(&body).send()
    };

    let first = post(&teacher, "key-1", body.clone()).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = post(&teacher, "key-1", body.clone()).await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first, "the first response, byte for byte");
    assert_eq!(app.count("SELECT COUNT(*) FROM courses").await, 1);

    // The same key with another request is refused, and creates nothing.
    let changed = json!({"slug": "retry-other", "title": "Other", "summary": "S", "level": "beginner"});
    let body422 =
        problem(post(&teacher, "key-1", changed.clone()).await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&body422), vec!["Idempotency-Key"]);
    // Keys are per user: another instructor's "key-1" is theirs.
    assert_eq!(post(&other, "key-1", changed).await.unwrap().status(), StatusCode::CREATED);
    assert_eq!(app.count("SELECT COUNT(*) FROM courses").await, 2);

    // A refused request does not burn the key: the corrected retry goes through.
    let bad = json!({"slug": "x", "title": "Bad", "summary": "S", "level": "beginner"});
    problem(post(&teacher, "key-2", bad).await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY).await;
    let fixed = json!({"slug": "fixed-slug", "title": "Fixed", "summary": "S", "level": "beginner"});
    assert_eq!(post(&teacher, "key-2", fixed).await.unwrap().status(), StatusCode::CREATED);

    problem(post(&teacher, &"k".repeat(201), body.clone()).await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_with_one_idempotency_key_create_one_course() {
    let app = TestApp::spawn().await;
    let teacher = app.user("teacher", "instructor").await;
    let body = json!({"slug": "storm", "title": "Storm", "summary": "S", "level": "beginner"});
    let requests = (0..8).map(|_| {
        app.req(Method::POST, "/courses", Some(&teacher.token)).header("idempotency-key", "same").json(&body).send()
    });
    let statuses: Vec<u16> =
        futures::future::join_all(requests).await.into_iter().map(|r| r.unwrap().status().as_u16()).collect();
    assert!(statuses.iter().all(|s| *s == 201 || *s == 409), "{statuses:?}");
    assert!(statuses.contains(&201));
    assert_eq!(app.count("SELECT COUNT(*) FROM courses").await, 1, "{statuses:?}");
}
