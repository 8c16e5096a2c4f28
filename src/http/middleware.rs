//! Cross-cutting guards every endpoint inherits.

use std::{
    net::{IpAddr, SocketAddr},
    time::Instant,
};

use axum::{
    body::Body,
    extract::{ConnectInfo, MatchedPath, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use ipnet::IpNet;
use uuid::Uuid;

use super::{
    extract::UserSlot,
    policy::Unremembered,
    problem::{ApiError, REQUEST_ID},
};
use crate::{
    infra::{
        db::STATEMENTS,
        ratelimit::{Decision, Rule},
    },
    kernel::context::RequestContext,
    state::AppState,
};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// An incoming request id is kept only if it is short and plain, so that nobody can inject
/// log lines or huge values through it.
fn sane_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)))
        .then(|| s.to_string())
}

/// The client's address: the peer, unless the peer is a trusted proxy, in which case the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy. Entries further left
/// are whatever the client chose to send and are never believed.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    // A proxy listening on [::] sees IPv4 peers as ::ffff:a.b.c.d; compare them as IPv4.
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut hops: Vec<&str> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        let Ok(s) = v.to_str() else { return peer };
        hops.extend(s.split(',').map(str::trim));
    }
    // Walk from our side: each trusted proxy appended the address it saw, so the first entry
    // that is not a trusted proxy is the client. Anything left of it was written by the client
    // and is ignored, even when it is junk.
    for hop in hops.into_iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip.to_canonical()) => continue,
            Ok(ip) => return ip.to_canonical(),
            Err(_) => return peer,
        }
    }
    peer
}

pub use crate::infra::ratelimit::rate_limit_key;

/// Outermost layer: request id, client address, and the access log and metrics line.
pub async fn context(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id =
        req.headers().get(&X_REQUEST_ID).and_then(sane_request_id).unwrap_or_else(|| Uuid::now_v7().to_string());
    let peer =
        req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()).unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let ip = client_ip(peer, req.headers(), &state.config.trusted_proxies);
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().filter(|c| !c.is_control()).take(256).collect());
    let ctx = RequestContext { request_id: Some(request_id.clone()), ip: Some(ip.to_string()), user_agent };
    let slot = UserSlot::default();
    req.extensions_mut().insert(ctx);
    req.extensions_mut().insert(slot.clone());
    req.extensions_mut().insert(ClientIp(ip));

    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());

    let statements = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = {
        let statements = statements.clone();
        async move {
            let res = next.run(req).await;
            statements.store(STATEMENTS.with(|n| n.get()), std::sync::atomic::Ordering::Relaxed);
            res
        }
    };
    let mut res = REQUEST_ID.scope(request_id.clone(), STATEMENTS.scope(std::cell::Cell::new(0), counted)).await;
    let statements = statements.load(std::sync::atomic::Ordering::Relaxed);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }

    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    if state.config.server_timing {
        let timing = format!("app;dur={:.3}, db;desc=\"{statements} statements\"", elapsed.as_secs_f64() * 1000.0);
        if let Ok(v) = HeaderValue::from_str(&timing) {
            res.headers_mut().insert(HeaderName::from_static("server-timing"), v);
        }
    }
    let labels = [("method", method.to_string()), ("route", route.clone()), ("status", status.to_string())];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
    metrics::histogram!("http_request_db_statements", "route" => route.clone()).record(f64::from(statements));
    // Only the route template is logged, never the raw path or query (they may carry tokens).
    tracing::info!(
        target: "cifix::access",
        method = %method,
        route = %route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        db_statements = statements,
        request_id = %request_id,
        user_id = slot.0.get().map(|u| u.to_string()),
        ip = %ip,
        "request"
    );
    res
}

#[derive(Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// A principal already established for this request by a layer that had to authenticate
/// first (the Idempotency-Key scope). Only server code can put it there.
#[derive(Clone)]
pub struct Authenticated(pub crate::kernel::context::Principal, pub crate::auth::UserView);

/// Turns any bare error response (from the router or a tower layer: 404, 405, 408, 413…)
/// into problem+json, so clients see one error shape whatever produced it.
pub async fn problem_bodies(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    let content_type = res.headers().get(header::CONTENT_TYPE).map(|v| v.as_bytes()).unwrap_or_default();
    // The admin console answers its errors as pages of its own.
    let has_body = content_type.starts_with(b"application/problem+json") || content_type.starts_with(b"text/html");
    if !(status.is_client_error() || status.is_server_error()) || has_body {
        return res;
    }
    let (parts, _) = res.into_parts();
    let (slug, detail) = match status {
        StatusCode::NOT_FOUND => ("not-found", "no such resource"),
        StatusCode::METHOD_NOT_ALLOWED => ("method-not-allowed", "this method is not allowed here"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload-too-large", "the request body is too large"),
        StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
            ("timeout", "the request took too long")
        }
        StatusCode::INTERNAL_SERVER_ERROR => ("internal", "an internal error occurred"),
        _ => ("error", "the request failed"),
    };
    let mut new = ApiError::new(status, slug, detail).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.headers_mut().insert(name.clone(), value.clone());
        }
    }
    new
}

pub async fn security_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let is_docs = req.uri().path().starts_with("/api/docs");
    let is_console = super::console::is_console(req.uri().path());
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    // A user's file is served with `sandbox`: opened in a tab, it runs nothing and reaches
    // nothing of ours.
    let sandboxed = h.get("content-security-policy").is_some_and(|v| v == "sandbox");
    let csp = if sandboxed {
        "sandbox; default-src 'none'; frame-ancestors 'none'"
    } else if is_console {
        super::console::CONTENT_SECURITY_POLICY
    } else if is_docs {
        // Swagger UI is served from the binary and needs its own scripts and inline styles.
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
    } else {
        "default-src 'none'; frame-ancestors 'none'"
    };
    h.insert("content-security-policy", HeaderValue::from_static(csp));
    if !h.contains_key(header::CACHE_CONTROL) {
        // Responses carry personal data and tokens: no shared or browser cache keeps them.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if state.config.behind_tls() {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=63072000; includeSubDomains"));
    }
    res
}

