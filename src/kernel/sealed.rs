//! Secrets the server must be able to use again (a machine client's HMAC key) are kept sealed
//! with AES-256-GCM under a server key from the environment, so that whoever can read the
//! database alone cannot sign as the client.
//!
//! Stored form: `sealed:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`. The key id names
//! the server key that sealed it, so a rotated key (`CIFIX_SECRETS_PREVIOUS_KEYS`) still opens
//! old values until they are sealed again under the current one (done at start). The row's
//! identity is the associated data: a sealed value copied onto another row does not open.

use aes_gcm::{
    Aes256Gcm, Nonce,
    aead::{Aead, KeyInit, Payload},
};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

const PREFIX: &str = "sealed:v1:";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[derive(Clone)]
struct ServerKey {
    id: String,
    cipher: Aes256Gcm,
}

impl ServerKey {
    fn new(key: &[u8; 32]) -> ServerKey {
        // Derived so that it names the key without revealing anything about it.
        let id = hex::encode(&Sha256::digest([b"cifix secrets key id\n".as_slice(), key].concat())[..4]);
        ServerKey { id, cipher: Aes256Gcm::new(key.into()) }
    }
}

/// The current server key and the previous ones still accepted for opening.
#[derive(Clone)]
pub struct Sealer {
    current: ServerKey,
    previous: Vec<ServerKey>,
}

/// What a stored value is, seen by the sealer.
#[derive(Debug, PartialEq, Eq)]
pub enum Stored {
    /// Sealed under the current key: nothing to do.
    Current,
    /// Sealed under a previous key, or written before values were sealed: seal it again.
    Stale,
    /// Sealed under a key we do not have, or damaged.
    Unreadable,
}

impl Sealer {
    pub fn new(current: &[u8; 32], previous: &[[u8; 32]]) -> Sealer {
        Sealer { current: ServerKey::new(current), previous: previous.iter().map(ServerKey::new).collect() }
    }

    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    pub fn seal(&self, plaintext: &[u8], row: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .current
            .cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad: row.as_bytes() })
            .expect("AES-GCM seals any message of this size");
        format!("{PREFIX}{}:{}", self.current.id, B64.encode([nonce.as_slice(), &sealed].concat()))
    }

    /// Opens a sealed value; `legacy` reads a value stored before sealing (for the HMAC keys:
    /// hex of 32 bytes), so existing rows keep working until they are sealed at start.
    pub fn open(&self, stored: &str, row: &str, legacy: impl Fn(&str) -> Option<Vec<u8>>) -> Option<Vec<u8>> {
        let Some(rest) = stored.strip_prefix(PREFIX) else { return legacy(stored) };
        let (id, data) = rest.split_once(':')?;
        let key = std::iter::once(&self.current).chain(&self.previous).find(|k| k.id == id)?;
        let data = B64.decode(data).ok()?;
        if data.len() < 12 + 16 {
            return None;
        }
        let (nonce, sealed) = data.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().ok()?;
        key.cipher.decrypt(&Nonce::from(nonce), Payload { msg: sealed, aad: row.as_bytes() }).ok()
    }

    pub fn classify(&self, stored: &str, row: &str, legacy: impl Fn(&str) -> Option<Vec<u8>>) -> Stored {
        if self.open(stored, row, legacy).is_none() {
            return Stored::Unreadable;
        }
        let current = format!("{PREFIX}{}:", self.current.id);
        if stored.starts_with(&current) { Stored::Current } else { Stored::Stale }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<Vec<u8>> {
        None
    }

    #[test]
    fn sealed_values_open_only_with_their_key_and_row() {
        let old = Sealer::new(&[1; 32], &[]);
        let sealed = old.seal(b"signing key", "client-a");
        assert!(sealed.starts_with("sealed:v1:") && !sealed.contains("signing"));
        assert_eq!(old.open(&sealed, "client-a", none).unwrap(), b"signing key");
        assert!(old.open(&sealed, "client-b", none).is_none(), "bound to its row");
        assert_ne!(old.seal(b"signing key", "client-a"), sealed, "a fresh nonce every time");

        let rotated = Sealer::new(&[2; 32], &[[1; 32]]);
        assert_eq!(rotated.open(&sealed, "client-a", none).unwrap(), b"signing key");
        assert_eq!(rotated.classify(&sealed, "client-a", none), Stored::Stale);
        let resealed = rotated.seal(b"signing key", "client-a");
        assert_eq!(rotated.classify(&resealed, "client-a", none), Stored::Current);
        assert_eq!(Sealer::new(&[2; 32], &[]).classify(&sealed, "client-a", none), Stored::Unreadable);
        assert_eq!(rotated.classify("abcd", "client-a", |h| hex::decode(h).ok()), Stored::Stale, "legacy");
    }
}
