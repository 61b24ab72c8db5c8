//! The log conformance suite: the same checks, run against the Kafka and embedded backends.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tidings_log::{
    partition_for, Checkpoint, ConsumerOptions, Log, LogError, OutRecord, StartAt, TopicSpec,
    MAX_VALUE_BYTES,
};
use tidings_tests::unique;

async fn topic(log: &Arc<dyn Log>, partitions: u32) -> String {
    let name = unique("conformance");
    log.ensure_topics(&[TopicSpec::new(&name, partitions)])
        .await
        .expect("topic created");
    name
}

/// Reads from `consumer` until `count` records arrived (or 30 s passed).
async fn drain(
    consumer: &mut Box<dyn tidings_log::Consumer>,
    count: usize,
) -> Vec<tidings_log::Record> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < count && tokio::time::Instant::now() < deadline {
        out.extend(
            consumer
                .poll(500, Duration::from_millis(500))
                .await
                .expect("poll"),
        );
    }
    out
}

pub async fn keys_keep_their_order_and_partition(log: Arc<dyn Log>) {
    let topic = topic(&log, 4).await;
    // Five keys produced concurrently, each key's records one after another.
    let producers = (0..5).map(|k| {
        let (log, topic) = (log.clone(), topic.clone());
        async move {
            let mut positions = Vec::new();
            for i in 0..40 {
                let record =
                    OutRecord::new(&topic, format!("room-{k}"), format!("{k}:{i}").into_bytes());
                positions.push(log.produce(record).await.expect("produce"));
            }
            positions
        }
    });
    let positions = futures::future::join_all(producers).await;
    for (k, positions) in positions.iter().enumerate() {
        let expected_partition = partition_for(&format!("room-{k}"), 4);
        assert!(positions.iter().all(|p| p.partition == expected_partition));
        assert!(
            positions.windows(2).all(|w| w[0].offset < w[1].offset),
            "offsets grow per key"
        );
    }

    let mut consumer = log
        .consumer(&unique("group"), &[&topic], ConsumerOptions::default())
        .await
        .unwrap();
    let records = drain(&mut consumer, 200).await;
    assert_eq!(records.len(), 200);
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &records {
        assert_eq!(r.partition, partition_for(&r.key, 4));
        per_key
            .entry(r.key.clone())
            .or_default()
            .push(String::from_utf8(r.value.clone()).unwrap());
    }
    for (k, values) in per_key {
        let n = k.trim_start_matches("room-");
        let expected: Vec<String> = (0..40).map(|i| format!("{n}:{i}")).collect();
        assert_eq!(values, expected, "order of {k}");
    }
}

pub async fn a_batch_keeps_its_order_per_key(log: Arc<dyn Log>) {
    let topic = topic(&log, 3).await;
    let records: Vec<OutRecord> = (0..300)
        .map(|i| {
            OutRecord::new(
                &topic,
                format!("edge-{}", i % 4),
                format!("{}:{i}", i % 4).into_bytes(),
            )
        })
        .collect();
    let positions = log.produce_batch(records).await.expect("batch produced");
    assert_eq!(positions.len(), 300);
    for k in 0..4 {
        let mine: Vec<_> = positions.iter().skip(k).step_by(4).collect();
        assert!(mine
            .windows(2)
            .all(|w| w[0].partition == w[1].partition && w[0].offset < w[1].offset));
    }
    let mut consumer = log
        .consumer(&unique("group"), &[&topic], ConsumerOptions::default())
        .await
        .unwrap();
    let records = drain(&mut consumer, 300).await;
    for k in 0..4 {
        let values: Vec<String> = records
            .iter()
            .filter(|r| r.key == format!("edge-{k}"))
            .map(|r| String::from_utf8(r.value.clone()).unwrap())
            .collect();
        let expected: Vec<String> = (0..300)
            .filter(|i| i % 4 == k)
            .map(|i| format!("{k}:{i}"))
            .collect();
        assert_eq!(values, expected, "order of edge-{k}");
    }
    let bad = vec![OutRecord::new(&topic, "", b"x".to_vec())];
    assert!(matches!(
        log.produce_batch(bad).await,
        Err(LogError::InvalidKey(_))
    ));
}

