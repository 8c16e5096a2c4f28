//! Email delivery settings: transport, sender, and how the outbox workers retry.

use std::time::Duration;

use super::{ConfigError, Environment, err, parse, parse_bool};

/// Email delivery: transport, sender, and how the outbox workers retry.
#[derive(Clone, Debug)]
pub struct EmailConfig {
    /// `smtp://` (plain, or STARTTLS with `?tls=required`) or `smtps://`, credentials in the URL.
    /// `None` writes `.eml` files under `CIFIX_DATA_DIR/outbox` instead.
    pub smtp_url: Option<String>,
    pub from: String,
    pub product_name: String,
    /// Run an outbox worker inside `cifix serve` (turn off when `cifix worker` runs apart).
    pub worker_in_serve: bool,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub lease: Duration,
    pub poll_interval: Duration,
    /// Messages claimed and sent concurrently by one worker.
    pub concurrency: usize,
    pub smtp_timeout: Duration,
    /// Shared secret the SES/SNS webhook must present; without one the webhook is disabled.
    pub ses_webhook_secret: Option<String>,
}

pub(super) fn email_config(
    var: &impl Fn(&str) -> Option<String>,
    env: Environment,
    positive: &impl Fn(&'static str, u64) -> Result<u64, ConfigError>,
) -> Result<EmailConfig, ConfigError> {
    let smtp_url = var("SMTP_URL");
    if let Some(url) = &smtp_url {
        let (scheme, rest) =
            url.split_once("://").ok_or_else(|| err("SMTP_URL", "must start with smtp:// or smtps://"))?;
        if scheme != "smtp" && scheme != "smtps" {
            return Err(err("SMTP_URL", "must start with smtp:// or smtps://"));
        }
        let host_part = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let host = host_part.split([':', '/', '?']).next().unwrap_or_default();
        if host.is_empty() {
            return Err(err("SMTP_URL", "names no host"));
        }
        let tls = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let starttls = tls.split('&').any(|kv| kv == "tls=required");
        let opportunistic = tls.split('&').any(|kv| kv == "tls=opportunistic");
        let local = host == "localhost" || host == "127.0.0.1" || host == "[::1]";
        // Credentials and reset links must not cross the network in clear text.
        if env == Environment::Production && scheme == "smtp" && !starttls && !local {
            return Err(err("SMTP_URL", "production needs smtps:// or smtp://…?tls=required for a remote server"));
        }
        if opportunistic && env == Environment::Production {
            return Err(err("SMTP_URL", "tls=opportunistic can be downgraded; use tls=required in production"));
        }
    }
    // Mail written to files on a production server reaches nobody, and nobody notices.
    if env == Environment::Production
        && smtp_url.is_none()
        && !parse_bool(var, "CIFIX_ALLOW_FILE_EMAIL_IN_PRODUCTION", false)?
    {
        return Err(err(
            "SMTP_URL",
            "is required with CIFIX_ENV=production; set CIFIX_ALLOW_FILE_EMAIL_IN_PRODUCTION=true to write .eml files instead",
        ));
    }
    let from = var("CIFIX_MAIL_FROM").unwrap_or_else(|| "CIFIX LEARN <no-reply@localhost>".into());
    if from.chars().any(char::is_control) || from.parse::<lettre::message::Mailbox>().is_err() {
        return Err(err("CIFIX_MAIL_FROM", "must be an address like \"CIFIX LEARN <no-reply@example.com>\""));
    }
    if env == Environment::Production && smtp_url.is_some() && var("CIFIX_MAIL_FROM").is_none() {
        return Err(err("CIFIX_MAIL_FROM", "is required with SMTP_URL in production"));
    }
    let product_name = var("CIFIX_PRODUCT_NAME").unwrap_or_else(|| "CIFIX LEARN".into());
    if product_name.chars().any(char::is_control) || product_name.chars().count() > 100 {
        return Err(err("CIFIX_PRODUCT_NAME", "must be up to 100 characters without control characters"));
    }
    let max_attempts = positive("CIFIX_EMAIL_MAX_ATTEMPTS", parse(var, "CIFIX_EMAIL_MAX_ATTEMPTS", 8)?)?;
    if max_attempts > 100 {
        return Err(err("CIFIX_EMAIL_MAX_ATTEMPTS", "must be at most 100"));
    }
    let retry_base = positive("CIFIX_EMAIL_RETRY_BASE_MS", parse(var, "CIFIX_EMAIL_RETRY_BASE_MS", 30_000)?)?;
    let retry_max = positive("CIFIX_EMAIL_RETRY_MAX_MS", parse(var, "CIFIX_EMAIL_RETRY_MAX_MS", 3_600_000)?)?;
    if retry_max < retry_base {
        return Err(err("CIFIX_EMAIL_RETRY_MAX_MS", "must not be less than CIFIX_EMAIL_RETRY_BASE_MS"));
    }
    let ses_webhook_secret = var("CIFIX_SES_WEBHOOK_SECRET");
    if ses_webhook_secret.as_ref().is_some_and(|s| s.len() < 16) {
        return Err(err("CIFIX_SES_WEBHOOK_SECRET", "must be at least 16 characters"));
    }
    Ok(EmailConfig {
        smtp_url,
        from,
        product_name,
        worker_in_serve: parse_bool(var, "CIFIX_EMAIL_WORKER", true)?,
        max_attempts: max_attempts as u32,
        retry_base: Duration::from_millis(retry_base),
        retry_max: Duration::from_millis(retry_max),
        lease: Duration::from_secs(positive("CIFIX_EMAIL_LEASE_SECS", parse(var, "CIFIX_EMAIL_LEASE_SECS", 120)?)?),
        poll_interval: Duration::from_millis(positive(
            "CIFIX_EMAIL_POLL_MS",
            parse(var, "CIFIX_EMAIL_POLL_MS", 1_000)?,
        )?),
        concurrency: positive("CIFIX_EMAIL_CONCURRENCY", parse(var, "CIFIX_EMAIL_CONCURRENCY", 4)?)?.min(64) as usize,
        smtp_timeout: Duration::from_secs(positive(
            "CIFIX_SMTP_TIMEOUT_SECS",
            parse(var, "CIFIX_SMTP_TIMEOUT_SECS", 15)?,
        )?),
        ses_webhook_secret,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::cfg;

    #[test]
    fn email_defaults_and_rules() {
        let c = cfg(&[]).unwrap();
        assert!(c.email.smtp_url.is_none(), "no SMTP means .eml files");
        assert_eq!(c.email.max_attempts, 8);
        assert!(c.email.worker_in_serve);
        assert!(c.email.ses_webhook_secret.is_none());
        let c = cfg(&[("SMTP_URL", "smtps://user:pw@email-smtp.eu-west-1.amazonaws.com")]).unwrap();
        assert!(c.email.smtp_url.is_some());
        let long = "x".repeat(32);
        let prod = |url: &str| {
            cfg(&[
                ("CIFIX_ENV", "production"),
                ("CIFIX_JWT_SECRET", &long),
                ("DATABASE_URL", "postgres://x/y"),
                ("SMTP_URL", url),
                ("CIFIX_MAIL_FROM", "CIFIX <no-reply@example.com>"),
                ("CIFIX_SECRETS_KEY", "ab".repeat(32).as_str()),
            ])
        };
        assert_eq!(prod("smtp://mail.example.com").unwrap_err().var, "SMTP_URL", "clear text to a remote host");
        assert!(prod("smtp://u:p@mail.example.com:587?tls=required").is_ok());
        assert!(prod("smtps://u:p@mail.example.com").is_ok());
        assert!(prod("smtp://localhost:25").is_ok());
        let e = cfg(&[("CIFIX_EMAIL_RETRY_BASE_MS", "5000"), ("CIFIX_EMAIL_RETRY_MAX_MS", "10")]).unwrap_err();
        assert_eq!(e.var, "CIFIX_EMAIL_RETRY_MAX_MS");
    }
}
