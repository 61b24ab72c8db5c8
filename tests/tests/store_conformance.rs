//! The store conformance suite: the same checks against Cassandra and the embedded store.
//! The Cassandra keyspace uses 10 messages per bucket, so reads cross bucket boundaries.

use std::sync::Arc;
use tidings_store::{Direction, SeqRange, Store, StoreError, StoredMessage, MAX_TEXT_BYTES};
use tidings_tests::unique;

fn message(room: &str, seq: i64) -> StoredMessage {
    StoredMessage {
        room: room.to_string(),
        seq,
        client_id: format!("client-{seq}"),
        from: "ada".into(),
        text: format!("message {seq} ✓"),
        ts: 1_700_000_000_000 + seq,
    }
}

fn seqs(messages: &[StoredMessage]) -> Vec<i64> {
    messages.iter().map(|m| m.seq).collect()
}

pub async fn appends_are_idempotent(store: Arc<dyn Store>) {
    let room = unique("room");
    let batch: Vec<_> = (1..=5).map(|s| message(&room, s)).collect();
    store.append(&batch).await.unwrap();
    store.append(&batch[1..3]).await.unwrap();
    store.append(&batch).await.unwrap();
    let all = store.read(&room, SeqRange::after(0, 100)).await.unwrap();
    assert_eq!(all, batch, "replayed appends change nothing");
    assert_eq!(store.head(&room).await.unwrap(), 5);
}

pub async fn range_reads_cross_buckets_in_both_directions(store: Arc<dyn Store>) {
    let room = unique("room");
    let batch: Vec<_> = (1..=35).map(|s| message(&room, s)).collect();
    store.append(&batch).await.unwrap();

    let page = store.read(&room, SeqRange::after(8, 5)).await.unwrap();
    assert_eq!(seqs(&page), vec![9, 10, 11, 12, 13]);
    assert_eq!(page[0], batch[8], "fields survive the round trip");

    let newest = store.read(&room, SeqRange::before(21, 3)).await.unwrap();
    assert_eq!(seqs(&newest), vec![20, 19, 18]);

    let latest = store
        .read(&room, SeqRange::before(i64::MAX, 12))
        .await
        .unwrap();
    assert_eq!(seqs(&latest), (24..=35).rev().collect::<Vec<_>>());

    let exact_boundary = SeqRange {
        after: 9,
        before: 11,
        direction: Direction::Ascending,
        limit: 10,
    };
    assert_eq!(
        seqs(&store.read(&room, exact_boundary).await.unwrap()),
        vec![10]
    );

    let across_three = SeqRange {
        after: 19,
        before: 31,
        direction: Direction::Descending,
        limit: 100,
    };
    assert_eq!(
        seqs(&store.read(&room, across_three).await.unwrap()),
        (20..=30).rev().collect::<Vec<_>>()
    );

    assert_eq!(
        seqs(&store.read(&room, SeqRange::after(0, 1000)).await.unwrap()),
        (1..=35).collect::<Vec<_>>()
    );
    assert!(store
        .read(&room, SeqRange::after(35, 10))
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .read(&unique("empty"), SeqRange::after(0, 10))
        .await
        .unwrap()
        .is_empty());
}

pub async fn heads_client_ids_and_checkpoints(store: Arc<dyn Store>) {
    let room = unique("room");
    assert_eq!(store.head(&room).await.unwrap(), 0);
    // Out of order, as a replay after a crash might write them.
    store.append(&[message(&room, 7)]).await.unwrap();
    store.append(&[message(&room, 3)]).await.unwrap();
    assert_eq!(
        store.head(&room).await.unwrap(),
        7,
        "the head never moves back"
    );
    assert_eq!(store.seq_of(&room, "client-3").await.unwrap(), Some(3));
    assert_eq!(store.seq_of(&room, "client-4").await.unwrap(), None);

    let name = unique("processor");
    assert_eq!(store.checkpoint(&name, 2).await.unwrap(), None);
    store.set_checkpoint(&name, 2, 40).await.unwrap();
    store.set_checkpoint(&name, 2, 41).await.unwrap();
    store.set_checkpoint(&name, 3, 5).await.unwrap();
    assert_eq!(store.checkpoint(&name, 2).await.unwrap(), Some(41));
    assert_eq!(store.checkpoint(&name, 3).await.unwrap(), Some(5));
}

