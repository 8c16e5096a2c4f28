//! What every console page shares: the frame around it, the notices a redirect carries, the
//! confirmation step before a destructive action, and the error page.

use askama::Template;
use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::session::Admin;
use crate::http::problem::ApiError;

/// The frame's data: which tab is open and the token every form carries.
pub struct Chrome {
    pub csrf: String,
    pub tab: &'static str,
    pub notice: Option<&'static str>,
}

impl Chrome {
    pub fn new(admin: &Admin, tab: &'static str, notice: Option<&str>) -> Chrome {
        Chrome { csrf: admin.csrf.clone(), tab, notice: notice.and_then(notice_text) }
    }

    /// The tabs, in order, with the open one marked.
    pub fn tabs(&self) -> Vec<Tab> {
        [
            ("/admin", "Overview", "overview"),
            ("/admin/users", "Users", "users"),
            ("/admin/courses", "Courses", "courses"),
            ("/admin/reviews", "Reviews", "reviews"),
            ("/admin/audit", "Audit log", "audit"),
            ("/admin/emails", "Email outbox", "emails"),
            ("/admin/clients", "Integrations", "clients"),
        ]
        .into_iter()
        .map(|(path, label, key)| Tab { path, label, open: key == self.tab })
        .collect()
    }
}

pub struct Tab {
    pub path: &'static str,
    pub label: &'static str,
    pub open: bool,
}

/// A redirect names what happened by key, never by text, so a crafted link cannot put words
/// on an admin's screen.
fn notice_text(key: &str) -> Option<&'static str> {
    Some(match key {
        "role-changed" => "The role was changed.",
        "deactivated" => "The account was deactivated and its sessions ended.",
        "activated" => "The account was activated.",
        "sessions-ended" => "Every session of the account was ended.",
        "verification-sent" => "A new verification link is on its way.",
        "already-verified" => "The address is already verified; nothing was sent.",
        "published" => "The course is published.",
        "unpublished" => "The course is unpublished.",
        "email-retried" => "The email is queued again.",
        "client-revoked" => "The client was revoked; its signatures stop working now.",
        _ => return None,
    })
}

/// A page as a response: HTML, never cached (the middleware adds `no-store`).
pub fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => {
            let mut res = (status, body).into_response();
            res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            res
        }
        Err(e) => ApiError::internal(format!("rendering a console page: {e}")).into_response(),
    }
}

#[derive(Template)]
#[template(path = "admin/error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    detail: &'a str,
    fields: &'a [(String, String)],
    request_id: &'a str,
}

pub fn error_page(status: StatusCode, detail: &str, fields: &[(String, String)], request_id: &str) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    html(status, &ErrorPage { status: status.as_u16(), reason, detail, fields, request_id })
}

/// The step before a destructive action: the same form again, with `confirm=yes`.
#[derive(Template)]
#[template(path = "admin/confirm.html")]
pub struct Confirm {
    pub chrome: Chrome,
    pub question: String,
    pub action: String,
    pub button: &'static str,
    pub back: String,
    /// The form's other fields, sent again unchanged.
    pub fields: Vec<(String, String)>,
}

impl Confirm {
    /// Asks `question` on `tab`; confirming posts the form to `action` again.
    pub fn ask(admin: &Admin, tab: &'static str, question: String, action: String, button: &'static str) -> Confirm {
        Confirm {
            chrome: Chrome::new(admin, tab, None),
            question,
            action,
            button,
            back: format!("/admin/{tab}"),
            fields: vec![],
        }
    }

    pub fn back_to(mut self, back: String) -> Confirm {
        self.back = back;
        self
    }

    pub fn resending(mut self, fields: Vec<(String, String)>) -> Confirm {
        self.fields = fields;
        self
    }

    pub fn show(self) -> Response {
        html(StatusCode::OK, &self)
    }
}

/// A page's query string when only a redirect's notice can be in it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notice {
    pub notice: Option<String>,
}

/// A form with no field of its own (only its CSRF token).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

/// A form whose only field is the answer of the confirmation step.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmOnly {
    pub confirm: Option<String>,
}

impl ConfirmOnly {
    pub fn confirmed(&self) -> bool {
        confirmed(&self.confirm)
    }
}

pub fn confirmed(answer: &Option<String>) -> bool {
    answer.as_deref() == Some("yes")
}

/// Dates as an admin reads them; every time the console shows is UTC.
pub fn when(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A query string from the filters that are set, for links that keep them (pagination).
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            q.append_pair(k, v);
        }
    }
    q.finish()
}
