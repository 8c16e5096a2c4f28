//! The admin console at `/admin`: server-rendered pages over the same services, checks and
//! audit rows as the JSON API, so an action taken here and the same call to `/api/v1` cannot
//! differ. Plain forms and redirects do the work; the vendored htmx only refreshes a filtered
//! table while the admin types. Everything it serves fits the strict Content-Security-Policy:
//! no inline script or style, no third-party origin.

mod assets;
mod catalog;
mod charts;
mod exports;
mod operations;
mod overview;
mod page;
mod session;
mod users;

use axum::{
    Router,
    extract::Request,
    handler::Handler,
    http::{HeaderValue, StatusCode, header},
    middleware::{Next, from_fn},
    response::{IntoResponse, Response},
    routing::{get, post},
};

use super::middleware;
use crate::state::AppState;

/// Where the console lives; its cookies are scoped to it.
pub const ROOT: &str = "/admin";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(overview::show))
        .route("/admin/", get(overview::show))
        .route(
            "/admin/sign-in",
            get(session::sign_in_form).post(session::sign_in.layer(from_fn(middleware::auth_rate_limit))),
        )
        .route("/admin/sign-out", post(session::sign_out))
        .route("/admin/users", get(users::list))
        .route("/admin/users/{id}", get(users::show))
        .route("/admin/users/{id}/role", post(users::change_role))
        .route("/admin/users/{id}/active", post(users::set_active))
        .route("/admin/users/{id}/sessions", post(users::end_sessions))
        .route("/admin/users/{id}/verification", post(users::resend_verification))
        .route("/admin/courses", get(catalog::courses))
        .route("/admin/courses/{id}", get(catalog::course))
        .route("/admin/courses/{id}/published", post(catalog::set_published))
        .route("/admin/reviews", get(catalog::reviews))
        .route("/admin/audit", get(operations::audit))
        .route("/admin/emails", get(operations::emails))
        .route("/admin/emails/{id}/retry", post(operations::retry_email))
        .route("/admin/clients", get(operations::clients).post(operations::create_client))
        .route("/admin/clients/{id}/rotate", post(operations::rotate_client))
        .route("/admin/clients/{id}/revoke", post(operations::revoke_client))
        .route("/admin/exports/users.csv", get(exports::users))
        .route("/admin/exports/audit-log.csv", get(exports::audit_log))
        .route("/admin/exports/course-progress.csv", get(exports::course_progress))
        .route("/admin/assets/{name}", get(assets::serve))
}

/// Is `path` one of the console's pages (not the JSON API's `/api/v1/admin`)?
pub fn is_console(path: &str) -> bool {
    path == ROOT || path.starts_with("/admin/")
}

/// The Content-Security-Policy of every console page: our own script and stylesheet only;
/// charts are inline SVG markup, which needs no exception.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Under `/admin`, an error answered anywhere on the way (a guard's 429, a malformed path, a
/// service's problem+json) becomes a page a person can read, with the same status and headers.
pub async fn html_errors(req: Request, next: Next) -> Response {
    if !is_console(req.uri().path()) {
        return next.run(req).await;
    }
    let res = next.run(req).await;
    let status = res.status();
    let is_html = res.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_html {
        return res;
    }
    let (parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let problem: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
    let detail = problem
        .as_ref()
        .and_then(|p| p.get("detail"))
        .and_then(|d| d.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_lowercase());
    let fields: Vec<(String, String)> = problem
        .as_ref()
        .and_then(|p| p.get("errors"))
        .and_then(|e| e.as_array())
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    let get = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
                    (get("field"), get("message"))
                })
                .collect()
        })
        .unwrap_or_default();
    let request_id = problem.as_ref().and_then(|p| p.get("request_id")).and_then(|r| r.as_str()).unwrap_or_default();
    let mut page = page::error_page(status, &detail, &fields, request_id);
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            page.headers_mut().append(name.clone(), value.clone());
        }
    }
    page
}

/// After a successful form: back to a page (POST, redirect, GET), so a reload repeats nothing.
fn see_other(to: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}