pub async fn snapshots_and_last_seen(store: Arc<dyn Store>) {
    let name = unique("processor");
    assert_eq!(store.snapshot(&name, 0).await.unwrap(), None);
    store.save_snapshot(&name, 0, 10, b"first").await.unwrap();
    store.save_snapshot(&name, 0, 25, b"second").await.unwrap();
    store.save_snapshot(&name, 1, 3, b"").await.unwrap();
    assert_eq!(
        store.snapshot(&name, 0).await.unwrap(),
        Some((25, b"second".to_vec())),
        "the latest save replaces the snapshot"
    );
    assert_eq!(store.snapshot(&name, 1).await.unwrap(), Some((3, vec![])));
    let huge = vec![7u8; tidings_store::MAX_SNAPSHOT_BYTES + 1];
    assert_eq!(
        store
            .save_snapshot(&name, 0, 30, &huge)
            .await
            .unwrap_err()
            .code(),
        "too_large"
    );
    assert_eq!(store.snapshot(&name, 0).await.unwrap().unwrap().0, 25);

    let (ada, bob, eve) = (unique("ada"), unique("bob"), unique("eve"));
    store
        .set_last_seen(&[(ada.clone(), 1_000), (bob.clone(), 2_000)])
        .await
        .unwrap();
    // An older time arriving late (a replay) never moves a user back.
    store
        .set_last_seen(&[(ada.clone(), 500), (bob.clone(), 3_000)])
        .await
        .unwrap();
    assert_eq!(
        store
            .last_seen(&[bob.clone(), eve.clone(), ada.clone()])
            .await
            .unwrap(),
        [Some(3_000), None, Some(1_000)]
    );
    let too_many: Vec<String> = (0..=tidings_store::MAX_USERS_PER_CALL)
        .map(|i| format!("u{i}"))
        .collect();
    assert_eq!(
        store.last_seen(&too_many).await.unwrap_err().code(),
        "invalid"
    );
}

pub async fn bad_input_is_refused_and_nothing_is_written(store: Arc<dyn Store>) {
    let room = unique("room");
    let mut bad_room = message(&room, 1);
    bad_room.room = "no spaces allowed".into();
    let mut zero_seq = message(&room, 1);
    zero_seq.seq = 0;
    let mut long_id = message(&room, 1);
    long_id.client_id = "x".repeat(65);
    let mut huge = message(&room, 1);
    huge.text = "x".repeat(MAX_TEXT_BYTES + 1);

    for bad in [bad_room, zero_seq, long_id] {
        let err = store.append(&[message(&room, 2), bad]).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
        assert_eq!(err.code(), "invalid");
    }
    let err = store.append(&[message(&room, 2), huge]).await.unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
    assert_eq!(
        store.head(&room).await.unwrap(),
        0,
        "a refused batch writes nothing"
    );

    assert!(matches!(
        store.read(&room, SeqRange::after(0, 0)).await,
        Err(StoreError::Invalid { .. })
    ));
    assert!(matches!(
        store.read(&room, SeqRange::after(0, 20_000)).await,
        Err(StoreError::Invalid { .. })
    ));
    assert!(matches!(
        store.head(&"r".repeat(129)).await,
        Err(StoreError::Invalid { .. })
    ));

    store.append(&[message(&room, 1)]).await.unwrap();
    assert_eq!(store.head(&room).await.unwrap(), 1, "still serving");
}

pub async fn writable_while_the_backend_takes_writes(store: Arc<dyn Store>) {
    let room = unique("writable");
    store
        .writable()
        .await
        .expect("writable with the backend up");
    store
        .append(&[message(&room, 1)])
        .await
        .expect("an append, as writable() said");
    store
        .writable()
        .await
        .expect("still writable after an append");
    assert_eq!(store.head(&room).await.unwrap(), 1);
}

macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn appends_are_idempotent() {
                let (_dir, store) = $make;
                super::appends_are_idempotent(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn range_reads_cross_buckets_in_both_directions() {
                let (_dir, store) = $make;
                super::range_reads_cross_buckets_in_both_directions(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn heads_client_ids_and_checkpoints() {
                let (_dir, store) = $make;
                super::heads_client_ids_and_checkpoints(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn snapshots_and_last_seen() {
                let (_dir, store) = $make;
                super::snapshots_and_last_seen(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bad_input_is_refused_and_nothing_is_written() {
                let (_dir, store) = $make;
                super::bad_input_is_refused_and_nothing_is_written(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn writable_while_the_backend_takes_writes() {
                let (_dir, store) = $make;
                super::writable_while_the_backend_takes_writes(store).await;
            }
        }
    };
}

conformance!(embedded, {
    let dir = tempfile::tempdir().unwrap();
    let store = tidings_tests::embedded_store(dir.path());
    (dir, store)
});

conformance!(
    cassandra,
    (
        tempfile::tempdir().unwrap(),
        tidings_tests::cassandra_store().await
    )
);
