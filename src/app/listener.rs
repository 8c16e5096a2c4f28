//! The HTTP listener: hyper's connection builder with a header-read (and so keep-alive idle)
//! timeout, under a cap on open connections.
//!
//! Why not `axum::serve`: it sets no timer, so a client trickling one header line every few
//! seconds, or an idle keep-alive connection, holds a socket forever, and a few hundred of them
//! exhaust the file descriptors everyone shares.
//!
//! At the cap, a new connection first evicts the connection that has been idle longest (no
//! request in flight: a slowloris, or a forgotten keep-alive), so a flood of slow sockets cannot
//! keep real requests out. Only when every connection is busy is the newcomer refused, with a
//! quick 503 and `Retry-After`, instead of waiting in the kernel's backlog.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{Router, body::Body, extract::ConnectInfo};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto::Builder,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, OwnedSemaphorePermit, Semaphore},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt;

/// Connections waiting for an evicted one to make room, and refusals being written: both bounded
/// so that neither can hold more sockets than this.
const WAITING: usize = 32;
const REFUSING: usize = 32;
const ADMISSION_WAIT: Duration = Duration::from_secs(2);

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n\
Retry-After: 1\r\nConnection: close\r\nContent-Length: 117\r\n\r\n\
{\"type\":\"about:blank\",\"title\":\"Service Unavailable\",\"status\":503,\"detail\":\"too many open connections; retry shortly\"}";

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// The default cap: what the process's file-descriptor limit leaves after the database pool,
/// Redis, SMTP, logs and the bounded waiting and refusing sockets.
pub fn default_max_connections(db_connections: u32) -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits").ok().and_then(|limits| {
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line.split_whitespace().nth(3)?.parse::<usize>().ok()
    });
    match soft {
        Some(n) => n.saturating_sub(128 + WAITING + REFUSING + db_connections as usize).clamp(16, 100_000),
        None => 4096,
    }
}

#[derive(Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Entry>>,
}

struct Entry {
    in_flight: usize,
    idle_since: Instant,
    evict: Arc<Notify>,
}

impl Registry {
    fn add(self: &Arc<Self>, id: u64) -> Arc<Notify> {
        let evict = Arc::new(Notify::new());
        let entry = Entry { in_flight: 0, idle_since: Instant::now(), evict: evict.clone() };
        self.conns.lock().unwrap().insert(id, entry);
        evict
    }

    fn remove(&self, id: u64) {
        self.conns.lock().unwrap().remove(&id);
    }

    fn busy(self: &Arc<Self>, id: u64) -> Busy {
        if let Some(e) = self.conns.lock().unwrap().get_mut(&id) {
            e.in_flight += 1;
        }
        Busy { registry: self.clone(), id }
    }

    /// Asks the longest-idle connection to close; false when every connection is busy.
    fn evict_one(&self) -> bool {
        let mut conns = self.conns.lock().unwrap();
        let Some((&id, _)) = conns.iter().filter(|(_, e)| e.in_flight == 0).min_by_key(|(_, e)| e.idle_since) else {
            return false;
        };
        // Out of the registry at once, so the next newcomer picks another one.
        let entry = conns.remove(&id).unwrap();
        entry.evict.notify_one();
        true
    }
}

/// A request in flight on a connection, until its response body is dropped (so a streaming
/// response, SSE for one, keeps its connection busy).
struct Busy {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(e) = self.registry.conns.lock().unwrap().get_mut(&self.id) {
            e.in_flight -= 1;
            if e.in_flight == 0 {
                e.idle_since = Instant::now();
            }
        }
    }
}