/// The caller's rate-limit account, left by [`rate_limit`] for route policies that charge a
/// stricter budget on top of the general one.
#[derive(Clone)]
struct RateAccount {
    state: AppState,
    key: String,
}

/// The general per-IP budget, for every request.
pub async fn rate_limit(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let key = req.extensions().get::<ClientIp>().map(|c| rate_limit_key(c.0)).unwrap_or_default();
    let general = Rule::per_minute("api", state.config.rate_limit_per_minute);
    let decision = state.limiter.check(&general, &key).await;
    req.extensions_mut().insert(RateAccount { state, key });
    limited(decision, req, next).await
}

/// The per-IP auth budgets; routes get them from `policy::auth_budget`. It runs inside
/// [`rate_limit`], so a request the general budget refused never spends them. Every request
/// spends a generous cap (a class signing in at once fits); only a failed one (any 4xx: a wrong
/// password, a refused registration, a bad token) spends the failure budget, so guessing from
/// one address stops quickly while children who type their password right are never refused.
pub async fn auth_rate_limit(req: Request, next: Next) -> Response {
    let Some(RateAccount { state, key }) = req.extensions().get::<RateAccount>().cloned() else {
        // Only a router built without the general guard gets here; refuse rather than go unlimited.
        return ApiError::internal("auth budget without a rate-limit account").into_response();
    };
    let factor = req.extensions().get::<ClientIp>().map_or(1, |c| state.config.limits.factor_for(c.0));
    let strict = Rule::per_minute("auth", state.config.auth_rate_limit_per_minute).times(factor);
    let decision = state.limiter.check(&strict, &key).await;
    let failures = Rule::per_minute("auth-failures", state.config.limits.auth_failures_per_minute).times(factor);
    if decision.allowed {
        let failed = state.limiter.peek(&failures, &key).await;
        if !failed.allowed {
            metrics::counter!("rate_limited_total").increment(1);
            let res =
                ApiError::too_many(failed.retry_after_secs, "too many failed attempts from this address; retry later");
            return with_budget(res.into_response(), failed);
        }
    }
    let res = limited(decision, req, next).await;
    if decision.allowed && res.status().is_client_error() {
        state.limiter.charge(&failures, &key).await;
    }
    res
}

/// Answers 429 when `decision` refuses, and reports the budget in the `RateLimit-*` headers.
async fn limited(decision: Decision, req: Request, next: Next) -> Response {
    let res = if decision.allowed {
        next.run(req).await
    } else {
        metrics::counter!("rate_limited_total").increment(1);
        ApiError::too_many(decision.retry_after_secs, "rate limit exceeded; retry later").into_response()
    };
    with_budget(res, decision)
}

/// Reports `decision` in the `RateLimit-*` headers, unless a stricter check further in (the
/// auth budget, a handler's per-account limit) set them already.
fn with_budget(mut res: Response, decision: Decision) -> Response {
    let h = res.headers_mut();
    if !h.contains_key("ratelimit-limit") {
        h.insert("ratelimit-limit", HeaderValue::from(decision.limit));
        h.insert("ratelimit-remaining", HeaderValue::from(decision.remaining));
        h.insert("ratelimit-reset", HeaderValue::from(decision.reset_secs));
    }
    res
}

/// The request deadline: the API-wide one, or the upload deadline for routes whose handler
/// streams the body. A request past it is answered 503 (the client may retry).
pub async fn deadline(State((state, policy)): State<(AppState, Unremembered)>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    let limit = if route.is_some_and(|r| policy.streams(r)) {
        state.config.uploads.timeout
    } else {
        state.config.request_timeout
    };
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => ApiError::unavailable(1, "the request took too long; try again").into_response(),
    }
}

/// Catches a panicking handler and answers a plain 500 (turned into problem+json above).
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    tracing::error!("handler panicked");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.7".parse().unwrap());
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "9.9.9.9".parse().unwrap();
        assert_eq!(client_ip(proxy, &h, &trusted).to_string(), "1.2.3.4");
        assert_eq!(client_ip(stranger, &h, &trusted), stranger);
        h.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(client_ip(proxy, &h, &trusted), proxy);
        // Junk the client wrote left of the address our proxy appended does not hide it.
        h.insert("x-forwarded-for", "x, 1.2.3.4".parse().unwrap());
        assert_eq!(client_ip(proxy, &h, &trusted).to_string(), "1.2.3.4");
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_ip(mapped, &h, &trusted).to_string(), "1.2.3.4", "IPv4-mapped proxy is trusted");
    }

    #[test]
    fn ipv6_clients_share_a_budget_per_64() {
        let a = rate_limit_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = rate_limit_key("2001:db8:1:2:bbbb::9".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, rate_limit_key("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(rate_limit_key("::ffff:1.2.3.4".parse().unwrap()), "1.2.3.4");
    }

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        assert_eq!(sane_request_id(&HeaderValue::from_static("abc-123")), Some("abc-123".into()));
        assert_eq!(sane_request_id(&HeaderValue::from_static("a b")), None);
        assert_eq!(sane_request_id(&HeaderValue::from_str(&"x".repeat(65)).unwrap()), None);
    }
}
