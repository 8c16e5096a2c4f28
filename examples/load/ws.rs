//! WebSocket clients: listeners that time `progress.updated` delivery, and the idle-connection
//! capacity scenario.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use futures::StreamExt;
use hyper::Method;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{Message, protocol::WebSocketConfig};

use crate::{
    http::Conn,
    server::Server,
    setup::{self, User},
    stats::{self, Recorder, Series},
    sweep,
};

pub const DELIVERY: &str = "WS progress.updated delivery";
/// An event not there this long after its update was answered is lost.
const LOST_AFTER: Duration = Duration::from_secs(5);

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn open(addr: SocketAddr, conn: &mut Conn, token: &str) -> anyhow::Result<Socket> {
    let t = conn.expect(Method::POST, "/api/v1/realtime/ticket", Some(token), None).await?;
    let ticket = t["ticket"].as_str().context("ticket")?;
    // Small client buffers: 10,000 sockets with tungstenite's 128 KiB default would cost the
    // load generator over a gigabyte.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let url = format!("ws://{addr}/api/v1/ws?ticket={ticket}");
    Ok(tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?.0)
}

/// The update whose event a listener waits for.
struct Pending {
    lesson: String,
    time_spent: i64,
    intended: Instant,
    record: bool,
}

/// What a listener waits for, shareable with the task that sends the update.
#[derive(Clone)]
pub struct Watch {
    pending: Arc<Mutex<Option<Pending>>>,
    recorder: Recorder,
}

impl Watch {
    /// Call before sending the update: its event may arrive before its response.
    pub fn expect(&self, lesson: String, time_spent: i64, intended: Instant, record: bool) {
        let mut slot = self.pending.lock().unwrap();
        if let Some(p) = slot.take()
            && p.record
        {
            // The previous update's event never came.
            self.recorder.record(DELIVERY, Duration::ZERO, Err("lost".into()));
        }
        *slot = Some(Pending { lesson, time_spent, intended, record });
    }

    /// The update failed, so no event is owed.
    pub fn cancel(&self) {
        self.pending.lock().unwrap().take();
    }
}

/// One user's socket, reading every frame (which also answers the server's pings).
pub struct Listener {
    watch: Watch,
    task: JoinHandle<()>,
}

impl Listener {
    pub fn spawn(mut ws: Socket, recorder: Recorder) -> Listener {
        let watch = Watch { pending: Arc::default(), recorder };
        let w = watch.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(text) = msg else { continue };
                let arrived = Instant::now();
                let v: serde_json::Value = serde_json::from_str(text.as_str()).unwrap_or_default();
                if v["type"] != "progress.updated" {
                    continue;
                }
                let lesson = &v["data"]["lesson"];
                let mut slot = w.pending.lock().unwrap();
                if let Some(p) = slot.as_ref()
                    && lesson["lesson_id"] == p.lesson.as_str()
                    && lesson["time_spent_seconds"].as_i64().is_some_and(|t| t >= p.time_spent)
                {
                    if p.record {
                        w.recorder.record(DELIVERY, arrived - p.intended, Ok(()));
                    }
                    *slot = None;
                }
            }
        });
        Listener { watch, task }
    }

    pub fn watch(&self) -> Watch {
        self.watch.clone()
    }

    /// Counts an event still missing as lost, and closes the socket.
    pub fn finish(self) {
        if let Some(p) = self.watch.pending.lock().unwrap().take()
            && p.record
        {
            self.watch.recorder.record(DELIVERY, Duration::ZERO, Err("lost".into()));
        }
        self.task.abort();
    }
}

/// Waits long enough for every event still owed, then closes the listeners.
pub async fn finish_all(listeners: Vec<Listener>) {
    tokio::time::sleep(LOST_AFTER).await;
    for l in listeners {
        l.finish();
    }
}

pub struct CapacityOpts {
    pub connections: usize,
    pub clients: usize,
    pub rate: f64,
    pub seconds: f64,
}

