//! Access tokens (short-lived HS256 JWTs) and refresh tokens (opaque random
//! strings, kept only as their SHA-256 in the database).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use videosync_core::{Timestamp, UserId};

use crate::error::{code, ApiError, ApiResult};
use axum::http::StatusCode;

/// Who issues and accepts the tokens.
const ISSUER: &str = "videosync";

/// Whose token it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// A registered user.
    User,
    /// A guest without an account, known by a name for one visit.
    Guest,
}

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, or the guest's random id.
    pub sub: String,
    /// User or guest.
    pub kind: TokenKind,
    /// A guest's display name (empty for users: theirs is in the database).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
    /// Always `videosync`.
    pub iss: String,
}

/// Signs and checks access tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(HS256, [redacted])")
    }
}

impl TokenKeys {
    /// Keys from the shared secret.
    pub fn new(secret: &[u8]) -> Self {
        // Only HS256: a token that names another algorithm (`none`
        // included) is refused before its signature is looked at. Expiry is
        // checked against the server's clock by [`TokenKeys::verify`], not
        // the library's reading of the system time.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp", "iss", "sub"]
            .into_iter()
            .map(String::from)
            .collect();
        validation.set_issuer(&[ISSUER]);
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// A signed token for `sub`, valid for `ttl_s` from `now`.
    ///
    /// # Errors
    /// 500 when signing fails.
    pub fn issue(
        &self,
        kind: TokenKind,
        sub: &str,
        name: &str,
        now: Timestamp,
        ttl_s: u64,
    ) -> ApiResult<String> {
        let iat = now.as_millis().max(0) as u64 / 1000;
        let claims = Claims {
            sub: sub.to_owned(),
            kind,
            name: name.to_owned(),
            iat,
            exp: iat + ttl_s,
            iss: ISSUER.to_owned(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)
    }

    /// The claims of a token this server signed and that has not expired
    /// at `now`.
    ///
    /// # Errors
    /// 401 `token_expired` for an expired token, 401 `unauthenticated` for
    /// anything else wrong (malformed, another key, another algorithm).
    pub fn verify(&self, token: &str, now: Timestamp) -> ApiResult<Claims> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                ApiError::unauthenticated(format!("the access token is not valid ({e})"))
            })?;
        let now_s = now.as_millis().max(0) as u64 / 1000;
        if data.claims.exp <= now_s {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                code::TOKEN_EXPIRED,
                "the access token has expired; refresh it",
            ));
        }
        Ok(data.claims)
    }
}

/// A user id from a token's subject.
///
/// # Errors
/// 401 when it is not a user id.
pub fn user_of(claims: &Claims) -> ApiResult<UserId> {
    claims
        .sub
        .parse()
        .map_err(|_| ApiError::unauthenticated("the access token names no user"))
}

/// A new refresh token: 256 random bits, URL-safe.
pub fn new_refresh_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database keeps of a refresh token.
pub fn refresh_token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh guest id.
pub fn new_guest_id() -> String {
    format!("guest-{}", Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_millis(1_800_000_000_000)
    }

    #[test]
    fn tokens_round_trip_and_expire() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef");
        let t = keys.issue(TokenKind::User, "u1", "", now(), 60).unwrap();
        let c = keys.verify(&t, now()).unwrap();
        assert_eq!((c.sub.as_str(), c.kind), ("u1", TokenKind::User));
        let later = Timestamp::from_millis(now().as_millis() + 60_000);
        assert_eq!(
            keys.verify(&t, later).unwrap_err().code,
            code::TOKEN_EXPIRED
        );
    }

    #[test]
    fn forgeries_are_refused() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef");
        let other = TokenKeys::new(b"another key, another key, another");
        let t = other.issue(TokenKind::User, "u1", "", now(), 60).unwrap();
        assert_eq!(
            keys.verify(&t, now()).unwrap_err().code,
            code::UNAUTHENTICATED
        );
        // alg: none, with the same claims and no signature.
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = t.split('.').nth(1).unwrap();
        for forged in [format!("{header}.{body}."), format!("{header}.{body}")] {
            assert_eq!(
                keys.verify(&forged, now()).unwrap_err().code,
                code::UNAUTHENTICATED
            );
        }
        // A flipped bit in the payload.
        let good = keys.issue(TokenKind::User, "u1", "", now(), 60).unwrap();
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut payload = URL_SAFE_NO_PAD.decode(&parts[1]).unwrap();
        let i = payload.iter().position(|&b| b == b'1').unwrap();
        payload[i] = b'2';
        parts[1] = URL_SAFE_NO_PAD.encode(payload);
        assert!(keys.verify(&parts.join("."), now()).is_err());
        for junk in ["", "a.b.c", "....", "Bearer x"] {
            assert!(keys.verify(junk, now()).is_err(), "{junk}");
        }
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let (a, b) = (new_refresh_token(), new_refresh_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(refresh_token_hash(&a).len(), 64);
        assert_ne!(refresh_token_hash(&a), refresh_token_hash(&b));
    }
}
