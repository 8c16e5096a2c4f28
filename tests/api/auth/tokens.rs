//! Hostile access tokens: each one is refused with a 401.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_forged_with_the_real_key_is_accepted_so_the_negatives_mean_something() {
    let app = TestApp::spawn().await;
    let (_, id, sid) = user(&app, "zed@example.com").await;
    let token = forge(&claims(&id, &sid));
    let me = expect(app.get("/me", Some(&token)).await, StatusCode::OK).await;
    assert_eq!(me["id"], id.as_str());

    // The role comes from the account, not from what the token claims.
    let mut c = claims(&id, &sid);
    c["role"] = json!("admin");
    let me = expect(app.get("/me", Some(&forge(&c))).await, StatusCode::OK).await;
    assert_eq!(me["role"], "student");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alg_none_is_401() {
    let app = TestApp::spawn().await;
    let (_, id, sid) = user(&app, "n1@example.com").await;
    let body = b64(&claims(&id, &sid));
    for header in [
        json!({"alg": "none", "typ": "JWT", "kid": kid_for(JWT_SECRET)}),
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "None", "typ": "JWT", "kid": kid_for(JWT_SECRET)}),
    ] {
        let h = b64(&header);
        assert_rejected(&app, &format!("{h}.{body}."), &format!("unsigned {header}")).await;
        assert_rejected(&app, &format!("{h}.{body}"), &format!("two-part {header}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_payload_is_401() {
    let app = TestApp::spawn().await;
    let (pair, _, _) = user(&app, "n2@example.com").await;
    let (_, other_id, other_sid) = user(&app, "n2b@example.com").await;
    let token = access(&pair);
    assert_eq!(me_status(&app, &token).await, StatusCode::OK);
    let parts: Vec<&str> = token.split('.').collect();
    let original = jwt_claims(&token);

    let mut edits: Vec<(&str, Value)> = Vec::new();
    let mut c = original.clone();
    c["role"] = json!("admin");
    edits.push(("role escalated", c));
    let mut c = original.clone();
    c["sub"] = json!(other_id);
    c["sid"] = json!(other_sid);
    edits.push(("another user's identity", c));
    let mut c = original.clone();
    c["exp"] = json!(original["exp"].as_i64().unwrap() + 86_400 * 365);
    edits.push(("lifetime extended", c));
    for (what, c) in edits {
        let forged = format!("{}.{}.{}", parts[0], b64(&c), parts[2]);
        assert_rejected(&app, &forged, what).await;
    }
    // A flipped signature byte too.
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[0] ^= 1;
    let forged = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
    assert_rejected(&app, &forged, "flipped signature").await;
    assert_eq!(me_status(&app, &token).await, StatusCode::OK, "the genuine token still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_with_another_secret_is_401() {
    let app = TestApp::spawn().await;
    let (_, id, sid) = user(&app, "n3@example.com").await;
    let other = "another-secret-another-secret-another-0123456789";
    let c = claims(&id, &sid);
    assert_rejected(&app, &sign(&c, other, Some(kid_for(JWT_SECRET)), Algorithm::HS256), "other secret, our kid").await;
    assert_rejected(&app, &sign(&c, other, Some(kid_for(other)), Algorithm::HS256), "other secret, its kid").await;
    assert_rejected(&app, &sign(&c, "", Some(kid_for(JWT_SECRET)), Algorithm::HS256), "empty secret").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_another_algorithm_is_401_even_with_the_right_secret() {
    let app = TestApp::spawn().await;
    let (_, id, sid) = user(&app, "n4@example.com").await;
    let c = claims(&id, &sid);
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        assert_rejected(&app, &sign(&c, JWT_SECRET, Some(kid_for(JWT_SECRET)), alg), &format!("{alg:?}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_audience_and_issuer_are_401() {
    let app = TestApp::spawn().await;
    let (_, id, sid) = user(&app, "n5@example.com").await;
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("wrong aud", Box::new(|c: &mut Value| c["aud"] = json!("other-api"))),
        ("wrong iss", Box::new(|c: &mut Value| c["iss"] = json!("evil"))),
        ("aud list without ours", Box::new(|c: &mut Value| c["aud"] = json!(["other-api"]))),
        (
            "missing aud",
            Box::new(|c: &mut Value| {
                c.as_object_mut().unwrap().remove("aud");
            }),
        ),
        (
            "missing iss",
            Box::new(|c: &mut Value| {
                c.as_object_mut().unwrap().remove("iss");
            }),
        ),
        (
            "missing sub",
            Box::new(|c: &mut Value| {
                c.as_object_mut().unwrap().remove("sub");
            }),
        ),
        (
            "missing sid",
            Box::new(|c: &mut Value| {
                c.as_object_mut().unwrap().remove("sid");
            }),
        ),
    ];
    for (what, edit) in cases {
        let mut c = claims(&id, &sid);
        edit(&mut c);
        assert_rejected(&app, &forge(&c), what).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_not_yet_valid_tokens_are_401() {
    let app = TestApp::spawn().await;
    let (_, id, sid) = user(&app, "n6@example.com").await;
    let now = chrono::Utc::now().timestamp();

    let mut expired = claims(&id, &sid);
    expired["iat"] = json!(now - 3600);
    expired["nbf"] = json!(now - 3600);
    expired["exp"] = json!(now - 120);
    // A genuine token past its lifetime says so, so that the client refreshes instead of
    // sending the user to the sign-in page.
    let res = app.get("/me", Some(&forge(&expired))).await;
    assert_eq!(challenge(&res), EXPIRED_TOKEN);
    let body = problem(res, StatusCode::UNAUTHORIZED).await;
    assert_eq!(body["type"], "urn:cifix:problem:token-expired");
    // The same claims under another key are not ours: invalid, not expired.
    let forged = sign(&expired, "another-secret-0123456789abcdef-xyz", Some(kid_for(JWT_SECRET)), Algorithm::HS256);
    assert_rejected(&app, &forged, "expired and forged").await;

    let mut early = claims(&id, &sid);
    early["iat"] = json!(now);
    early["nbf"] = json!(now + 3600);
    early["exp"] = json!(now + 7200);
    assert_rejected(&app, &forge(&early), "nbf an hour ahead").await;

    let mut no_exp = claims(&id, &sid);
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_rejected(&app, &forge(&no_exp), "no exp").await;

    let mut no_nbf = claims(&id, &sid);
    no_nbf.as_object_mut().unwrap().remove("nbf");
    assert_rejected(&app, &forge(&no_nbf), "no nbf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_token_is_challenged_without_an_error_code() {
    let app = TestApp::spawn().await;
    let res = app.get("/me", None).await;
    // RFC 6750 §3.1: no error code when the request carried no credentials.
    assert_eq!(challenge(&res), r#"Bearer realm="cifix""#);
    problem(res, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exp_sent_as_a_string_is_401() {
    let app = TestApp::spawn().await;
    let (_, id, sid) = user(&app, "n7@example.com").await;
    let mut c = claims(&id, &sid);
    c["exp"] = json!((chrono::Utc::now().timestamp() + 600).to_string());
    assert_rejected(&app, &forge(&c), "exp as a string").await;
    let mut c = claims(&id, &sid);
    c["nbf"] = json!(chrono::Utc::now().timestamp().to_string());
    assert_rejected(&app, &forge(&c), "nbf as a string").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_unknown_kid_is_401() {
    let app = TestApp::spawn().await;
    let (_, id, sid) = user(&app, "n8@example.com").await;
    let c = claims(&id, &sid);
    assert_rejected(&app, &sign(&c, JWT_SECRET, None, Algorithm::HS256), "no kid").await;
    assert_rejected(&app, &sign(&c, JWT_SECRET, Some("deadbeef0000".into()), Algorithm::HS256), "unknown kid").await;
    assert_rejected(&app, &sign(&c, JWT_SECRET, Some("".into()), Algorithm::HS256), "empty kid").await;
    assert_rejected(&app, &sign(&c, JWT_SECRET, Some(JWT_SECRET.into()), Algorithm::HS256), "secret as kid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_signature_for_a_session_that_does_not_match_is_401() {
    let app = TestApp::spawn().await;
    let (_, id, sid) = user(&app, "n9@example.com").await;
    let (_, other_id, _) = user(&app, "n9b@example.com").await;
    // Someone else's user id on my session.
    assert_rejected(&app, &forge(&claims(&other_id, &sid)), "sub of another user").await;
    // A session that never existed.
    assert_rejected(&app, &forge(&claims(&id, &Uuid::now_v7().to_string())), "unknown sid").await;
    // Ids that are not UUIDs.
    assert_rejected(&app, &forge(&claims("1", &sid)), "sub not a UUID").await;
    assert_rejected(&app, &forge(&claims(&id, "' OR 1=1 --")), "sid not a UUID").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_malformed_authorization_headers_are_401() {
    let app = TestApp::spawn().await;
    let (pair, _, _) = user(&app, "n10@example.com").await;
    let token = access(&pair);

    for garbage in ["garbage", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9", &"A".repeat(5000), "null"] {
        assert_rejected(&app, garbage, &format!("garbage {:.20}", garbage)).await;
    }
    for header in [
        token.clone(),
        format!("Basic {token}"),
        format!("Token {token}"),
        format!("Bearer{token}"),
        "Bearer ".to_string(),
        "Bearer".to_string(),
        format!("Bearer {token}x"),
    ] {
        let res = app.req(Method::GET, "/me", None).header("authorization", header.clone()).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "Authorization: {:.30}", header);
        problem(res, StatusCode::UNAUTHORIZED).await;
    }
    // The genuine header still works.
    let res =
        app.req(Method::GET, "/me", None).header("authorization", format!("Bearer {token}")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}
