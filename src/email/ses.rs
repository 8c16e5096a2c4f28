//! Amazon SES bounce and complaint notifications, as delivered by SNS (the envelope with a
//! JSON `Message` string) or by raw message delivery (the SES object itself).
//!
//! SNS signs its messages; verifying that signature needs a fetch of AWS's certificate, which
//! we leave to the edge (API gateway / a Lambda). This endpoint instead requires a shared
//! secret (`CIFIX_SES_WEBHOOK_SECRET`), sent as `X-Cifix-Webhook-Secret` or as the password
//! of HTTP basic auth in the SNS subscription URL (SNS cannot add custom headers).

use serde_json::Value;

#[derive(Debug, PartialEq, Eq)]
pub enum SesEvent {
    /// Addresses to stop mailing, with the reason (`bounce` or `complaint`).
    Suppress(Vec<(String, &'static str)>),
    /// An SNS subscription confirmation: an operator confirms it (we never fetch URLs that
    /// arrive in a request).
    SubscriptionConfirmation,
    /// Transient bounces, deliveries and anything else: nothing to do.
    Ignored,
}

pub fn parse(body: &Value) -> SesEvent {
    match body.get("Type").and_then(Value::as_str) {
        Some("SubscriptionConfirmation") => return SesEvent::SubscriptionConfirmation,
        Some("Notification") => {
            let inner = body.get("Message").and_then(Value::as_str).and_then(|m| serde_json::from_str(m).ok());
            return inner.map(|v: Value| parse_ses(&v)).unwrap_or(SesEvent::Ignored);
        }
        _ => {}
    }
    parse_ses(body)
}

fn parse_ses(v: &Value) -> SesEvent {
    // SES notifications say `notificationType`; SES event publishing says `eventType`.
    let kind = v.get("notificationType").or_else(|| v.get("eventType")).and_then(Value::as_str);
    let addresses = |list: Option<&Value>, reason: &'static str| -> Vec<(String, &'static str)> {
        list.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.get("emailAddress").and_then(Value::as_str))
                    .map(|s| (extract_address(s), reason))
                    .collect()
            })
            .unwrap_or_default()
    };
    match kind {
        Some("Bounce") => {
            let b = v.get("bounce");
            // Only a permanent bounce means the mailbox does not exist; transient ones
            // (mailbox full, greylisting) must not cost the user their mail.
            if b.and_then(|b| b.get("bounceType")).and_then(Value::as_str) == Some("Permanent") {
                SesEvent::Suppress(addresses(b.and_then(|b| b.get("bouncedRecipients")), "bounce"))
            } else {
                SesEvent::Ignored
            }
        }
        Some("Complaint") => {
            SesEvent::Suppress(addresses(v.get("complaint").and_then(|c| c.get("complainedRecipients")), "complaint"))
        }
        _ => SesEvent::Ignored,
    }
}

/// SES may report `"Name" <addr>`; keep the address.
fn extract_address(s: &str) -> String {
    match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => s[a + 1..b].to_string(),
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn permanent_bounces_and_complaints_suppress() {
        let bounce = json!({"notificationType": "Bounce", "bounce": {"bounceType": "Permanent",
            "bouncedRecipients": [{"emailAddress": "\"X\" <gone@example.com>"}]}});
        assert_eq!(parse(&bounce), SesEvent::Suppress(vec![("gone@example.com".into(), "bounce")]));
        let sns = json!({"Type": "Notification", "Message": json!({"eventType": "Complaint",
            "complaint": {"complainedRecipients": [{"emailAddress": "angry@example.com"}]}}).to_string()});
        assert_eq!(parse(&sns), SesEvent::Suppress(vec![("angry@example.com".into(), "complaint")]));
        let soft = json!({"notificationType": "Bounce", "bounce": {"bounceType": "Transient",
            "bouncedRecipients": [{"emailAddress": "full@example.com"}]}});
        assert_eq!(parse(&soft), SesEvent::Ignored);
        assert_eq!(parse(&json!({"Type": "SubscriptionConfirmation"})), SesEvent::SubscriptionConfirmation);
    }
}
