//! The composition root: configuration → infrastructure → services, in one state every
//! entry point (server, worker, commands, tests) is built from. Knows nothing of HTTP.

use std::{ops::Deref, path::Path, sync::Arc};

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use rand::RngCore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    admin::AdminService,
    assessments::{AssessmentService, engine::LearningRules},
    auth::{AuthService, password::Hasher, throttle::LoginThrottle, tokens::TokenKeys},
    catalog::CatalogService,
    config::Config,
    email::EmailService,
    infra::{
        cache::Generation,
        db::Db,
        ratelimit::RateLimiter,
        realtime::{EventBus, Hub},
        redis::Redis,
        scanner::Scanner,
        storage::Storage,
    },
    kernel::facts::Reactor,
    progress::ProgressService,
    reactions::Reactions,
    submissions::SubmissionService,
    telemetry,
};

pub struct Inner {
    pub config: Config,
    pub db: Db,
    pub auth: AuthService,
    pub admin: AdminService,
    pub catalog: CatalogService,
    pub progress: ProgressService,
    pub assessments: AssessmentService,
    pub submissions: SubmissionService,
    pub email: EmailService,
    pub limiter: Arc<RateLimiter>,
    /// Audits security refusals, bounded.
    pub refusals: crate::kernel::audit::RefusalAudit,
    pub events: EventBus,
    pub redis: Option<Arc<Redis>>,
    pub metrics: PrometheusHandle,
    /// This instance's live connections (WebSocket and SSE), fed by `events`.
    pub hub: Arc<Hub>,
    /// Cancelled by `serve` the moment shutdown begins: live connections close (WebSocket
    /// 1001, SSE streams end) and background tasks stop. axum's graceful shutdown does not
    /// see upgraded WebSocket connections, so they need their own signal.
    pub shutdown: CancellationToken,
    /// Tracks live-connection tasks so that `serve` can wait for their goodbyes.
    pub live_tasks: TaskTracker,
    /// Set when shutdown begins: readiness answers 503 while requests are still served, so the
    /// load balancer moves traffic away before the listener closes.
    pub draining: std::sync::atomic::AtomicBool,
}

/// Most live connections one user may hold on one instance (tabs, devices).
pub const MAX_LIVE_CONNECTIONS_PER_USER: usize = 5;
/// Events queued for one live connection before it counts as too slow and is dropped.
pub const LIVE_QUEUE: usize = 64;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// In development without `CIFIX_JWT_SECRET`, a random secret is kept in the data directory so
/// that sign-ins survive a restart. Production refuses to start without one (see config).
fn jwt_secret(config: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = &config.jwt_secret {
        return Ok(s.clone());
    }
    let path = config.data_dir.join("jwt-secret");
    if let Ok(s) = std::fs::read(&path)
        && s.len() >= 32
    {
        return Ok(s);
    }
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let mut bytes = [0u8; 48];
    rand::rng().fill_bytes(&mut bytes);
    let secret = hex::encode(bytes).into_bytes();
    write_private(&path, &secret)?;
    tracing::info!(path = %path.display(), "generated a development JWT secret");
    Ok(secret)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(bytes)?;
    Ok(())
}

/// The key that seals stored secrets. In development without `CIFIX_SECRETS_KEY` it is derived
/// from the JWT secret (generated into the data dir when not set), so it survives restarts and
/// instances sharing a JWT secret share it; production refuses to start without one.
fn sealer(config: &Config, jwt_secret: &[u8]) -> crate::kernel::sealed::Sealer {
    use hmac::{Hmac, Mac};
    let key = config.secrets.key.unwrap_or_else(|| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(jwt_secret).expect("HMAC accepts any key length");
        mac.update(b"cifix development secrets key");
        mac.finalize().into_bytes().into()
    });
    crate::kernel::sealed::Sealer::new(&key, &config.secrets.previous_keys)
}

pub async fn connect_db(config: &Config) -> anyhow::Result<Db> {
    Db::connect(&config.database_url, config.db_max_connections, config.db_acquire_timeout)
        .await
        .with_context(|| format!("connecting to {}", crate::config::redact_url(&config.database_url)))
}

