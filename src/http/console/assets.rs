//! The console's script and stylesheet, compiled into the binary: nothing to install, no CDN.
//! Their names carry a version, so a browser may keep them for a year.

use axum::{
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

/// htmx 2.0.11 (BSD Zero-Clause), unmodified from the npm package `htmx.org`.
const HTMX: &[u8] = include_bytes!("assets/htmx-2.0.11.min.js");
const CONSOLE_CSS: &[u8] = include_bytes!("assets/console.css");
/// A tab icon of our own: without one a browser asks for `/favicon.ico`.
const ICON: &[u8] = include_bytes!("assets/icon.svg");

/// The stylesheet's name as `templates/admin/head.html` links it; bump both with its content.
pub const CSS_NAME: &str = "console-1.css";

pub async fn serve(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "htmx-2.0.11.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        CSS_NAME => (CONSOLE_CSS, "text/css; charset=utf-8"),
        "icon-1.svg" => (ICON, "image/svg+xml"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    res
}
