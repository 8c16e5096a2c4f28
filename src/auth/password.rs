//! Password hashing: bcrypt, behind a keyed pre-hash so that all of a long password counts.
//!
//! bcrypt only reads the first 72 bytes and the `bcrypt` crate's `hash` silently truncates.
//! We feed it base64(HMAC-SHA256(key, password)) instead: 44 bytes that depend on every byte of
//! the input. The HMAC key is a fixed domain-separation constant, not a secret: changing it would
//! invalidate every stored hash, so it must never come from configuration.

use std::{collections::HashSet, sync::LazyLock, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Semaphore;

const PREHASH_KEY: &[u8] = b"cifix-password-prehash-v1";
/// Stored hashes carry this prefix so that a future scheme can be recognised and migrated.
const SCHEME: &str = "v1$";

pub const MIN_CHARS: usize = 8;
pub const MAX_CHARS: usize = 128;

static COMMON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("common-passwords.txt").lines().map(str::trim).filter(|l| !l.is_empty()).collect());

/// Why a new password is refused; the message is safe to show to the user.
const MIN_DISTINCT: usize = 4;

pub fn check_strength(password: &str, email: &str) -> Result<(), &'static str> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err("must be at least 8 characters");
    }
    if chars > MAX_CHARS {
        return Err("must be at most 128 characters");
    }
    // Length alone is not strength: eight spaces, or "aaaaaaaa", would pass it.
    let mut distinct: Vec<char> = password.chars().filter(|c| !c.is_whitespace()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < MIN_DISTINCT {
        return Err("must use at least 4 different characters besides spaces");
    }
    let lower = password.to_lowercase();
    if COMMON.contains(lower.as_str()) {
        return Err("is too common; choose a less predictable password");
    }
    let local = email.split('@').next().unwrap_or_default().to_lowercase();
    if local.len() >= 4 && lower.contains(&local) {
        return Err("must not contain your email address");
    }
    Ok(())
}

fn prehash(password: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(PREHASH_KEY).expect("HMAC accepts any key length");
    mac.update(password.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Too many hashes already running; the caller should answer 503 with Retry-After.
    #[error("password hashing is saturated")]
    Busy,
    #[error("the blocking task running bcrypt failed")]
    Task(#[from] tokio::task::JoinError),
    #[error("bcrypt")]
    Bcrypt(#[from] bcrypt::BcryptError),
}

/// Runs bcrypt on the blocking pool with a bound on how many run at once, so that a login storm
/// queues here instead of starving every other endpoint of CPU.
pub struct Hasher {
    cost: u32,
    permits: std::sync::Arc<Semaphore>,
    queue_wait: Duration,
    /// A real hash of a random password, verified against when the account does not exist so
    /// that an unknown email costs the same time as a wrong password.
    dummy: String,
}

impl Hasher {
    pub fn new(cost: u32, max_concurrent: usize) -> Hasher {
        let dummy_password = uuid::Uuid::new_v4().to_string();
        let dummy =
            format!("{SCHEME}{}", bcrypt::hash(prehash(&dummy_password), cost).expect("bcrypt cost is validated"));
        Hasher {
            cost,
            permits: std::sync::Arc::new(Semaphore::new(max_concurrent)),
            queue_wait: Duration::from_secs(2),
            dummy,
        }
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, HashError> {
        let permit = tokio::time::timeout(self.queue_wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| HashError::Busy)?
            .map_err(|_| HashError::Busy)?;
        // The permit travels with the blocking work: a client that disconnects mid-request
        // frees nothing until its hash has actually finished.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
        .map_err(HashError::from)
    }

    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let pre = prehash(password);
        let cost = self.cost;
        let hashed = self.run(move || bcrypt::hash(pre, cost)).await??;
        Ok(format!("{SCHEME}{hashed}"))
    }

    /// Verifies `password` against `stored`, or against the dummy hash when there is no account.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, HashError> {
        let exists = stored.is_some();
        let stored = stored.unwrap_or(&self.dummy).to_string();
        let pre = prehash(password);
        let ok = self
            .run(move || match stored.strip_prefix(SCHEME) {
                Some(h) => bcrypt::verify(pre, h).unwrap_or(false),
                None => false,
            })
            .await?;
        Ok(ok && exists)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_byte_of_a_long_password_counts() {
        let h = Hasher::new(4, 2);
        let base = "a".repeat(100);
        let stored = h.hash(&format!("{base}X")).await.unwrap();
        assert!(h.verify(&format!("{base}X"), Some(&stored)).await.unwrap());
        assert!(!h.verify(&format!("{base}Y"), Some(&stored)).await.unwrap(), "byte 101 must matter");
        assert!(!h.verify(&format!("{base}X"), None).await.unwrap());
    }

    #[test]
    fn strength_rules() {
        assert!(check_strength("short", "a@b.c").is_err());
        assert!(check_strength(&"x".repeat(129), "a@b.c").is_err());
        assert!(check_strength("password1", "a@b.c").is_err());
        assert!(check_strength("Password123", "a@b.c").is_err(), "case does not make a common password rare");
        assert!(check_strength("aliceInWonder!", "alice@example.com").is_err());
        assert!(check_strength("correct horse battery", "bob@example.com").is_ok());
        assert_eq!(COMMON.len(), 5000);
    }
}
