//! Operations endpoints (no `/api/v1` prefix): health and metrics.

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use serde_json::json;

use crate::app::AppState;

pub async fn live() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers and every migration is applied; a load balancer takes the
/// instance out of rotation otherwise.
pub async fn ready(State(s): State<AppState>) -> impl IntoResponse {
    let db = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        s.db.ping().await?;
        s.db.is_migrated().await
    })
    .await;
    match db {
        Ok(Ok(true)) => (StatusCode::OK, Json(json!({"status": "ok", "database": "ok"}))),
        Ok(Ok(false)) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable", "database": "migrations pending"})))
        }
        _ => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable", "database": "unreachable"}))),
    }
}

pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let (size, idle) = s.db.pool_usage();
    metrics::gauge!("db_pool_connections").set(size as f64);
    metrics::gauge!("db_pool_idle_connections").set(idle as f64);
    metrics::gauge!("db_pool_in_use_connections").set(size.saturating_sub(idle as u32) as f64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render())
}
