//! Configuration from the environment (and an optional `.env`), validated once at start.
//!
//! Parsing goes through a lookup function rather than `std::env` directly so that every rule
//! is unit-testable, and every failure names the variable in one line.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use ipnet::IpNet;

mod email;
mod limits;
mod secrets;
mod storage;
mod uploads;

pub use email::EmailConfig;
use email::email_config;
pub use limits::Limits;
pub use secrets::SecretsConfig;
pub use storage::{ClamdAddress, S3Config, ScannerConfig, StorageConfig, is_key_text};
pub use uploads::UploadLimits;

#[derive(Debug, thiserror::Error)]
#[error("configuration error: {var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

pub(crate) fn err(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { var, message: message.into() }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone)]
pub struct Config {
    pub env: Environment,
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub db_max_connections: u32,
    /// How long a request waits for a database connection before it is answered 503: when the
    /// database is down, clients hear so at once instead of after a long wait.
    pub db_acquire_timeout: Duration,
    /// `false` leaves migrations to `cifix migrate` run as a pre-deploy step; the instance is
    /// then not ready while migrations are pending.
    pub migrate_on_start: bool,
    pub redis_url: Option<String>,
    /// Prefix of every Redis key, so several deployments (or tests) can share one Redis.
    pub redis_prefix: String,
    pub public_url: String,
    pub log_format: LogFormat,

    /// Current signing secret; `None` in development means "generate and keep one in the data dir".
    pub jwt_secret: Option<Vec<u8>>,
    /// Secrets still accepted for verification, so a key rotation logs nobody out.
    pub jwt_previous_secrets: Vec<Vec<u8>>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,

    pub bcrypt_cost: u32,
    pub max_concurrent_hashes: usize,

    pub cors_origins: Vec<String>,
    pub trusted_proxies: Vec<IpNet>,
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    /// After SIGTERM, how long the instance keeps serving while its readiness says 503, so the
    /// load balancer stops sending before the listener closes.
    pub shutdown_delay: Duration,

    pub rate_limit_per_minute: u32,
    pub auth_rate_limit_per_minute: u32,
    pub login_account_rate_limit_per_minute: u32,
    pub max_failed_logins_per_hour: u32,

    /// Base URL of the assessment tool; `launch_url` is this plus `?launch_token=…`.
    pub assessment_tool_url: String,
    pub assessment_launch_ttl: Duration,
    /// How long a rotated client secret keeps working, so the tool can be redeployed.
    pub integration_secret_overlap: Duration,
    /// A learning-rules file replacing the bundled `config/learning-rules.json`.
    pub learning_rules_path: Option<PathBuf>,
    /// How long one instance reuses the admin statistics it computed; zero computes them on
    /// every request.
    pub admin_stats_cache_ttl: Duration,
    /// Answers carry `Server-Timing` (time in the handler, SQL statements run): for
    /// developers' tools and the benchmark, off in production where it tells strangers how the
    /// service works inside.
    pub server_timing: bool,
    pub email: EmailConfig,
    pub limits: Limits,
    pub secrets: SecretsConfig,
    pub uploads: UploadLimits,
    pub storage: StorageConfig,
    pub scanner: ScannerConfig,
}

impl std::fmt::Debug for Config {
    // Hand-written so that secrets can never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("env", &self.env)
            .field("bind", &self.bind)
            .field("data_dir", &self.data_dir)
            .field("database", &redact_url(&self.database_url))
            .field("redis", &self.redis_url.as_deref().map(redact_url))
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<set>"))
            .field("secrets_key", &self.secrets.key.as_ref().map(|_| "<set>"))
            .field("metrics_token", &self.secrets.metrics_token.as_ref().map(|_| "<set>"))
            .field("smtp", &self.email.smtp_url.as_deref().map(redact_url))
            .field("storage", &self.storage)
            .field("scanner", &self.scanner)
            .finish_non_exhaustive()
    }
}

