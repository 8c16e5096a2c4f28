//! Accounts and sessions.

pub mod password;
pub mod service;
pub mod tokens;

pub use service::{AuthError, AuthService, TokenPair, UserView};
