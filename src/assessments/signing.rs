//! Request signatures of machine clients (the scheme is documented in the README, "Signing
//! every request").

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(super) fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// The HMAC key of a client secret is its SHA-256 (the documented wire scheme). The server
/// keeps it only sealed (`kernel::sealed`); see README, "Assessment tool integration".
pub fn signing_key_hex(secret: &str) -> String {
    sha256_hex(secret.as_bytes())
}

pub(super) fn signing_key(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// A key stored before keys were sealed: hex of 32 bytes, nothing else.
pub(super) fn legacy_key(stored: &str) -> Option<Vec<u8>> {
    hex::decode(stored).ok().filter(|k| k.len() == 32)
}

/// `timestamp \n nonce \n METHOD \n path \n sha256hex(body)`.
pub fn string_to_sign(timestamp: &str, nonce: &str, method: &str, path: &str, body: &[u8]) -> String {
    format!("{timestamp}\n{nonce}\n{}\n{path}\n{}", method.to_ascii_uppercase(), sha256_hex(body))
}

/// The MAC of `message` under a stored key, or nothing when the stored key is not a 32-byte
/// hex value: a damaged row must never turn into an empty (forgeable) key.
pub fn sign(key_hex: &str, message: &str) -> Option<Vec<u8>> {
    let key = hex::decode(key_hex).ok().filter(|k| k.len() == 32)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC accepts any key length");
    mac.update(message.as_bytes());
    Some(mac.finalize().into_bytes().to_vec())
}

pub(super) fn mac_matches(key: &[u8], message: &str, given: &[u8]) -> bool {
    if key.len() != 32 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(message.as_bytes());
    // Constant-time comparison.
    mac.verify_slice(given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_documented_scheme() {
        // The same vector is in clients/python/tests/test_client.py.
        let key = signing_key_hex("s3cret");
        let msg = string_to_sign("1700000000", "abcdefghijklmnop", "post", "/api/v1/x", b"{}");
        assert_eq!(
            msg,
            "1700000000\nabcdefghijklmnop\nPOST\n/api/v1/x\n44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(
            hex::encode(sign(&key, &msg).unwrap()),
            "e324b0a5333146d30b40965a24ad6e1707a87ee4c3c376ff4a6782f771cdadfb"
        );
        assert!(sign("not hex", &msg).is_none() && sign("", &msg).is_none(), "no empty key, ever");
    }
}
