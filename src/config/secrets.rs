//! The server key that seals stored secrets, and who may read `/metrics`.

use std::net::SocketAddr;

use base64::Engine;

use super::{ConfigError, Environment, err, list, parse_bool};

#[derive(Clone, Default)]
pub struct SecretsConfig {
    /// Seals machine clients' signing keys at rest; `None` in development derives one from the
    /// JWT secret (kept in the data dir when generated).
    pub key: Option<[u8; 32]>,
    /// Keys that still open values sealed before a rotation; values are sealed again at start.
    pub previous_keys: Vec<[u8; 32]>,
    /// `/metrics` on the main listener requires `Authorization: Bearer <token>` when set.
    pub metrics_token: Option<String>,
    /// Serves `/metrics` (only) on this address too, without a token: for a private network.
    pub metrics_bind: Option<SocketAddr>,
    /// Whether `/metrics` on the main listener answers without a token (development default).
    pub metrics_public: bool,
}

fn key(var: &'static str, value: &str) -> Result<[u8; 32], ConfigError> {
    let bytes = hex::decode(value)
        .ok()
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(value).ok())
        .filter(|b| b.len() == 32)
        .ok_or_else(|| err(var, "must be 32 random bytes, as 64 hex characters or base64"))?;
    Ok(bytes.try_into().unwrap())
}

pub(super) fn secrets_config(
    var: &impl Fn(&str) -> Option<String>,
    env: Environment,
) -> Result<SecretsConfig, ConfigError> {
    let current = var("CIFIX_SECRETS_KEY").map(|v| key("CIFIX_SECRETS_KEY", &v)).transpose()?;
    if current.is_none() && env == Environment::Production {
        return Err(err(
            "CIFIX_SECRETS_KEY",
            "is required with CIFIX_ENV=production (32 random bytes as hex or base64: `openssl rand -hex 32`)",
        ));
    }
    let previous_keys = list(var, "CIFIX_SECRETS_PREVIOUS_KEYS")
        .iter()
        .map(|v| key("CIFIX_SECRETS_PREVIOUS_KEYS", v))
        .collect::<Result<_, _>>()?;
    let metrics_token = var("CIFIX_METRICS_TOKEN");
    if metrics_token.as_ref().is_some_and(|t| t.len() < 32 || t.chars().any(|c| c.is_control() || c == ' ')) {
        return Err(err("CIFIX_METRICS_TOKEN", "must be at least 32 characters without spaces"));
    }
    let metrics_bind = match var("CIFIX_METRICS_BIND") {
        None => None,
        Some(v) => Some(v.parse().map_err(|_| err("CIFIX_METRICS_BIND", format!("invalid address {v:?}")))?),
    };
    let metrics_public = parse_bool(var, "CIFIX_METRICS_PUBLIC", env == Environment::Development)?;
    Ok(SecretsConfig { key: current, previous_keys, metrics_token, metrics_bind, metrics_public })
}
