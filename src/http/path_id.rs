//! The `{id}` of a path, parsed. A malformed id names nothing that exists, so it is the same
//! 404 problem as an unknown one, never a plain-text rejection.

use axum::{
    extract::{FromRequestParts, Path},
    http::request::Parts,
};
use uuid::Uuid;

use super::problem::ApiError;

pub struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await.map_err(|_| ApiError::not_found())?;
        Uuid::parse_str(&raw).map(PathId).map_err(|_| ApiError::not_found())
    }
}
