//! The console's own sign-in: a cookie session on top of an ordinary session row.
//!
//! Signing in goes through the same `login` as the API (throttle, lockout, audit, the auth rate
//! budget), restricted to admins. The cookie holds the session's refresh token, `HttpOnly`,
//! `SameSite=Strict`, `Secure` under https, scoped to `/admin`; it is never rotated, and every
//! request re-reads the session and the user, so signing out, "end all sessions", deactivation
//! or a role change ends the console at once. Every state change also carries a CSRF token
//! derived from the session's secret, and a request another site started is refused outright.

use askama::Template;
use axum::{
    extract::{FromRequest, FromRequestParts, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{page, see_other};
use crate::{
    auth::AuthError,
    http::{
        extract::{Ctx, parse_query},
        problem::ApiError,
    },
    kernel::context::{Principal, Role},
    state::AppState,
};

const SESSION_COOKIE: &str = "cifix_console";
const SIGN_IN_COOKIE: &str = "cifix_console_sign_in";
/// A console session (its row, so also its refresh token at the API) ends this long after
/// sign-in, however active: an admin's browser left open is not a standing key to the platform.
const SESSION_HOURS: i64 = 12;
/// An email and a password fit in far less; a larger sign-in form is not a person's.
const SIGN_IN_FORM_LIMIT: usize = 8 * 1024;

/// A signed-in admin, for a console page.
pub struct Admin {
    pub principal: Principal,
    pub csrf: String,
    token: String,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let to_sign_in = || {
            let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or(super::ROOT);
            let target = if parts.method == Method::GET { next } else { super::ROOT };
            let to = format!("/admin/sign-in?{}", page::query(&[("next", Some(target.to_string()))]));
            if parts.headers.contains_key("hx-request") {
                // htmx would follow a redirect and swap the sign-in page into a table; this
                // makes it load the sign-in page instead.
                let mut res = StatusCode::NO_CONTENT.into_response();
                if let Ok(v) = HeaderValue::from_str(&to) {
                    res.headers_mut().insert("hx-redirect", v);
                }
                return res;
            }
            see_other(&to)
        };
        // Every cookie of that name is tried: another host of the same site may have planted
        // one that the browser sends first.
        for token in cookies(&parts.headers, SESSION_COOKIE).into_iter().take(3) {
            let principal = match state.auth.authenticate_refresh_token(&token).await {
                Ok(principal) => principal,
                Err(AuthError::Unauthenticated) => continue,
                Err(e) => return Err(ApiError::from(e).into_response()),
            };
            if principal.role != Role::Admin {
                break;
            }
            if let Some(slot) = parts.extensions.get::<crate::http::extract::UserSlot>() {
                let _ = slot.0.set(principal.user_id);
            }
            return Ok(Admin { principal, csrf: csrf_for(&token), token });
        }
        Err(to_sign_in())
    }
}

/// The CSRF token of a session: a hash of its secret, so a page of another origin, which can
/// neither read the cookie nor our pages, cannot know it.
fn csrf_for(session_token: &str) -> String {
    hex::encode(Sha256::digest(format!("cifix console csrf\n{session_token}")))
}

fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A browser says when another site started a request; such a request changes nothing here,
/// whatever it carries.
pub fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| !matches!(site, "same-origin" | "none"))
}

fn forbidden(detail: &str) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail).into_response()
}

/// A state-changing form from a signed-in admin: the session, the CSRF token (field `csrf`)
/// checked, and the other fields parsed into `T` (a 422 naming the field otherwise).
pub struct AdminForm<T> {
    pub admin: Admin,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for AdminForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let admin = Admin::from_request_parts(&mut parts, state).await?;
        if cross_site(&parts.headers) {
            return Err(forbidden("this request came from another site"));
        }
        let bytes = axum::body::to_bytes(body, 64 * 1024)
            .await
            .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "the form is too large"))
            .map_err(IntoResponse::into_response)?;
        let (csrf, rest) = split_csrf(&bytes);
        if !csrf.is_some_and(|c| same_secret(&c, &admin.csrf)) {
            return Err(forbidden("the form is missing its security token or it expired; reload the page"));
        }
        let form = parse_query(&rest).map_err(IntoResponse::into_response)?;
        Ok(AdminForm { admin, form })
    }
}

/// The `csrf` field, and the form's other fields encoded again without it.
fn split_csrf(body: &[u8]) -> (Option<String>, String) {
    let mut csrf = None;
    let mut rest = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(body) {
        if k == "csrf" {
            csrf = Some(v.into_owned());
        } else {
            rest.append_pair(&k, &v);
        }
    }
    (csrf, rest.finish())
}

fn cookies(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.to_string())
        .collect()
}

