//! Email endpoints that are not an account's: one-click unsubscribe (RFC 8058) and the SES
//! bounce/complaint webhook. Neither takes a bearer token; each carries its own proof.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{ApiQuery, Ctx, parse_json},
    policy,
    problem::{ApiResult, Problem},
};
use crate::{
    email::{EmailError, render, ses},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    // A signed machine call.
    let notifications = policy::not_remembered(OpenApiRouter::new().routes(routes!(ses_notifications)));
    OpenApiRouter::new().routes(routes!(unsubscribe_page, unsubscribe)).merge(notifications)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UnsubscribeQuery {
    /// The signed token from the `List-Unsubscribe` link.
    pub token: String,
}

#[derive(Serialize, ToSchema)]
pub struct Unsubscribed {
    /// The category now switched off.
    pub category: String,
}

/// One-click unsubscribe (RFC 8058): mail clients POST `List-Unsubscribe=One-Click` here.
/// The body is ignored; the signed token names the user and the category.
#[utoipa::path(post, path = "/email/unsubscribe", tag = "email", params(UnsubscribeQuery),
    responses((status = 200, body = Unsubscribed), (status = 400, body = Problem)))]
async fn unsubscribe(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiQuery(q): ApiQuery<UnsubscribeQuery>,
) -> ApiResult<Json<Unsubscribed>> {
    let category = s.email.unsubscribe(&ctx, &q.token).await?;
    Ok(Json(Unsubscribed { category: category.as_str().to_string() }))
}

/// The link in the email body: a page with a button, because a GET must not change anything
/// (mail scanners follow links).
#[utoipa::path(get, path = "/email/unsubscribe", tag = "email", params(UnsubscribeQuery),
    responses((status = 200, content_type = "text/html"), (status = 400, body = Problem)))]
async fn unsubscribe_page(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<UnsubscribeQuery>,
) -> ApiResult<Html<String>> {
    let (_, category) = s.email.verify_unsubscribe_token(&q.token)?;
    let mut token = String::new();
    render::escape_html_into(&q.token, &mut token);
    let mut product = String::new();
    render::escape_html_into(&s.email.settings.product, &mut product);
    let what = category.as_str().replace('_', " ");
    Ok(Html(format!(
        "<!doctype html><html><body style=\"font-family: sans-serif\"><h1>{product}</h1>\
         <p>Stop emails about {what}?</p>\
         <form method=\"post\" action=\"?token={token}\"><button type=\"submit\">Unsubscribe</button></form>\
         </body></html>"
    )))
}

#[derive(Serialize, ToSchema)]
pub struct SesResult {
    /// Addresses added to the suppression list by this notification.
    pub suppressed: usize,
}

/// Amazon SES bounce and complaint notifications (via SNS, or raw). Requires the shared secret
/// `CIFIX_SES_WEBHOOK_SECRET` in `X-Cifix-Webhook-Secret` or as the basic-auth password (SNS
/// subscription URL `https://sns:SECRET@host/api/v1/integrations/ses/notifications`); SNS
/// message signatures are expected to be checked at the edge. Disabled (404) without a secret.
#[utoipa::path(post, path = "/integrations/ses/notifications", tag = "email",
    request_body(content = String, description = "SNS envelope or SES notification (JSON)", content_type = "text/plain"),
    responses((status = 200, body = SesResult), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn ses_notifications(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let presented =
        headers.get("x-cifix-webhook-secret").and_then(|v| v.to_str().ok()).map(str::to_string).or_else(|| {
            let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
            let decoded = STANDARD.decode(v.strip_prefix("Basic ")?.trim()).ok()?;
            let pair = String::from_utf8(decoded).ok()?;
            pair.split_once(':').map(|(_, p)| p.to_string())
        });
    if let Err(e) = s.email.check_webhook_secret(presented.as_deref()) {
        if matches!(e, EmailError::Unauthorized) {
            s.refusals.record(&s.db, &ctx, "email.webhook_refused", "wrong or missing secret").await;
        }
        return Err(e.into());
    }
    // SNS posts JSON as text/plain, so the content type is not checked.
    let value: serde_json::Value = parse_json(&body)?;
    let mut suppressed = 0;
    match ses::parse(&value) {
        ses::SesEvent::Suppress(list) => {
            for (address, reason) in list {
                match s.email.suppress(&ctx, &address, reason).await {
                    Ok(()) => suppressed += 1,
                    Err(EmailError::InvalidAddress) => tracing::warn!("SES notification names an invalid address"),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        ses::SesEvent::SubscriptionConfirmation => {
            // Never fetched from here: an operator confirms the subscription in the AWS console.
            tracing::warn!("SNS subscription confirmation received; confirm it in the AWS console");
        }
        ses::SesEvent::Ignored => {}
    }
    Ok((StatusCode::OK, Json(SesResult { suppressed })))
}
