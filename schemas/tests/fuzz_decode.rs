//! Property-based fuzzing of every record's decoder: whatever bytes a topic holds, decoding
//! returns an error or a record that encodes again, never panics, and never allocates much
//! more than the record's own size (a hostile Avro length prefix must not cost gigabytes).
//!
//! 256 cases per property by default; `PROPTEST_CASES=100000 cargo test -p tidings-schemas
//! --test fuzz_decode --release` runs a long session by hand.

use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Debug;
use tidings_schemas::registry::{self, Subject};
use tidings_schemas::wire;
use tidings_schemas::{
    allocation_limit, ClientEvent, Delivery, LogRecord, ModeratorAction, PresenceEntry, Revocation,
    RoomEvent, SchemaError, Subscription, MAX_RECORD_BYTES,
};

/// Records the largest allocation each thread asks for, so a test can prove a decode stayed
/// small (tests run on several threads; each measures only its own).
struct Measuring;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the allocator also runs while a thread's locals are torn down.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

unsafe impl GlobalAlloc for Measuring {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Measuring = Measuring;

/// The largest single allocation `f` made on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get))
}

/// Decoding `bytes` as `T` must not panic; a record it returns must encode again and read
/// back equal (so it is a valid record, not a half-read one).
fn check_decode<T: LogRecord + PartialEq + Debug>(bytes: &[u8]) -> Result<T, SchemaError> {
    let decoded = T::decode(bytes);
    if let Ok(record) = &decoded {
        let again = record.encode().expect("a decoded record encodes");
        assert_eq!(&T::decode(&again).expect("re-decodes"), record);
    }
    decoded
}

/// Every decoder on the same bytes.
fn decode_as_every_kind(bytes: &[u8]) {
    let _ = check_decode::<ClientEvent>(bytes);
    let _ = check_decode::<RoomEvent>(bytes);
    let _ = check_decode::<Delivery>(bytes);
    let _ = check_decode::<Subscription>(bytes);
    let _ = check_decode::<ModeratorAction>(bytes);
    let _ = check_decode::<Revocation>(bytes);
}

/// Avro's zig-zag varint of a long: how lengths are written.
fn avro_long(n: i64) -> Vec<u8> {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let byte = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, including control characters and astral planes.
    prop::collection::vec(any::<char>(), 0..40).prop_map(|c| c.into_iter().collect())
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(text())
}

fn client_event() -> impl Strategy<Value = ClientEvent> {
    (
        (text(), text(), opt_text(), opt_text(), any::<i64>(), text()),
        (
            text(),
            text(),
            opt_text(),
            opt_text(),
            any::<Option<bool>>(),
            opt_text(),
        ),
        prop::option::of(prop::collection::vec(text(), 0..4)),
        any::<Option<i64>>(),
    )
        .prop_map(
            |(
                (event_id, kind, room, user, ts, trace_id),
                (node, conn, client_id, text, on, user_name),
                users,
                seq,
            )| ClientEvent {
                role: None,
                target: None,
                until: None,
                event_id,
                kind,
                room,
                user,
                ts,
                trace_id,
                node,
                conn,
                client_id,
                text,
                on,
                user_name,
                users,
                seq,
            },
        )
}

fn room_event() -> impl Strategy<Value = RoomEvent> {
    (
        (text(), text(), opt_text(), opt_text(), any::<i64>(), text()),
        (text(), any::<i64>(), text(), text(), text(), text()),
    )
        .prop_map(
            |(
                (event_id, kind, room, user, ts, trace_id),
                (node, seq, client_id, text, origin_node, origin_conn),
            )| RoomEvent {
                role: None,
                target: None,
                until: None,
                event_id,
                kind,
                room,
                user,
                ts,
                trace_id,
                node,
                seq,
                client_id,
                text,
                origin_node,
                origin_conn,
            },
        )
}

