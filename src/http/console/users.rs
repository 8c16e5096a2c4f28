//! Users: search and filter, one user's page, and what an admin may do to an account (role,
//! activation, ending its sessions, a new verification link), each through the service the
//! JSON API uses.

use askama::Template;
use axum::{extract::State, http::StatusCode, response::Response};
use serde::Deserialize;
use uuid::Uuid;

use super::{
    page::{self, Chrome, Confirm, ConfirmOnly, Notice, html, when},
    see_other,
    session::{Admin, AdminForm},
};
use crate::{
    admin::AdminUserView,
    http::{
        extract::{ApiQuery, Ctx, page_request},
        problem::{ApiResult, PathId},
    },
    kernel::context::Role,
    state::AppState,
};

const PAGE_SIZE: u64 = 25;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserFilter {
    q: Option<String>,
    role: Option<String>,
    cursor: Option<String>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    chrome: Chrome,
    q: String,
    role: String,
    users: Vec<AdminUserView>,
    next: Option<String>,
    first: Option<String>,
}

fn role_of(value: Option<&str>) -> ApiResult<Option<Role>> {
    match value.filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(r) => r
            .parse()
            .map(Some)
            .map_err(|()| crate::http::problem::ApiError::field("role", "must be student, instructor or admin")),
    }
}

pub async fn list(State(s): State<AppState>, admin: Admin, ApiQuery(f): ApiQuery<UserFilter>) -> ApiResult<Response> {
    let role = role_of(f.role.as_deref())?;
    let page_req = page_request(Some(PAGE_SIZE), f.cursor.as_deref())?;
    let users = s.admin.list_users(f.q.as_deref(), role, page_req).await?;
    let keep =
        |cursor: Option<String>| page::query(&[("q", f.q.clone()), ("role", f.role.clone()), ("cursor", cursor)]);
    let page = UsersPage {
        chrome: Chrome::new(&admin, "users", f.notice.as_deref()),
        q: f.q.clone().unwrap_or_default(),
        role: f.role.clone().unwrap_or_default(),
        next: users.next_cursor.clone().map(|c| keep(Some(c))),
        first: f.cursor.is_some().then(|| keep(None)),
        users: users.items,
    };
    Ok(html(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "admin/user.html")]
struct UserPage {
    chrome: Chrome,
    user: AdminUserView,
    created: String,
    is_self: bool,
}

pub async fn show(
    State(s): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
    ApiQuery(n): ApiQuery<Notice>,
) -> ApiResult<Response> {
    let user = s.admin.user(id).await?;
    let page = UserPage {
        chrome: Chrome::new(&admin, "users", n.notice.as_deref()),
        created: when(&user.created_at),
        is_self: user.id == admin.principal.user_id,
        user,
    };
    Ok(html(StatusCode::OK, &page))
}

fn back_to(id: Uuid, notice: &str) -> Response {
    see_other(&format!("/admin/users/{id}?notice={notice}"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleForm {
    role: String,
    confirm: Option<String>,
}

pub async fn change_role(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    PathId(id): PathId,
    AdminForm { admin, form }: AdminForm<RoleForm>,
) -> ApiResult<Response> {
    let role =
        role_of(Some(&form.role))?.ok_or_else(|| crate::http::problem::ApiError::field("role", "choose a role"))?;
    if !page::confirmed(&form.confirm) {
        let user = s.admin.user(id).await?;
        return Ok(confirm(
            &admin,
            format!("Change the role of {} from {} to {}?", user.email, user.role.as_str(), role.as_str()),
            format!("/admin/users/{id}/role"),
            "Change role",
            id,
            vec![("role".into(), form.role)],
        ));
    }
    s.admin.update_user(&ctx, &admin.principal, id, Some(role), None).await?;
    Ok(back_to(id, "role-changed"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveForm {
    active: bool,
    confirm: Option<String>,
}

pub async fn set_active(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    PathId(id): PathId,
    AdminForm { admin, form }: AdminForm<ActiveForm>,
) -> ApiResult<Response> {
    if !form.active && !page::confirmed(&form.confirm) {
        let user = s.admin.user(id).await?;
        return Ok(confirm(
            &admin,
            format!("Deactivate {}? They are signed out everywhere at once and cannot sign in.", user.email),
            format!("/admin/users/{id}/active"),
            "Deactivate",
            id,
            vec![("active".into(), "false".into())],
        ));
    }
    s.admin.update_user(&ctx, &admin.principal, id, None, Some(form.active)).await?;
    Ok(back_to(id, if form.active { "activated" } else { "deactivated" }))
}

pub async fn end_sessions(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    PathId(id): PathId,
    AdminForm { admin, form }: AdminForm<ConfirmOnly>,
) -> ApiResult<Response> {
    if !form.confirmed() {
        let user = s.admin.user(id).await?;
        return Ok(confirm(
            &admin,
            format!("End every session of {}? Every device they use is signed out.", user.email),
            format!("/admin/users/{id}/sessions"),
            "End all sessions",
            id,
            vec![],
        ));
    }
    s.auth.end_sessions_of(&ctx, &admin.principal, id).await?;
    Ok(back_to(id, "sessions-ended"))
}

pub async fn resend_verification(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    PathId(id): PathId,
    AdminForm { admin, .. }: AdminForm<ConfirmOnly>,
) -> ApiResult<Response> {
    let sent = s.auth.resend_verification_to(&ctx, &admin.principal, id).await?;
    Ok(back_to(id, if sent { "verification-sent" } else { "already-verified" }))
}

fn confirm(
    admin: &Admin,
    question: String,
    action: String,
    button: &'static str,
    id: Uuid,
    fields: Vec<(String, String)>,
) -> Response {
    Confirm::ask(admin, "users", question, action, button)
        .back_to(format!("/admin/users/{id}"))
        .resending(fields)
        .show()
}
