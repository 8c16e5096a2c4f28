//! Access tokens (JWT, HS256, with `kid` for key rotation) and opaque refresh tokens.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode, errors::ErrorKind,
};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::kernel::context::Role;

/// The one algorithm we sign and accept. Pinning it is what makes `alg: none` and
/// algorithm-confusion tokens fail: the header's choice is never trusted.
const ALG: Algorithm = Algorithm::HS256;
const LEEWAY_SECS: u64 = 30;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: Uuid,
    /// Session id: every request checks this session is still live, so a revoked session,
    /// a deactivated user or a changed password takes effect at once, not after expiry.
    pub sid: Uuid,
    pub role: Role,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
}

struct Key {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Key {
    fn new(secret: &[u8]) -> Key {
        // The kid is derived from the secret so operators configure secrets only; it reveals
        // nothing usable (a truncated hash of a ≥32-byte random secret).
        let kid = hex::encode(&Sha256::digest([b"cifix-kid:".as_slice(), secret].concat())[..6]);
        Key { kid, encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret) }
    }
}

pub struct TokenKeys {
    current: Key,
    previous: Vec<Key>,
    issuer: String,
    audience: String,
    pub access_ttl: Duration,
}

/// Why an access token was refused. Only a token whose signature and claims are ours can be
/// `Expired`, so a client told so knows that refreshing will help.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidToken {
    #[error("the access token expired")]
    Expired,
    #[error("the access token is invalid")]
    Invalid,
}

impl TokenKeys {
    pub fn new(current: &[u8], previous: &[Vec<u8>], issuer: &str, audience: &str, access_ttl: Duration) -> TokenKeys {
        TokenKeys {
            current: Key::new(current),
            previous: previous.iter().map(|s| Key::new(s)).collect(),
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            access_ttl,
        }
    }

    pub fn issue(&self, user_id: Uuid, session_id: Uuid, role: Role) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user_id,
            sid: session_id,
            role,
            iat: now,
            nbf: now,
            exp: now + self.access_ttl.as_secs() as i64,
        };
        let mut header = Header::new(ALG);
        header.kid = Some(self.current.kid.clone());
        encode(&header, &claims, &self.current.encoding).expect("HMAC signing cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<Claims, InvalidToken> {
        let header = decode_header(token).map_err(|_| InvalidToken::Invalid)?;
        if header.alg != ALG {
            return Err(InvalidToken::Invalid);
        }
        // Keys come from configuration only; the kid merely selects among them.
        let kid = header.kid.ok_or(InvalidToken::Invalid)?;
        let key =
            std::iter::once(&self.current).chain(&self.previous).find(|k| k.kid == kid).ok_or(InvalidToken::Invalid)?;
        let mut v = Validation::new(ALG);
        v.leeway = LEEWAY_SECS;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_audience(&[&self.audience]);
        v.set_issuer(&[&self.issuer]);
        v.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        decode::<Claims>(token, &key.decoding, &v).map(|d| d.claims).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => InvalidToken::Expired,
            _ => InvalidToken::Invalid,
        })
    }
}

/// A new opaque refresh token: 256 random bits, URL-safe.
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Only this hash is stored. A fast hash is right here: the input is 256 random bits, so
/// there is nothing to brute-force, unlike a password.
pub fn hash_refresh_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &[u8]) -> TokenKeys {
        TokenKeys::new(secret, &[], "cifix", "cifix-api", Duration::from_secs(900))
    }

    #[test]
    fn round_trip_and_rotation() {
        let old = [1u8; 32];
        let new = [2u8; 32];
        let token = keys(&old).issue(Uuid::now_v7(), Uuid::now_v7(), Role::Student);
        assert!(keys(&old).verify(&token).is_ok());
        assert_eq!(keys(&new).verify(&token).unwrap_err(), InvalidToken::Invalid, "unknown key");
        let rotated = TokenKeys::new(&new, &[old.to_vec()], "cifix", "cifix-api", Duration::from_secs(900));
        assert!(rotated.verify(&token).is_ok(), "the previous key is still accepted");
    }

    /// A token naming the key of `kid_secret`, signed with `signing_secret`, that expired two
    /// minutes ago (past the leeway).
    fn expired_token(kid_secret: &[u8], signing_secret: &[u8]) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: "cifix".into(),
            aud: "cifix-api".into(),
            sub: Uuid::now_v7(),
            sid: Uuid::now_v7(),
            role: Role::Student,
            iat: now - 1000,
            nbf: now - 1000,
            exp: now - 120,
        };
        let mut header = Header::new(ALG);
        header.kid = Some(Key::new(kid_secret).kid);
        encode(&header, &claims, &Key::new(signing_secret).encoding).unwrap()
    }

    #[test]
    fn only_a_genuine_token_is_told_it_expired() {
        let secret = [3u8; 32];
        assert_eq!(keys(&secret).verify(&expired_token(&secret, &secret)).unwrap_err(), InvalidToken::Expired);
        let forged = expired_token(&secret, &[4u8; 32]);
        assert_eq!(keys(&secret).verify(&forged).unwrap_err(), InvalidToken::Invalid, "a forged signature");
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let a = new_refresh_token();
        assert_ne!(a, new_refresh_token());
        assert_eq!(hash_refresh_token(&a).len(), 64);
        assert!(!hash_refresh_token(&a).contains(&a));
    }
}
