//! Client tokens: HS256 JWTs with `sub` (required), `exp` (required), `name` (optional),
//! and `nbf` / `iat` (optional, checked when present). `sub` and `name` must be short and
//! visible (`tidings_schemas::text::check_identity`): they are shown to other users verbatim.

use crate::permissions::Access;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};
use tidings_schemas::text::check_identity;

/// How far in the future `nbf` and `iat` may be: clocks of issuers and edges drift a little.
pub const CLOCK_LEEWAY_SECS: u64 = 5;

/// The claims the edge uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Not valid before (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at (seconds since the epoch); a token from the future is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Room patterns the user may use (see [`crate::permissions`]); none: every room but
    /// other users' DM rooms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
    /// `member` (the default), `moderator` or `admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

impl Claims {
    /// Claims for `sub`, expiring at `exp`, with no optional claim.
    pub fn new(sub: impl Into<String>, exp: u64) -> Self {
        Self {
            sub: sub.into(),
            exp,
            name: None,
            nbf: None,
            iat: None,
            rooms: None,
            role: None,
        }
    }

    /// What the `rooms` and `role` claims allow.
    pub fn access(&self) -> Result<Access, AuthError> {
        Access::from_claims(self.rooms.as_deref(), self.role.as_deref()).map_err(AuthError::Bad)
    }
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
        // `exp` is strict; `nbf` and `iat` are checked below with a small leeway.
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// Verifies a token.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        refuse_critical_extensions(token)?;
        let data = decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::Bad(e.to_string()))?;
        let claims = data.claims;
        let latest = now_secs() + CLOCK_LEEWAY_SECS;
        if claims.nbf.is_some_and(|nbf| nbf > latest) {
            return Err(AuthError::Bad("token not valid yet (nbf)".into()));
        }
        if claims.iat.is_some_and(|iat| iat > latest) {
            return Err(AuthError::Bad("token issued in the future (iat)".into()));
        }
        check_identity(&claims.sub).map_err(|e| AuthError::Bad(format!("sub {e}")))?;
        if let Some(name) = &claims.name {
            check_identity(name).map_err(|e| AuthError::Bad(format!("name {e}")))?;
        }
        claims.access()?;
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

/// A JWS header's `crit` names extensions a verifier must understand or refuse the token
/// (RFC 7515, 4.1.11); we understand none, and jsonwebtoken ignores the field.
fn refuse_critical_extensions(token: &str) -> Result<(), AuthError> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let header = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Bad("header is not base64url".into()))?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|_| AuthError::Bad("header is not JSON".into()))?;
    if value.get("crit").is_some() {
        return Err(AuthError::Bad(
            "critical header extensions are not supported".into(),
        ));
    }
    Ok(())
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
            name: Some("Ada".into()),
            ..Claims::new("ada", exp)
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

    #[test]
    fn nbf_and_iat_in_the_future_are_refused() {
        let v = Verifier::new("k");
        let exp = now_secs() + 600;
        let ok = |nbf, iat| {
            let c = Claims {
                nbf,
                iat,
                ..Claims::new("ada", exp)
            };
            v.verify(&mint("k", &c).unwrap()).is_ok()
        };
        assert!(ok(Some(now_secs()), Some(now_secs())));
        assert!(
            ok(Some(now_secs() + 2), Some(now_secs() + 2)),
            "within the leeway"
        );
        assert!(!ok(Some(now_secs() + 60), None));
        assert!(!ok(None, Some(now_secs() + 60)));
        let key = EncodingKey::from_secret(b"k");
        let bad_nbf = encode(
            &Header::default(),
            &json!({"sub": "a", "exp": exp, "nbf": "soon"}),
            &key,
        )
        .unwrap();
        assert!(v.verify(&bad_nbf).is_err());
    }

    #[test]
    fn identities_with_hidden_characters_are_refused() {
        let v = Verifier::new("k");
        let exp = now_secs() + 600;
        for sub in [
            "a\u{1b}[2J",
            "a\u{0}",
            "a\r\nb",
            "adm\u{202E}nimda",
            "a\u{200B}",
            &"x".repeat(129),
        ] {
            let token = mint("k", &Claims::new(sub, exp)).unwrap();
            assert!(v.verify(&token).is_err(), "sub {sub:?} accepted");
        }
        let named = Claims {
            name: Some("Eve\u{202E}".into()),
            ..Claims::new("eve", exp)
        };
        assert!(v.verify(&mint("k", &named).unwrap()).is_err());
        assert!(v
            .verify(&mint("k", &Claims::new("Zoë", exp)).unwrap())
            .is_ok());
    }

    #[test]
    fn other_algorithms_and_unsigned_tokens_are_refused() {
        let v = Verifier::new("k");
        let exp = now_secs() + 600;
        // base64url without padding, as JWTs use.
        let b64 = |s: &str| {
            const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut out = String::new();
            for chunk in s.as_bytes().chunks(3) {
                let n =
                    chunk.iter().fold(0u32, |n, b| n << 8 | *b as u32) << (8 * (3 - chunk.len()));
                for i in 0..=chunk.len() {
                    out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
                }
            }
            out
        };
        let payload = b64(&json!({"sub": "ada", "exp": exp}).to_string());
        for header in [
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"RS256","typ":"JWT"}"#,
            r#"{"alg":"HS512","typ":"JWT"}"#,
        ] {
            let unsigned = format!("{}.{payload}.", b64(header));
            assert!(v.verify(&unsigned).is_err(), "{header}");
        }
    }
}