fn set_cookie(res: &mut Response, state: &AppState, name: &str, value: &str, path: &str, max_age_secs: i64) {
    let secure = if state.config.behind_tls() { "; Secure" } else { "" };
    let line = format!("{name}={value}; Path={path}; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{secure}");
    if let Ok(v) = HeaderValue::from_str(&line) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Only a page of the console: `next` comes from the address bar. No dot segment (which a
/// browser resolves out of `/admin`), no escape that could hide one, no download (which would
/// start by itself after signing in).
fn safe_next(next: Option<&str>) -> &str {
    let inside = |n: &str| {
        let path = n.split('?').next().unwrap_or_default();
        super::is_console(n)
            && !n.contains("//")
            && !n.contains('\\')
            && !path.contains("/.")
            && !path.contains('%')
            && !n.chars().any(char::is_control)
            && !n.starts_with("/admin/sign-")
            && !n.starts_with("/admin/exports/")
    };
    match next {
        Some(n) if inside(n) => n,
        _ => super::ROOT,
    }
}

#[derive(Template)]
#[template(path = "admin/sign_in.html")]
struct SignInPage<'a> {
    csrf: &'a str,
    next: &'a str,
    email: &'a str,
    error: Option<&'a str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInQuery {
    next: Option<String>,
}

fn sign_in_page(state: &AppState, status: StatusCode, next: &str, email: &str, error: Option<&str>) -> Response {
    // The sign-in form's own CSRF token: a random value the form and a cookie both carry
    // (there is no session yet to derive one from).
    let token = crate::auth::tokens::new_refresh_token();
    let mut res = page::html(status, &SignInPage { csrf: &token, next, email, error });
    set_cookie(&mut res, state, SIGN_IN_COOKIE, &token, "/admin/sign-in", 3600);
    res
}

pub async fn sign_in_form(State(state): State<AppState>, parts: Parts) -> Response {
    let next = parse_query::<SignInQuery>(parts.uri.query().unwrap_or_default()).ok().and_then(|q| q.next);
    let mut probe = parts;
    if Admin::from_request_parts(&mut probe, &state).await.is_ok() {
        return see_other(safe_next(next.as_deref()));
    }
    sign_in_page(&state, StatusCode::OK, safe_next(next.as_deref()), "", None)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInForm {
    email: String,
    password: String,
    csrf: String,
    next: Option<String>,
}

pub async fn sign_in(State(state): State<AppState>, Ctx(ctx): Ctx, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    if cross_site(&headers) {
        return forbidden("this request came from another site");
    }
    let Ok(body) = axum::body::to_bytes(body, SIGN_IN_FORM_LIMIT).await else {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "the form is too large")
            .into_response();
    };
    let form: SignInForm = match parse_query(&String::from_utf8_lossy(&body)) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let next = safe_next(form.next.as_deref()).to_string();
    if !cookies(&headers, SIGN_IN_COOKIE).iter().any(|c| same_secret(c, &form.csrf)) {
        let error = "The sign-in form expired. Please try again.";
        return sign_in_page(&state, StatusCode::FORBIDDEN, &next, &form.email, Some(error));
    }
    let lasting = std::time::Duration::from_secs(SESSION_HOURS as u64 * 3600);
    match state.auth.login_as(&ctx, &form.email, &form.password, &[Role::Admin], lasting).await {
        Ok(pair) => {
            let mut res = see_other(&next);
            set_cookie(&mut res, &state, SESSION_COOKIE, &pair.refresh_token, super::ROOT, SESSION_HOURS * 3600);
            set_cookie(&mut res, &state, SIGN_IN_COOKIE, "", "/admin/sign-in", 0);
            res
        }
        Err(AuthError::InvalidCredentials) => {
            let error = "That email and password do not open the admin console.";
            sign_in_page(&state, StatusCode::UNAUTHORIZED, &next, &form.email, Some(error))
        }
        Err(AuthError::AccountLocked { retry_after_secs }) => {
            let minutes = retry_after_secs.div_ceil(60);
            let error = format!("Too many failed attempts. Try again in {minutes} minute(s).");
            let mut res = sign_in_page(&state, StatusCode::TOO_MANY_REQUESTS, &next, &form.email, Some(&error));
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            res
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

pub async fn sign_out(State(state): State<AppState>, Ctx(ctx): Ctx, form: AdminForm<page::NoFields>) -> Response {
    if let Err(e) = state.auth.logout(&ctx, &form.admin.token).await {
        return ApiError::from(e).into_response();
    }
    let mut res = see_other("/admin/sign-in");
    set_cookie(&mut res, &state, SESSION_COOKIE, "", super::ROOT, 0);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_inside_the_console() {
        assert_eq!(safe_next(Some("/admin/users?role=student")), "/admin/users?role=student");
        assert_eq!(safe_next(Some("/admin/users?q=ann%40x.org")), "/admin/users?q=ann%40x.org");
        for hostile in [
            "https://evil.example/",
            "//evil.example",
            "/admin//evil",
            "/api/v1/me",
            "/admin\\x",
            "/admin/sign-out",
            "/admin/../api/docs",
            "/admin/%2e%2e/api/docs",
            "/admin/exports/users.csv",
            "/admin/users\n",
        ] {
            assert_eq!(safe_next(Some(hostile)), "/admin", "{hostile}");
        }
        assert_eq!(safe_next(None), "/admin");
    }

    #[test]
    fn the_csrf_field_is_taken_out_of_the_form() {
        let (csrf, rest) = split_csrf(b"role=admin&csrf=abc&confirm=yes");
        assert_eq!(csrf.as_deref(), Some("abc"));
        assert_eq!(rest, "role=admin&confirm=yes");
    }
}
