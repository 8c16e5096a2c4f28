//! How password guessing is slowed without locking anyone out.
//!
//! Failed sign-ins are counted per *account* (keyed by the normalised email, whether or not an
//! account has it, so a known and an unknown address answer alike) and per *account and source*
//! (the client's address). Past the account's budget a sign-in is refused with 429, except from
//! a source that has not been failing at this account: there the password is still checked, so
//! the owner on their own device signs in while a guesser elsewhere keeps hammering. A password
//! reset, which proves the mailbox, clears the account's count.
//!
//! The counts live in the rate limiter (Redis when configured), not in the users table: an
//! unknown address has no row to count in, and counting only known ones would tell them apart.

use std::{net::IpAddr, sync::Arc};

use sha2::{Digest, Sha256};

use crate::{
    config::Limits,
    infra::ratelimit::{RateLimiter, Rule, rate_limit_key},
    kernel::context::RequestContext,
};

/// Failures one source may make at one account per quarter hour and still be let through to
/// the password check while the account is throttled: a child's typos, not a guesser's list.
const SOURCE_FAILURES: u32 = 3;

pub struct LoginThrottle {
    pub limiter: Arc<RateLimiter>,
    /// Failed sign-ins per account per minute, then per hour: a short burst, then a long tail.
    pub per_minute: u32,
    pub per_hour: u32,
    pub limits: Limits,
}

/// What the throttle says before a password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// The account is over its budget but this source has not been failing at it: a right
    /// password gets in, a wrong one is refused as throttled.
    OwnerOnly {
        retry_after_secs: u64,
    },
    Closed {
        retry_after_secs: u64,
    },
}

impl LoginThrottle {
    fn rules(&self) -> [Rule; 2] {
        [Rule::per_minute("login-account", self.per_minute), Rule::per_hour("login-account-hour", self.per_hour)]
    }

    fn source_rule() -> Rule {
        Rule { name: "login-source", limit: SOURCE_FAILURES, period: std::time::Duration::from_secs(900) }
    }

    pub async fn gate(&self, ctx: &RequestContext, email: &str) -> Gate {
        let account = account_key(email);
        let mut retry = None;
        for rule in self.rules() {
            let d = self.limiter.peek(&rule, &account).await;
            if !d.allowed {
                retry = Some(retry.unwrap_or(0).max(d.retry_after_secs));
            }
        }
        let Some(retry_after_secs) = retry else { return Gate::Open };
        let pair = pair_key(&account, ctx);
        if self.limiter.peek(&Self::source_rule(), &pair).await.allowed {
            Gate::OwnerOnly { retry_after_secs }
        } else {
            Gate::Closed { retry_after_secs }
        }
    }

    pub async fn failed(&self, ctx: &RequestContext, email: &str) {
        let account = account_key(email);
        for rule in self.rules() {
            self.limiter.charge(&rule, &account).await;
        }
        self.limiter.charge(&Self::source_rule(), &pair_key(&account, ctx)).await;
    }

    /// After a password reset: the mailbox's owner has the account back.
    pub async fn forgive(&self, email: &str) {
        let account = account_key(email);
        for rule in self.rules() {
            self.limiter.forget(&rule, &account).await;
        }
    }

    /// Registrations from the caller's address; every attempt counts. `Err` is the retry delay.
    pub async fn registration(&self, ctx: &RequestContext) -> Result<(), u64> {
        let ip = source_ip(ctx);
        let factor = ip.map_or(1, |ip| self.limits.factor_for(ip));
        let rule = Rule::per_hour("register-ip", self.limits.registrations_per_hour).times(factor);
        let d = self.limiter.check(&rule, &source_key(ctx)).await;
        if d.allowed { Ok(()) } else { Err(d.retry_after_secs) }
    }
}

/// An account's key: a hash of the address as typed, trimmed and lower-cased, so that nothing
/// personal sits in Redis and variants of one address share one budget.
pub fn account_key(email: &str) -> String {
    hex::encode(&Sha256::digest(email.trim().to_lowercase().as_bytes())[..16])
}

fn source_ip(ctx: &RequestContext) -> Option<IpAddr> {
    ctx.ip.as_deref().and_then(|ip| ip.parse().ok())
}

fn source_key(ctx: &RequestContext) -> String {
    source_ip(ctx).map(rate_limit_key).unwrap_or_default()
}

fn pair_key(account: &str, ctx: &RequestContext) -> String {
    format!("{account}:{}", source_key(ctx))
}
