//! Property-based fuzzing of token verification: arbitrary strings and damaged or forged
//! variants of valid tokens never panic, and nothing is accepted unless it is an HS256 token
//! whose signature is this key's over its own header and payload.
//!
//! Tokens are built with `jsonwebtoken` directly (not `auth::mint`), so the test does not
//! depend on the shape of `Claims`. 256 cases per property by default;
//! `PROPTEST_CASES=100000 cargo test -p tidings-edge --test fuzz_auth --release` runs a long
//! session by hand.

use jsonwebtoken::{crypto, encode, Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use serde_json::{json, Value};
use tidings_edge::auth::{now_secs, Verifier};
use tidings_schemas::text::check_identity;

const SECRET: &str = "fuzz-secret";

fn key() -> EncodingKey {
    EncodingKey::from_secret(SECRET.as_bytes())
}

/// Base64url without padding, as JWT segments are written.
fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        acc = (acc << 6) | u32::from(value(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// `header.payload.signature` with this key's HS256 signature over the first two segments,
/// whatever they hold.
fn sign_segments(header: &str, payload: &str) -> String {
    let message = format!("{header}.{payload}");
    let signature = crypto::sign(message.as_bytes(), &key(), Algorithm::HS256).expect("signs");
    format!("{message}.{signature}")
}

/// What acceptance requires: three segments, an HS256 header, and this key's signature.
fn signed_with_the_key(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, _] = parts[..] else {
        return false;
    };
    let alg = b64_decode(header)
        .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
        .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_string));
    alg.as_deref() == Some("HS256") && sign_segments(header, payload) == token
}

/// Claims a valid token carries (with `iat`/`nbf` in the past, in case they are checked).
fn claims(sub: &str, name: Option<&str>, exp_in: u64) -> Value {
    let now = now_secs();
    let mut c = json!({ "sub": sub, "exp": now + exp_in, "iat": now - 1, "nbf": now - 1 });
    if let Some(name) = name {
        c["name"] = json!(name);
    }
    c
}

fn token(claims: &Value) -> String {
    encode(&Header::new(Algorithm::HS256), claims, &key()).expect("encodes")
}

/// Verifies; an accepted token must be one signed with the key (checked independently).
fn check(verifier: &Verifier, token: &str) -> Result<bool, TestCaseError> {
    let accepted = verifier.verify(token).is_ok();
    prop_assert!(
        !accepted || signed_with_the_key(token),
        "accepted a token not signed with the key: {token:?}"
    );
    Ok(accepted)
}

fn chars(range: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), range).prop_map(|c| c.into_iter().collect())
}

/// A `sub` or `name` the contract accepts: short and visible (most arbitrary strings are).
fn identity() -> impl Strategy<Value = String> {
    chars(1..40).prop_filter("a visible identity", |s| check_identity(s).is_ok())
}

