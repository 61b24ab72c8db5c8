//! Public keys client tokens may be signed with (from PEM files or a JWKS), and which `alg`
//! each one verifies. A token's `alg` must fit its key's type: an RSA key checks RS* and
//! PS*, a P-256 key ES256, a P-384 key ES384, an Ed25519 key EdDSA, and nothing here is ever
//! used as an HMAC secret (the classic confusion: an HS256 token "signed" with a public key
//! that anyone can read). HS256 has its own secret (`TIDINGS_JWT_SECRET`), kept apart.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Longest `kid` kept: ids are short labels; a longer one is not worth memory.
pub const MAX_KID_BYTES: usize = 256;

/// The type of a public key, which decides the algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyKind {
    /// Whether a token with `alg` may be verified with a key of this type.
    pub fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::EcP256 => alg == ES256,
            KeyKind::EcP384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }
}

/// Why a key was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM public key: {0}")]
    Pem(String),
    #[error("unsupported key: {0}")]
    Unsupported(String),
    #[error("bad key: {0}")]
    Bad(String),
}

/// One public key.
#[derive(Clone)]
pub struct PublicKey {
    /// The JWK's `kid`; PEM keys have none.
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// The JWK's `alg`, when it names one: then that algorithm only.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish()
    }
}

impl PublicKey {
    /// Whether this key may verify a token whose header says `alg`.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|a| a == alg)
    }

    /// A PEM public key (`PUBLIC KEY`, i.e. SubjectPublicKeyInfo, or `RSA PUBLIC KEY`).
    /// Private keys are refused: an edge only ever needs the public half.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let (label, der) = pem_block(pem)?;
        let kind = match label.as_str() {
            "RSA PUBLIC KEY" => KeyKind::Rsa,
            "PUBLIC KEY" => spki_kind(&der)?,
            other if other.contains("PRIVATE") => {
                return Err(KeyError::Pem(format!(
                    "{other}: give the edge the public key, never the private one"
                )))
            }
            other => return Err(KeyError::Pem(format!("{other} is not a public key"))),
        };
        let key = match kind {
            KeyKind::Rsa => DecodingKey::from_rsa_pem(pem),
            KeyKind::EcP256 | KeyKind::EcP384 => DecodingKey::from_ec_pem(pem),
            KeyKind::Ed25519 => DecodingKey::from_ed_pem(pem),
        }
        .map_err(|e| KeyError::Bad(e.to_string()))?;
        Ok(Self {
            kid: None,
            kind,
            alg: None,
            key,
        })
    }

    /// A key of a JWKS. Keys for encryption (`use: enc`), symmetric keys (`kty: oct`: a
    /// secret has no place in a public document) and curves jsonwebtoken cannot verify are
    /// refused, as is an `alg` that does not fit the key's type.
    pub fn from_jwk(value: &serde_json::Value) -> Result<Self, KeyError> {
        let jwk: Jwk = serde_json::from_value(value.clone())
            .map_err(|e| KeyError::Unsupported(format!("not a JWK this edge reads: {e}")))?;
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return Err(KeyError::Unsupported(
                "a key for encryption (use: enc)".into(),
            ));
        }
        let kind = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyKind::Rsa,
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => KeyKind::EcP256,
                EllipticCurve::P384 => KeyKind::EcP384,
                ref other => {
                    return Err(KeyError::Unsupported(format!("EC curve {other:?}")));
                }
            },
            AlgorithmParameters::OctetKeyPair(p) => match p.curve {
                EllipticCurve::Ed25519 => KeyKind::Ed25519,
                ref other => {
                    return Err(KeyError::Unsupported(format!("OKP curve {other:?}")));
                }
            },
            AlgorithmParameters::OctetKey(_) => {
                return Err(KeyError::Unsupported(
                    "a symmetric key (kty oct) in a JWKS".into(),
                ))
            }
        };
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(declared) => {
                let alg = signing_algorithm(declared).ok_or_else(|| {
                    KeyError::Unsupported(format!("alg {declared:?} is not a signature algorithm"))
                })?;
                if !kind.fits(alg) {
                    return Err(KeyError::Bad(format!(
                        "alg {alg:?} does not fit a {kind:?} key"
                    )));
                }
                Some(alg)
            }
        };
        if jwk
            .common
            .key_id
            .as_ref()
            .is_some_and(|kid| kid.is_empty() || kid.len() > MAX_KID_BYTES)
        {
            return Err(KeyError::Bad(format!(
                "kid must be 1 to {MAX_KID_BYTES} bytes"
            )));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| KeyError::Bad(e.to_string()))?;
        Ok(Self {
            kid: jwk.common.key_id,
            kind,
            alg,
            key,
        })
    }
}

