//! Redis is an accelerator and a fan-out: losing it costs cross-instance delivery and shared
//! budgets for as long as it is gone, never local delivery, the service itself or the end of a
//! revoked session. Each test runs its own Redis on its own port, so that it can kill it.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::catalog::{World, world};
use crate::support::live::{Got, Ws, expect_close, expect_event, next, ws};
use crate::support::{Backend, TestApp, expect};

/// A `redis-server` of the test's own, stopped with the test.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = PrivateRedis { port, child: None };
        redis.resume();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("this test needs redis-server on the PATH");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn progress(app: &TestApp, w: &World, fraction: f64) {
    let path = format!("/me/lessons/{}/progress", w.lesson_ids[0]);
    let body = json!({"status": "in_progress", "progress": fraction});
    expect(app.send_json(Method::PUT, &path, w.student.auth(), body).await, StatusCode::OK).await;
}

/// Keeps making progress on `from` until `on` hears of it, or gives up after `patience`.
async fn delivered_across(from: &TestApp, w: &World, on: &mut Ws, patience: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + patience;
    let mut fraction = 0.2;
    while tokio::time::Instant::now() < deadline {
        progress(from, w, fraction).await;
        fraction = (fraction + 0.01_f64).min(0.9);
        if let Got::Event(e) = next(on, Duration::from_millis(300)).await
            && e["type"] == "progress.updated"
        {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_redis_costs_cross_instance_delivery_only_and_revocation_still_reaches_every_instance() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let a = TestApp::spawn_on(Backend::Postgres, |env| {
        env.insert("REDIS_URL".into(), url);
    })
    .await;
    let b = a.spawn_peer().await;
    let w = world(&a, 1, 1).await;
    let mut on_a = ws(&a, &w.student.token).await;
    let mut on_b = ws(&b, &w.student.token).await;
    assert!(delivered_across(&a, &w, &mut on_b, Duration::from_secs(5)).await, "fan-out works while Redis is up");

    redis.kill();
    // The service answers, and this instance's clients still hear of its events at once.
    progress(&a, &w, 0.5).await;
    loop {
        let e = expect_event(&mut on_a, "progress.updated").await;
        if e["data"]["lesson"]["progress"] == 0.5 {
            break;
        }
    }
    assert_eq!(b.get("/health/ready", None).await.status(), StatusCode::OK);

    // A sign-out everywhere on A while the fan-out is down still closes the socket on B.
    expect(a.post("/auth/logout-all", w.student.auth(), json!({})).await, StatusCode::NO_CONTENT).await;
    assert_eq!(expect_close(&mut on_a).await, Some(1008), "on the instance that ended the session");
    assert_eq!(expect_close(&mut on_b).await, Some(1008), "on the instance that missed the message");

    // Redis back: cross-instance delivery resumes without restarting anything.
    redis.resume();
    let again = a.login(&w.student.email, crate::support::PASSWORD).await;
    let token = expect(again, StatusCode::OK).await["access_token"].as_str().unwrap().to_string();
    let w = World { student: crate::support::User { token: token.clone(), ..w.student }, ..w };
    let mut on_b = ws(&b, &token).await;
    assert!(delivered_across(&a, &w, &mut on_b, Duration::from_secs(15)).await, "fan-out resumes");
}
