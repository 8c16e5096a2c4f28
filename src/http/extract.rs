//! Extractors that turn every bad input into a problem+json naming what is wrong.

use std::sync::{Arc, OnceLock};

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header, request::Parts},
};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::problem::{ApiError, FieldError};
use crate::{
    auth::UserView,
    kernel::context::{Principal, RequestContext, Role},
    kernel::pagination::PageRequest,
    state::AppState,
};

/// JSON body: 415 for another content type, 413 over the size limit, 400 for malformed JSON,
/// 422 naming the field for a missing, unknown or mistyped one.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "send the body as application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e: BytesRejection| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "the request body is too large")
            } else {
                ApiError::bad_request("the request body could not be read")
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parsed in two steps: first the JSON itself (any syntax error is a 400), then the value into
/// `T`, so that every mismatch of shape, an enum given a number included, is a 422 naming the
/// field. Between them, a float with no fraction (`753.0`) becomes the integer it equals, as
/// JSON Schema counts it an integer.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|_| ApiError::bad_request("the request body is not valid JSON"))?;
    // Every body is an object. serde would also read a struct from an array of its fields in
    // order (`[null, null]`), which no client means and no schema allows.
    if !value.is_object() {
        return Err(ApiError::field("", "the body must be a JSON object"));
    }
    integral_floats_as_integers(&mut value);
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        // serde names a missing or unknown field in its message, not in the path.
        let message = e.into_inner().to_string();
        let field = field_from_message(&message).unwrap_or(if path == "." { String::new() } else { path });
        ApiError::validation(vec![FieldError { field, message }])
    })
}

fn integral_floats_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // Beyond 2^53 a float no longer names one integer; leave it for the type to refuse.
            if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
                *value = if f < 0.0 { Value::from(f as i64) } else { Value::from(f as u64) };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

fn field_from_message(msg: &str) -> Option<String> {
    for prefix in ["missing field `", "unknown field `"] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            return rest.split('`').next().map(str::to_string);
        }
    }
    None
}

/// Query string with problem+json rejections.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

/// A query string into `T`, with a 422 naming the parameter that is missing, unknown or malformed.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let pairs = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize::<_, T>(pairs).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let field = field_from_message(&message).unwrap_or(if path == "." { "query".into() } else { path });
        ApiError::validation(vec![FieldError { field, message }])
    })
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    #[param(pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

impl ListParams {
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        page_request(self.limit, self.cursor.as_deref())
    }
}

/// `?limit=&cursor=` of any list, with a 422 naming the bad one.
pub fn page_request(limit: Option<u64>, cursor: Option<&str>) -> Result<PageRequest, ApiError> {
    PageRequest::parse(limit, cursor).map_err(|(f, e)| ApiError::field(f, e.to_string()))
}

/// The request's id, client IP and user agent, set by the context middleware.
pub struct Ctx(pub RequestContext);

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Ctx(parts.extensions.get::<RequestContext>().cloned().unwrap_or_default()))
    }
}

/// The token of `Authorization: Bearer <token>`, the one reading of that header for every
/// guard and handler (RFC 6750 §2.1): the scheme in any case (RFC 7235), exactly one space,
/// then a non-empty b64token and nothing else. Anything else is no token at all.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.len() >= 4096 {
        return None;
    }
    let body = token.trim_end_matches('=');
    let b64token = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
    (!body.is_empty() && body.bytes().all(b64token)).then_some(token)
}

/// Filled by [`Auth`] so that the access log can name the user.
#[derive(Clone, Default)]
pub struct UserSlot(pub Arc<OnceLock<Uuid>>);

/// An authenticated caller. Missing, malformed, forged, expired and revoked tokens are all 401.
pub struct Auth(pub Principal, UserView);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token =
            bearer_token(&parts.headers).ok_or_else(|| match parts.headers.contains_key(header::AUTHORIZATION) {
                true => ApiError::invalid_token(false),
                false => ApiError::unauthorized(),
            })?;
        let (principal, user) = match parts.extensions.get::<super::middleware::Authenticated>() {
            Some(a) => (a.0.clone(), a.1.clone()),
            None => state.auth.authenticate_user(token).await?,
        };
        if let Some(slot) = parts.extensions.get::<UserSlot>() {
            let _ = slot.0.set(principal.user_id);
        }
        Ok(Auth(principal, user))
    }
}

impl Auth {
    /// The caller as they were when their session was checked, this request.
    pub fn user(&self) -> &UserView {
        &self.1
    }

    pub fn require(&self, roles: &[Role]) -> Result<&Principal, ApiError> {
        // An endpoint a role may not use is answered like one that does not exist.
        if roles.contains(&self.0.role) { Ok(&self.0) } else { Err(ApiError::not_found()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Option<String> {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        bearer_token(&h).map(str::to_string)
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_the_token_strict() {
        for ok in ["Bearer a.b-c_d~e+f/g==", "bearer a.b", "BEARER a.b", "bEaReR x"] {
            assert!(parse(ok).is_some(), "{ok}");
        }
        assert_eq!(parse("bearer abc").as_deref(), Some("abc"));
        for bad in
            ["Bearer", "Bearer ", "Bearer  abc", "Bearer abc def", "Bearerabc", "Basic abc", "Bearer a=b", "Bearer ="]
        {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(parse(&format!("Bearer {}", "a".repeat(5000))), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