/// The signature algorithm a JWK's `alg` names, if it names one jsonwebtoken verifies with a
/// public key.
fn signing_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The first PEM block of `text`: its label and its decoded body.
fn pem_block(text: &[u8]) -> Result<(String, Vec<u8>), KeyError> {
    let text = std::str::from_utf8(text).map_err(|_| KeyError::Pem("not UTF-8 text".into()))?;
    let start = text
        .find("-----BEGIN ")
        .ok_or_else(|| KeyError::Pem("no -----BEGIN line".into()))?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let (label, rest) = rest
        .split_once("-----")
        .ok_or_else(|| KeyError::Pem("a BEGIN line without its closing dashes".into()))?;
    let end_line = format!("-----END {label}-----");
    let body = rest
        .split_once(end_line.as_str())
        .map(|(body, _)| body)
        .ok_or_else(|| KeyError::Pem(format!("no {end_line}")))?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = STANDARD
        .decode(b64)
        .map_err(|e| KeyError::Pem(format!("body is not base64: {e}")))?;
    Ok((label.to_string(), der))
}

// DER encodings (tag, length, value) of the object identifiers that name key types.
const OID_RSA: &[u8] = &[
    0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01,
];
const OID_EC: &[u8] = &[0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2B, 0x65, 0x70];

/// The key type of a SubjectPublicKeyInfo, from its AlgorithmIdentifier:
/// `SEQUENCE { SEQUENCE { OID algorithm, parameters }, BIT STRING key }`.
fn spki_kind(der: &[u8]) -> Result<KeyKind, KeyError> {
    let bad = || KeyError::Pem("not a SubjectPublicKeyInfo".into());
    let (tag, spki, _) = der_tlv(der).ok_or_else(bad)?;
    if tag != 0x30 {
        return Err(bad());
    }
    let (tag, algorithm, _) = der_tlv(spki).ok_or_else(bad)?;
    if tag != 0x30 {
        return Err(bad());
    }
    let (tag, _, params) = der_tlv(algorithm).ok_or_else(bad)?;
    if tag != 0x06 {
        return Err(bad());
    }
    let oid_len = algorithm.len() - params.len();
    let oid = &algorithm[..oid_len];
    if oid == OID_RSA {
        Ok(KeyKind::Rsa)
    } else if oid == OID_ED25519 {
        Ok(KeyKind::Ed25519)
    } else if oid == OID_EC {
        if params == OID_P256 {
            Ok(KeyKind::EcP256)
        } else if params == OID_P384 {
            Ok(KeyKind::EcP384)
        } else {
            Err(KeyError::Unsupported(
                "an EC curve other than P-256 and P-384".into(),
            ))
        }
    } else {
        Err(KeyError::Unsupported(
            "a key type other than RSA, EC P-256/P-384 and Ed25519".into(),
        ))
    }
}

