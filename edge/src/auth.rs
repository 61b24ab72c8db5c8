//! Client tokens: JWTs with `sub` (required), `exp` (required), `name` (optional), `nbf` /
//! `iat` (optional, checked when present), `jti` (optional: a revocation may name it),
//! `rooms` and `role` (see [`crate::permissions`]). `sub` and `name` must be short and
//! visible (`tidings_schemas::text::check_identity`): they are shown to other users verbatim.
//!
//! Signed with HS256 under the edge's secret, or with RS256/RS384/RS512/PS*, ES256, ES384
//! or EdDSA under a public key from PEM files or the identity provider's JWKS
//! ([`crate::keys`], [`crate::jwks`]). A token's `alg` must fit its key's type; a public key
//! is never an HMAC secret. `iss` and `aud` must match when configured, and time claims get
//! a small leeway for clock drift ([`Rules::leeway_secs`]).

use crate::jwks::Jwks;
use crate::keys::PublicKey;
use crate::permissions::Access;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tidings_schemas::text::check_identity;

/// The default leeway on `exp`, `nbf` and `iat`: clocks of issuers and edges drift a
/// little. A token is good until `exp` plus this, and a connection that did not refresh is
/// cut then.
pub const CLOCK_LEEWAY_SECS: u64 = 5;
/// The most leeway the v3 contract allows on `exp`.
pub const MAX_LEEWAY_SECS: u64 = 30;
/// Longest `jti` accepted: it becomes a log key (`jti:<jti>`) if revoked.
pub const MAX_JTI_BYTES: usize = 128;
/// Most keys one token is tried against (a token without `kid` with many PEM and JWKS keys
/// of its type): what a forged token costs the edge is bounded.
pub const MAX_CANDIDATE_KEYS: usize = 16;

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
    /// The token's id, which a revocation may name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
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
            jti: None,
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
    /// No configured or fetched key fits the token's `kid` and `alg`; a JWKS refetch may
    /// find one.
    #[error("no key for this token (kid {kid:?}, alg {alg:?})")]
    UnknownKey { kid: Option<String>, alg: Algorithm },
}

/// What a valid token must also satisfy, besides its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Leeway on `exp`, `nbf` and `iat`, in seconds (at most [`MAX_LEEWAY_SECS`]).
    pub leeway_secs: u64,
    /// Accepted `iss` values; empty: `iss` is not checked.
    pub issuers: Vec<String>,
    /// Accepted `aud` values (one must be in the token's); empty: a token with `aud` is
    /// refused, as RFC 7519 asks of a recipient that has no audience name.
    pub audiences: Vec<String>,
    /// Longest a token may still be valid for when it is presented (`exp` − now), so that a
    /// revocation lasting this long outlives every token it covers; `None`: no bound.
    pub max_lifetime_secs: Option<u64>,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            leeway_secs: CLOCK_LEEWAY_SECS,
            issuers: Vec::new(),
            audiences: Vec::new(),
            max_lifetime_secs: None,
        }
    }
}

/// The keys tokens may be signed with.
#[derive(Default)]
pub struct Keys {
    /// HS256 secret (`TIDINGS_JWT_SECRET`); none: HS256 tokens are refused.
    pub secret: Option<String>,
    /// PEM public keys (`TIDINGS_JWT_PUBLIC_KEYS`).
    pub public: Vec<PublicKey>,
    /// The identity provider's JWKS (`TIDINGS_JWKS_URL`).
    pub jwks: Option<Arc<Jwks>>,
}

/// Checks tokens against the configured keys and rules.
pub struct Verifier {
    hmac: Option<DecodingKey>,
    public: Vec<PublicKey>,
    jwks: Option<Arc<Jwks>>,
    rules: Rules,
    /// Everything but the algorithm, which comes from the key.
    validation: Validation,
}

impl Verifier {
    /// HS256 tokens under `secret`, with the default rules.
    pub fn new(secret: &str) -> Self {
        Self::with(
            Keys {
                secret: Some(secret.to_string()),
                ..Keys::default()
            },
            Rules::default(),
        )
    }