/// A socket holding its place under the cap for as long as it is open, through an upgrade to a
/// WebSocket too.
struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Serves `app` until `stop` resolves, then lets every connection finish its request and waits
/// for them. Dropping the returned future closes whatever is still open.
pub async fn run(
    listener: TcpListener,
    app: Router,
    settings: Settings,
    stop: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(settings.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let waiting = Arc::new(Semaphore::new(WAITING));
    let refusing = Arc::new(Semaphore::new(REFUSING));
    let registry = Arc::new(Registry::default());
    let draining = CancellationToken::new();
    let closing = CancellationToken::new();
    let _close_on_drop = closing.clone().drop_guard();
    let tracker = TaskTracker::new();
    metrics::gauge!("http_connections_max").set(settings.max_connections as f64);
    tokio::pin!(stop);
    let mut next_id = 0u64;
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: the listener is fine.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let conn = Admitted {
            id: next_id,
            peer,
            app: app.clone(),
            builder: builder.clone(),
            registry: registry.clone(),
            draining: draining.clone(),
            closing: closing.clone(),
            header_read_timeout: settings.header_read_timeout,
        };
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            tracker.spawn(conn.serve(Counted { stream, _permit: permit }));
        } else if let Ok(wait) = waiting.clone().try_acquire_owned()
            && registry.evict_one()
        {
            metrics::counter!("http_connections_evicted_total").increment(1);
            let (slots, refusing) = (slots.clone(), refusing.clone());
            tracker.spawn(async move {
                let _wait = wait;
                match tokio::time::timeout(ADMISSION_WAIT, slots.acquire_owned()).await {
                    Ok(Ok(permit)) => conn.serve(Counted { stream, _permit: permit }).await,
                    _ => refuse(stream, &refusing).await,
                }
            });
        } else {
            let refusing = refusing.clone();
            tracker.spawn(async move { refuse(stream, &refusing).await });
        }
    }
    draining.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// The quick 503: written and closed in a moment, and never more than [`REFUSING`] at once.
async fn refuse(mut stream: TcpStream, refusing: &Semaphore) {
    metrics::counter!("http_connections_refused_total").increment(1);
    let Ok(_slot) = refusing.try_acquire() else { return };
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        // Answer after the request head (or what arrives of it in a moment): an answer that
        // comes before the request is not taken as a response by an HTTP client.
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        stream.write_all(REFUSAL).await?;
        stream.shutdown().await?;
        // Read what the client sent until it closes, so the close is not a reset that could
        // destroy the answer before the client reads it.
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

struct Admitted {
    id: u64,
    peer: SocketAddr,
    app: Router,
    builder: Arc<Builder<TokioExecutor>>,
    registry: Arc<Registry>,
    draining: CancellationToken,
    closing: CancellationToken,
    header_read_timeout: Duration,
}

/// Waits for a new connection's first byte. hyper only starts its header timer once it knows
/// the protocol, and it needs a byte for that: a socket that never sends one would stay open.
async fn first_byte(io: &Counted, within: Duration, evict: &Notify, draining: &CancellationToken) -> bool {
    let mut byte = [0u8; 1];
    tokio::select! {
        r = tokio::time::timeout(within, io.stream.peek(&mut byte)) => matches!(r, Ok(Ok(n)) if n > 0),
        _ = evict.notified() => false,
        _ = draining.cancelled() => false,
    }
}

impl Admitted {
    async fn serve(self, io: Counted) {
        let Admitted { id, peer, app, builder, registry, draining, closing, header_read_timeout } = self;
        let evict = registry.add(id);
        metrics::gauge!("http_connections_open").increment(1.0);
        if !first_byte(&io, header_read_timeout, &evict, &draining).await {
            registry.remove(id);
            metrics::gauge!("http_connections_open").decrement(1.0);
            return;
        }
        let service = {
            let registry = registry.clone();
            hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let busy = registry.busy(id);
                let app = app.clone();
                async move {
                    let res = app.oneshot(req).await.unwrap_or_else(|never: Infallible| match never {});
                    Ok::<_, Infallible>(res.map(|body| {
                        Body::new(body.map_frame(move |frame| {
                            let _in_flight = &busy;
                            frame
                        }))
                    }))
                }
            })
        };
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            // Idle by definition (nothing in flight), so nothing is lost by closing it now.
            _ = evict.notified() => {}
            _ = draining.cancelled() => {
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = closing.cancelled() => {}
                }
            }
            _ = closing.cancelled() => {}
        }
        registry.remove(id);
        metrics::gauge!("http_connections_open").decrement(1.0);
    }
}
