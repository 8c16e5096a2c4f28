//! Operations endpoints (no `/api/v1` prefix): health and metrics.

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use serde_json::json;

use super::problem::ApiError;
use crate::state::AppState;

/// The process is up (it may still be unable to serve: see readiness).
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, description = "alive")))]
pub async fn live() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers and every migration is applied, and the instance is not
/// shutting down; a load balancer takes the instance out of rotation otherwise.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses((status = 200, description = "database reachable, migrations applied"), (status = 503, description = "not ready")))]
pub async fn ready(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let not_ready = |slug, detail| {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, slug, detail);
        e.retry_after = Some(1);
        e
    };
    if s.draining.load(std::sync::atomic::Ordering::Acquire) {
        return Err(not_ready("draining", "this instance is shutting down; other instances serve"));
    }
    // Well inside any probe's timeout: a database that has not answered by then is down.
    let db = tokio::time::timeout(std::time::Duration::from_millis(500), async {
        s.db.ping().await?;
        s.db.is_migrated().await
    })
    .await;
    match db {
        Ok(Ok(true)) => Ok(Json(json!({"status": "ok", "database": "ok"}))),
        Ok(Ok(false)) => Err(not_ready("migrations-pending", "migrations are pending: run `cifix migrate`")),
        _ => Err(not_ready("database-unreachable", "the database does not answer")),
    }
}

/// Prometheus text format: request counts and latency by route and status, pool usage.
/// In production it needs `Authorization: Bearer $CIFIX_METRICS_TOKEN` (without a token
/// configured it is not served here: use `CIFIX_METRICS_BIND`).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain"), (status = 401), (status = 404)))]
pub async fn metrics(State(s): State<AppState>, headers: axum::http::HeaderMap) -> Result<impl IntoResponse, ApiError> {
    let cfg = &s.config.secrets;
    if !cfg.metrics_public {
        let Some(token) = &cfg.metrics_token else { return Err(ApiError::not_found()) };
        let given = super::extract::bearer_token(&headers).unwrap_or_default();
        if !bool::from(subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.as_bytes())) {
            return Err(ApiError::unauthorized());
        }
    }
    Ok(render_metrics(&s))
}

/// The metrics page itself, for the main listener and the separate `CIFIX_METRICS_BIND` one.
pub fn render_metrics(s: &AppState) -> impl IntoResponse + use<> {
    let (size, idle) = s.db.pool_usage();
    metrics::gauge!("db_pool_connections").set(size as f64);
    metrics::gauge!("db_pool_idle_connections").set(idle as f64);
    metrics::gauge!("db_pool_in_use_connections").set(size.saturating_sub(idle as u32) as f64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render())
}