/// Drops the password from a connection URL before it is shown anywhere.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |k: &str| get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());

        let env = match var("CIFIX_ENV").as_deref() {
            None | Some("development") | Some("dev") => Environment::Development,
            Some("production") | Some("prod") => Environment::Production,
            Some(other) => {
                return Err(err("CIFIX_ENV", format!("expected development or production, got {other:?}")));
            }
        };
        // Hosts such as Railway give the port to listen on in `PORT`; then every interface.
        let bind = match (var("CIFIX_BIND"), var("PORT")) {
            (None, Some(_)) => SocketAddr::from(([0u16; 8], parse(&var, "PORT", 8080u16)?)),
            _ => parse(&var, "CIFIX_BIND", "127.0.0.1:8080".parse().unwrap())?,
        };
        let data_dir = PathBuf::from(var("CIFIX_DATA_DIR").unwrap_or_else(|| "./data".into()));
        let jwt_secret = var("CIFIX_JWT_SECRET").map(String::into_bytes);
        match &jwt_secret {
            Some(s) if s.len() < 32 => {
                return Err(err("CIFIX_JWT_SECRET", "must be at least 32 bytes"));
            }
            None if env == Environment::Production => {
                return Err(err("CIFIX_JWT_SECRET", "is required with CIFIX_ENV=production (at least 32 bytes)"));
            }
            _ => {}
        }
        let database_url =
            var("DATABASE_URL").unwrap_or_else(|| format!("sqlite://{}?mode=rwc", data_dir.join("cifix.db").display()));
        let is_sqlite = database_url.starts_with("sqlite:");
        if !is_sqlite && !database_url.starts_with("postgres://") && !database_url.starts_with("postgresql://") {
            return Err(err("DATABASE_URL", "must start with postgres:// or sqlite://"));
        }
        let allow_sqlite = parse_bool(&var, "CIFIX_ALLOW_SQLITE_IN_PRODUCTION", false)?;
        if env == Environment::Production && is_sqlite && !allow_sqlite {
            return Err(err(
                "DATABASE_URL",
                "SQLite is refused with CIFIX_ENV=production; use PostgreSQL or set CIFIX_ALLOW_SQLITE_IN_PRODUCTION=true",
            ));
        }
        let redis_url = var("REDIS_URL");
        if let Some(url) = &redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(err("REDIS_URL", "must start with redis:// or rediss://"));
        }

        let jwt_previous_secrets: Vec<Vec<u8>> =
            list(&var, "CIFIX_JWT_PREVIOUS_SECRETS").into_iter().map(String::into_bytes).collect();
        if jwt_previous_secrets.iter().any(|s| s.len() < 32) {
            return Err(err("CIFIX_JWT_PREVIOUS_SECRETS", "each secret must be at least 32 bytes"));
        }

        let bcrypt_cost: u32 = parse(&var, "CIFIX_BCRYPT_COST", 10)?;
        if !(4..=16).contains(&bcrypt_cost) {
            return Err(err("CIFIX_BCRYPT_COST", "must be between 4 and 16"));
        }
        if env == Environment::Production && bcrypt_cost < 10 {
            return Err(err("CIFIX_BCRYPT_COST", "must be at least 10 in production"));
        }

        let trusted_proxies = list(&var, "CIFIX_TRUSTED_PROXIES")
            .into_iter()
            .map(|p| {
                p.parse::<IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| err("CIFIX_TRUSTED_PROXIES", format!("{p:?} is not an IP address or CIDR")))
            })
            .collect::<Result<_, _>>()?;
        let cors_origins = list(&var, "CIFIX_CORS_ORIGINS");
        for o in &cors_origins {
            if !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/') || o == "*" {
                return Err(err("CIFIX_CORS_ORIGINS", format!("{o:?} is not an origin like https://app.example.com")));
            }
        }

        let log_format = match var("CIFIX_LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(o) => {
                return Err(err("CIFIX_LOG_FORMAT", format!("expected text or json, got {o:?}")));
            }
        };

        let assessment_tool_url = var("CIFIX_ASSESSMENT_TOOL_URL").unwrap_or_else(|| "http://localhost:8501".into());
        if !(assessment_tool_url.starts_with("http://") || assessment_tool_url.starts_with("https://"))
            || assessment_tool_url.contains('?')
            || assessment_tool_url.contains('#')
        {
            return Err(err("CIFIX_ASSESSMENT_TOOL_URL", "must be an http(s) URL without query or fragment"));
        }

        let positive = |name: &'static str, v: u64| {
            if v == 0 { Err(err(name, "must be greater than 0")) } else { Ok(v) }
        };

        // Statistics older than an hour would mislead the operator reading them.
        let admin_stats_cache_ttl = Duration::from_secs(parse(&var, "CIFIX_ADMIN_STATS_CACHE_SECS", 15)?);
        if admin_stats_cache_ttl > Duration::from_secs(3600) {
            return Err(err("CIFIX_ADMIN_STATS_CACHE_SECS", "must be at most 3600"));
        }

        let email = email_config(&var, env, &positive)?;
        let limits = limits::limits(&var, &positive)?;
        let secrets = secrets::secrets_config(&var, env)?;
        let uploads = uploads::upload_limits(&var, &positive)?;
        let storage = storage::storage_config(&var, env)?;
        let scanner = storage::scanner_config(&var, &positive)?;

        Ok(Config {
            env,
            bind,
            data_dir,
            database_url,
            db_max_connections: positive("CIFIX_DB_MAX_CONNECTIONS", parse(&var, "CIFIX_DB_MAX_CONNECTIONS", 20)?)?
                as u32,
            db_acquire_timeout: Duration::from_millis(positive(
                "CIFIX_DB_ACQUIRE_TIMEOUT_MS",
                parse(&var, "CIFIX_DB_ACQUIRE_TIMEOUT_MS", 1_000)?,
            )?),
            migrate_on_start: parse_bool(&var, "CIFIX_MIGRATE_ON_START", true)?,
            redis_url,
            redis_prefix: var("CIFIX_REDIS_PREFIX").unwrap_or_else(|| "cifix:".into()),
            public_url: var("CIFIX_PUBLIC_URL").unwrap_or_else(|| format!("http://{bind}")),
            log_format,
            jwt_secret,
            jwt_previous_secrets,
            jwt_issuer: var("CIFIX_JWT_ISSUER").unwrap_or_else(|| "cifix".into()),
            jwt_audience: var("CIFIX_JWT_AUDIENCE").unwrap_or_else(|| "cifix-api".into()),
            access_token_ttl: Duration::from_secs(positive(
                "CIFIX_ACCESS_TOKEN_TTL_SECS",
                parse(&var, "CIFIX_ACCESS_TOKEN_TTL_SECS", 900)?,
            )?),
            refresh_token_ttl: Duration::from_secs(
                positive("CIFIX_REFRESH_TOKEN_TTL_DAYS", parse(&var, "CIFIX_REFRESH_TOKEN_TTL_DAYS", 30)?)? * 86_400,
            ),
            bcrypt_cost,
            // One hash per core the process may really use (std reads the cgroup CPU quota and
            // the affinity mask): more would only time-share the cores, so every sign-in in the
            // batch would take that many times as long. The rest wait in the semaphore's FIFO.
            max_concurrent_hashes: positive(
                "CIFIX_MAX_CONCURRENT_HASHES",
                parse(
                    &var,
                    "CIFIX_MAX_CONCURRENT_HASHES",
                    std::thread::available_parallelism().map_or(1, |n| n.get()) as u64,
                )?,
            )? as usize,
            cors_origins,
            trusted_proxies,
            body_limit_bytes: positive("CIFIX_BODY_LIMIT_BYTES", parse(&var, "CIFIX_BODY_LIMIT_BYTES", 1_048_576)?)?
                as usize,
            request_timeout: Duration::from_secs(positive(
                "CIFIX_REQUEST_TIMEOUT_SECS",
                parse(&var, "CIFIX_REQUEST_TIMEOUT_SECS", 15)?,
            )?),
            shutdown_grace: Duration::from_secs(parse(&var, "CIFIX_SHUTDOWN_GRACE_SECS", 20)?),
            // Behind a load balancer the pause is what keeps a restart from refusing requests;
            // on a developer's machine it would only make Ctrl-C slow.
            shutdown_delay: Duration::from_secs(parse(
                &var,
                "CIFIX_SHUTDOWN_DELAY_SECS",
                if env == Environment::Production { 5 } else { 0 },
            )?),
            rate_limit_per_minute: positive(
                "CIFIX_RATE_LIMIT_PER_MINUTE",
                parse(&var, "CIFIX_RATE_LIMIT_PER_MINUTE", 600)?,
            )? as u32,
            auth_rate_limit_per_minute: positive(
                "CIFIX_AUTH_RATE_LIMIT_PER_MINUTE",
                parse(&var, "CIFIX_AUTH_RATE_LIMIT_PER_MINUTE", 300)?,
            )? as u32,
            login_account_rate_limit_per_minute: positive(
                "CIFIX_LOGIN_ACCOUNT_RATE_LIMIT_PER_MINUTE",
                parse(&var, "CIFIX_LOGIN_ACCOUNT_RATE_LIMIT_PER_MINUTE", 10)?,
            )? as u32,
            max_failed_logins_per_hour: positive(
                "CIFIX_MAX_FAILED_LOGINS_PER_HOUR",
                parse(&var, "CIFIX_MAX_FAILED_LOGINS_PER_HOUR", 100)?,
            )? as u32,
            assessment_tool_url,
            assessment_launch_ttl: Duration::from_secs(positive(
                "CIFIX_ASSESSMENT_LAUNCH_TTL_SECS",
                parse(&var, "CIFIX_ASSESSMENT_LAUNCH_TTL_SECS", 7200)?,
            )?),
            integration_secret_overlap: Duration::from_secs(parse(
                &var,
                "CIFIX_INTEGRATION_SECRET_OVERLAP_SECS",
                86_400,
            )?),
            learning_rules_path: var("CIFIX_LEARNING_RULES_PATH").map(PathBuf::from),
            admin_stats_cache_ttl,
            server_timing: parse_bool(&var, "CIFIX_SERVER_TIMING", false)?,
            email,
            limits,
            secrets,
            uploads,
            storage,
            scanner,
        })
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    /// HSTS only makes sense when clients reach us over TLS (directly or via the proxy).
    pub fn behind_tls(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

pub(crate) fn parse<T: std::str::FromStr>(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    match var(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| err(name, format!("invalid value {v:?}"))),
    }
}