fn delivery() -> impl Strategy<Value = Delivery> {
    (
        (text(), text(), opt_text(), opt_text(), any::<i64>(), text()),
        (text(), text(), opt_text(), any::<Option<i64>>(), opt_text()),
        (
            opt_text(),
            any::<Option<i64>>(),
            any::<Option<bool>>(),
            opt_text(),
            opt_text(),
        ),
        (
            opt_text(),
            any::<Option<i64>>(),
            any::<Option<bool>>(),
            prop::option::of(prop::collection::vec(presence_entry(), 0..4)),
        ),
        (opt_text(), opt_text()),
    )
        .prop_map(
            |(
                (event_id, kind, room, user, ts, trace_id),
                (node, edge, conn, seq, client_id),
                (text, msg_ts, on, error_code, error_message),
                (user_name, count, truncated, users),
                (to, reason),
            )| Delivery {
                event_id,
                kind,
                room,
                user,
                ts,
                trace_id,
                node,
                edge,
                conn,
                seq,
                client_id,
                text,
                msg_ts,
                on,
                error_code,
                error_message,
                user_name,
                count,
                truncated,
                users,
                to,
                reason,
            },
        )
}

fn presence_entry() -> impl Strategy<Value = PresenceEntry> {
    (
        text(),
        opt_text(),
        any::<Option<bool>>(),
        any::<Option<i64>>(),
    )
        .prop_map(|(user, name, online, last_seen)| PresenceEntry {
            user,
            name,
            online,
            last_seen,
        })
}

fn subscription() -> impl Strategy<Value = Subscription> {
    (
        (text(), text(), opt_text(), opt_text(), any::<i64>()),
        (text(), text(), opt_text()),
    )
        .prop_map(
            |((event_id, kind, room, user, ts), (trace_id, node, conn))| Subscription {
                event_id,
                kind,
                room,
                user,
                ts,
                trace_id,
                node,
                conn,
            },
        )
}

/// A valid encoding of some record of any kind.
fn any_encoding() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        client_event().prop_map(|r| r.encode().expect("encodes")),
        room_event().prop_map(|r| r.encode().expect("encodes")),
        delivery().prop_map(|r| r.encode().expect("encodes")),
        subscription().prop_map(|r| r.encode().expect("encodes")),
    ]
}

fn schema_id() -> impl Strategy<Value = u32> {
    prop::sample::select(registry::VERSIONS.iter().map(|v| v.id).collect::<Vec<_>>())
}

/// One way to damage a record.
#[derive(Debug, Clone)]
enum Damage {
    Truncate(prop::sample::Index),
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Remove(prop::sample::Index),
    SchemaId(u32),
    Magic(u8),
    Append(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Damage::Truncate),
        (any::<prop::sample::Index>(), 1..=255u8).prop_map(|(i, x)| Damage::Flip(i, x)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Damage::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Damage::Remove),
        prop_oneof![schema_id(), any::<u32>()].prop_map(Damage::SchemaId),
        (1..=255u8).prop_map(Damage::Magic),
        prop::collection::vec(any::<u8>(), 1..16).prop_map(Damage::Append),
    ]
}

/// Applies `damage`; one that needs bytes the input no longer has (an earlier damage may
/// have cut it short) leaves it as it is.
fn apply(mut bytes: Vec<u8>, damage: &Damage) -> Vec<u8> {
    let len = bytes.len();
    match damage {
        Damage::Truncate(i) => bytes.truncate(i.index(len + 1)),
        Damage::Flip(i, x) if len > 0 => bytes[i.index(len)] ^= x,
        Damage::Insert(i, b) => bytes.insert(i.index(len + 1), *b),
        Damage::Remove(i) if len > 0 => {
            bytes.remove(i.index(len));
        }
        Damage::SchemaId(id) if len >= wire::HEADER_LEN => {
            bytes[1..5].copy_from_slice(&id.to_be_bytes())
        }
        Damage::Magic(m) if len > 0 => bytes[0] = *m,
        Damage::Append(tail) => bytes.extend_from_slice(tail),
        _ => {}
    }
    bytes
}

