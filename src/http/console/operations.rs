//! Running the platform: the audit trail, the email outbox, and the integration clients.

use askama::Template;
use axum::{extract::State, http::StatusCode, response::Response};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::{
    page::{self, Chrome, Confirm, ConfirmOnly, html, when},
    see_other,
    session::{Admin, AdminForm},
};
use crate::{
    admin::{AuditEntryView, AuditFilter},
    assessments::ClientView,
    email::EmailView,
    http::{
        extract::{ApiQuery, Ctx, page_request},
        problem::{ApiError, ApiResult, PathId},
    },
    state::AppState,
};

const PAGE_SIZE: u64 = 50;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    actor_id: Option<String>,
    action: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
}

pub struct AuditRow {
    pub entry: AuditEntryView,
    pub at: String,
    pub actor: String,
    pub details: String,
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    chrome: Chrome,
    actor_id: String,
    action: String,
    since: String,
    until: String,
    rows: Vec<AuditRow>,
    next: Option<String>,
    first: Option<String>,
    /// The filters as a query string, for the CSV download of the same entries.
    filters: String,
}

/// A time as a browser's `datetime-local` field sends it (read as UTC), RFC 3339, or a date.
fn moment(field: &str, value: Option<&str>) -> ApiResult<Option<DateTime<Utc>>> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let parsed = DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M").ok().map(|t| t.and_utc()))
        .or_else(|| {
            NaiveDate::parse_from_str(v, "%Y-%m-%d").ok().map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
        });
    parsed.map(Some).ok_or_else(|| ApiError::field(field, "must be a date and time like 2026-12-01T09:30"))
}

/// The audit page's filters as its form sends them (an empty field is no filter), for the
/// page and for its CSV download alike.
pub(super) fn audit_filter(
    actor_id: Option<&str>,
    action: Option<&str>,
    since: Option<&str>,
    until: Option<&str>,
) -> ApiResult<AuditFilter> {
    let actor_id = match actor_id.map(str::trim).filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => Some(Uuid::parse_str(a).map_err(|_| ApiError::field("actor_id", "must be a user id"))?),
    };
    Ok(AuditFilter {
        actor_id,
        action: action.filter(|a| !a.trim().is_empty()).map(str::to_string),
        since: moment("since", since)?,
        until: moment("until", until)?,
    })
}

