//! Records a processor cannot decode: counted, logged, and copied to `tidings.dead-letters`
//! so they neither stop the processor nor vanish.
//!
//! The copy is one of the processor's outputs, so it shares their guarantee: exactly once
//! for the sequencer (inside its transaction with the offsets), at least once for the others
//! (appended before the offsets are committed; a crash in between copies the record again on
//! restart, never endlessly, since the commit that follows moves past it).
//!
//! Reads outside a consumer group (the sequencer's recovery scan of the room log, the room
//! directory's read of subscriptions) start over on every session, so they only count and log
//! ([`skip`]): copying there would add a duplicate per restart. The room log's bad records
//! are copied by persistence and fan-out, its consumers; a bad subscription stays where it is
//! (the topic is compacted and kept), counted and logged at every directory load.

use prometheus::{IntCounterVec, Opts};
use std::sync::LazyLock;
use tidings_log::topics::DEAD_LETTERS;
use tidings_log::{OutRecord, Record, MAX_KEY_BYTES, MAX_VALUE_BYTES};
use tidings_schemas::{LogRecord, SchemaError};

/// Header names added to a copy (the original's own headers come first, unchanged).
pub const HEADER_TOPIC: &str = "dead-letter.topic";
pub const HEADER_PARTITION: &str = "dead-letter.partition";
pub const HEADER_OFFSET: &str = "dead-letter.offset";
pub const HEADER_PROCESSOR: &str = "dead-letter.processor";
pub const HEADER_ERROR: &str = "dead-letter.error";
/// Present when the original key could not key a record (empty, say, as Kafka allows): the
/// copy is then keyed `topic/partition/offset`.
pub const HEADER_KEY_REPLACED: &str = "dead-letter.key-replaced";
/// Present when the value was cut to fit the log's record limit: the original length.
pub const HEADER_VALUE_TRUNCATED: &str = "dead-letter.value-truncated-from";

/// Longest error text carried in a header.
const MAX_ERROR_BYTES: usize = 1024;

/// `tidings_dead_letters_total{processor, topic}`, on the default registry (which the edge's
/// `/metrics` includes, so `tidings standalone` shows it).
static DEAD_LETTERS_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let counter = IntCounterVec::new(
        Opts::new(
            "tidings_dead_letters_total",
            "Records a processor could not decode and skipped, by processor and source topic",
        ),
        &["processor", "topic"],
    )
    // The name and labels are constants: a failure is a defect this crate's tests catch.
    .expect("valid metric definition");
    if let Err(error) = prometheus::register(Box::new(counter.clone())) {
        // Still counts; only /metrics misses it.
        tracing::warn!(%error, "tidings_dead_letters_total not registered");
    }
    counter
});

/// How many records `processor` could not decode from `topic` in this process.
pub fn count(processor: &str, topic: &str) -> u64 {
    DEAD_LETTERS_TOTAL
        .with_label_values(&[processor, topic])
        .get()
}

/// Decodes a record read by a consumer group; one that does not decode is counted, logged and
/// its copy added to `outputs`, which the caller appends before committing past it.
pub(crate) fn decode_or_dead_letter<T: LogRecord>(
    processor: &'static str,
    record: &Record,
    outputs: &mut Vec<OutRecord>,
) -> Option<T> {
    match T::decode(&record.value) {
        Ok(value) => Some(value),
        Err(error) => {
            note(processor, record, &error, "copied to the dead-letter topic");
            outputs.push(copy(processor, record, &error));
            None
        }
    }
}

/// Decodes a record read outside a consumer group; one that does not decode is counted and
/// logged only (see the module doc).
pub(crate) fn skip<T: LogRecord>(processor: &'static str, record: &Record) -> Option<T> {
    match T::decode(&record.value) {
        Ok(value) => Some(value),
        Err(error) => {
            note(processor, record, &error, "skipped");
            None
        }
    }
}

fn note(processor: &'static str, record: &Record, error: &SchemaError, action: &str) {
    DEAD_LETTERS_TOTAL
        .with_label_values(&[processor, record.topic.as_str()])
        .inc();
    tracing::warn!(
        processor,
        topic = %record.topic,
        partition = record.partition,
        offset = record.offset,
        %error,
        "record does not decode; {action}"
    );
}