impl AppState {
    /// The one way to wire the application: connects, migrates, builds every service. Used
    /// by `serve`, `worker`, the other commands, the tests and the examples alike.
    pub async fn build(config: Config) -> anyhow::Result<AppState> {
        let db = connect_db(&config).await?;
        if config.migrate_on_start {
            db.migrate().await.context("running migrations")?;
        } else if !db.is_migrated().await.context("reading the migration state")? {
            tracing::warn!(
                "migrations are pending and CIFIX_MIGRATE_ON_START=false: not ready until `cifix migrate` runs"
            );
        }
        let secret = jwt_secret(&config)?;
        let keys = TokenKeys::new(
            &secret,
            &config.jwt_previous_secrets,
            &config.jwt_issuer,
            &config.jwt_audience,
            config.access_token_ttl,
        );
        let hasher = Hasher::new(config.bcrypt_cost, config.max_concurrent_hashes);
        let redis = match &config.redis_url {
            Some(url) => Some(Arc::new(Redis::new(url, &config.redis_prefix).context("REDIS_URL")?)),
            None => None,
        };
        let limiter = Arc::new(match &redis {
            Some(r) => RateLimiter::redis(r.clone()),
            None => RateLimiter::local(),
        });
        let email = EmailService::new(&config, db.clone(), &secret);
        let shutdown = CancellationToken::new();
        let events = match &redis {
            Some(r) => EventBus::with_redis(r.clone(), shutdown.clone()),
            None => EventBus::default(),
        };
        let auth = AuthService {
            db: db.clone(),
            hasher,
            keys,
            refresh_ttl: config.refresh_token_ttl,
            max_failed_logins_per_hour: config.max_failed_logins_per_hour,
            throttle: LoginThrottle {
                limiter: limiter.clone(),
                per_minute: config.login_account_rate_limit_per_minute,
                per_hour: config.max_failed_logins_per_hour,
                limits: config.limits.clone(),
            },
            email: email.clone(),
            events: events.clone(),
        };
        let hub = Hub::new(MAX_LIVE_CONNECTIONS_PER_USER, LIVE_QUEUE);
        hub.spawn_dispatcher(&events, shutdown.clone());
        crate::notifications::live::spawn_session_sweeper(db.clone(), hub.clone(), shutdown.clone());
        let admin = AdminService {
            db: db.clone(),
            events: events.clone(),
            cache: crate::admin::StatsCache::new(config.admin_stats_cache_ttl),
        };
        // Rules are loaded once at start: a bad file stops the process with its path and the error.
        let rules = Arc::new(match &config.learning_rules_path {
            Some(path) => LearningRules::load(path).map_err(|e| anyhow::anyhow!("CIFIX_LEARNING_RULES_PATH: {e}"))?,
            None => LearningRules::bundled(),
        });
        let reactor: Arc<dyn Reactor> = Arc::new(Reactions { events: events.clone(), email: email.clone(), rules });
        let assessments = AssessmentService {
            db: db.clone(),
            reactor: reactor.clone(),
            tool_url: config.assessment_tool_url.clone(),
            launch_ttl: config.assessment_launch_ttl,
            secret_overlap: config.integration_secret_overlap,
            max_pending: config.limits.max_pending_assessments,
            sealer: sealer(&config, &secret),
        };
        let submissions = SubmissionService {
            db: db.clone(),
            reactor: reactor.clone(),
            storage: Arc::new(
                Storage::from_config(&config.storage, &config.data_dir).context("configuring file storage")?,
            ),
            scanner: Arc::new(Scanner::from_config(&config.scanner)),
            limits: config.uploads.clone(),
            staging_root: crate::submissions::staging_root(&config.data_dir),
            slots: crate::submissions::slots::Slots::new(config.uploads.max_concurrent, 2),
        };
        if db.is_migrated().await.unwrap_or(false) {
            // Rows written before keys were sealed, or under a key since rotated, are sealed
            // under the current key now; until then they still open, so a failure here only
            // delays that.
            match assessments.reseal_client_keys().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(values = n, "sealed stored client signing keys under the current key"),
                Err(e) => {
                    tracing::warn!(error = %e, "sealing stored client signing keys failed; retried at next start")
                }
            }
        }
        Ok(AppState(Arc::new(Inner {
            config,
            catalog: CatalogService::new(
                db.clone(),
                match &redis {
                    Some(r) => Generation::redis(r.clone(), "catalog"),
                    None => Generation::local(),
                },
                reactor.clone(),
            ),
            progress: ProgressService { db: db.clone(), reactor },
            assessments,
            submissions,
            email,
            admin,
            db,
            auth,
            refusals: crate::kernel::audit::RefusalAudit { limiter: limiter.clone() },
            limiter,
            events,
            redis,
            metrics: telemetry::metrics_handle(),
            hub,
            shutdown,
            live_tasks: TaskTracker::new(),
            draining: Default::default(),
        })))
    }
}
