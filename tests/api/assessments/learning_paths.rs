//! Learning paths built from results, rules as data, and the assessment achievement.

use super::*;

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
    let teacher = app.user("teacher", "instructor").await;
    let stranger = app.user("stranger", "instructor").await;
    // Slugs of the bundled config/learning-rules.json.
    let (first_steps, _, first_lesson) = course_with_lesson(&app, &teacher, "python-first-steps", true).await;
    let (beginners, beginners_module, _) = course_with_lesson(&app, &teacher, "python-for-beginners", true).await;
    course_with_lesson(&app, &teacher, "python-intermediate", false).await; // unpublished: never suggested
    let (chatbot, _, _) = course_with_lesson(&app, &teacher, "build-a-chatbot", true).await;
    expect(
        app.send_json(Method::POST, &format!("/courses/{beginners}/enrollments"), s.student.auth(), json!({})).await,
        StatusCode::CREATED,
    )
    .await;

    // Before any assessment: an empty path.
    let empty = app.get_json("/me/learning-path", s.student.auth()).await;
    assert_eq!(empty, json!({"generated_at": null, "based_on_assessment_id": null, "steps": []}));

    let a = start(&app, &s.student).await;
    expect(deliver(&app, &s.client, &results(a["id"].as_str().unwrap(), "lp")).await, StatusCode::CREATED).await;
    // The follow-up email was queued with the results, once.
    let sql = format!(
        "SELECT COUNT(*) FROM email_outbox WHERE template = 'assessment_results' AND to_address = '{}'",
        s.student.email
    );
    assert_eq!(app.count(&sql).await, 1);
    let lp = app.get_json("/me/learning-path", s.student.auth()).await;
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
    assert_eq!(app.count("SELECT COUNT(*) FROM skill_levels WHERE skill = 'brand_new-skill'").await, 1);

    // The dashboard shows it; admins and the student's instructors read it; others get 404.
    let d = app.get_json("/me/dashboard", s.student.auth()).await;
    assert_eq!(d["learning_path"], lp);
    let path = format!("/users/{}/learning-path", s.student.id);
    assert_eq!(app.get_json(&path, s.admin.auth()).await, lp);
    assert_eq!(app.get_json(&path, teacher.auth()).await, lp);
    problem(app.get(&path, Some(&stranger.token)).await, StatusCode::NOT_FOUND).await;
    let other = app.user("other", "student").await;
    problem(app.get(&path, Some(&other.token)).await, StatusCode::NOT_FOUND).await;
    problem(app.get(&format!("/users/{}/learning-path", other.id), Some(&teacher.token)).await, StatusCode::NOT_FOUND)
        .await;

    // Notifications were stored for the student.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM notifications WHERE kind IN ('assessment.completed', 'learning_path.updated')")
            .await,
        2
    );

    // Completing a course recomputes the path: the finished course drops out.
    expect(
        app.send_json(Method::POST, &format!("/courses/{first_steps}/enrollments"), s.student.auth(), json!({})).await,
        StatusCode::CREATED,
    )
    .await;
    let res = app
        .send_json(
            Method::PUT,
            &format!("/me/lessons/{first_lesson}/progress"),
            s.student.auth(),
            json!({"status": "completed"}),
        )
        .await;
    let r = expect(res, StatusCode::OK).await;
    assert!(r["course"]["completed_at"].is_string());
    let lp2 = app.get_json("/me/learning-path", s.student.auth()).await;
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
    let teacher = app.user("teacher", "instructor").await;
    let (snakes, _, _) = course_with_lesson(&app, &teacher, "snakes", true).await;
    course_with_lesson(&app, &teacher, "python-first-steps", true).await; // bundled rules only
    let a = start(&app, &s.student).await;
    expect(deliver(&app, &s.client, &results(a["id"].as_str().unwrap(), "custom")).await, StatusCode::CREATED).await;
    let lp = app.get_json("/me/learning-path", s.student.auth()).await;
    assert_eq!(
        lp["steps"],
        json!([{"position": 1, "course_id": snakes, "reason": "Custom: python at 35 means “Course snakes” first."}])
    );

    // A broken rules file stops the start with the variable's name.
    std::fs::write(&path, r#"{"version": 1, "rules": [{"skill": "Bad Code", "courses": ["x"], "reason": ""}]}"#)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut env, _scratch) = crate::support::base_env(&dir).await;
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
    let mine = app.get_json("/me/achievements", s.student.auth()).await;
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
    let mine = app.get_json("/me/achievements", s.student.auth()).await;
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
