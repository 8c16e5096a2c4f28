//! Slow and greedy clients: a slowloris, idle keep-alive connections, a full house.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use reqwest::StatusCode;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::TestApp;

/// How long a test waits for something that must happen before it calls it a failure (not a
/// measurement: without the fix these would wait forever).
const GUARD: Duration = Duration::from_secs(60);

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_string()
}

/// Trickles one header line every half second; true once the server has closed the socket.
async fn trickle(mut s: TcpStream, closed_count: Arc<AtomicUsize>) -> bool {
    let mut buf = [0u8; 512];
    let closed = async {
        loop {
            tokio::select! {
                r = s.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    if s.write_all(b"X-Slow: 1\r\n").await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let closed = tokio::time::timeout(GUARD, closed).await.is_ok();
    closed_count.fetch_add(1, Ordering::SeqCst);
    closed
}

/// Reads until the server closes; what it sent, or `None` if it never closed.
async fn read_to_close(s: &mut TcpStream) -> Option<String> {
    let mut all = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(GUARD, read).await.ok()?;
    Some(String::from_utf8_lossy(&all).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_of_three_hundred_sockets_is_shed_and_normal_requests_go_on() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_MAX_CONNECTIONS".into(), "64".into());
        env.insert("CIFIX_HEADER_READ_TIMEOUT_SECS".into(), "5".into());
    })
    .await;
    let mut slow = Vec::new();
    let closed = Arc::new(AtomicUsize::new(0));
    for _ in 0..300 {
        let mut s = TcpStream::connect(addr(&app)).await.unwrap();
        // The server may already have shed it; the trickle notices.
        let _ = s.write_all(b"GET /api/v1/me HTTP/1.1\r\nHost: cifix\r\n").await;
        slow.push(tokio::spawn(trickle(s, closed.clone())));
    }
    // Once the server has worked through the burst, at most the cap is left open.
    let deadline = tokio::time::Instant::now() + GUARD;
    while closed.load(Ordering::SeqCst) < 300 - 64 {
        assert!(tokio::time::Instant::now() < deadline, "the burst beyond the cap was not shed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Each normal request on a fresh connection, as a new visitor's would be.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(GUARD).build().unwrap();
    // Each gets in, at worst after a quick 503 with Retry-After while the server is still
    // shedding the burst (a loaded machine), as a client that honours Retry-After would.
    for _ in 0..20 {
        let mut statuses = Vec::new();
        for _ in 0..10 {
            let res = client.get(app.url("/health/live")).send().await.expect("a normal request is answered");
            statuses.push(res.status());
            if res.status() == StatusCode::OK {
                break;
            }
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(res.headers()["retry-after"], "1");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert_eq!(statuses.last(), Some(&StatusCode::OK), "{statuses:?}");
    }
    let mut held = 0;
    for task in slow {
        if !task.await.unwrap() {
            held += 1;
        }
    }
    assert_eq!(held, 0, "slow sockets the server never closed");
    assert_eq!(client.get(app.url("/health/live")).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_HEADER_READ_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    let mut s = TcpStream::connect(addr(&app)).await.unwrap();
    s.write_all(b"GET /health/live HTTP/1.1\r\nHost: cifix\r\n\r\n").await.unwrap();
    let seen = read_to_close(&mut s).await.expect("the server closes an idle keep-alive connection");
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    // A connection that never sends anything is closed too.
    let mut silent = TcpStream::connect(addr(&app)).await.unwrap();
    read_to_close(&mut silent).await.expect("the server closes a silent connection");
}

/// A request whose body the handler is waiting for: busy until the client sends or leaves.
async fn busy_request(app: &TestApp) -> TcpStream {
    let mut s = TcpStream::connect(addr(app)).await.unwrap();
    s.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: cifix\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    // hyper says "100 Continue" once the handler reads the body: the request is in flight.
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(GUARD, s.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_connection_is_busy_a_newcomer_gets_a_quick_503() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CIFIX_MAX_CONNECTIONS".into(), "2".into());
    })
    .await;
    let first = busy_request(&app).await;
    let _second = busy_request(&app).await;

    let mut s = TcpStream::connect(addr(&app)).await.unwrap();
    s.write_all(b"GET /health/live HTTP/1.1\r\nHost: cifix\r\n\r\n").await.unwrap();
    let seen = read_to_close(&mut s).await.expect("the refusal closes the connection");
    assert!(seen.starts_with("HTTP/1.1 503"), "{seen}");
    assert!(seen.to_ascii_lowercase().contains("retry-after: 1"), "{seen}");
    assert!(seen.contains("application/problem+json") && seen.contains("\"status\":503"), "{seen}");

    // A busy client leaving frees its place.
    drop(first);
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(GUARD).build().unwrap();
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let status = client.get(app.url("/health/live")).send().await.map(|r| r.status());
        if status.as_ref().is_ok_and(|s| *s == StatusCode::OK) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no place freed: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