proptest! {
    #[test]
    fn valid_records_round_trip(
        c in client_event(), r in room_event(), d in delivery(), s in subscription()
    ) {
        prop_assert_eq!(ClientEvent::decode(&c.encode().unwrap()).unwrap(), c);
        prop_assert_eq!(RoomEvent::decode(&r.encode().unwrap()).unwrap(), r);
        prop_assert_eq!(Delivery::decode(&d.encode().unwrap()).unwrap(), d);
        prop_assert_eq!(Subscription::decode(&s.encode().unwrap()).unwrap(), s);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        decode_as_every_kind(&bytes);
    }

    /// Garbage behind a valid header reaches the Avro decoder of every schema.
    #[test]
    fn arbitrary_datums_under_every_schema_id_never_panic(
        id in schema_id(),
        datum in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        decode_as_every_kind(&wire::frame(id, &datum));
    }

    #[test]
    fn damaged_records_decode_to_an_error_or_a_valid_record(
        bytes in any_encoding(),
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let damaged = damages.iter().fold(bytes, apply);
        decode_as_every_kind(&damaged);
    }

    /// Whatever a length prefix claims, no allocation exceeds the record bound.
    #[test]
    fn hostile_lengths_allocate_nothing_big(
        id in schema_id(),
        length in prop_oneof![Just(400i64 << 20), 1i64 << 20..i64::MAX, i64::MIN..0],
        valid_strings in 0..3usize,
    ) {
        // Leading string fields empty, then the hostile length (every schema opens with
        // strings: event_id, kind), then a little data.
        let mut datum = vec![0u8; valid_strings];
        datum.extend(avro_long(length));
        datum.extend_from_slice(b"tail");
        let framed = wire::frame(id, &datum);
        let (_, largest) = largest_allocation(|| decode_as_every_kind(&framed));
        prop_assert!(largest <= MAX_RECORD_BYTES, "allocated {largest} bytes");
    }
}

/// The hostile length inside a union (`room`), checked once per kind, plainly.
#[test]
fn a_hostile_length_in_a_union_branch_is_refused_without_allocating_it() {
    for version in registry::VERSIONS {
        // event_id "", kind "", room = union branch 1 (string) of 400 MiB.
        let mut datum = vec![0, 0, avro_long(1)[0]];
        datum.extend(avro_long(400 << 20));
        datum.extend_from_slice(b"x");
        let framed = wire::frame(version.id, &datum);
        let (result, largest) = largest_allocation(|| match version.subject {
            Subject::ClientEvent => ClientEvent::decode(&framed).map(drop),
            Subject::RoomEvent => RoomEvent::decode(&framed).map(drop),
            Subject::Delivery => Delivery::decode(&framed).map(drop),
            Subject::Subscription => Subscription::decode(&framed).map(drop),
            Subject::ModeratorAction => ModeratorAction::decode(&framed).map(drop),
            Subject::Revocation => Revocation::decode(&framed).map(drop),
        });
        assert!(result.is_err(), "{}", version.file);
        assert!(largest <= MAX_RECORD_BYTES, "{}: {largest}", version.file);
    }
    assert_eq!(allocation_limit(), MAX_RECORD_BYTES);
}

#[test]
fn records_over_the_bound_are_refused_before_decoding() {
    let mut bytes = RoomEvent {
        role: None,
        target: None,
        until: None,
        event_id: "e".into(),
        kind: "message".into(),
        room: Some("r".into()),
        user: None,
        ts: 1,
        trace_id: "t".into(),
        node: "n".into(),
        seq: 1,
        client_id: "c".into(),
        text: "x".repeat(MAX_RECORD_BYTES),
        origin_node: "o".into(),
        origin_conn: "c".into(),
    }
    .encode()
    .unwrap();
    assert!(matches!(
        RoomEvent::decode(&bytes),
        Err(SchemaError::TooLarge { .. })
    ));
    bytes.truncate(MAX_RECORD_BYTES);
    // At the bound it is decoded (and is short of its text, so an error of another kind).
    assert!(!matches!(
        RoomEvent::decode(&bytes),
        Err(SchemaError::TooLarge { .. })
    ));
}

#[test]
fn wrong_framing_and_ids_are_typed_errors() {
    let bytes = Subscription {
        event_id: "e".into(),
        kind: "host".into(),
        room: Some("r".into()),
        user: None,
        ts: 1,
        trace_id: "t".into(),
        node: "edge".into(),
        conn: None,
    }
    .encode()
    .unwrap();
    assert!(matches!(
        RoomEvent::decode(&bytes),
        Err(SchemaError::WrongSubject { id: 401, .. })
    ));
    assert!(matches!(
        Subscription::decode(&apply(bytes.clone(), &Damage::SchemaId(7))),
        Err(SchemaError::UnknownSchemaId(7))
    ));
    assert!(matches!(
        Subscription::decode(&apply(bytes, &Damage::Magic(1))),
        Err(SchemaError::Framing(_))
    ));
    assert!(matches!(
        Subscription::decode(&[0, 0, 1]),
        Err(SchemaError::Framing(_))
    ));
}
