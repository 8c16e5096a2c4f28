//! Live-delivery clients for tests: a WebSocket client (tokio-tungstenite) and a minimal SSE
//! reader over reqwest, both speaking to a real server.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, protocol::CloseFrame},
};

use super::TestApp;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub async fn ticket(app: &TestApp, token: &str) -> String {
    let res = app.post("/realtime/ticket", Some(token), serde_json::json!({})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["expires_in"], 30);
    body["ticket"].as_str().unwrap().to_string()
}

/// Opens `/api/v1/ws?ticket=…`; `Err(status)` when the handshake is refused.
pub async fn connect(app: &TestApp, ticket: &str, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    let url = format!("{}/api/v1/ws?ticket={ticket}", app.base.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        let name: tokio_tungstenite::tungstenite::http::HeaderName = k.parse().unwrap();
        req.headers_mut().insert(name, v.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
        Err(e) => panic!("websocket connect failed: {e}"),
    }
}

/// A connected WebSocket for the user with this access token.
pub async fn ws(app: &TestApp, token: &str) -> Ws {
    let t = ticket(app, token).await;
    connect(app, &t, &[]).await.expect("websocket opens")
}

#[derive(Debug)]
pub enum Got {
    Event(Value),
    Closed(Option<u16>),
    Timeout,
}

/// The next JSON frame or the close, skipping protocol pings.
pub async fn next(ws: &mut Ws, wait: Duration) -> Got {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Got::Timeout,
            Ok(None) => return Got::Closed(None),
            Ok(Some(Err(_))) => return Got::Closed(None),
            Ok(Some(Ok(Message::Text(t)))) => return Got::Event(serde_json::from_str(t.as_str()).unwrap()),
            Ok(Some(Ok(Message::Close(f)))) => return Got::Closed(f.map(|f: CloseFrame| u16::from(f.code))),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Waits for an event of `kind`, skipping others; panics on close or timeout.
pub async fn expect_event(ws: &mut Ws, kind: &str) -> Value {
    loop {
        match next(ws, Duration::from_secs(10)).await {
            Got::Event(e) if e["type"] == kind => return e,
            Got::Event(_) => continue,
            other => panic!("waiting for {kind}: {other:?}"),
        }
    }
}

/// Waits for the close frame and returns its code.
pub async fn expect_close(ws: &mut Ws) -> Option<u16> {
    loop {
        match next(ws, Duration::from_secs(10)).await {
            Got::Closed(code) => return code,
            Got::Event(_) => continue,
            Got::Timeout => panic!("socket not closed"),
        }
    }
}

pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).await.unwrap();
}

/// A minimal Server-Sent Events reader.
pub struct Sse {
    res: reqwest::Response,
    buf: String,
}

#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub data: Value,
}

impl Sse {
    pub async fn open(app: &TestApp, token: &str, last_event_id: Option<&str>) -> Sse {
        let mut req = app.req(reqwest::Method::GET, "/events", Some(token));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        Self::start(req).await
    }

    /// As a browser's `EventSource` opens it: no headers, a ticket in the URL.
    pub async fn open_with_ticket(app: &TestApp, ticket: &str) -> Sse {
        Self::start(app.req(reqwest::Method::GET, &format!("/events?ticket={ticket}"), None)).await
    }

    async fn start(req: reqwest::RequestBuilder) -> Sse {
        // The harness client has a 30 s total timeout; a stream needs its own client.
        let res = req.timeout(Duration::from_secs(3600)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        Sse { res, buf: String::new() }
    }

    /// The next event (comments and keep-alives skipped); `None` when the stream ended or
    /// nothing came within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut id = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if !data.is_empty() {
                    return Some(SseEvent { id, data: serde_json::from_str(&data).unwrap() });
                }
            }
            match tokio::time::timeout_at(deadline, self.res.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }

    /// Events until `n` of kind `kind` arrived (others are collected too).
    pub async fn collect(&mut self, kind: &str, n: usize) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while out.iter().filter(|e: &&SseEvent| e.data["type"] == kind).count() < n {
            match self.next(Duration::from_secs(10)).await {
                Some(e) => out.push(e),
                None => panic!("stream ended waiting for {n} {kind}; got {out:?}"),
            }
        }
        out
    }

    /// True when the stream ends within `wait`.
    pub async fn ends_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.res.chunk()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(_) => return true,
                Err(_) => return false,
            }
        }
    }
}
