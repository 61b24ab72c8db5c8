//! Client tokens: HS256 JWTs with `sub` (required), `exp` (required) and `name` (optional).

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest `sub` / `name` the edge accepts.
pub const MAX_CLAIM_CHARS: usize = 256;

/// The claims the edge uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Why a token was refused (all of them reach the client as `unauthorized`).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no token")]
    Missing,
    #[error("bad token: {0}")]
    Bad(String),
}

/// Checks HS256 tokens against one secret.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// Verifies a token.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let data = decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::Bad(e.to_string()))?;
        let claims = data.claims;
        if claims.sub.is_empty() || claims.sub.chars().count() > MAX_CLAIM_CHARS {
            return Err(AuthError::Bad("sub must be 1 to 256 characters".into()));
        }
        if claims
            .name
            .as_ref()
            .is_some_and(|n| n.chars().count() > MAX_CLAIM_CHARS)
        {
            return Err(AuthError::Bad("name longer than 256 characters".into()));
        }
        Ok(claims)
    }

    /// Verifies the Socket.IO handshake `auth` payload: `{token: "<JWT>"}`.
    pub fn verify_auth(&self, auth: Option<&Value>) -> Result<Claims, AuthError> {
        let token = auth
            .and_then(|a| a.get("token"))
            .and_then(Value::as_str)
            .ok_or(AuthError::Missing)?;
        self.verify(token)
    }
}

/// Mints an HS256 token (dev tokens, tests).
pub fn mint(secret: &str, claims: &Claims) -> Result<String, AuthError> {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| AuthError::Bad(e.to_string()))
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "ada".into(),
            exp,
            name: Some("Ada".into()),
        }
    }

    #[test]
    fn good_tokens_pass_and_bad_ones_do_not() {
        let v = Verifier::new("s3cret");
        let token = mint("s3cret", &claims(now_secs() + 60)).unwrap();
        let got = v.verify_auth(Some(&json!({ "token": token }))).unwrap();
        assert_eq!(got.sub, "ada");
        assert_eq!(got.name.as_deref(), Some("Ada"));

        assert!(matches!(v.verify_auth(None), Err(AuthError::Missing)));
        assert!(matches!(
            v.verify_auth(Some(&json!({}))),
            Err(AuthError::Missing)
        ));
        assert!(v.verify_auth(Some(&json!({ "token": 5 }))).is_err());
        let expired = mint("s3cret", &claims(now_secs() - 5)).unwrap();
        assert!(v.verify(&expired).is_err());
        let other = mint("other", &claims(now_secs() + 60)).unwrap();
        assert!(v.verify(&other).is_err());
        assert!(v.verify("not.a.jwt").is_err());
    }

    #[test]
    fn sub_and_exp_are_required() {
        let v = Verifier::new("k");
        let key = EncodingKey::from_secret(b"k");
        let no_exp = encode(&Header::default(), &json!({"sub": "a"}), &key).unwrap();
        assert!(v.verify(&no_exp).is_err());
        let no_sub = encode(&Header::default(), &json!({"exp": now_secs() + 60}), &key).unwrap();
        assert!(v.verify(&no_sub).is_err());
        let empty_sub = encode(
            &Header::default(),
            &json!({"sub": "", "exp": now_secs() + 60}),
            &key,
        )
        .unwrap();
        assert!(v.verify(&empty_sub).is_err());
    }
}