/// Headers an attacker might try instead of HS256.
fn forged_header() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"alg": "none", "typ": "JWT"})),
        Just(json!({"alg": "None"})),
        Just(json!({"alg": "HS384", "typ": "JWT"})),
        Just(json!({"alg": "HS512"})),
        Just(json!({"alg": "RS256", "typ": "JWT"})),
        Just(json!({"alg": "ES256"})),
        Just(json!({"alg": "PS256"})),
        Just(json!({"alg": "EdDSA"})),
        Just(json!({"typ": "JWT"})),
        Just(json!({"alg": 256})),
        Just(json!(["HS256"])),
        Just(json!("HS256")),
        Just(json!({"alg": "hs256"})),
        Just(json!({"alg": "HS256", "crit": ["exp"], "kid": "x".repeat(4096)})),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(prop::sample::Index, u8),
    Truncate(prop::sample::Index),
    Remove(prop::sample::Index),
    Insert(prop::sample::Index, char),
    /// Reorders the three segments (0 = header, 1 = payload, 2 = signature).
    Permute([usize; 3]),
    /// Replaces the header, keeping the payload and the signature.
    Header(Value),
    /// Replaces the header and signs with the key under HS256 anyway (alg confusion).
    HeaderResigned(Value),
    /// The payload replaced by arbitrary bytes, signed with the key.
    PayloadResigned(Vec<u8>),
    /// A segment replaced by a long run of base64.
    Huge(usize, usize),
    /// Extra segments or dots.
    Extra(String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), 0..8u8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        any::<prop::sample::Index>().prop_map(Mutation::Remove),
        (any::<prop::sample::Index>(), any::<char>()).prop_map(|(i, c)| Mutation::Insert(i, c)),
        Just([1, 0, 2]).prop_map(Mutation::Permute),
        Just([0, 2, 1]).prop_map(Mutation::Permute),
        Just([2, 1, 0]).prop_map(Mutation::Permute),
        Just([0, 0, 2]).prop_map(Mutation::Permute),
        forged_header().prop_map(Mutation::Header),
        forged_header().prop_map(Mutation::HeaderResigned),
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            Just(b"not json".to_vec()),
            Just(b"{\"sub\":\"a\",\"exp\":".to_vec()),
            Just(br#"{"sub":"a","exp":"9999999999"}"#.to_vec()),
            Just(br#"{"sub":7,"exp":9999999999}"#.to_vec()),
            Just(br#"{"sub":"a","exp":-1}"#.to_vec()),
            Just(br#"{"sub":"a","exp":1e300}"#.to_vec()),
            Just(br#"{"sub":"a","exp":99999999999999999999999}"#.to_vec()),
            Just(br#"{"sub":"","exp":9999999999}"#.to_vec()),
            Just(br#"{"exp":9999999999}"#.to_vec()),
            Just(br#"{"sub":"a"}"#.to_vec()),
            Just(br#"[{"sub":"a","exp":9999999999}]"#.to_vec()),
        ]
        .prop_map(Mutation::PayloadResigned),
        (0..3usize, 1..65_536usize).prop_map(|(s, n)| Mutation::Huge(s, n)),
        prop_oneof![Just(".".to_string()), Just("..".to_string()), chars(0..8)]
            .prop_map(Mutation::Extra),
    ]
}

fn mutate(token: &str, m: &Mutation) -> String {
    // Earlier mutations may have left fewer segments; a missing one is empty.
    let parts: Vec<&str> = token.split('.').collect();
    let part = |i: usize| parts.get(i).copied().unwrap_or("");
    let header = |v: &Value| b64(v.to_string().as_bytes());
    let mut chars: Vec<char> = token.chars().collect();
    match m {
        Mutation::FlipBit(i, bit) => {
            let mut bytes = token.as_bytes().to_vec();
            let i = i
                .index(bytes.len().max(1))
                .min(bytes.len().saturating_sub(1));
            if let Some(b) = bytes.get_mut(i) {
                *b ^= 1 << bit;
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Mutation::Truncate(i) => chars[..i.index(chars.len() + 1)].iter().collect(),
        Mutation::Remove(i) => {
            if !chars.is_empty() {
                chars.remove(i.index(chars.len()));
            }
            chars.into_iter().collect()
        }
        Mutation::Insert(i, c) => {
            chars.insert(i.index(chars.len() + 1), *c);
            chars.into_iter().collect()
        }
        Mutation::Permute(order) => order.map(part).join("."),
        Mutation::Header(v) => format!("{}.{}.{}", header(v), part(1), part(2)),
        Mutation::HeaderResigned(v) => sign_segments(&header(v), part(1)),
        Mutation::PayloadResigned(bytes) => sign_segments(part(0), &b64(bytes)),
        Mutation::Huge(segment, n) => {
            let mut owned: Vec<String> = (0..3).map(|i| part(i).to_string()).collect();
            owned[*segment] = "QUFB".repeat(n / 4 + 1);
            owned.join(".")
        }
        Mutation::Extra(s) => format!("{token}{s}"),
    }
}

proptest! {
    #[test]
    fn arbitrary_strings_are_refused(
        s in prop_oneof![chars(0..300), "[A-Za-z0-9_=+/.-]{0,400}", "[A-Za-z0-9_-]{1,80}\\.[A-Za-z0-9_-]{1,200}\\.[A-Za-z0-9_-]{43}"]
    ) {
        let verifier = Verifier::new(SECRET);
        prop_assert!(!check(&verifier, &s)?, "accepted {s:?}");
    }

    /// Baseline: tokens within the contract pass (so the mutations start from accepted ones).
    #[test]
    fn valid_tokens_are_accepted(
        sub in identity(), name in prop::option::of(identity()), exp_in in 60u64..1_000_000_000
    ) {
        let verifier = Verifier::new(SECRET);
        let t = token(&claims(&sub, name.as_deref(), exp_in));
        let got = verifier.verify(&t);
        prop_assert!(got.is_ok(), "{got:?}");
        prop_assert_eq!(got.unwrap().sub, sub);
    }

    /// Signed, but with an identity that would show other users something hidden or huge.
    #[test]
    fn hidden_or_huge_identities_are_refused(sub in chars(1..300), name in chars(1..300)) {
        let verifier = Verifier::new(SECRET);
        let got = verifier.verify(&token(&claims(&sub, Some(&name), 3600)));
        let acceptable = check_identity(&sub).is_ok() && check_identity(&name).is_ok();
        prop_assert_eq!(got.is_ok(), acceptable, "sub {:?} name {:?}: {:?}", sub, name, got);
    }

    #[test]
    fn damaged_and_forged_tokens_are_refused(
        sub in identity(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let verifier = Verifier::new(SECRET);
        let original = token(&claims(&sub, Some("n"), 3600));
        prop_assert!(verifier.verify(&original).is_ok());
        let damaged = mutations.iter().fold(original.clone(), |t, m| mutate(&t, m));
        // Re-signed mutations with an HS256 header are signed with the key, and may pass;
        // anything else that passes fails `check`.
        check(&verifier, &damaged)?;
    }

    #[test]
    fn tokens_signed_with_another_key_are_refused(other in "[ -~]{0,40}", sub in identity()) {
        prop_assume!(other != SECRET);
        let verifier = Verifier::new(SECRET);
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &claims(&sub, None, 3600),
            &EncodingKey::from_secret(other.as_bytes()),
        ).expect("encodes");
        prop_assert!(!check(&verifier, &forged)?);
    }
}

#[test]
fn classic_forgeries_are_refused() {
    let verifier = Verifier::new(SECRET);
    let good = token(&claims("ada", None, 3600));
    assert!(verifier.verify(&good).is_ok());
    let parts: Vec<&str> = good.split('.').collect();
    let none = b64(br#"{"alg":"none","typ":"JWT"}"#);
    for forged in [
        format!("{none}.{}.", parts[1]),
        format!("{none}.{}", parts[1]),
        format!("{none}.{}.{}", parts[1], parts[2]),
        sign_segments(&b64(br#"{"alg":"RS256"}"#), parts[1]),
        format!("{}.{}.{}", parts[1], parts[0], parts[2]),
        encode(
            &Header::new(Algorithm::HS384),
            &claims("ada", None, 3600),
            &key(),
        )
        .expect("encodes"),
        token(&json!({"sub": "ada", "exp": now_secs() - 10})),
        token(&json!({"sub": "x".repeat(257), "exp": now_secs() + 60})),
        format!("{}.{}.{}", parts[0], "A".repeat(4 << 20), parts[2]),
        sign_segments(parts[0], &"QUFB".repeat(1 << 20)),
    ] {
        assert!(verifier.verify(&forged).is_err(), "accepted {forged:.200}");
    }
}

#[test]
fn the_test_encoder_matches_jsonwebtoken() {
    let t = token(&claims("ada", Some("Ada ✓"), 60));
    let parts: Vec<&str> = t.split('.').collect();
    let payload = b64_decode(parts[1]).expect("base64url");
    assert_eq!(b64(&payload), parts[1]);
    assert!(signed_with_the_key(&t));
    for n in 0..8 {
        let bytes: Vec<u8> = (0..n).map(|i| i * 37).collect();
        assert_eq!(b64_decode(&b64(&bytes)).as_deref(), Some(&bytes[..]));
    }
}
