//! Live delivery: `POST /realtime/ticket`, `GET /ws` (WebSocket) and `GET /events` (SSE).
//!
//! Both transports register with the instance's hub, which hands them only the events of
//! their user (and, for an instructor, live progress of their courses' students), through a
//! bounded queue: a client that does not keep up is dropped and reconnects.
//!
//! WebSocket protocol. The server sends text frames `{id, type, data, created_at}`. The client
//! may send `{"type":"ping"}` (answered with a `pong` frame, for clients that cannot see
//! protocol pings); anything else gets an `error` frame (`data.code` = `unsupported_message`)
//! and is otherwise ignored. More than 20 such frames, or more than 60 frames per 20 seconds,
//! closes the connection with 1008. A frame over 4 KiB closes it with 1009. The server pings
//! every 20 seconds and closes a connection it has heard nothing from for 50 seconds. Close
//! codes: 1001 server shutting down, 1008 the user's access changed (or abuse), 1013 the
//! client was too slow or must resync: reconnect and fetch `/me/notifications`.
//!
//! SSE. Each event's `id:` is the event id (for stored notifications, the notification id), and
//! `data:` the same JSON as on the WebSocket (no `event:` name, so `onmessage` sees all).
//! A reconnect with `Last-Event-ID` first replays the stored notifications from shortly before
//! that id (see `RESUME_OVERLAP`: delivery is at-least-once, dedupe by `id`), then live events;
//! the stream registers for live events *before* replaying, so nothing falls in between.

use std::{collections::HashSet, convert::Infallible, time::Duration};

use axum::{
    Json,
    extract::{
        State,
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection},
    },
    http::{HeaderMap, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    extract::{ApiQuery, Auth, Ctx, bearer_token},
    policy,
    problem::{ApiError, ApiResult, Problem},
};
use crate::{
    infra::realtime::{DropReason, Outgoing, RealtimeEvent, Registration},
    notifications::{
        self,
        live::{self, TICKET_TTL, TicketError},
    },
    state::AppState,
};

/// Largest frame or message a client may send; the protocol needs a few bytes.
pub const MAX_CLIENT_MESSAGE: usize = 4096;
const PING_EVERY: Duration = Duration::from_secs(20);
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);
/// A write that takes longer than this means the client stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BAD_MESSAGES: u32 = 20;
const MAX_MESSAGES_PER_PING: u32 = 60;
/// Notifications read per query while replaying.
const REPLAY_PAGE: u64 = 200;

pub fn router() -> OpenApiRouter<AppState> {
    // A ticket is a credential for the WebSocket.
    let ticket = policy::not_remembered(OpenApiRouter::new().routes(routes!(ticket)));
    OpenApiRouter::new().merge(ticket).routes(routes!(websocket)).routes(routes!(events))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ticket {
    /// Single use; pass as `?ticket=` to `GET /ws`.
    pub ticket: String,
    /// Seconds until the ticket expires (30).
    pub expires_in: u64,
}

/// A short-lived, single-use ticket to open a WebSocket (browsers cannot send a bearer token
/// on one).
#[utoipa::path(post, path = "/realtime/ticket", tag = "realtime", security(("bearer" = [])),
    responses((status = 201, body = Ticket), (status = 401, body = Problem), (status = 429, body = Problem)))]