pub(crate) fn parse_bool(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match var(name).as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(v) => Err(err(name, format!("expected true or false, got {v:?}"))),
    }
}

pub(crate) fn list(var: &impl Fn(&str) -> Option<String>, name: &str) -> Vec<String> {
    var(name)
        .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    pub(super) fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_embedded_and_local() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(cfg(&[("PORT", "3000")]).unwrap().bind.to_string(), "[::]:3000", "PORT alone: every interface");
        let both = cfg(&[("PORT", "3000"), ("CIFIX_BIND", "127.0.0.1:9000")]).unwrap();
        assert_eq!(both.bind.to_string(), "127.0.0.1:9000", "an explicit bind wins");
        assert_eq!(cfg(&[("PORT", "http")]).unwrap_err().var, "PORT");
        assert!(c.shutdown_delay.is_zero() && c.migrate_on_start);
        assert!(c.is_sqlite());
        assert!(c.redis_url.is_none());
        assert!(c.cors_origins.is_empty());
        assert_eq!(c.bcrypt_cost, 10);
        assert_eq!(c.access_token_ttl, Duration::from_secs(900));
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(c.max_concurrent_hashes, cores, "one hash per usable core");
        assert_eq!(cfg(&[("CIFIX_MAX_CONCURRENT_HASHES", "3")]).unwrap().max_concurrent_hashes, 3);
    }

    #[test]
    fn production_requires_a_long_secret_and_refuses_sqlite() {
        let e = cfg(&[("CIFIX_ENV", "production"), ("DATABASE_URL", "postgres://x/y")]).unwrap_err();
        assert_eq!(e.var, "CIFIX_JWT_SECRET");
        let e = cfg(&[("CIFIX_ENV", "production"), ("CIFIX_JWT_SECRET", "short")]).unwrap_err();
        assert_eq!(e.var, "CIFIX_JWT_SECRET");
        let long = "x".repeat(32);
        let e = cfg(&[("CIFIX_ENV", "production"), ("CIFIX_JWT_SECRET", &long)]).unwrap_err();
        assert_eq!(e.var, "DATABASE_URL");
        let prod = [
            ("CIFIX_ENV", "production"),
            ("CIFIX_JWT_SECRET", long.as_str()),
            ("CIFIX_ALLOW_SQLITE_IN_PRODUCTION", "true"),
            ("SMTP_URL", "smtps://u:p@email-smtp.example.com"),
            ("CIFIX_MAIL_FROM", "CIFIX <no-reply@example.com>"),
        ];
        assert_eq!(cfg(&prod).unwrap_err().var, "CIFIX_SECRETS_KEY", "no sealing key, no start");
        let key = "ab".repeat(32);
        let c = cfg(&[prod.as_slice(), &[("CIFIX_SECRETS_KEY", key.as_str())]].concat()).unwrap();
        assert!(!c.secrets.metrics_public, "metrics need a token or their own address in production");
        let without_smtp: Vec<_> =
            prod.iter().copied().filter(|(k, _)| !k.starts_with("SMTP") && !k.starts_with("CIFIX_MAIL")).collect();
        let e = cfg(&[without_smtp.as_slice(), &[("CIFIX_SECRETS_KEY", key.as_str())]].concat()).unwrap_err();
        assert_eq!(e.var, "SMTP_URL", "no silent .eml files in production");
        let told = [("CIFIX_SECRETS_KEY", key.as_str()), ("CIFIX_ALLOW_FILE_EMAIL_IN_PRODUCTION", "true")];
        assert!(cfg(&[without_smtp.as_slice(), &told].concat()).is_ok());
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (k, v) in [
            ("CIFIX_BIND", "nope"),
            ("CIFIX_BCRYPT_COST", "99"),
            ("CIFIX_TRUSTED_PROXIES", "10.0.0.0/99"),
            ("CIFIX_CORS_ORIGINS", "*"),
            ("DATABASE_URL", "mysql://x"),
            ("CIFIX_LOG_FORMAT", "xml"),
            ("CIFIX_RATE_LIMIT_PER_MINUTE", "0"),
            ("SMTP_URL", "http://mail.example.com"),
            ("SMTP_URL", "smtp://"),
            ("CIFIX_MAIL_FROM", "not an address"),
            ("CIFIX_MAIL_FROM", "Eve <eve@example.com>\r\nBcc: x@example.com"),
            ("CIFIX_EMAIL_MAX_ATTEMPTS", "0"),
            ("CIFIX_EMAIL_RETRY_BASE_MS", "-1"),
            ("CIFIX_EMAIL_WORKER", "maybe"),
            ("CIFIX_SES_WEBHOOK_SECRET", "short"),
            ("CIFIX_AUTH_SHARED_NETWORKS", "10.0.0.0/40"),
            ("CIFIX_AUTH_FAILURES_PER_MINUTE", "0"),
            ("CIFIX_MAX_CONNECTIONS", "0"),
            ("CIFIX_HEADER_READ_TIMEOUT_SECS", "soon"),
            ("CIFIX_MAX_PENDING_ASSESSMENTS", "0"),
            ("CIFIX_SECRETS_KEY", "too short"),
            ("CIFIX_SECRETS_PREVIOUS_KEYS", "abcd"),
            ("CIFIX_METRICS_TOKEN", "short"),
            ("CIFIX_METRICS_BIND", "nowhere"),
        ] {
            let e = cfg(&[(k, v)]).unwrap_err();
            assert_eq!(e.var, k, "{e}");
            assert!(e.to_string().contains(k));
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = cfg(&[
            ("CIFIX_JWT_SECRET", "supersecretsupersecretsupersecret1"),
            ("DATABASE_URL", "postgres://u:hunter2@db/x"),
            ("SMTP_URL", "smtps://ses-user:smtp-hunter3@email-smtp.example.com"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("supersecret"));
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains("smtp-hunter3"));
    }
}