pub async fn readers_and_end_offsets_agree_with_acks(log: Arc<dyn Log>) {
    let topic = topic(&log, 2).await;
    let first = log
        .produce(OutRecord::new(&topic, "k", b"one".to_vec()).with_header("trace_id", "t-1"))
        .await
        .unwrap();
    let second = log
        .produce(OutRecord::new(&topic, "k", b"two".to_vec()))
        .await
        .unwrap();
    assert_eq!(first.partition, second.partition);
    assert!(log.end_offset(&topic, first.partition).await.unwrap() > second.offset);
    assert_eq!(log.partitions(&topic).await.unwrap(), 2);

    let mut reader = log
        .reader(&topic, first.partition, first.offset)
        .await
        .unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while got.len() < 2 && tokio::time::Instant::now() < deadline {
        got.extend(reader.poll(10, Duration::from_millis(300)).await.unwrap());
    }
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].offset, got[0].value.as_slice()),
        (first.offset, &b"one"[..])
    );
    assert_eq!(
        got[0].headers,
        vec![("trace_id".to_string(), "t-1".to_string())]
    );
    assert_eq!(
        (got[1].offset, got[1].value.as_slice()),
        (second.offset, &b"two"[..])
    );

    // A reader that starts at the second record does not see the first.
    let mut later = log
        .reader(&topic, first.partition, second.offset)
        .await
        .unwrap();
    let mut rest = Vec::new();
    while rest.is_empty() && tokio::time::Instant::now() < deadline {
        rest = later.poll(10, Duration::from_millis(300)).await.unwrap();
    }
    assert_eq!(rest[0].offset, second.offset);
}