pub async fn audit(State(s): State<AppState>, admin: Admin, ApiQuery(q): ApiQuery<AuditQuery>) -> ApiResult<Response> {
    let filter = audit_filter(q.actor_id.as_deref(), q.action.as_deref(), q.since.as_deref(), q.until.as_deref())?;
    let entries = s.admin.audit_log(filter, page_request(Some(PAGE_SIZE), q.cursor.as_deref())?).await?;
    let ids: Vec<Uuid> = entries.items.iter().filter_map(|e| e.actor_id).collect();
    let names = s.admin.names(&ids).await?;
    let keep = |cursor: Option<String>| {
        page::query(&[
            ("actor_id", q.actor_id.clone()),
            ("action", q.action.clone()),
            ("since", q.since.clone()),
            ("until", q.until.clone()),
            ("cursor", cursor),
        ])
    };
    let page = AuditPage {
        chrome: Chrome::new(&admin, "audit", None),
        actor_id: q.actor_id.clone().unwrap_or_default(),
        action: q.action.clone().unwrap_or_default(),
        since: q.since.clone().unwrap_or_default(),
        until: q.until.clone().unwrap_or_default(),
        next: entries.next_cursor.clone().map(|c| keep(Some(c))),
        first: q.cursor.is_some().then(|| keep(None)),
        filters: keep(None),
        rows: entries
            .items
            .into_iter()
            .map(|entry| AuditRow {
                at: when(&entry.at),
                actor: entry.actor_id.and_then(|id| names.get(&id)).map(|n| n.0.clone()).unwrap_or_default(),
                details: entry.details.as_ref().map(|d| d.to_string()).unwrap_or_default(),
                entry,
            })
            .collect(),
    };
    Ok(html(StatusCode::OK, &page))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailQuery {
    status: Option<String>,
    cursor: Option<String>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/emails.html")]
struct EmailsPage {
    chrome: Chrome,
    status: String,
    emails: Vec<(EmailView, String)>,
    next: Option<String>,
    first: Option<String>,
}

const EMAIL_STATUSES: [&str; 5] = ["queued", "sending", "sent", "failed", "suppressed"];

pub async fn emails(State(s): State<AppState>, admin: Admin, ApiQuery(q): ApiQuery<EmailQuery>) -> ApiResult<Response> {
    let status = q.status.as_deref().filter(|v| !v.is_empty());
    if status.is_some_and(|v| !EMAIL_STATUSES.contains(&v)) {
        return Err(ApiError::field("status", "must be queued, sending, sent, failed or suppressed"));
    }
    let list = s.email.list(status, page_request(Some(PAGE_SIZE), q.cursor.as_deref())?).await?;
    let keep = |cursor: Option<String>| page::query(&[("status", q.status.clone()), ("cursor", cursor)]);
    let page = EmailsPage {
        chrome: Chrome::new(&admin, "emails", q.notice.as_deref()),
        status: status.unwrap_or_default().to_string(),
        next: list.next_cursor.clone().map(|c| keep(Some(c))),
        first: q.cursor.is_some().then(|| keep(None)),
        emails: list
            .items
            .into_iter()
            .map(|e| {
                let at = when(&e.created_at);
                (e, at)
            })
            .collect(),
    };
    Ok(html(StatusCode::OK, &page))
}

pub async fn retry_email(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    PathId(id): PathId,
    AdminForm { admin, .. }: AdminForm<page::NoFields>,
) -> ApiResult<Response> {
    s.email.retry(&ctx, &admin.principal, id).await?;
    Ok(see_other("/admin/emails?status=failed&notice=email-retried"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientQuery {
    cursor: Option<String>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/clients.html")]
struct ClientsPage {
    chrome: Chrome,
    clients: Vec<ClientView>,
    next: Option<String>,
    name: String,
    name_error: Option<String>,
    /// A secret just made: shown on this one answer and never again.
    secret: Option<(String, String)>,
}

async fn clients_page(
    s: &AppState,
    admin: &Admin,
    cursor: Option<&str>,
    notice: Option<&str>,
) -> ApiResult<ClientsPage> {
    let list = s.assessments.list_clients(page_request(Some(PAGE_SIZE), cursor)?).await?;
    Ok(ClientsPage {
        chrome: Chrome::new(admin, "clients", notice),
        next: list.next_cursor.map(|c| page::query(&[("cursor", Some(c))])),
        clients: list.items,
        name: String::new(),
        name_error: None,
        secret: None,
    })
}

pub async fn clients(
    State(s): State<AppState>,
    admin: Admin,
    ApiQuery(q): ApiQuery<ClientQuery>,
) -> ApiResult<Response> {
    let page = clients_page(&s, &admin, q.cursor.as_deref(), q.notice.as_deref()).await?;
    Ok(html(StatusCode::OK, &page))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    name: String,
}

pub async fn create_client(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    AdminForm { admin, form }: AdminForm<NewClient>,
) -> ApiResult<Response> {
    match s.assessments.create_client(&ctx, &admin.principal, &form.name).await {
        Ok(created) => {
            let mut page = clients_page(&s, &admin, None, None).await?;
            page.secret = Some((created.name, created.client_secret));
            Ok(html(StatusCode::CREATED, &page))
        }
        Err(e) => {
            let e = ApiError::from(e);
            let Some(field) = e.errors.iter().find(|f| f.field == "name") else {
                return Err(e);
            };
            let mut page = clients_page(&s, &admin, None, None).await?;
            page.name_error = Some(field.message.clone());
            page.name = form.name;
            Ok(html(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateForm {
    confirm: Option<String>,
    /// When the secret was last rotated as the confirmation page saw it (microseconds since
    /// the epoch; empty for never), so that sending the form twice rotates once.
    rotated: Option<String>,
}

pub async fn rotate_client(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    PathId(id): PathId,
    AdminForm { admin, form }: AdminForm<RotateForm>,
) -> ApiResult<Response> {
    let client = s.assessments.client(id).await?;
    if !page::confirmed(&form.confirm) {
        let question = format!(
            "Make a new secret for “{}”? The current one keeps working for the overlap period, then stops.",
            client.name
        );
        let seen = client.rotated_at.map(|t| t.timestamp_micros().to_string()).unwrap_or_default();
        let ask = Confirm::ask(&admin, "clients", question, format!("/admin/clients/{id}/rotate"), "Rotate secret");
        return Ok(ask.resending(vec![("rotated".into(), seen)]).show());
    }
    let seen = match form.rotated.as_deref().filter(|r| !r.is_empty()) {
        None => None,
        Some(r) => Some(
            r.parse::<i64>()
                .ok()
                .and_then(DateTime::<Utc>::from_timestamp_micros)
                .ok_or_else(|| ApiError::field("rotated", "must be the time the page showed"))?,
        ),
    };
    let rotated = s.assessments.rotate_client(&ctx, &admin.principal, id, Some(seen)).await?;
    let mut page = clients_page(&s, &admin, None, None).await?;
    page.secret = Some((client.name, rotated.client_secret));
    Ok(html(StatusCode::OK, &page))
}

pub async fn revoke_client(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    PathId(id): PathId,
    AdminForm { admin, form }: AdminForm<ConfirmOnly>,
) -> ApiResult<Response> {
    if !form.confirmed() {
        let client = s.assessments.client(id).await?;
        let question =
            format!("Revoke “{}”? Its signed calls are refused from now on; this cannot be undone.", client.name);
        let action = format!("/admin/clients/{id}/revoke");
        return Ok(Confirm::ask(&admin, "clients", question, action, "Revoke").show());
    }
    s.assessments.revoke_client(&ctx, &admin.principal, id).await?;
    Ok(see_other("/admin/clients?notice=client-revoked"))
}
