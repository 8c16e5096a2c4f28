//! `/metrics` is not public in production: a bearer token on the main listener, or an address
//! of its own. Swagger UI and the OpenAPI document stay public (the contract holds no secrets).

use reqwest::StatusCode;

use crate::support::{TestApp, free_port};

const TOKEN: &str = "metrics-token-metrics-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_token_or_their_own_address() {
    let port = free_port();
    let app = TestApp::spawn_with(move |env| {
        // What production does by default.
        env.insert("CIFIX_METRICS_PUBLIC".into(), "false".into());
        env.insert("CIFIX_METRICS_TOKEN".into(), TOKEN.into());
        env.insert("CIFIX_METRICS_BIND".into(), format!("127.0.0.1:{port}"));
    })
    .await;
    assert_eq!(app.get("/metrics", None).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get("/metrics", Some("a-wrong-token-of-some-length-000000")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let res = app.get("/metrics", Some(TOKEN)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("db_pool_connections"));

    // The scraper's own address: metrics without a token, and nothing else there.
    let client = reqwest::Client::new();
    let mut answered = None;
    for _ in 0..100 {
        if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/metrics")).send().await {
            answered = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let res = answered.expect("the metrics listener answers");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("db_pool_connections"));
    let other = client.get(format!("http://127.0.0.1:{port}/api/v1/courses")).send().await.unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);

    // The contract stays public.
    assert_eq!(app.get("/api/openapi.json", None).await.status(), StatusCode::OK);
    assert_eq!(app.get("/api/docs/", None).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_metrics_are_not_served_on_the_api_address() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_METRICS_PUBLIC".into(), "false".into());
    })
    .await;
    assert_eq!(app.get("/metrics", None).await.status(), StatusCode::NOT_FOUND);
}
