//! Property-based fuzzing of the client payload parsers on arbitrary JSON: nested values,
//! huge and fractional numbers, any Unicode, wrong types. A parser never panics, refuses only
//! with `invalid` or `too_large`, and what it accepts keeps the v1 contract (PROTOCOL.md).
//!
//! 256 cases per property by default; `PROPTEST_CASES=100000 cargo test -p tidings-edge
//! --test fuzz_protocol --release` runs a long session by hand.

use proptest::prelude::*;
use serde_json::{Map, Number, Value};
use tidings_edge::errors::ClientError;
use tidings_edge::protocol::{
    approx_json_size, parse_history, parse_join, parse_leave, parse_send, parse_typing,
};

const FIELDS: [&str; 7] = ["room", "id", "text", "since", "before", "limit", "on"];

/// The contract's room pattern, checked independently of the edge's own check.
fn room_ok(room: &str) -> bool {
    (1..=128).contains(&room.len())
        && room
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        // Rooms and near-misses: the pattern's alphabet, lengths around the bound.
        "[A-Za-z0-9._:-]{0,130}",
        "[A-Za-z0-9._:/ é-]{0,8}",
        // Anything, with control characters, NUL and astral planes.
        prop::collection::vec(any::<char>(), 0..80).prop_map(|c| c.into_iter().collect()),
    ]
}

fn any_number() -> impl Strategy<Value = Value> {
    // Boundaries of every numeric field (since/before >= 0, limit 1..=200) come up often.
    let edges = [
        -2i64,
        -1,
        0,
        1,
        2,
        199,
        200,
        201,
        i64::MIN,
        i64::MAX,
        1 << 53,
    ];
    prop_oneof![
        6 => prop::sample::select(edges.to_vec()).prop_map(Value::from),
        2 => (-3i64..300).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        2 => prop_oneof![
            any::<f64>(),
            Just(-0.0),
            Just(-1.0),
            Just(200.0),
            Just(201.0),
            Just(3.0),
            Just(1.5),
            Just(9.0e15),
            Just(9.0e15 + 2.0),
            Just(1e300),
            Just(f64::MAX),
            Just(f64::MIN_POSITIVE),
        ]
        .prop_filter_map("JSON has no NaN or infinity", |f| {
            Number::from_f64(f).map(Value::Number)
        }),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any_number(),
        any_string().prop_map(Value::String),
    ]
}

