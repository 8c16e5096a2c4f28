//! Email over real transports: a real SMTP server (started by each test, in the test process)
//! and the default `.eml` file transport. Links in received mail are followed against the API.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use chrono::Utc;
use cifix::{
    email::{Outgoing, Template, status, transport::Transport, worker::Worker},
    entities::{email_outbox, email_token},
    infra::db::Db,
};
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};

use crate::support::{
    PASSWORD, TestApp, access, free_port,
    smtp::{Received, Script, SmtpServer},
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn fast(env: &mut std::collections::HashMap<String, String>) {
    env.insert("CIFIX_EMAIL_POLL_MS".into(), "50".into());
    env.insert("CIFIX_EMAIL_RETRY_BASE_MS".into(), "100".into());
    env.insert("CIFIX_EMAIL_RETRY_MAX_MS".into(), "300".into());
    env.insert("CIFIX_PUBLIC_URL".into(), "https://learn.example.com".into());
}

async fn spawn_smtp(smtp: &SmtpServer, extra: &[(&str, &str)]) -> TestApp {
    let url = smtp.url();
    let extra: Vec<(String, String)> = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    TestApp::spawn_with(move |env| {
        fast(env);
        env.insert("SMTP_URL".into(), url);
        env.extend(extra);
    })
    .await
}

/// A mail worker as `cifix worker` builds it, from the application's own services.
fn worker(app: &TestApp) -> Worker {
    Worker::new(&app.state.email, Transport::from_config(&app.state.config).unwrap())
}

/// A second, independent worker with a connection pool of its own, as another process has.
async fn worker_of_another_process(app: &TestApp) -> Worker {
    let mut email = app.state.email.clone();
    email.db = Db::connect(&app.state.config.database_url, 4, app.state.config.db_acquire_timeout).await.unwrap();
    Worker::new(&email, Transport::from_config(&app.state.config).unwrap())
}

async fn rows(app: &TestApp) -> Vec<email_outbox::Model> {
    email_outbox::Entity::find().all(&app.db.conn).await.unwrap()
}

async fn row_to(app: &TestApp, to: &str) -> email_outbox::Model {
    email_outbox::Entity::find()
        .filter(email_outbox::Column::ToAddress.eq(to))
        .one(&app.db.conn)
        .await
        .unwrap()
        .unwrap()
}

async fn wait_row(
    app: &TestApp,
    to: &str,
    what: &str,
    pred: impl Fn(&email_outbox::Model) -> bool,
) -> email_outbox::Model {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = row_to(app, to).await;
        if pred(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "waiting for {what}: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn make_admin(app: &TestApp, email: &str) -> String {
    app.register(email).await;
    cifix::entities::user::Entity::update_many()
        .col_expr(cifix::entities::user::Column::Role, Expr::value("admin"))
        .filter(cifix::entities::user::Column::Email.eq(email))
        .exec(&app.db.conn)
        .await
        .unwrap();
    let res = app.login(email, PASSWORD).await;
    access(&res.json::<Value>().await.unwrap())
}

fn eml_files(app: &TestApp) -> Vec<PathBuf> {
    let dir = app.dir.path().join("outbox");
    let Ok(rd) = std::fs::read_dir(dir) else { return vec![] };
    rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "eml")).collect()
}

mod content;
mod delivery;
mod file_transport;
mod flows;
