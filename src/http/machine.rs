//! `MachineClient`: the extractor of integration endpoints. It reads the (bounded) body, checks
//! the HMAC signature over timestamp, nonce, method, path and body hash, and spends the nonce.
//! A user's Bearer token carries none of this and is refused with 401, like any unsigned call.

use axum::{
    body::{Bytes, to_bytes},
    extract::{FromRequest, OriginalUri, Request},
    http::StatusCode,
};

use super::problem::ApiError;
use crate::{assessments::SignedRequest, state::AppState};

/// The headers of a signed machine request, for the OpenAPI document (the README shows how to
/// compute them).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct MachineHeaders {
    /// The client id.
    #[param(rename = "X-Cifix-Client")]
    client: uuid::Uuid,
    /// Unix seconds, within 300 s of the server clock.
    #[param(rename = "X-Cifix-Timestamp", pattern = "^[0-9]{1,12}$")]
    timestamp: String,
    /// 16 to 64 characters of `[A-Za-z0-9_-]`, never reused.
    #[param(rename = "X-Cifix-Nonce", pattern = "^[A-Za-z0-9_-]{16,64}$")]
    nonce: String,
    /// `v1=` and hex(HMAC-SHA256(SHA-256(secret), string to sign)).
    #[param(rename = "X-Cifix-Signature", pattern = "^v1=[0-9a-f]{64}$")]
    signature: String,
}

/// Largest integration body. `details` is limited to 64 KiB; the rest is headroom for skills.
pub const MAX_MACHINE_BODY: usize = 256 * 1024;

/// A verified machine client and the exact bytes it signed.
pub struct MachineClient {
    pub client_id: uuid::Uuid,
    pub body: Bytes,
}

fn header<'a>(req: &'a Request, name: &str) -> Result<&'a str, ApiError> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty() && v.len() <= 256).ok_or_else(|| {
        ApiError::unsigned("unauthorized", format!("a signed machine request is required ({name} is missing)"))
    })
}

impl FromRequest<AppState> for MachineClient {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let client_id = header(&req, "x-cifix-client")?.to_string();
        let timestamp = header(&req, "x-cifix-timestamp")?.to_string();
        let nonce = header(&req, "x-cifix-nonce")?.to_string();
        let signature = header(&req, "x-cifix-signature")?.to_string();
        let method = req.method().as_str().to_string();
        // The path as the client sent it (nesting strips the /api/v1 prefix from `uri()`).
        let path = req
            .extensions()
            .get::<OriginalUri>()
            .map(|u| u.0.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default())
            .unwrap_or_else(|| req.uri().path().to_string());
        let ctx = req.extensions().get::<crate::kernel::context::RequestContext>().cloned().unwrap_or_default();
        let body = to_bytes(req.into_body(), MAX_MACHINE_BODY).await.map_err(|_| {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "the request body is too large")
        })?;
        let client_id = state
            .assessments
            .verify(SignedRequest {
                client_id: &client_id,
                timestamp: &timestamp,
                nonce: &nonce,
                signature: &signature,
                method: &method,
                path: &path,
                body: &body,
            })
            .await;
        let client_id = match client_id {
            Ok(id) => id,
            Err(e) => {
                if let crate::assessments::AssessError::Unauthenticated(reason) = &e {
                    state.refusals.record(&state.db, &ctx, "integration.request_refused", reason).await;
                }
                return Err(e.into());
            }
        };
        Ok(MachineClient { client_id, body })
    }
}
