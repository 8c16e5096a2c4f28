//! SQL injection strings in every text field are stored and returned as text.

use super::*;

const INJECTIONS: &[&str] = &[
    "' OR 1=1 --",
    "\"; DROP TABLE users; --",
    "x' UNION SELECT password_hash FROM users --",
    "admin'--",
    "') OR ('1'='1",
    "%' OR email LIKE '%",
    "1; DELETE FROM sessions; --",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_injection_strings_in_every_text_field_are_just_text() {
    let app = TestApp::spawn().await;
    app.register("victim@example.com").await;
    let mut users = 1;
    let mut sessions = 1;
    for (i, inj) in INJECTIONS.iter().enumerate() {
        let what = format!("injection {inj:?}");

        // register: as the email (invalid address), as the display name and as the password.
        let (st, _, text) = checked(
            app.post("/auth/register", None, json!({"email": inj, "password": PASSWORD, "display_name": "x"})).await,
            &what,
        )
        .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{what} as email");
        assert_eq!(error_fields(&serde_json::from_str(&text).unwrap()), vec!["email"]);

        let email = format!("inj{i}@example.com");
        let (st, _, text) = checked(
            app.post("/auth/register", None, json!({"email": email, "password": inj, "display_name": inj})).await,
            &what,
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{what} as password and display name: {text}");
        users += 1;
        sessions += 1;
        let reg: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(reg["user"]["display_name"], *inj, "stored verbatim");
        let token = s(&reg["access_token"]);

        // login: as the email, and as the password of someone else.
        let (st, ..) = checked(app.login(inj, PASSWORD).await, &what).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{what} as login email");
        let (st, ..) = checked(app.login("victim@example.com", inj).await, &what).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{what} as someone else's password");
        // ... and as this user's real password, it simply works.
        let (st, ..) = checked(app.login(&email, inj).await, &what).await;
        assert_eq!(st, StatusCode::OK, "{what} as the real password");
        sessions += 1;

        // PATCH /me
        let (st, _, text) = checked(
            app.send_json(Method::PATCH, "/me", Some(&token), json!({"display_name": format!("{inj} 2")})).await,
            &what,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{what} in PATCH /me");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["display_name"], format!("{inj} 2"));

        // refresh and logout
        let (st, ..) = checked(app.post("/auth/refresh", None, json!({"refresh_token": inj})).await, &what).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{what} as refresh token");
        let (st, ..) = checked(app.post("/auth/logout", None, json!({"refresh_token": inj})).await, &what).await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{what} as logout token");

        // POST /me/password, for a user whose password is an ordinary one: the injection as
        // the (wrong) current password, then as the new password.
        let b_email = format!("inj{i}b@example.com");
        let b = app.register(&b_email).await;
        users += 1;
        sessions += 1;
        let b_token = s(&b["access_token"]);
        let (st, _, text) = checked(
            app.post(
                "/me/password",
                Some(&b_token),
                json!({"current_password": inj, "new_password": "fresh passphrase 1"}),
            )
            .await,
            &what,
        )
        .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{what} as current password");
        assert_eq!(error_fields(&serde_json::from_str(&text).unwrap()), vec!["current_password"]);
        let (st, ..) = checked(
            app.post("/me/password", Some(&b_token), json!({"current_password": PASSWORD, "new_password": inj})).await,
            &what,
        )
        .await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{what} as new password");
        let (st, ..) = checked(app.login(&b_email, inj).await, &what).await;
        assert_eq!(st, StatusCode::OK, "{what} as the changed password");
        sessions += 1;

        // query string and path
        let q = app.req(Method::GET, "/me/sessions", Some(&token)).query(&[("cursor", *inj)]).send().await.unwrap();
        let (st, ..) = checked(q, &what).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{what} as cursor");
        let path = format!("/me/sessions/{}", urlencode(inj));
        let (st, ..) = checked(app.req(Method::DELETE, &path, Some(&token)).send().await.unwrap(), &what).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{what} as session id");

        // headers
        let (st, ..) =
            checked(app.req(Method::GET, "/me", Some(&token)).header("user-agent", *inj).send().await.unwrap(), &what)
                .await;
        assert_eq!(st, StatusCode::OK, "{what} as user agent");
    }

    // An address that is valid and full of quotes is stored and found exactly.
    let quoted = "o'neil+x'or'1'='1@example.com";
    let (st, _, text) = checked(app.post("/auth/register", None, register_body(quoted)).await, "quoted email").await;
    assert_eq!(st, StatusCode::CREATED, "{text}");
    users += 1;
    sessions += 1;
    let (st, ..) = checked(app.login(quoted, PASSWORD).await, "quoted email").await;
    assert_eq!(st, StatusCode::OK);
    sessions += 1;
    let (st, ..) = checked(app.login("o'neil+x'or'1'='2@example.com", PASSWORD).await, "near miss").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Every table is intact and holds exactly what was created.
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, users);
    assert_eq!(app.count(&format!("SELECT COUNT(*) FROM users WHERE email = '{}'", sql_str(quoted))).await, 1);
    for inj in INJECTIONS {
        assert_eq!(
            app.count(&format!("SELECT COUNT(*) FROM users WHERE display_name = '{}'", sql_str(&format!("{inj} 2"))))
                .await,
            1,
            "{inj:?} stored verbatim"
        );
    }
    // Every session that was started is there, and none was ended by an injection.
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, sessions);
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL").await, sessions);
    assert_eq!(app.count("SELECT COUNT(*) FROM refresh_tokens").await, sessions);
    assert!(app.count("SELECT COUNT(*) FROM audit_log").await > 0);
}
