//! Who is asking and from where: carried from the HTTP edge into domain code for auditing,
//! without the domain knowing anything about HTTP.

use uuid::Uuid;

#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// An authenticated user, as established for one request from a verified access token and the
/// current state of the user's session row.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub role: Role,
}

pub use crate::entities::enums::Role;