async fn ticket(State(s): State<AppState>, Ctx(ctx): Ctx, auth: Auth) -> ApiResult<(StatusCode, Json<Ticket>)> {
    let ticket = live::issue_ticket(&s.db, &ctx, &auth.0, s.config.limits.max_live_tickets).await?;
    Ok((StatusCode::CREATED, Json(Ticket { ticket, expires_in: TICKET_TTL.as_secs() })))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WsParams {
    /// From `POST /realtime/ticket`.
    #[param(min_length = 1, max_length = 128)]
    pub ticket: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsParams {
    /// From `POST /realtime/ticket`, instead of the bearer token: a browser's `EventSource`
    /// sends no headers. Single use: after an error, open a new `EventSource` with a new ticket
    /// and `last_event_id`.
    #[param(min_length = 1, max_length = 128)]
    pub ticket: Option<String>,
    /// As the `Last-Event-ID` header, for a new `EventSource` that resumes an earlier stream.
    #[param(format = Uuid)]
    pub last_event_id: Option<Uuid>,
}

/// A browser page may only connect from an allowed origin (a WebSocket is not subject to
/// CORS, so this check is the only thing stopping another site from using a victim's ticket).
/// No `Origin` header means a non-browser client, which is allowed.
fn origin_allowed(s: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let Ok(origin) = origin.to_str() else { return false };
    let public = s.config.public_url.trim_end_matches('/');
    s.config.cors_origins.iter().any(|o| o == origin) || public == origin
}

/// The WebSocket: `{id, type, data, created_at}` events for the ticket's user. 400 for a
/// request that is not a WebSocket upgrade, 403 for a disallowed `Origin`, 401 for a bad
/// ticket, 429 past 5 live connections per user.
#[utoipa::path(get, path = "/ws", tag = "realtime", params(WsParams),
    responses((status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade request", body = Problem),
        (status = 426, description = "The connection cannot be upgraded", body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 429, body = Problem)))]
async fn websocket(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<WsParams>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let ws = ws.map_err(|e| {
        ApiError::new(e.status(), "websocket-upgrade-required", format!("a WebSocket upgrade request is required: {e}"))
    })?;
    if !origin_allowed(&s, &headers) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin-not-allowed",
            "this origin may not connect; the operator allows origins with CIFIX_CORS_ORIGINS",
        ));
    }
    // A non-browser client that also sends a bearer token must be the ticket's owner; a header
    // that is not a bearer token is refused before the ticket is spent.
    let bearer = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(_) => Some(bearer_token(&headers).ok_or_else(ApiError::unauthorized)?),
    };
    let user = live::consume_ticket(&s.db, q.ticket.as_deref().unwrap_or_default()).await?;
    if let Some(token) = bearer {
        let p = s.auth.authenticate(token).await?;
        if p.user_id != user.user_id {
            return Err(TicketError::Invalid.into());
        }
    }
    let reg = s.hub.register(user.user_id, user.session_id)?;
    let shutdown = s.shutdown.clone();
    let tracked = s.live_tasks.token();
    // Small buffers: an idle socket then costs a few KiB instead of ~134 KiB.
    Ok(ws
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            let _tracked = tracked;
            run_socket(socket, reg, shutdown).await;
        }))
}

fn frame(kind: &str, data: serde_json::Value) -> Message {
    Message::Text(json!({"id": null, "type": kind, "data": data, "created_at": Utc::now()}).to_string().into())
}

async fn send(socket: &mut WebSocket, msg: Message) -> bool {
    matches!(tokio::time::timeout(WRITE_TIMEOUT, socket.send(msg)).await, Ok(Ok(())))
}

fn close_for(reason: Option<DropReason>) -> (u16, &'static str) {
    match reason {
        Some(DropReason::Revoked) => (1008, "access changed; sign in again"),
        Some(DropReason::Slow) => (1013, "too slow; reconnect"),
        Some(DropReason::Resync) | None => (1013, "reconnect to resync"),
    }
}