/// The dead-letter copy of `record`: its key, value and headers, plus where it came from and
/// why. Always a record the log accepts, so a bad input can never fail the processor's commit.
pub(crate) fn copy(processor: &str, record: &Record, error: &SchemaError) -> OutRecord {
    let usable_key =
        !record.key.is_empty() && record.key.len() <= MAX_KEY_BYTES && !record.key.contains('\0');
    let key = if usable_key {
        record.key.clone()
    } else {
        format!("{}/{}/{}", record.topic, record.partition, record.offset)
    };
    let mut headers = record.headers.clone();
    headers.push((HEADER_TOPIC.into(), record.topic.clone()));
    headers.push((HEADER_PARTITION.into(), record.partition.to_string()));
    headers.push((HEADER_OFFSET.into(), record.offset.to_string()));
    headers.push((HEADER_PROCESSOR.into(), processor.into()));
    headers.push((
        HEADER_ERROR.into(),
        cut(&error.to_string(), MAX_ERROR_BYTES),
    ));
    if !usable_key {
        headers.push((HEADER_KEY_REPLACED.into(), "true".into()));
    }
    let header_bytes = |h: &[(String, String)]| h.iter().map(|(k, v)| k.len() + v.len()).sum();
    let mut value = record.value.clone();
    // The original fitted the log, but the added headers may not: the value gives way.
    let truncated_header = HEADER_VALUE_TRUNCATED.len() + 20;
    if value.len() + header_bytes(&headers) > MAX_VALUE_BYTES {
        let room = MAX_VALUE_BYTES
            .saturating_sub(header_bytes(&headers))
            .saturating_sub(truncated_header);
        headers.push((HEADER_VALUE_TRUNCATED.into(), value.len().to_string()));
        value.truncate(room);
        if value.len() + header_bytes(&headers) > MAX_VALUE_BYTES {
            // Headers alone too big (the original's own): keep only ours.
            headers.drain(..record.headers.len());
        }
    }
    OutRecord {
        topic: DEAD_LETTERS.to_string(),
        key,
        value,
        headers,
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, value: Vec<u8>, headers: Vec<(String, String)>) -> Record {
        Record {
            topic: "tidings.room-log".into(),
            partition: 3,
            offset: 41,
            key: key.into(),
            value,
            headers,
            timestamp_ms: 0,
        }
    }

    fn header<'a>(r: &'a OutRecord, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_copy_keeps_key_value_and_headers_and_says_where_from() {
        let original = record(
            "lobby",
            b"junk".to_vec(),
            vec![("trace".into(), "t1".into())],
        );
        let copy = copy(
            "fanout",
            &original,
            &SchemaError::Framing("magic byte is not 0"),
        );
        assert_eq!(copy.topic, DEAD_LETTERS);
        assert_eq!(
            (copy.key.as_str(), copy.value.as_slice()),
            ("lobby", &b"junk"[..])
        );
        assert_eq!(copy.headers[0], ("trace".into(), "t1".into()));
        assert_eq!(header(&copy, HEADER_TOPIC), Some("tidings.room-log"));
        assert_eq!(header(&copy, HEADER_PARTITION), Some("3"));
        assert_eq!(header(&copy, HEADER_OFFSET), Some("41"));
        assert_eq!(header(&copy, HEADER_PROCESSOR), Some("fanout"));
        assert!(header(&copy, HEADER_ERROR).is_some_and(|e| e.contains("magic")));
        assert_eq!(header(&copy, HEADER_KEY_REPLACED), None);
        tidings_log::validate(&copy).expect("the log accepts it");
    }

    #[test]
    fn any_record_makes_a_copy_the_log_accepts() {
        let error = SchemaError::Avro("é".repeat(5000));
        let cases = [
            record("", vec![1], vec![]),
            record("a\0b", vec![1], vec![]),
            record(&"k".repeat(300), vec![1], vec![]),
            record("r", vec![7; MAX_VALUE_BYTES], vec![]),
            record(
                "r",
                vec![7; 10],
                vec![("h".into(), "v".repeat(MAX_VALUE_BYTES))],
            ),
        ];
        for original in &cases {
            let copy = copy("sequencer", original, &error);
            tidings_log::validate(&copy).expect("the log accepts it");
            assert_eq!(header(&copy, HEADER_OFFSET), Some("41"));
            assert!(header(&copy, HEADER_ERROR).is_some_and(|e| e.len() <= MAX_ERROR_BYTES));
        }
        assert_eq!(
            copy("s", &cases[0], &error).key,
            "tidings.room-log/3/41",
            "an empty key is replaced"
        );
        let big = copy("s", &cases[3], &error);
        assert_eq!(
            header(&big, HEADER_VALUE_TRUNCATED),
            Some(MAX_VALUE_BYTES.to_string().as_str())
        );
        assert!(big.value.len() > MAX_VALUE_BYTES - 2000);
    }

    #[test]
    fn failures_are_counted_per_processor_and_topic() {
        let before = count("test-proc", "tidings.room-log");
        let mut out = Vec::new();
        let bad = record("r", b"garbage".to_vec(), vec![]);
        assert!(
            decode_or_dead_letter::<tidings_schemas::RoomEvent>("test-proc", &bad, &mut out)
                .is_none()
        );
        assert!(skip::<tidings_schemas::RoomEvent>("test-proc", &bad).is_none());
        assert_eq!(out.len(), 1, "only the group read copies");
        assert_eq!(count("test-proc", "tidings.room-log"), before + 2);
        let families = prometheus::gather();
        assert!(families
            .iter()
            .any(|f| f.name() == "tidings_dead_letters_total"));
    }
}
