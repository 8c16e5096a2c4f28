//! Running the application: the HTTP server and the outbox worker, on a state built by
//! [`crate::state::AppState::build`].

mod listener;

use std::time::Duration;

use tokio::net::TcpListener;

use crate::{
    email::{transport::Transport, worker::Worker},
    http,
    state::AppState,
};

/// Runs an outbox worker until `shutdown` resolves (`cifix worker`).
pub async fn run_worker(
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    Worker::new(&state.email, Transport::from_config(&state.config)?).run(rx).await;
    Ok(())
}

/// Serves until `shutdown` resolves, then drains in-flight requests for at most the configured
/// grace period.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grace = state.config.shutdown_grace;
    let housekeeping = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                state.limiter.retain_recent();
                if let Err(e) = crate::idempotency::purge_expired(&state.db).await {
                    tracing::warn!(error = %e, "idempotency purge failed");
                }
            }
        })
    };
    let uploads = upload_housekeeping(state.clone());
    let draining = state.clone();
    let live_tasks = state.live_tasks.clone();
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let email_worker = if state.config.email.worker_in_serve {
        let worker = Worker::new(&state.email, Transport::from_config(&state.config)?);
        Some(tokio::spawn(worker.run(rx.clone())))
    } else {
        None
    };
    let state_config = state.config.clone();
    let metrics_listener =
        state.config.secrets.metrics_bind.map(|addr| tokio::spawn(serve_metrics(state.clone(), addr)));
    let app = http::router(state);
    tokio::spawn(async move {
        shutdown.await;
        // Readiness turns 503 and live clients are told to reconnect (to another instance)
        // while requests are still served; only after the delay does the listener close.
        let delay = draining.config.shutdown_delay;
        draining.draining.store(true, std::sync::atomic::Ordering::Release);
        draining.shutdown.cancel();
        if !delay.is_zero() {
            tracing::info!(delay_secs = delay.as_secs(), "shutting down: not ready, still serving");
            tokio::time::sleep(delay).await;
        }
        let _ = tx.send(true);
    });
    let drain_started = std::sync::Arc::new(std::sync::OnceLock::<tokio::time::Instant>::new());
    let drain_started_w = drain_started.clone();
    let mut rx_started = rx.clone();
    tokio::spawn(async move {
        let _ = rx_started.wait_for(|v| *v).await;
        let _ = drain_started_w.set(tokio::time::Instant::now());
    });
    let mut rx_deadline = rx.clone();
    let settings = listener::Settings {
        max_connections: connection_cap(&state_config),
        header_read_timeout: state_config.limits.header_read_timeout,
    };
    let server = listener::run(listener, app, settings, async move {
        let _ = rx.wait_for(|v| *v).await;
        tracing::info!("shutting down: no new connections, draining in-flight requests");
    });
    let deadline = async move {
        let _ = rx_deadline.wait_for(|v| *v).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        r = server => r?,
        _ = deadline => tracing::warn!(grace_secs = grace.as_secs(), "drain deadline passed; closing remaining connections"),
    }
    // Live connections said goodbye when shutdown began; wait for them within what is left of
    // the drain deadline.
    live_tasks.close();
    let left = drain_started.get().map(|t| grace.saturating_sub(t.elapsed())).unwrap_or(Duration::from_secs(1));
    if tokio::time::timeout(left, live_tasks.wait()).await.is_err() {
        tracing::warn!(open = live_tasks.len(), "live connections still open at the drain deadline");
    }
    housekeeping.abort();
    uploads.abort();
    if let Some(m) = metrics_listener {
        m.abort();
    }
    if let Some(w) = email_worker {
        // The worker stops between passes; a send in flight gets a moment to finish, and if
        // it cannot, its lease expires and another worker delivers the email.
        if tokio::time::timeout(Duration::from_secs(5), w).await.is_err() {
            tracing::warn!("email worker still busy at shutdown; its claimed emails will be retried after the lease");
        }
    }
    Ok(())
}

/// Retries malware scans that could not run during an upload and sweeps what failed uploads
/// left behind, each on its own interval. Every instance runs it: a scan is claimed with a
/// lease, and sweeping twice is harmless.
fn upload_housekeeping(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let limits = state.config.uploads.clone();
        let mut scans = tokio::time::interval(limits.scan_retry_interval);
        let mut sweeps = tokio::time::interval(limits.janitor_interval);
        loop {
            tokio::select! {
                _ = scans.tick() => {
                    if let Err(e) = state.submissions.retry_scans().await {
                        tracing::warn!(error = %e, "malware scan retries failed");
                    }
                }
                _ = sweeps.tick() => {
                    if let Err(e) = state.submissions.sweep().await {
                        tracing::warn!(error = %e, "sweeping stale uploads failed");
                    }
                }
            }
        }
    })
}

/// `/metrics` alone on its own address (`CIFIX_METRICS_BIND`), for a scraper on a private
/// network: no token, and nothing else of the API reachable there.
async fn serve_metrics(state: AppState, addr: std::net::SocketAddr) {
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%addr, error = %e, "CIFIX_METRICS_BIND: cannot listen; metrics are not served there");
            return;
        }
    };
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let state = state.clone();
            async move { http::ops::render_metrics(&state) }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the metrics listener stopped");
    }
}

/// The connection cap: configured, or what the file-descriptor limit leaves.
fn connection_cap(config: &crate::config::Config) -> usize {
    config.limits.max_connections.unwrap_or_else(|| listener::default_max_connections(config.db_max_connections))
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