async fn run_socket(mut socket: WebSocket, mut reg: Registration, shutdown: CancellationToken) {
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    let mut last_seen = Instant::now();
    let mut bad = 0u32;
    let mut recent = 0u32;
    let close: Option<(u16, &'static str)> = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Some((1001, "server shutting down")),
            out = reg.rx.recv() => match out {
                Some(Outgoing::Event(e)) => {
                    let Ok(text) = serde_json::to_string(&*e) else { continue };
                    if !send(&mut socket, Message::Text(text.into())).await {
                        break None;
                    }
                }
                None => break Some(close_for(reg.drop_reason())),
            },
            msg = socket.recv() => {
                last_seen = Instant::now();
                recent += 1;
                let reply = match msg {
                    None => break None,
                    // Oversized frames and protocol violations end up here.
                    Some(Err(_)) => break Some((1009, "message too big or malformed")),
                    Some(Ok(Message::Close(_))) => break None,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => None,
                    Some(Ok(Message::Text(t))) => {
                        let is_ping = serde_json::from_str::<serde_json::Value>(t.as_str())
                            .is_ok_and(|v| v.get("type").and_then(|t| t.as_str()) == Some("ping"));
                        if is_ping {
                            Some(frame("pong", serde_json::Value::Null))
                        } else {
                            bad += 1;
                            Some(frame("error", json!({"code": "unsupported_message",
                                "detail": "the server understands only {\"type\":\"ping\"}"})))
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        bad += 1;
                        Some(frame("error", json!({"code": "unsupported_message", "detail": "binary frames are not supported"})))
                    }
                };
                if bad > MAX_BAD_MESSAGES || recent > MAX_MESSAGES_PER_PING {
                    break Some((1008, "too many messages"));
                }
                if let Some(r) = reply
                    && !send(&mut socket, r).await
                {
                    break None;
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > IDLE_TIMEOUT {
                    break Some((1000, "idle timeout"));
                }
                recent = 0;
                if !send(&mut socket, Message::Ping(Default::default())).await {
                    break None;
                }
            }
        }
    };
    if let Some((code, reason)) = close {
        let _ = send(&mut socket, Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
    }
}

fn sse_event(e: &RealtimeEvent) -> SseEvent {
    SseEvent::default().id(e.id.to_string()).data(serde_json::to_string(e).unwrap_or_default())
}

/// Server-Sent Events for the user of the bearer token or of `?ticket=`. With `Last-Event-ID`
/// (or `?last_event_id=`), first the stored notifications since then (from shortly before:
/// dedupe by `id`), then live events.
#[utoipa::path(get, path = "/events", tag = "realtime", security(("bearer" = []), ()),
    params(EventsParams, ("Last-Event-ID" = Option<String>, Header, description = "The last event id received")),
    responses((status = 200, description = "An event stream", content_type = "text/event-stream"),
        (status = 401, body = Problem), (status = 429, body = Problem)))]
async fn events(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsParams>,
) -> ApiResult<impl IntoResponse> {
    let (user_id, session_id) = match (&q.ticket, bearer_token(&headers)) {
        (Some(ticket), _) => {
            let user = live::consume_ticket(&s.db, ticket).await?;
            (user.user_id, user.session_id)
        }
        (None, Some(token)) => {
            let p = s.auth.authenticate(token).await?;
            (p.user_id, p.session_id)
        }
        (None, None) => return Err(ApiError::unauthorized()),
    };
    // Registered before the replay reads anything: whatever commits meanwhile is queued.
    let reg = s.hub.register(user_id, session_id)?;
    let header_id =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| Uuid::parse_str(v.trim()).ok());
    let last = header_id.or(q.last_event_id);
    let (tx, rx) = mpsc::channel::<SseEvent>(16);
    let tracked = s.live_tasks.token();
    let shutdown = s.shutdown.clone();
    tokio::spawn(async move {
        let _tracked = tracked;
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = feed(s, user_id, last, reg, tx) => {}
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx)) });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Replay, then live; ends when the client goes away, the hub drops it, or shutdown begins.
async fn feed(s: AppState, user_id: Uuid, last: Option<Uuid>, mut reg: Registration, tx: mpsc::Sender<SseEvent>) {
    let mut replayed: HashSet<Uuid> = HashSet::new();
    if let Some(last) = last {
        let mut cursor = live::resume_floor(last);
        loop {
            let rows = match notifications::after(&s.db.conn, user_id, cursor, REPLAY_PAGE).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "sse replay failed");
                    return; // The client reconnects with the same Last-Event-ID.
                }
            };
            for n in &rows {
                if n.id == last {
                    continue;
                }
                replayed.insert(n.id);
                if tx.send(sse_event(&RealtimeEvent::from(n))).await.is_err() {
                    return;
                }
            }
            match rows.last() {
                Some(n) if rows.len() as u64 == REPLAY_PAGE => cursor = n.id,
                _ => break,
            }
        }
    }
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            out = reg.rx.recv() => match out {
                Some(Outgoing::Event(e)) => {
                    if replayed.remove(&e.id) {
                        continue; // Already sent during the replay.
                    }
                    // A client that stops reading is let go (it resumes with Last-Event-ID).
                    if !matches!(tokio::time::timeout(WRITE_TIMEOUT, tx.send(sse_event(&e))).await, Ok(Ok(()))) {
                        return;
                    }
                }
                None => return,
            },
        }
    }
}
