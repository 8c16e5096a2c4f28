//! `Idempotency-Key` on POST creates (rules in `crate::idempotency`): the guard every create
//! inherits, and the pieces an upload handler uses to do the same once its streamed body is
//! on disk.

use axum::{
    Extension,
    body::Body,
    extract::{MatchedPath, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{extract::bearer_token, policy::Unremembered, problem::ApiError};
use crate::{
    idempotency::{Claim, claim, complete, release},
    kernel::context::Principal,
    state::AppState,
};

/// Routes marked by `policy::not_remembered` are passed through untouched, and so are those
/// marked by `policy::streamed_body`, whose handlers claim the key themselves.
pub async fn idempotency(
    State(state): State<AppState>,
    Extension(unremembered): Extension<Unremembered>,
    req: Request,
    next: Next,
) -> Response {
    if !req.headers().contains_key("idempotency-key") {
        return next.run(req).await;
    }
    // A request no route matched is never remembered: only a route that is known not to carry
    // credentials may be.
    let route = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    if req.method() != axum::http::Method::POST
        || route.is_none_or(|r| unremembered.contains(r) || unremembered.streams(r))
    {
        return next.run(req).await;
    }
    let key = match key_of(req.headers()) {
        Ok(Some(key)) => key,
        Ok(None) => return next.run(req).await,
        Err(e) => return e.into_response(),
    };
    // Keys belong to the caller. Without a valid token there is no caller: the handler will
    // answer 401 and there is nothing to remember.
    // A full session check, not just the signature: a revoked session must not read back
    // stored responses.
    let principal = match bearer_token(req.headers()) {
        Some(t) => state.auth.authenticate_user(t).await.ok(),
        None => None,
    };
    let Some((principal, user)) = principal else { return next.run(req).await };
    let scope = principal.user_id.to_string();
    // The handler's `Auth` uses this instead of reading the same rows again.
    let mut req = req;
    req.extensions_mut().insert(super::middleware::Authenticated(principal, user));

    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, state.config.body_limit_bytes).await else {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "the request body is too large")
            .into_response();
    };
    let target = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
    let fp = crate::idempotency::fingerprint(parts.method.as_str(), &target, &bytes);
    match claim(&state.db, &scope, &key, &fp).await {
        Err(e) => ApiError::internal(e).into_response(),
        Ok(Claim::Fresh) => {
            let res = next.run(Request::from_parts(parts, Body::from(bytes))).await;
            remember(&state, &scope, &key, res).await
        }
        Ok(other) => settled(other),
    }
}

/// The caller's `Idempotency-Key`, if any; a malformed one is a 422.
pub fn key_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(key) = headers.get("idempotency-key") else { return Ok(None) };
    match key.to_str().ok().filter(|k| crate::idempotency::valid_key(k)) {
        Some(k) => Ok(Some(k.to_string())),
        None => Err(ApiError::field("Idempotency-Key", "must be 1 to 200 visible ASCII characters")),
    }
}

/// Claims `key` for `principal`'s request with this fingerprint. `Ok(())` means run it; an
/// `Err` is the answer to give at once (a replay, a conflict, a mismatch).
pub async fn claim_for(state: &AppState, principal: &Principal, key: &str, fingerprint: &str) -> Result<(), Response> {
    match claim(&state.db, &principal.user_id.to_string(), key, fingerprint).await {
        Ok(Claim::Fresh) => Ok(()),
        Ok(other) => Err(settled(other)),
        Err(e) => Err(ApiError::internal(e).into_response()),
    }
}

/// The answer to a claim that is not fresh.
fn settled(claim: Claim) -> Response {
    match claim {
        Claim::Mismatch => {
            ApiError::field("Idempotency-Key", "was already used with a different request").into_response()
        }
        Claim::InProgress | Claim::Fresh => ApiError::new(
            StatusCode::CONFLICT,
            "idempotency-in-progress",
            "a request with this Idempotency-Key is still being processed; retry shortly",
        )
        .into_response(),
        Claim::Replay { status, content_type, body } => {
            let mut res = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
            if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
                res.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            res.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            res
        }
    }
}

/// Keeps a 2xx answer for replays of `key`, or frees the key for a corrected retry.
pub async fn remember(state: &AppState, scope: &str, key: &str, res: Response) -> Response {
    let (res_parts, res_body) = res.into_parts();
    let Ok(body) = axum::body::to_bytes(res_body, 16 * 1024 * 1024).await else {
        let _ = release(&state.db, scope, key).await;
        return ApiError::internal("response too large to keep for Idempotency-Key").into_response();
    };
    let content_type = res_parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let stored = match (res_parts.status.is_success(), std::str::from_utf8(&body)) {
        (true, Ok(text)) => complete(&state.db, scope, key, res_parts.status.as_u16(), content_type, text).await,
        _ => release(&state.db, scope, key).await,
    };
    if let Err(e) = stored {
        // The create itself succeeded; only its replay record is missing.
        tracing::error!(error = %e, "idempotency record not saved");
    }
    Response::from_parts(res_parts, Body::from(body))
}