pub async fn offsets_are_found_by_time(log: Arc<dyn Log>) {
    let topic = topic(&log, 2).await;
    let key = "room-t";
    let p = partition_for(key, 2);
    let other = 1 - p;
    assert_eq!(
        log.offset_for_time(&topic, p, 0).await.unwrap(),
        0,
        "empty: the end"
    );
    let mut early = Vec::new();
    for i in 0..3 {
        let record = OutRecord::new(&topic, key, format!("early {i}").into_bytes());
        early.push(log.produce(record).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let between = tidings_log::now_ms();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut late = Vec::new();
    for i in 0..3 {
        let record = OutRecord::new(&topic, key, format!("late {i}").into_bytes());
        late.push(log.produce(record).await.unwrap());
    }

    assert_eq!(
        log.offset_for_time(&topic, p, 0).await.unwrap(),
        early[0].offset
    );
    assert_eq!(
        log.offset_for_time(&topic, p, between).await.unwrap(),
        late[0].offset,
        "the first record appended at or after the time"
    );
    let end = log.end_offset(&topic, p).await.unwrap();
    let future = tidings_log::now_ms() + 3_600_000;
    assert_eq!(log.offset_for_time(&topic, p, future).await.unwrap(), end);
    assert_eq!(
        log.offset_for_time(&topic, other, between).await.unwrap(),
        0
    );
    assert!(matches!(
        log.offset_for_time(&topic, 7, between).await,
        Err(LogError::UnknownPartition { .. })
    ));

    // Read from there: only the late records, each stamped at or after the time.
    let mut reader = log
        .reader(
            &topic,
            p,
            log.offset_for_time(&topic, p, between).await.unwrap(),
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while got.len() < 3 && tokio::time::Instant::now() < deadline {
        got.extend(reader.poll(10, Duration::from_millis(300)).await.unwrap());
    }
    let values: Vec<_> = got.iter().map(|r| r.value.clone()).collect();
    assert_eq!(
        values,
        [b"late 0".to_vec(), b"late 1".to_vec(), b"late 2".to_vec()]
    );
    assert!(got.iter().all(|r| r.timestamp_ms >= between));
}

pub async fn committed_offsets_are_read_without_joining(log: Arc<dyn Log>) {
    let topic = topic(&log, 1).await;
    let group = unique("group");
    assert_eq!(log.committed_offset(&group, &topic, 0).await.unwrap(), None);
    for i in 0..5 {
        log.produce(OutRecord::new(&topic, "k", format!("{i}").into_bytes()))
            .await
            .unwrap();
    }
    let mut consumer = log
        .consumer(&group, &[&topic], ConsumerOptions::default())
        .await
        .unwrap();
    let records = drain(&mut consumer, 5).await;
    assert_eq!(records.len(), 5);
    consumer
        .commit(&[records[2].next_checkpoint()])
        .await
        .unwrap();
    assert_eq!(
        log.committed_offset(&group, &topic, 0).await.unwrap(),
        Some(records[2].offset + 1)
    );
    // Looking did not disturb the member: it reads on and commits again.
    log.produce(OutRecord::new(&topic, "k", b"5".to_vec()))
        .await
        .unwrap();
    let more = drain(&mut consumer, 1).await;
    assert_eq!(more.len(), 1);
    consumer.commit(&[more[0].next_checkpoint()]).await.unwrap();
    assert_eq!(
        log.committed_offset(&group, &topic, 0).await.unwrap(),
        Some(more[0].offset + 1)
    );
    assert_eq!(
        log.committed_offset(&unique("other"), &topic, 0)
            .await
            .unwrap(),
        None
    );
}

pub async fn a_group_resumes_where_it_committed(log: Arc<dyn Log>) {
    let topic = topic(&log, 3).await;
    for i in 0..90 {
        log.produce(OutRecord::new(
            &topic,
            format!("k{}", i % 9),
            format!("{i}").into_bytes(),
        ))
        .await
        .unwrap();
    }
    let group = unique("group");
    let mut first = log
        .consumer(&group, &[&topic], ConsumerOptions::default())
        .await
        .unwrap();
    let mut processed: Vec<tidings_log::Record> = Vec::new();
    while processed.len() < 30 {
        processed.extend(first.poll(10, Duration::from_secs(1)).await.unwrap());
    }
    let mut checkpoints: HashMap<u32, Checkpoint> = HashMap::new();
    for r in &processed {
        checkpoints.insert(r.partition, r.next_checkpoint());
    }
    first
        .commit(&checkpoints.values().cloned().collect::<Vec<_>>())
        .await
        .unwrap();
    drop(first);

    let mut second = log
        .consumer(&group, &[&topic], ConsumerOptions::default())
        .await
        .unwrap();
    let rest = drain(&mut second, 90 - processed.len()).await;
    // Nothing more arrives: no duplicates of the committed part.
    let extra = second.poll(100, Duration::from_secs(2)).await.unwrap();
    assert!(extra.is_empty(), "records read twice: {}", extra.len());
    let mut seen: Vec<String> = processed
        .iter()
        .chain(&rest)
        .map(|r| String::from_utf8(r.value.clone()).unwrap())
        .collect();
    seen.sort_by_key(|v| v.parse::<u32>().unwrap());
    let expected: Vec<String> = (0..90).map(|i| i.to_string()).collect();
    assert_eq!(
        seen, expected,
        "every record exactly once across the two members"
    );
}

pub async fn a_new_group_can_start_at_the_end(log: Arc<dyn Log>) {
    let topic = topic(&log, 1).await;
    log.produce(OutRecord::new(&topic, "k", b"old".to_vec()))
        .await
        .unwrap();
    let options = ConsumerOptions {
        start_at: StartAt::Latest,
        ..Default::default()
    };
    let mut consumer = log
        .consumer(&unique("group"), &[&topic], options)
        .await
        .unwrap();
    // Kafka joins the group asynchronously; give it a moment before producing the new record.
    let early = consumer.poll(10, Duration::from_secs(3)).await.unwrap();
    assert!(
        early.is_empty(),
        "an end-started group must not see old records"
    );
    log.produce(OutRecord::new(&topic, "k", b"new".to_vec()))
        .await
        .unwrap();
    let records = drain(&mut consumer, 1).await;
    assert_eq!(
        records
            .iter()
            .map(|r| r.value.as_slice())
            .collect::<Vec<_>>(),
        vec![&b"new"[..]]
    );
}

pub async fn commit_with_is_all_or_nothing(log: Arc<dyn Log>) {
    let input = topic(&log, 2).await;
    let output = topic(&log, 2).await;
    for i in 0..20 {
        log.produce(OutRecord::new(
            &input,
            format!("k{i}"),
            format!("{i}").into_bytes(),
        ))
        .await
        .unwrap();
    }
    let group = unique("group");
    let options = ConsumerOptions {
        transactional_id: Some(unique("instance")),
        ..Default::default()
    };
    let mut consumer = log
        .consumer(&group, &[&input], options.clone())
        .await
        .unwrap();
    let records = drain(&mut consumer, 20).await;
    assert_eq!(records.len(), 20);

    // A transaction that fails on bad input writes nothing and commits nothing.
    let mut bad = vec![OutRecord::new(&output, "k", b"fine".to_vec())];
    bad.push(OutRecord::new(&output, "k", vec![0; MAX_VALUE_BYTES + 1]));
    let checkpoints: Vec<Checkpoint> = records.iter().map(|r| r.next_checkpoint()).collect();
    assert!(matches!(
        consumer.commit_with(bad, &checkpoints).await,
        Err(LogError::TooLarge { .. })
    ));
    drop(consumer);

    let mut consumer = log.consumer(&group, &[&input], options).await.unwrap();
    let again = drain(&mut consumer, 20).await;
    assert_eq!(
        again.len(),
        20,
        "offsets of the failed transaction were not committed"
    );
    let outputs: Vec<OutRecord> = again
        .iter()
        .map(|r| OutRecord::new(&output, r.key.clone(), r.value.clone()))
        .collect();
    let mut last: HashMap<u32, Checkpoint> = HashMap::new();
    for r in &again {
        last.insert(r.partition, r.next_checkpoint());
    }
    consumer
        .commit_with(outputs, &last.into_values().collect::<Vec<_>>())
        .await
        .unwrap();

    let mut reader_group = log
        .consumer(&unique("check"), &[&output], ConsumerOptions::default())
        .await
        .unwrap();
    let copied = drain(&mut reader_group, 20).await;
    let values: HashSet<Vec<u8>> = copied.iter().map(|r| r.value.clone()).collect();
    assert_eq!(copied.len(), 20);
    assert_eq!(values.len(), 20);
    assert!(
        !values.contains(b"fine".as_slice()),
        "output of the failed transaction is invisible"
    );
}

pub async fn bad_input_is_refused_clearly(log: Arc<dyn Log>) {
    let topic = topic(&log, 1).await;
    let too_big = OutRecord::new(&topic, "k", vec![7; MAX_VALUE_BYTES + 1]);
    let err = log.produce(too_big).await.unwrap_err();
    assert!(matches!(err, LogError::TooLarge { .. }), "{err}");
    assert_eq!(err.code(), "too_large");

    for key in ["", "a\0b"] {
        let err = log
            .produce(OutRecord::new(&topic, key, b"v".to_vec()))
            .await
            .unwrap_err();
        assert!(matches!(err, LogError::InvalidKey(_)), "{err}");
        assert_eq!(err.code(), "invalid");
    }
    let long_key = "k".repeat(300);
    assert!(matches!(
        log.produce(OutRecord::new(&topic, long_key, vec![])).await,
        Err(LogError::InvalidKey(_))
    ));

    let missing = unique("missing");
    assert!(matches!(
        log.produce(OutRecord::new(&missing, "k", vec![])).await,
        Err(LogError::UnknownTopic(_))
    ));

    let mut plain = log
        .consumer(&unique("g"), &[&topic], ConsumerOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        plain.commit_with(vec![], &[]).await,
        Err(LogError::NotTransactional)
    ));

    // Still serving after all of that.
    let ok = log
        .produce(OutRecord::new(&topic, "k", b"fine".to_vec()))
        .await
        .unwrap();
    assert_eq!(
        log.end_offset(&topic, ok.partition).await.unwrap(),
        ok.offset + 1
    );
}

pub async fn writable_while_the_backend_takes_writes(log: Arc<dyn Log>) {
    let topic = topic(&log, 2).await;
    log.writable().await.expect("writable with the backend up");
    let p = log
        .produce(OutRecord::new(&topic, "k", b"v".to_vec()))
        .await
        .expect("an append, as writable() said");
    log.writable()
        .await
        .expect("still writable after an append");
    assert_eq!(
        log.end_offset(&topic, p.partition).await.unwrap(),
        p.offset + 1
    );
}

macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn keys_keep_their_order_and_partition() {
                let (_dir, log) = $make;
                super::keys_keep_their_order_and_partition(log).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_batch_keeps_its_order_per_key() {
                let (_dir, log) = $make;
                super::a_batch_keeps_its_order_per_key(log).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn readers_and_end_offsets_agree_with_acks() {
                let (_dir, log) = $make;
                super::readers_and_end_offsets_agree_with_acks(log).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn offsets_are_found_by_time() {
                let (_dir, log) = $make;
                super::offsets_are_found_by_time(log).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn committed_offsets_are_read_without_joining() {
                let (_dir, log) = $make;
                super::committed_offsets_are_read_without_joining(log).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_group_resumes_where_it_committed() {
                let (_dir, log) = $make;
                super::a_group_resumes_where_it_committed(log).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_new_group_can_start_at_the_end() {
                let (_dir, log) = $make;
                super::a_new_group_can_start_at_the_end(log).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn commit_with_is_all_or_nothing() {
                let (_dir, log) = $make;
                super::commit_with_is_all_or_nothing(log).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bad_input_is_refused_clearly() {
                let (_dir, log) = $make;
                super::bad_input_is_refused_clearly(log).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn writable_while_the_backend_takes_writes() {
                let (_dir, log) = $make;
                super::writable_while_the_backend_takes_writes(log).await;
            }
        }
    };
}

conformance!(embedded, {
    let dir = tempfile::tempdir().unwrap();
    let log = tidings_tests::embedded_log(dir.path());
    (dir, log)
});

conformance!(
    kafka,
    (
        tempfile::tempdir().unwrap(),
        tidings_tests::kafka_log().await
    )
);
