//! The HTTP edge: routing, guards and OpenAPI. Handlers stay thin and call domain services.

pub mod achievements;
pub mod admin;
pub mod admin_exports;
pub mod assessments;
pub mod auth;
pub mod catalog;
pub mod console;
pub mod email;
pub mod errors;
pub mod extract;
pub mod idempotent;
pub mod machine;
pub mod me;
pub mod middleware;
pub mod notifications;
pub mod openapi;
pub mod ops;
pub mod path_id;
pub mod policy;
pub mod problem;
pub mod progress;
pub mod realtime;
pub mod submissions;
pub mod uploads;

use std::time::Duration;

use axum::{
    Extension, Router,
    extract::DefaultBodyLimit,
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    middleware::{from_fn, from_fn_with_state},
};
use tower_http::{catch_panic::CatchPanicLayer, cors::CorsLayer};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};
use utoipa_swagger_ui::{Config as SwaggerConfig, SwaggerUi};

use crate::state::AppState;

/// The versioned API and its OpenAPI description, built from the same route table.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let v1 = OpenApiRouter::new()
        .merge(auth::router())
        .merge(me::router())
        .merge(catalog::router())
        .merge(progress::router())
        .merge(assessments::router())
        .merge(admin::router())
        .merge(email::router())
        .merge(notifications::router())
        .merge(achievements::router())
        .merge(realtime::router())
        .merge(submissions::router());
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(ops::live))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics))
        .nest("/api/v1", v1)
        .split_for_parts()
}

/// The served OpenAPI document: what the routes declare, completed with what the shared
/// guards answer.
pub fn openapi() -> serde_json::Value {
    document(&api().1)
}

fn document(doc: &utoipa::openapi::OpenApi) -> serde_json::Value {
    let unremembered = policy::Unremembered::from_doc(doc);
    let mut value = serde_json::to_value(doc).expect("an OpenAPI document serialises");
    openapi::complete(&mut value, &|path| !unremembered.contains(path));
    value
}

pub fn router(state: AppState) -> Router {
    let (api, doc) = api();
    let unremembered = policy::Unremembered::from_doc(&doc);
    let cfg = &state.config;
    let cors = if cfg.cors_origins.is_empty() {
        CorsLayer::new()
    } else {
        let origins: Vec<HeaderValue> = cfg.cors_origins.iter().filter_map(|o| o.parse().ok()).collect();
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("ratelimit-limit"),
                HeaderName::from_static("ratelimit-remaining"),
                HeaderName::from_static("ratelimit-reset"),
                HeaderName::from_static("idempotent-replayed"),
                header::RETRY_AFTER,
                // Tells an expired access token (refresh it) from an invalid one (sign in).
                header::WWW_AUTHENTICATE,
            ])
            .max_age(Duration::from_secs(600))
    };

    Router::new()
        .merge(api)
        .merge(console::router())
        .merge(
            SwaggerUi::new("/api/docs")
                .external_url_unchecked("/api/openapi.json", document(&doc))
                // The online validator would send the document to a third party.
                .config(SwaggerConfig::new(["/api/openapi.json"]).validator_url("none")),
        )
        .fallback(|| async { StatusCode::NOT_FOUND })
        // Innermost first: each `.layer` wraps everything above it.
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(from_fn_with_state(state.clone(), idempotent::idempotency))
        .layer(Extension(unremembered.clone()))
        .layer(DefaultBodyLimit::max(cfg.body_limit_bytes))
        .layer(from_fn_with_state((state.clone(), unremembered), middleware::deadline))
        .layer(from_fn_with_state(state.clone(), middleware::rate_limit))
        .layer(cors)
        .layer(from_fn_with_state(state.clone(), middleware::security_headers))
        .layer(from_fn(console::html_errors))
        .layer(from_fn(middleware::problem_bodies))
        .layer(from_fn_with_state(state.clone(), middleware::context))
        .with_state(state)
}
