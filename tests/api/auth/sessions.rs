//! Refresh rotation, logout, logout-all and the session list.

use super::*;

// ---------------------------------------------------------------------------------------------
// Refresh, logout, logout-all
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_and_a_replayed_token_revokes_the_session() {
    let app = TestApp::spawn().await;
    let (r0, id, sid) = user(&app, "dan@example.com").await;

    let r1 = expect(refresh(&app, &refresh_tok(&r0)).await, StatusCode::OK).await;
    assert_ne!(refresh_tok(&r1), refresh_tok(&r0), "refresh token rotates");
    assert_eq!(sid_of(&r1), sid, "same session");
    assert_eq!(r1["user"]["id"], id.as_str());
    assert_eq!(r1["token_type"], "Bearer");
    assert_eq!(me_status(&app, &access(&r1)).await, StatusCode::OK);

    // The spent token comes back: refused, and the whole session ends.
    problem(refresh(&app, &refresh_tok(&r0)).await, StatusCode::UNAUTHORIZED).await;
    problem(refresh(&app, &refresh_tok(&r1)).await, StatusCode::UNAUTHORIZED).await;
    assert_rejected(&app, &access(&r1), "access token of a session ended by reuse").await;
    assert_rejected(&app, &access(&r0), "older access token of that session").await;
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'auth.refresh_reuse_detected' \
             AND target_id = '{sid}'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE u.email = 'dan@example.com' AND s.revoked_at IS NOT NULL"
        )
        .await,
        1
    );
    // Signing in again still works: the account is not punished, only the session.
    login_ok(&app, "dan@example.com", PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rejects_unknown_empty_and_oversized_tokens() {
    let app = TestApp::spawn().await;
    app.register("erin@example.com").await;
    for t in ["", "definitely-not-a-token", &"x".repeat(5000)] {
        problem(refresh(&app, t).await, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_of_one_token_succeed_at_most_once() {
    let app = TestApp::spawn().await;
    let (pair, _, _) = user(&app, "race@example.com").await;
    let t = refresh_tok(&pair);
    let (a, b) = tokio::join!(refresh(&app, &t), refresh(&app, &t));
    let statuses = [a.status(), b.status()];
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!(ok <= 1, "one refresh token, two successes: {statuses:?}");
    for s in statuses {
        assert!(s == StatusCode::OK || s == StatusCode::UNAUTHORIZED, "{statuses:?}");
    }
    assert!(ok == 1, "exactly one of the two concurrent refreshes wins: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_session_and_is_idempotent() {
    let app = TestApp::spawn().await;
    let (pair, _, sid) = user(&app, "fay@example.com").await;
    let other = login_ok(&app, "fay@example.com", PASSWORD).await;

    let res = app.post("/auth/logout", None, json!({"refresh_token": refresh_tok(&pair)})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(res.headers().contains_key("x-request-id"));
    assert!(res.text().await.unwrap().is_empty());

    problem(refresh(&app, &refresh_tok(&pair)).await, StatusCode::UNAUTHORIZED).await;
    assert_rejected(&app, &access(&pair), "access token of a logged-out session").await;
    // The user's other session is untouched.
    assert_eq!(me_status(&app, &access(&other)).await, StatusCode::OK);
    expect(refresh(&app, &refresh_tok(&other)).await, StatusCode::OK).await;

    // Again, and with an unknown token: still 204, nothing more happens.
    for t in [refresh_tok(&pair), "unknown-token".to_string()] {
        let res = app.post("/auth/logout", None, json!({"refresh_token": t})).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(
        app.count(&format!("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.logout' AND target_id = '{sid}'"))
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_all_ends_every_session_of_the_user_at_once() {
    let app = TestApp::spawn().await;
    let (a, _, _) = user(&app, "gus@example.com").await;
    let b = login_ok(&app, "gus@example.com", PASSWORD).await;
    let c = login_ok(&app, "gus@example.com", PASSWORD).await;
    let (stranger, _, _) = user(&app, "hal@example.com").await;
    for p in [&a, &b, &c] {
        assert_eq!(me_status(&app, &access(p)).await, StatusCode::OK);
    }

    let res = app.post("/auth/logout-all", Some(&access(&b)), json!({})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    for (p, name) in [(&a, "a"), (&b, "b"), (&c, "c")] {
        assert_rejected(&app, &access(p), &format!("access token of session {name}")).await;
        problem(refresh(&app, &refresh_tok(p)).await, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(me_status(&app, &access(&stranger)).await, StatusCode::OK, "other users keep theirs");
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE u.email = 'gus@example.com' AND s.revoked_at IS NULL"
        )
        .await,
        0
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.logout_all'").await, 1);
    // Without a token it is 401.
    problem(app.post("/auth/logout-all", None, json!({})).await, StatusCode::UNAUTHORIZED).await;
}

// ---------------------------------------------------------------------------------------------
// /me
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_me_returns_the_user_and_needs_a_token() {
    let app = TestApp::spawn().await;
    let (pair, id, _) = user(&app, "ida@example.com").await;
    let me = expect(app.get("/me", Some(&access(&pair))).await, StatusCode::OK).await;
    assert_eq!(me["id"], id.as_str());
    assert_eq!(me["email"], "ida@example.com");
    assert_eq!(me["display_name"], "Test User");
    assert_eq!(me["role"], "student");
    assert_eq!(me["email_verified"], false);
    assert!(me["created_at"].is_string());
    let keys: Vec<&String> = me.as_object().unwrap().keys().collect();
    for k in &keys {
        assert!(!k.contains("password") && !k.contains("failed"), "no internal field {k}");
    }
    problem(app.get("/me", None).await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_me_changes_and_validates_display_name() {
    let app = TestApp::spawn().await;
    let (pair, id, _) = user(&app, "jay@example.com").await;
    let t = access(&pair);

    let body = expect(
        app.send_json(Method::PATCH, "/me", Some(&t), json!({"display_name": "Jay Q. Public"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["display_name"], "Jay Q. Public");
    assert_eq!(body["id"], id.as_str());
    let me = expect(app.get("/me", Some(&t)).await, StatusCode::OK).await;
    assert_eq!(me["display_name"], "Jay Q. Public", "persisted");
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'user.update_profile'").await, 1);

    // Unicode is welcome, 100 characters is the maximum.
    let hundred = "é".repeat(100);
    let body =
        expect(app.send_json(Method::PATCH, "/me", Some(&t), json!({"display_name": hundred})).await, StatusCode::OK)
            .await;
    assert_eq!(body["display_name"], hundred.as_str());

    let bad = [
        "".to_string(),
        "    ".to_string(),
        "x".repeat(101),
        "bell\u{7}name".to_string(),
        "two\nlines".to_string(),
        "nul\u{0}byte".to_string(),
        "esc\u{1b}[31mred".to_string(),
        "del\u{7f}".to_string(),
    ];
    for name in bad {
        let res = app.send_json(Method::PATCH, "/me", Some(&t), json!({"display_name": name})).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "display_name {name:?}");
        let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&body), vec!["display_name"], "display_name {name:?}");
    }
    let me = expect(app.get("/me", Some(&t)).await, StatusCode::OK).await;
    assert_eq!(me["display_name"], hundred.as_str(), "refused updates changed nothing");

    // An empty patch changes nothing.
    let body = expect(app.send_json(Method::PATCH, "/me", Some(&t), json!({})).await, StatusCode::OK).await;
    assert_eq!(body["display_name"], hundred.as_str());

    problem(app.send_json(Method::PATCH, "/me", None, json!({"display_name": "x"})).await, StatusCode::UNAUTHORIZED)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_me_cannot_set_role_or_email() {
    let app = TestApp::spawn().await;
    let (pair, _, _) = user(&app, "kim@example.com").await;
    let t = access(&pair);
    for (field, value) in [("role", "admin"), ("email", "admin@example.com"), ("email_verified", "true")] {
        let res = app.send_json(Method::PATCH, "/me", Some(&t), json!({ field: value })).await;
        let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&body), vec![field]);
    }
    let me = expect(app.get("/me", Some(&t)).await, StatusCode::OK).await;
    assert_eq!(me["role"], "student");
    assert_eq!(me["email"], "kim@example.com");
    assert_eq!(me["email_verified"], false);
}

// ---------------------------------------------------------------------------------------------
// /me/password
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_password_with_wrong_current_is_422() {
    let app = TestApp::spawn().await;
    let (pair, _, _) = user(&app, "lee@example.com").await;
    let other = login_ok(&app, "lee@example.com", PASSWORD).await;
    let res = app
        .post(
            "/me/password",
            Some(&access(&pair)),
            json!({"current_password": "not my password at all", "new_password": "a brand new passphrase"}),
        )
        .await;
    let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&body), vec!["current_password"]);
    // Nothing changed: old password works, the other session lives.
    login_ok(&app, "lee@example.com", PASSWORD).await;
    problem(app.login("lee@example.com", "a brand new passphrase").await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(me_status(&app, &access(&other)).await, StatusCode::OK);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.password_change'").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_password_refuses_a_weak_new_password() {
    let app = TestApp::spawn().await;
    let (pair, _, _) = user(&app, "max@example.com").await;
    for weak in ["short1!", "password123", &"y".repeat(129)] {
        let res = app
            .post("/me/password", Some(&access(&pair)), json!({"current_password": PASSWORD, "new_password": weak}))
            .await;
        let body = problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&body), vec!["new_password"], "new password {weak:?}");
    }
    login_ok(&app, "max@example.com", PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_password_ends_other_sessions_but_keeps_the_current_one() {
    let app = TestApp::spawn().await;
    let (current, id, _) = user(&app, "nia@example.com").await;
    let other = login_ok(&app, "nia@example.com", PASSWORD).await;
    let new_password = "a brand new passphrase";

    let res = app
        .post(
            "/me/password",
            Some(&access(&current)),
            json!({"current_password": PASSWORD, "new_password": new_password}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    // The session that changed the password goes on.
    assert_eq!(me_status(&app, &access(&current)).await, StatusCode::OK);
    let rotated = expect(refresh(&app, &refresh_tok(&current)).await, StatusCode::OK).await;
    assert_eq!(me_status(&app, &access(&rotated)).await, StatusCode::OK);
    // The other one ends at once, access and refresh.
    assert_rejected(&app, &access(&other), "other session after a password change").await;
    problem(refresh(&app, &refresh_tok(&other)).await, StatusCode::UNAUTHORIZED).await;

    // The new password signs in, the old one no longer does.
    login_ok(&app, "nia@example.com", new_password).await;
    problem(app.login("nia@example.com", PASSWORD).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'auth.password_change' AND target_id = '{id}'"
        ))
        .await,
        1
    );
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

async fn sessions_page(app: &TestApp, token: &str, query: &str) -> Value {
    expect(app.get(&format!("/me/sessions{query}"), Some(token)).await, StatusCode::OK).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_list_is_paginated() {
    let app = TestApp::spawn().await;
    let (first, _, first_sid) = user(&app, "oli@example.com").await;
    let res = app
        .req(Method::POST, "/auth/login", None)
        .header("user-agent", "cifix-test-agent/1.0")
        .json(&json!({"email": "oli@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let second = expect(res, StatusCode::OK).await;
    let third = login_ok(&app, "oli@example.com", PASSWORD).await;
    // Another user's sessions never show up.
    user(&app, "pat@example.com").await;
    let t = access(&third);

    let all = sessions_page(&app, &t, "").await;
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(all["next_cursor"].is_null());
    let ids: Vec<String> = items.iter().map(|i| s(&i["id"])).collect();
    for sid in [&first_sid, &sid_of(&second), &sid_of(&third)] {
        assert!(ids.contains(sid), "session {sid} listed");
    }
    for i in items {
        assert!(i["created_at"].is_string() && i["last_used_at"].is_string());
        assert_eq!(i["ip"], "127.0.0.1");
    }
    let with_agent = items.iter().find(|i| i["id"] == sid_of(&second).as_str()).unwrap();
    assert_eq!(with_agent["user_agent"], "cifix-test-agent/1.0");

    // One at a time: each page gives a cursor until the last.
    let mut seen = Vec::new();
    let mut query = "?limit=1".to_string();
    loop {
        let page = sessions_page(&app, &t, &query).await;
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "limit=1 gives one item");
        seen.push(s(&items[0]["id"]));
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("?limit=1&cursor={c}"),
            None => break,
        }
        assert!(seen.len() < 10, "pagination does not end");
    }
    let mut sorted_seen = seen.clone();
    sorted_seen.sort();
    sorted_seen.dedup();
    assert_eq!(sorted_seen.len(), 3, "every session exactly once: {seen:?}");

    // A revoked session drops out of the list.
    let res = app.post("/auth/logout", None, json!({"refresh_token": refresh_tok(&first)})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let after = sessions_page(&app, &t, "?limit=100").await;
    assert_eq!(after["items"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_list_rejects_bad_limit_and_cursor() {
    let app = TestApp::spawn().await;
    let (pair, _, _) = user(&app, "quinn@example.com").await;
    let t = access(&pair);
    for q in ["?limit=0", "?limit=101"] {
        let body =
            problem(app.get(&format!("/me/sessions{q}"), Some(&t)).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&body), vec!["limit"], "{q}");
    }
    for q in ["?limit=-1", "?limit=abc", "?cursor=not-a-cursor"] {
        problem(app.get(&format!("/me/sessions{q}"), Some(&t)).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    sessions_page(&app, &t, "?limit=100").await;
    sessions_page(&app, &t, "?limit=1").await;
    problem(app.get("/me/sessions", None).await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_own_session_ends_it() {
    let app = TestApp::spawn().await;
    let (mine, _, _) = user(&app, "ray@example.com").await;
    let laptop = login_ok(&app, "ray@example.com", PASSWORD).await;
    let laptop_sid = sid_of(&laptop);

    let res =
        app.req(Method::DELETE, &format!("/me/sessions/{laptop_sid}"), Some(&access(&mine))).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    assert_rejected(&app, &access(&laptop), "access token of a revoked session").await;
    problem(refresh(&app, &refresh_tok(&laptop)).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(me_status(&app, &access(&mine)).await, StatusCode::OK, "the caller's session lives");
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'auth.session_revoke' AND target_id = '{laptop_sid}'"
        ))
        .await,
        1
    );

    // Revoking it again, a random id, or a non-UUID: 404.
    for id in [laptop_sid.clone(), Uuid::new_v4().to_string(), "not-a-uuid".to_string()] {
        let res = app.req(Method::DELETE, &format!("/me/sessions/{id}"), Some(&access(&mine))).send().await.unwrap();
        problem(res, StatusCode::NOT_FOUND).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_another_users_session_is_404_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (attacker, _, _) = user(&app, "sam@example.com").await;
    let (victim, _, victim_sid) = user(&app, "tia@example.com").await;

    let res =
        app.req(Method::DELETE, &format!("/me/sessions/{victim_sid}"), Some(&access(&attacker))).send().await.unwrap();
    let body = problem(res, StatusCode::NOT_FOUND).await;
    assert!(!body.to_string().contains(&victim_sid));

    assert_eq!(me_status(&app, &access(&victim)).await, StatusCode::OK);
    expect(refresh(&app, &refresh_tok(&victim)).await, StatusCode::OK).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NOT NULL").await, 0);
}