    pub fn with(keys: Keys, rules: Rules) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = rules.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if !rules.issuers.is_empty() {
            validation.set_issuer(&rules.issuers);
            required.push("iss");
        }
        if !rules.audiences.is_empty() {
            validation.set_audience(&rules.audiences);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Self {
            hmac: keys
                .secret
                .filter(|s| !s.is_empty())
                .map(|s| DecodingKey::from_secret(s.as_bytes())),
            public: keys.public,
            jwks: keys.jwks,
            rules,
            validation,
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Verifies a token against the keys known now (no fetch).
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        refuse_critical_extensions(token)?;
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Bad(e.to_string()))?;
        let alg = header.alg;
        let jwks_keys = self.jwks.as_ref().map(|j| j.keys());
        let mut candidates: Vec<&DecodingKey> = Vec::new();
        if alg == Algorithm::HS256 {
            candidates.extend(self.hmac.as_ref());
            if candidates.is_empty() {
                return Err(AuthError::Bad(
                    "HS256 tokens are not accepted here (no secret is configured)".into(),
                ));
            }
        } else if matches!(alg, Algorithm::HS384 | Algorithm::HS512) {
            return Err(AuthError::Bad(format!("{alg:?} is not accepted")));
        } else {
            let from_jwks = jwks_keys
                .iter()
                .flat_map(|keys| keys.iter())
                .filter(|k| k.accepts(alg) && (header.kid.is_none() || k.kid == header.kid));
            let from_pem = self.public.iter().filter(|k| k.accepts(alg));
            candidates.extend(
                from_jwks
                    .chain(from_pem)
                    .map(|k| &k.key)
                    .take(MAX_CANDIDATE_KEYS),
            );
            if candidates.is_empty() {
                return Err(AuthError::UnknownKey {
                    kid: header.kid,
                    alg,
                });
            }
        }
        let mut validation = self.validation.clone();
        validation.algorithms = vec![alg];
        let mut last_error = None;
        let mut claims = None;
        for key in candidates {
            match decode::<Claims>(token, key, &validation) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let Some(claims) = claims else {
            let why = last_error.map_or_else(|| "no key".to_string(), |e| e.to_string());
            return Err(AuthError::Bad(why));
        };
        self.check_claims(&claims, now_secs())?;
        Ok(claims)
    }

    /// What the signature check leaves to the edge: future `iat`, the lifetime bound, the
    /// identities and the access claims.
    fn check_claims(&self, claims: &Claims, now: u64) -> Result<(), AuthError> {
        let latest = now + self.rules.leeway_secs;
        if claims.iat.is_some_and(|iat| iat > latest) {
            return Err(AuthError::Bad("token issued in the future (iat)".into()));
        }
        if let Some(max) = self.rules.max_lifetime_secs {
            if claims.exp > latest.saturating_add(max) {
                return Err(AuthError::Bad(format!(
                    "token valid for more than {max} s (exp); ask the issuer for a shorter one"
                )));
            }
        }
        check_identity(&claims.sub).map_err(|e| AuthError::Bad(format!("sub {e}")))?;
        if let Some(name) = &claims.name {
            check_identity(name).map_err(|e| AuthError::Bad(format!("name {e}")))?;
        }
        if let Some(jti) = &claims.jti {
            if jti.len() > MAX_JTI_BYTES || check_identity(jti).is_err() {
                return Err(AuthError::Bad(format!(
                    "jti must be 1 to {MAX_JTI_BYTES} bytes of visible characters"
                )));
            }
        }
        claims.access()?;
        Ok(())
    }

    /// Verifies a token; if it names a key the edge does not have, asks the JWKS for it
    /// again (bounded: see [`Jwks::refetch`]) and tries once more.
    pub async fn check(&self, token: &str) -> Result<Claims, AuthError> {
        match self.verify(token) {
            Err(AuthError::UnknownKey { .. }) if self.jwks.is_some() => {
                if let Some(jwks) = &self.jwks {
                    jwks.refetch().await;
                }
                self.verify(token)
            }
            other => other,
        }
    }

    /// Verifies the Socket.IO handshake `auth` payload: `{token: "<JWT>"}`.
    pub async fn verify_auth(&self, auth: Option<&Value>) -> Result<Claims, AuthError> {
        self.check(token_of(auth)?).await
    }

    /// When a connection on `claims` must end: `exp` plus the leeway, in ms since the epoch.
    pub fn deadline_ms(&self, claims: &Claims) -> u64 {
        claims
            .exp
            .saturating_add(self.rules.leeway_secs)
            .saturating_mul(1000)
    }
}

/// The token of a Socket.IO handshake `auth` payload: `{token: "<JWT>"}`.
pub fn token_of(auth: Option<&Value>) -> Result<&str, AuthError> {
    auth.and_then(|a| a.get("token"))
        .and_then(Value::as_str)
        .ok_or(AuthError::Missing)
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

    #[tokio::test]
    async fn good_tokens_pass_and_bad_ones_do_not() {
        let v = Verifier::new("s3cret");
        let token = mint("s3cret", &claims(now_secs() + 60)).unwrap();
        let got = v
            .verify_auth(Some(&json!({ "token": token })))
            .await
            .unwrap();
        assert_eq!(got.sub, "ada");
        assert_eq!(got.name.as_deref(), Some("Ada"));

        assert!(matches!(v.verify_auth(None).await, Err(AuthError::Missing)));
        assert!(matches!(
            v.verify_auth(Some(&json!({}))).await,
            Err(AuthError::Missing)
        ));
        assert!(v.verify_auth(Some(&json!({ "token": 5 }))).await.is_err());
        let expired = mint("s3cret", &claims(now_secs() - CLOCK_LEEWAY_SECS - 2)).unwrap();
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

    use crate::jwks::{JwksConfig, JwksError, Source};
    use crate::keys::tests::*;
    use futures::future::BoxFuture;

    fn signed(alg: Algorithm, private_pem: &str, kid: Option<&str>, claims: &Value) -> String {
        let key = match alg {
            Algorithm::RS256 | Algorithm::PS256 => {
                EncodingKey::from_rsa_pem(private_pem.as_bytes())
            }
            Algorithm::ES256 => EncodingKey::from_ec_pem(private_pem.as_bytes()),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(private_pem.as_bytes()),
            _ => panic!("not a test algorithm"),
        }
        .unwrap();
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        encode(&header, claims, &key).unwrap()
    }

    fn pem_verifier(rules: Rules) -> Verifier {
        let public = [RSA_PUBLIC, EC_PUBLIC, ED_PUBLIC]
            .iter()
            .map(|p| PublicKey::from_pem(p.as_bytes()).unwrap())
            .collect();
        Verifier::with(
            Keys {
                secret: Some("hs-secret".into()),
                public,
                jwks: None,
            },
            rules,
        )
    }

    fn good(sub: &str) -> Value {
        json!({"sub": sub, "exp": now_secs() + 600})
    }

    #[test]
    fn rs256_es256_and_eddsa_tokens_verify_against_pem_keys() {
        let v = pem_verifier(Rules::default());
        for (alg, private) in [
            (Algorithm::RS256, RSA_PRIVATE),
            (Algorithm::PS256, RSA_PRIVATE),
            (Algorithm::ES256, EC_PRIVATE),
            (Algorithm::EdDSA, ED_PRIVATE),
        ] {
            let token = signed(alg, private, None, &good("ada"));
            assert_eq!(v.verify(&token).unwrap().sub, "ada", "{alg:?}");
            // The same key under another key type's algorithm finds no key of that type
            // signed it.
            let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
            let other = if alg == Algorithm::EdDSA {
                "ES256"
            } else {
                "EdDSA"
            };
            parts[0] = b64url(&json!({"alg": other, "typ": "JWT"}).to_string());
            assert!(
                v.verify(&parts.join(".")).is_err(),
                "{alg:?} relabelled {other}"
            );
        }
        // HS256 still works beside them, with its own secret only.
        assert!(v
            .verify(&mint("hs-secret", &Claims::new("ada", now_secs() + 60)).unwrap())
            .is_ok());
    }

    #[test]
    fn a_public_key_is_never_an_hmac_secret() {
        // The classic confusion: an HS256 token "signed" with the public key's bytes, which
        // anyone can read. The edge has no HS256 secret here, and must not use the PEM.
        let v = Verifier::with(
            Keys {
                secret: None,
                public: vec![PublicKey::from_pem(RSA_PUBLIC.as_bytes()).unwrap()],
                jwks: None,
            },
            Rules::default(),
        );
        for secret in [
            RSA_PUBLIC.as_bytes().to_vec(),
            RSA_PUBLIC.trim().as_bytes().to_vec(),
        ] {
            let forged = encode(
                &Header::new(Algorithm::HS256),
                &good("mallory"),
                &EncodingKey::from_secret(&secret),
            )
            .unwrap();
            assert!(v.verify(&forged).is_err());
        }
        // And with a secret configured, it is the secret that counts, not the key.
        let v = pem_verifier(Rules::default());
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &good("mallory"),
            &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        )
        .unwrap();
        assert!(v.verify(&forged).is_err());
    }

    #[test]
    fn tokens_signed_by_unknown_keys_are_refused() {
        let only_ec = Verifier::with(
            Keys {
                secret: None,
                public: vec![PublicKey::from_pem(EC_PUBLIC.as_bytes()).unwrap()],
                jwks: None,
            },
            Rules::default(),
        );
        let rsa = signed(Algorithm::RS256, RSA_PRIVATE, Some("k1"), &good("ada"));
        assert!(matches!(
            only_ec.verify(&rsa),
            Err(AuthError::UnknownKey { kid: Some(k), alg: Algorithm::RS256 }) if k == "k1"
        ));
        // An EC token under another P-256 key than the configured one.
        let other = PublicKey::from_pem(EC_PUBLIC.as_bytes()).unwrap();
        assert!(other.accepts(Algorithm::ES256));
        let forged = signed(Algorithm::ES256, EC_PRIVATE, None, &good("ada"));
        assert!(
            only_ec.verify(&forged).is_ok(),
            "the configured key signed it"
        );
        let mut parts: Vec<&str> = forged.split('.').collect();
        let payload = b64url(&good("root").to_string());
        parts[1] = &payload;
        assert!(only_ec.verify(&parts.join(".")).is_err(), "payload swapped");
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let v = pem_verifier(Rules {
            issuers: vec!["https://idp.test".into()],
            audiences: vec!["tidings".into()],
            ..Rules::default()
        });
        let with = |extra: Value| {
            let mut c = good("ada");
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            v.verify(&signed(Algorithm::EdDSA, ED_PRIVATE, None, &c))
        };
        assert!(with(json!({"iss": "https://idp.test", "aud": "tidings"})).is_ok());
        assert!(with(json!({"iss": "https://idp.test", "aud": ["other", "tidings"]})).is_ok());
        assert!(with(json!({"iss": "https://evil.test", "aud": "tidings"})).is_err());
        assert!(with(json!({"iss": "https://idp.test", "aud": "other"})).is_err());
        assert!(with(json!({"aud": "tidings"})).is_err(), "iss missing");
        assert!(
            with(json!({"iss": "https://idp.test"})).is_err(),
            "aud missing"
        );
        // Without the settings, iss is not looked at and aud must be absent.
        let open = pem_verifier(Rules::default());
        let token = signed(
            Algorithm::EdDSA,
            ED_PRIVATE,
            None,
            &json!({"sub": "a", "exp": now_secs() + 60, "iss": "x"}),
        );
        assert!(open.verify(&token).is_ok());
        let token = signed(
            Algorithm::EdDSA,
            ED_PRIVATE,
            None,
            &json!({"sub": "a", "exp": now_secs() + 60, "aud": "x"}),
        );
        assert!(open.verify(&token).is_err());
    }

    #[test]
    fn time_claims_get_the_leeway_and_no_more() {
        let v = pem_verifier(Rules {
            leeway_secs: 10,
            max_lifetime_secs: Some(3600),
            ..Rules::default()
        });
        let now = now_secs();
        let at = |claims: Value| v.verify(&signed(Algorithm::ES256, EC_PRIVATE, None, &claims));
        assert!(
            at(json!({"sub": "a", "exp": now - 5})).is_ok(),
            "expired within the leeway"
        );
        assert!(
            at(json!({"sub": "a", "exp": now - 12})).is_err(),
            "past the leeway"
        );
        assert!(at(json!({"sub": "a", "exp": now + 60, "nbf": now + 8})).is_ok());
        assert!(at(json!({"sub": "a", "exp": now + 60, "nbf": now + 15})).is_err());
        assert!(at(json!({"sub": "a", "exp": now + 60, "iat": now + 8})).is_ok());
        assert!(at(json!({"sub": "a", "exp": now + 60, "iat": now + 15})).is_err());
        assert!(at(json!({"sub": "a", "exp": now + 3600})).is_ok());
        assert!(
            at(json!({"sub": "a", "exp": now + 7200})).is_err(),
            "longer than the lifetime bound"
        );
        let claims = Claims::new("a", 1_000);
        assert_eq!(
            v.deadline_ms(&claims),
            1_010_000,
            "exp plus the leeway, in ms"
        );
    }

    #[test]
    fn a_jti_must_be_a_short_visible_id() {
        let v = Verifier::new("k");
        let with_jti = |jti: &str| {
            let c = Claims {
                jti: Some(jti.to_string()),
                ..Claims::new("ada", now_secs() + 60)
            };
            v.verify(&mint("k", &c).unwrap())
        };
        assert_eq!(with_jti("7f3c-11").unwrap().jti.as_deref(), Some("7f3c-11"));
        assert!(with_jti("").is_err());
        assert!(with_jti(&"j".repeat(MAX_JTI_BYTES + 1)).is_err());
        assert!(with_jti("a\u{0}b").is_err());
    }

    /// Serves a JWKS with the RSA key under `kid`, counting fetches.
    struct Idp {
        kid: std::sync::Mutex<String>,
        fetched: std::sync::atomic::AtomicU64,
    }

    impl Source for Arc<Idp> {
        fn fetch(&self) -> BoxFuture<'_, Result<Vec<u8>, JwksError>> {
            self.fetched
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let kid = self.kid.lock().unwrap().clone();
            Box::pin(async move {
                Ok(
                    json!({"keys": [{"kty": "RSA", "kid": kid, "n": RSA_N, "e": "AQAB"}]})
                        .to_string()
                        .into_bytes(),
                )
            })
        }
    }