/// One DER element: (tag, contents, what follows it).
fn der_tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| acc << 8 | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    // Test key pairs (edge/testdata/keys/README.md).
    pub const RSA_PUBLIC: &str = include_str!("../testdata/keys/rsa.pub.pem");
    pub const RSA_PRIVATE: &str = include_str!("../testdata/keys/rsa.key.pem");
    pub const EC_PUBLIC: &str = include_str!("../testdata/keys/ec.pub.pem");
    pub const EC_PRIVATE: &str = include_str!("../testdata/keys/ec.key.pem");
    pub const EC384_PUBLIC: &str = include_str!("../testdata/keys/ec384.pub.pem");
    pub const ED_PUBLIC: &str = include_str!("../testdata/keys/ed.pub.pem");
    pub const ED_PRIVATE: &str = include_str!("../testdata/keys/ed.key.pem");
    /// The JWK forms of the public keys above (as node:crypto exports them).
    pub const RSA_N: &str = "zk6ugM-ABHqpPzh27ZkLy6q--zpr2_gIj0XrcoDPE5oYB7gmDvMXtcL0GGjoYNwzSNJt5MUmpxJNxjje9CsTZss3g1dzGNpZnuEhv27qJEcmVwUTNZ2ed8zBkBKWMQ52MnQkOLBjN3bewwtppiG-Okla-Ql4tjvFnmfC-swTMiIgwUVSxS1VtswMJgg1yvim871Nb4jP5W5Lqzu9QxCm9_kpk3dEVI9rKUVlb8FdguMhWCPpKZXxNhZlQYLVzFp-Qyb0jL9v4E7ox99o5mZOBS4VKfS0izXHJNk8J3wwYC9zBzHdBXn-j7GQVezdiBIqjSEQHtQDEX2f-IxWC9SWKw";
    pub const EC_X: &str = "uuF64dBgvRJCj_6Y96XHnn0MkLO_XIex_cLXQBNj2bU";
    pub const EC_Y: &str = "Qeno_TBzBd-cs0ynNuKAd-oIlzdADAK3v4od0aY28b0";
    pub const ED_X: &str = "z5g0_Lu9remcBOVpOh5YjOjjw2O8nXsyp2ciiJfLQuo";

    #[test]
    fn each_key_type_fits_its_own_algorithms_only() {
        use Algorithm::*;
        let all = [
            HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
        ];
        let fitting = |kind: KeyKind| -> Vec<Algorithm> {
            all.iter().copied().filter(|a| kind.fits(*a)).collect()
        };
        assert_eq!(
            fitting(KeyKind::Rsa),
            [RS256, RS384, RS512, PS256, PS384, PS512]
        );
        assert_eq!(fitting(KeyKind::EcP256), [ES256]);
        assert_eq!(fitting(KeyKind::EcP384), [ES384]);
        assert_eq!(fitting(KeyKind::Ed25519), [EdDSA]);
        // No public key ever fits an HMAC algorithm.
        for kind in [
            KeyKind::Rsa,
            KeyKind::EcP256,
            KeyKind::EcP384,
            KeyKind::Ed25519,
        ] {
            assert!(!kind.fits(HS256) && !kind.fits(HS384) && !kind.fits(HS512));
        }
    }

    #[test]
    fn pem_keys_are_typed_from_their_algorithm_identifier() {
        let kind = |pem: &str| PublicKey::from_pem(pem.as_bytes()).map(|k| k.kind);
        assert_eq!(kind(RSA_PUBLIC), Ok(KeyKind::Rsa));
        assert_eq!(kind(EC_PUBLIC), Ok(KeyKind::EcP256));
        assert_eq!(kind(ED_PUBLIC), Ok(KeyKind::Ed25519));
        assert_eq!(kind(EC384_PUBLIC), Ok(KeyKind::EcP384));
        assert!(
            PublicKey::from_pem(RSA_PRIVATE.as_bytes()).is_err(),
            "a private key is refused"
        );
        let rsa = PublicKey::from_pem(RSA_PUBLIC.as_bytes()).unwrap();
        assert!(rsa.accepts(Algorithm::RS256) && !rsa.accepts(Algorithm::HS256));
        assert!(!rsa.accepts(Algorithm::ES256));
    }

    #[test]
    fn private_keys_and_garbage_are_not_keys() {
        let private =
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            PublicKey::from_pem(private.as_bytes()),
            Err(KeyError::Pem(m)) if m.contains("never the private")
        ));
        for bad in [
            "",
            "hello",
            "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n",
            "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n",
            "-----BEGIN PUBLIC KEY-----\nMIIB\n",
            "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
        ] {
            assert!(PublicKey::from_pem(bad.as_bytes()).is_err(), "{bad:?}");
        }
        // A truncated key names RSA but does not parse as one.
        let truncated = RSA_PUBLIC.replace("KwIDAQAB\n", "");
        assert_ne!(truncated, RSA_PUBLIC);
        assert!(PublicKey::from_pem(truncated.as_bytes()).is_err());
    }

    #[test]
    fn jwks_keys_refuse_secrets_encryption_keys_and_mismatched_algs() {
        let rsa = json!({"kty": "RSA", "kid": "r1", "n": RSA_N, "e": "AQAB"});
        let key = PublicKey::from_jwk(&rsa).unwrap();
        assert_eq!(
            (key.kid.as_deref(), key.kind, key.alg),
            (Some("r1"), KeyKind::Rsa, None)
        );
        assert!(key.accepts(Algorithm::RS256) && key.accepts(Algorithm::PS256));

        let mut pinned = rsa.clone();
        pinned["alg"] = json!("RS256");
        let key = PublicKey::from_jwk(&pinned).unwrap();
        assert!(key.accepts(Algorithm::RS256) && !key.accepts(Algorithm::RS512));

        let mut confused = rsa.clone();
        confused["alg"] = json!("ES256");
        assert!(matches!(
            PublicKey::from_jwk(&confused),
            Err(KeyError::Bad(_))
        ));
        let mut hmac = rsa.clone();
        hmac["alg"] = json!("HS256");
        assert!(PublicKey::from_jwk(&hmac).is_err());
        let mut enc = rsa.clone();
        enc["use"] = json!("enc");
        assert!(PublicKey::from_jwk(&enc).is_err());
        let mut long_kid = rsa.clone();
        long_kid["kid"] = json!("k".repeat(MAX_KID_BYTES + 1));
        assert!(PublicKey::from_jwk(&long_kid).is_err());

        assert!(matches!(
            PublicKey::from_jwk(&json!({"kty": "oct", "k": "c2VjcmV0"})),
            Err(KeyError::Unsupported(_))
        ));
        let ed = json!({"kty": "OKP", "crv": "Ed25519", "x": ED_X});
        assert_eq!(PublicKey::from_jwk(&ed).unwrap().kind, KeyKind::Ed25519);
        let ec = json!({"kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y, "use": "sig"});
        assert_eq!(PublicKey::from_jwk(&ec).unwrap().kind, KeyKind::EcP256);
        let p521 = json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"});
        assert!(PublicKey::from_jwk(&p521).is_err());
        assert!(PublicKey::from_jwk(&json!({"kty": "RSA"})).is_err());
        assert!(PublicKey::from_jwk(&json!("nope")).is_err());
    }
}