/// Any JSON value, nested up to 6 levels; objects mostly use the fields parsers look at.
fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 64, 8, |inner| {
        let key = prop_oneof![
            3 => prop::sample::select(FIELDS.to_vec()).prop_map(str::to_string),
            1 => any_string(),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A payload object whose fields are mostly well-typed, so accepted paths are reached too.
fn payload() -> impl Strategy<Value = Value> {
    let field = |name: &'static str| {
        let value = prop_oneof![
            9 => match name {
                "room" | "id" | "text" => any_string().prop_map(Value::String).boxed(),
                "on" => any::<bool>().prop_map(Value::Bool).boxed(),
                _ => any_number().boxed(),
            },
            1 => any_json(),
        ];
        prop::option::weighted(0.9, value).prop_map(move |v| (name, v))
    };
    (
        field("room"),
        field("id"),
        field("text"),
        field("since"),
        field("before"),
        field("limit"),
        field("on"),
    )
        .prop_map(|fields| {
            let (a, b, c, d, e, f, g) = fields;
            let object: Map<String, Value> = [a, b, c, d, e, f, g]
                .into_iter()
                .filter_map(|(name, v)| Some((name.to_string(), v?)))
                .collect();
            Value::Object(object)
        })
}

/// Well-formed but for the numbers, which sit on their bounds: where an off-by-one shows.
fn near_valid() -> impl Strategy<Value = Value> {
    let number = || {
        prop::option::of(prop_oneof![
            prop::sample::select(vec![-1i64, 0, 1, 200, 201]).prop_map(Value::from),
            prop::sample::select(vec![-1.0, -0.0, 0.5, 1.0, 200.0, 201.0])
                .prop_map(|f| Value::from(Number::from_f64(f).expect("finite"))),
        ])
    };
    (
        "[A-Za-z0-9._:-]{1,128}",
        "[ -~]{1,64}",
        number(),
        number(),
        number(),
    )
        .prop_map(|(room, id, since, before, limit)| {
            let mut v = serde_json::json!({"room": room, "id": id, "text": "t", "on": true});
            for (name, n) in [("since", since), ("before", before), ("limit", limit)] {
                if let Some(n) = n {
                    v[name] = n;
                }
            }
            v
        })
}

fn input() -> impl Strategy<Value = Value> {
    prop_oneof![2 => near_valid(), 3 => payload(), 1 => any_json()]
}

/// A refusal is always one of the two codes a payload can earn.
fn refused_properly(error: &ClientError) -> Result<(), TestCaseError> {
    prop_assert!(
        matches!(error.code(), "invalid" | "too_large"),
        "unexpected code {:?} ({error})",
        error.code()
    );
    Ok(())
}

/// The non-negative integer a parser may take from `v[name]`, as the contract reads it.
fn seq_field(v: &Value, name: &str) -> Option<i64> {
    v.get(name)?.as_i64()
}

proptest! {
    #[test]
    fn join_accepts_only_the_contract(v in input()) {
        match parse_join(&v) {
            Ok(req) => {
                prop_assert!(room_ok(&req.room), "room {:?}", req.room);
                prop_assert_eq!(v.get("room").and_then(Value::as_str), Some(req.room.as_str()));
                if let Some(since) = req.since {
                    prop_assert!(since >= 0);
                    if let Some(n) = seq_field(&v, "since") {
                        prop_assert_eq!(n, since);
                    }
                }
            }
            Err(e) => refused_properly(&e)?,
        }
    }

    #[test]
    fn leave_accepts_only_the_contract(v in input()) {
        match parse_leave(&v) {
            Ok(req) => prop_assert!(room_ok(&req.room), "room {:?}", req.room),
            Err(e) => refused_properly(&e)?,
        }
    }

    #[test]
    fn send_accepts_only_the_contract(v in input()) {
        match parse_send(&v) {
            Ok(req) => {
                prop_assert!(room_ok(&req.room), "room {:?}", req.room);
                prop_assert!((1..=64).contains(&req.id.chars().count()), "id {:?}", req.id);
                prop_assert_eq!(v.get("id").and_then(Value::as_str), Some(req.id.as_str()));
                prop_assert_eq!(v.get("text").and_then(Value::as_str), Some(req.text.as_str()));
            }
            Err(e) => refused_properly(&e)?,
        }
    }

    #[test]
    fn history_accepts_only_the_contract(v in input()) {
        match parse_history(&v) {
            Ok(req) => {
                prop_assert!(room_ok(&req.room), "room {:?}", req.room);
                prop_assert!((1..=200).contains(&req.limit), "limit {}", req.limit);
                if let Some(before) = req.before {
                    prop_assert!(before >= 0);
                }
                if let Some(n) = seq_field(&v, "limit") {
                    prop_assert_eq!(n, req.limit as i64);
                }
            }
            Err(e) => refused_properly(&e)?,
        }
    }

    #[test]
    fn typing_accepts_only_the_contract(v in input()) {
        match parse_typing(&v) {
            Ok(req) => {
                prop_assert!(room_ok(&req.room), "room {:?}", req.room);
                prop_assert_eq!(v.get("on").and_then(Value::as_bool), Some(req.on));
            }
            Err(e) => refused_properly(&e)?,
        }
    }

    /// The estimate never panics and never under-counts the text a client can inflate.
    #[test]
    fn size_estimate_counts_every_string(v in any_json()) {
        fn text_bytes(v: &Value) -> usize {
            match v {
                Value::String(s) => s.len(),
                Value::Array(a) => a.iter().map(text_bytes).sum(),
                Value::Object(o) => o.iter().map(|(k, x)| k.len() + text_bytes(x)).sum(),
                _ => 0,
            }
        }
        let size = approx_json_size(&v);
        prop_assert!(size >= text_bytes(&v));
        prop_assert!(approx_json_size(&Value::Array(vec![v])) > size);
    }
}

/// Parsers are fed what serde_json parsed from the wire; its depth limit (128) bounds their
/// input. The size estimate recurses, so check it at that depth on this thread's stack.
#[test]
fn size_estimate_survives_the_deepest_parseable_payload() {
    let deep = format!("{}{}", "[".repeat(127), "]".repeat(127));
    let v: Value = serde_json::from_str(&deep).expect("within serde_json's depth limit");
    assert!(approx_json_size(&v) >= 2 * 127);
    for parse in [
        |v: &Value| parse_join(v).map(drop),
        |v: &Value| parse_leave(v).map(drop),
        |v: &Value| parse_send(v).map(drop),
        |v: &Value| parse_history(v).map(drop),
        |v: &Value| parse_typing(v).map(drop),
    ] {
        assert_eq!(
            parse(&v).map_err(|e| e.code().to_string()),
            Err("invalid".into())
        );
    }
}
