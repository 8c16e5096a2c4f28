//! Delivery: SMTP (TLS, STARTTLS, auth from `SMTP_URL`; SES's SMTP endpoint in production), or
//! by default `.eml` files in `CIFIX_DATA_DIR/outbox` so a newcomer can open the links.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{
        Mailbox, MultiPart,
        header::{Header, HeaderName, HeaderValue},
    },
    transport::smtp::PoolConfig,
};

use super::{Rendered, render};
use crate::entities::email_outbox;

#[derive(Clone)]
pub enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(PathBuf),
}

/// Why a send failed, as stored in `last_error` (never contains message content).
#[derive(Debug)]
pub struct SendError {
    pub message: String,
    /// The server refused for good (5xx), or the message itself cannot be built.
    pub permanent: bool,
}

impl Transport {
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Transport> {
        match &config.email.smtp_url {
            Some(url) => {
                let t = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .context("SMTP_URL")?
                    .timeout(Some(config.email.smtp_timeout))
                    // Connections are reused across messages; idle ones are closed so a
                    // restarted server is reached afresh.
                    .pool_config(
                        PoolConfig::new()
                            .max_size(config.email.concurrency.max(1) as u32)
                            .idle_timeout(Duration::from_secs(30)),
                    )
                    .build();
                Ok(Transport::Smtp(t))
            }
            None => Ok(Transport::Files(config.data_dir.join("outbox"))),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Transport::Smtp(_) => "smtp".into(),
            Transport::Files(dir) => format!("files in {}", dir.display()),
        }
    }

    pub async fn send(&self, row: &email_outbox::Model, message: Message) -> Result<(), SendError> {
        match self {
            Transport::Smtp(t) => t
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| SendError { permanent: e.is_permanent(), message: render::one_line(&e.to_string(), 500) }),
            Transport::Files(dir) => {
                let path = dir.join(format!("{}.eml", row.id));
                let tmp = dir.join(format!(".{}.eml.tmp", row.id));
                let bytes = message.formatted();
                let write = async {
                    tokio::fs::create_dir_all(dir).await?;
                    tokio::fs::write(&tmp, &bytes).await?;
                    // Rename so a reader never sees half a message.
                    tokio::fs::rename(&tmp, &path).await
                };
                write
                    .await
                    .map_err(|e| SendError { permanent: false, message: format!("writing {}: {e}", path.display()) })?;
                // The path and template only: the link (a secret) stays in the file.
                tracing::info!(path = %path.display(), template = %row.template, "email written to the outbox directory");
                Ok(())
            }
        }
    }
}

/// `List-Unsubscribe: <https://…>` (RFC 2369).
#[derive(Clone)]
struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribe(s.trim().trim_start_matches('<').trim_end_matches('>').to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), format!("<{}>", self.0))
    }
}

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
#[derive(Clone)]
struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribePost)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".into())
    }
}

/// Builds the MIME message for an outbox row. Every header value goes through lettre's typed
/// builders, and names and subjects are reduced to one line first, so CR/LF from user input
/// can never start a header of its own.
pub fn build_message(from: &str, row: &email_outbox::Model) -> Result<Message, SendError> {
    let bad = |m: String| SendError { permanent: true, message: m };
    let rendered: Rendered =
        serde_json::from_value(row.payload.clone()).map_err(|_| bad("the message body is no longer stored".into()))?;
    let from: Mailbox = from.parse().map_err(|e| bad(format!("invalid sender: {e}")))?;
    let address = super::normalize_address(&row.to_address)
        .map_err(|_| bad("invalid recipient address".into()))?
        .parse()
        .map_err(|_| bad("invalid recipient address".into()))?;
    let name = row.to_name.as_deref().map(|n| render::one_line(n, 100)).filter(|n| !n.is_empty());
    let to = Mailbox::new(name, address);
    // A stable Message-ID: if a worker dies after the server accepted the message but before
    // it recorded that, the retry carries the same id, so receivers can recognise a duplicate.
    let domain = from.email.domain().to_string();
    let mut b = Message::builder()
        .from(from)
        .to(to)
        .subject(render::one_line(&rendered.subject, 250))
        .message_id(Some(format!("<{}@{domain}>", row.id)));
    if let Some(url) = &rendered.list_unsubscribe {
        if url.chars().any(|c| c.is_control() || c == '>' || c.is_whitespace()) {
            return Err(bad("invalid unsubscribe URL".into()));
        }
        b = b.header(ListUnsubscribe(url.clone())).header(ListUnsubscribePost);
    }
    b.multipart(MultiPart::alternative_plain_html(rendered.text, rendered.html))
        .map_err(|e| bad(format!("building the message: {e}")))
}
