//! A lean HTTP/1.1 client: one keep-alive connection per virtual user, as a browser tab has.
//!
//! hyper's connection API directly instead of a pooled client, so that the load generator
//! spends as little of its core as possible per request and each virtual user's connection
//! behaves like its own (reconnects count in that user's latency).

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, StatusCode,
    client::conn::http1::{self, SendRequest},
    header,
};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// A request that takes longer is an error; the server's own deadline is 15 s.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The server closes a keep-alive connection idle for 10 s; reusing one near that age races
/// its close, so an older connection is replaced first.
const MAX_IDLE_REUSE: Duration = Duration::from_secs(8);
const USER_AGENT: &str = "cifix-load/1";

pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

pub struct Conn {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
    last_used: Instant,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        Conn { addr, sender: None, last_used: Instant::now() }
    }

    async fn connect(&mut self) -> Result<(), String> {
        let stream = tokio::net::TcpStream::connect(self.addr).await.map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| format!("connect: {e}"))?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        self.sender = Some(sender);
        Ok(())
    }

    /// Sends one request and reads the whole body; any failure (connect, I/O, timeout) is an
    /// `Err` with a short reason, and the connection is replaced on the next request.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Reply, String> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.send_inner(method, path, token, body)).await {
            Ok(Ok(reply)) => {
                self.last_used = Instant::now();
                Ok(reply)
            }
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                Err("timeout".into())
            }
        }
    }

    async fn send_inner(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Reply, String> {
        let usable = self.sender.as_ref().is_some_and(|s| !s.is_closed()) && self.last_used.elapsed() < MAX_IDLE_REUSE;
        if !usable {
            self.connect().await?;
        }
        let sender = self.sender.as_mut().expect("connected above");
        sender.ready().await.map_err(|e| format!("connection: {e}"))?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.addr.to_string())
            .header(header::USER_AGENT, USER_AGENT);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let payload = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(v).expect("JSON values serialise"))
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(payload)).map_err(|e| format!("request: {e}"))?;
        let res = sender.send_request(req).await.map_err(|e| format!("send: {e}"))?;
        let status = res.status();
        let body = res.into_body().collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
        Ok(Reply { status, body })
    }

    /// For setup steps, where any failure stops the run.
    pub async fn expect(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let reply =
            self.send(method.clone(), path, token, body).await.map_err(|e| anyhow::anyhow!("{method} {path}: {e}"))?;
        anyhow::ensure!(
            reply.status.is_success(),
            "{method} {path}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        Ok(reply.json())
    }
}

/// The outcome of one timed request as the tables count it: anything but a 2xx is an error.
pub fn outcome(result: &Result<Reply, String>) -> Result<(), String> {
    match result {
        Ok(r) if r.status.is_success() => Ok(()),
        Ok(r) => Err(r.status.as_u16().to_string()),
        Err(e) => Err(e.split(':').next().unwrap_or(e).to_string()),
    }
}