const PER_USER: usize = cifix::state::MAX_LIVE_CONNECTIONS_PER_USER;

/// Opens `n` sockets, `PER_USER` per user, a few at a time; each is read until closed so that
/// it answers the server's pings as a live client would.
async fn open_idle(server: &Server, users: &[Arc<User>], n: usize) -> (Vec<JoinHandle<()>>, BTreeMap<String, usize>) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut openers = Vec::new();
    for _ in 0..16 {
        let (next, users, addr) = (next.clone(), users.to_vec(), server.addr);
        openers.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let (mut held, mut failed) = (Vec::new(), BTreeMap::<String, usize>::new());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return (held, failed);
                }
                match open(addr, &mut conn, &users[i / PER_USER].token).await {
                    Ok(mut ws) => held.push(tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} })),
                    Err(e) => *failed.entry(short(&e.to_string())).or_default() += 1,
                }
                if (i + 1) % 2000 == 0 {
                    println!("  … {} opened", i + 1);
                }
            }
        }));
    }
    let (mut idle, mut failures) = (Vec::with_capacity(n), BTreeMap::new());
    for o in openers {
        if let Ok((held, failed)) = o.await {
            idle.extend(held);
            for (k, v) in failed {
                *failures.entry(k).or_default() += v;
            }
        }
    }
    (idle, failures)
}

pub async fn capacity(server: &Server, users: &[Arc<User>], o: &CapacityOpts) -> anyhow::Result<()> {
    let per_user = PER_USER;
    let needed = o.connections.div_ceil(per_user);
    anyhow::ensure!(users.len() >= needed, "{} connections need {needed} users", o.connections);
    println!(
        "\n== ws: {} idle WebSockets ({per_user} per user, the per-user cap, over {needed} users); then delivery \
         with {} connected clients",
        o.connections, o.clients
    );
    let rss_before = server.rss_kib();
    let started = Instant::now();
    let (idle, failures) = open_idle(server, users, o.connections).await;
    let opened_in = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = server.rss_kib();
    println!(
        "  opened {} of {} in {:.1}s ({} failed{}), server RSS {:.1} MiB → {:.1} MiB: {:.1} KiB per connection",
        idle.len(),
        o.connections,
        opened_in.as_secs_f64(),
        o.connections - idle.len(),
        if failures.is_empty() { String::new() } else { format!(": {failures:?}") },
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        rss_after.saturating_sub(rss_before) as f64 / idle.len().max(1) as f64
    );
    for t in idle {
        t.abort();
    }
    // Let the server see the closes before the same users connect again.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let clients = o.clients.min(users.len());
    let recorder = Recorder::default();
    let mut listeners = Vec::with_capacity(clients);
    let mut conn = Conn::new(server.addr);
    for user in &users[..clients] {
        listeners.push(Listener::spawn(open(server.addr, &mut conn, &user.token).await?, recorder.clone()));
    }
    let watches: Vec<Watch> = listeners.iter().map(Listener::watch).collect();
    let users: Vec<Arc<User>> = users[..clients].to_vec();
    let duration = Duration::from_secs_f64(o.seconds);
    sweep::fixed_rate(server.addr, o.rate, duration, &recorder, setup::PUT, move |k| {
        let i = k as usize % users.len();
        let (call, lesson, spent) = users[i].progress();
        sweep::Planned { call, token: users[i].token.clone(), watch: Some((watches[i].clone(), lesson, spent)) }
    })
    .await;
    finish_all(listeners).await;
    let series = recorder.take();
    println!("  {} clients connected, progress updates at {}/s for {}s:", clients, o.rate, o.seconds);
    stats::header();
    for name in [setup::PUT, DELIVERY] {
        stats::row(name, series.get(name).unwrap_or(&Series::new()), None);
    }
    Ok(())
}

fn short(e: &str) -> String {
    e.chars().take(60).collect()
}