    #[tokio::test]
    async fn an_unknown_kid_fetches_the_jwks_again_within_its_bounds() {
        let idp = Arc::new(Idp {
            kid: std::sync::Mutex::new("old".into()),
            fetched: Default::default(),
        });
        let config = JwksConfig {
            min_interval: std::time::Duration::from_millis(500),
            ..JwksConfig::new("http://idp.invalid/jwks.json")
        };
        let jwks = Arc::new(Jwks::new(config, Box::new(idp.clone())));
        let v = Verifier::with(
            Keys {
                secret: None,
                public: Vec::new(),
                jwks: Some(jwks.clone()),
            },
            Rules::default(),
        );
        let fetched = || idp.fetched.load(std::sync::atomic::Ordering::SeqCst);
        // Signed up front, so the loop below runs well within the interval.
        let random: Vec<String> = (0..50)
            .map(|i| {
                signed(
                    Algorithm::RS256,
                    RSA_PRIVATE,
                    Some(&format!("r{i}")),
                    &good("ada"),
                )
            })
            .collect();
        let old = signed(Algorithm::RS256, RSA_PRIVATE, Some("old"), &good("ada"));
        assert!(v.check(&old).await.is_ok(), "first use fetches");
        assert_eq!(fetched(), 1);
        assert!(v.check(&old).await.is_ok());
        assert_eq!(fetched(), 1, "a known kid fetches nothing");

        // The provider rotates: a token with the new kid arrives after the interval.
        *idp.kid.lock().unwrap() = "new".into();
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        let new = signed(Algorithm::RS256, RSA_PRIVATE, Some("new"), &good("ada"));
        assert!(v.check(&new).await.is_ok());
        assert_eq!(fetched(), 2);
        assert!(
            v.check(&old).await.is_err(),
            "the old kid is gone from the JWKS"
        );
        // Random kids within the interval are refused without fetching.
        for t in &random {
            assert!(v.check(t).await.is_err());
        }
        assert_eq!(fetched(), 2, "at most one fetch per interval");
    }

    fn b64url(s: &str) -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        URL_SAFE_NO_PAD.encode(s)
    }
}
