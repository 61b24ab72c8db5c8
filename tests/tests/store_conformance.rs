//! The store conformance suite: the same checks against Cassandra and the embedded store.
//! The Cassandra keyspace uses 10 messages per bucket, so reads cross bucket boundaries.

use std::sync::Arc;
use tidings_store::{
    Direction, InboxRoom, InboxUpdate, Mute, SeqRange, Store, StoreError, StoredMessage,
    MAX_INBOX_ROOMS, MAX_INBOX_UPDATE, MAX_TEXT_BYTES,
};
use tidings_tests::unique;

fn message(room: &str, seq: i64) -> StoredMessage {
    StoredMessage {
        room: room.to_string(),
        seq,
        client_id: format!("client-{seq}"),
        from: "ada".into(),
        text: format!("message {seq} ✓"),
        ts: 1_700_000_000_000 + seq,
        deleted: false,
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

fn inbox_room(room: &str, read: i64) -> InboxRoom {
    InboxRoom {
        room: room.to_string(),
        read,
    }
}

fn row(user: &str, room: &str, seq: i64) -> (String, String, i64) {
    (user.to_string(), room.to_string(), seq)
}

pub async fn inbox_index(store: Arc<dyn Store>) {
    let (ada, bob) = (unique("ada"), unique("bob"));
    // One prefix, so the rooms' name order is a, b, c.
    let prefix = unique("inbox");
    let (ra, rb, rc) = (
        format!("{prefix}-a"),
        format!("{prefix}-b"),
        format!("{prefix}-c"),
    );
    assert!(store.inbox_rooms(&ada).await.unwrap().is_empty());
    assert_eq!(store.read_marker(&ada, &ra).await.unwrap(), None);
    assert_eq!(store.last_message(&ra).await.unwrap(), None);
    assert_eq!(store.counts_after(&ada, &ra, 0).await.unwrap(), (0, 0));

    // bob's rows share ada's room and seqs, and ada's are spread over two rooms: counts
    // must take only the asked user's rows in the asked room.
    let update = InboxUpdate {
        rooms: vec![
            (ada.clone(), rb.clone()),
            (ada.clone(), rc.clone()),
            (bob.clone(), ra.clone()),
        ],
        sent: vec![
            row(&ada, &ra, 2),
            row(&ada, &ra, 5),
            row(&ada, &rb, 3),
            row(&bob, &ra, 4),
        ],
        mentions: vec![
            row(&ada, &ra, 3),
            row(&ada, &ra, 7),
            row(&ada, &ra, 9),
            row(&ada, &rb, 8),
            row(&bob, &ra, 3),
        ],
        last: vec![message(&ra, 9), message(&rb, 10), message(&rb, 8)],
    };
    store.update_inbox(&update).await.unwrap();
    let state = |store: Arc<dyn Store>| {
        let (ada, bob, ra, rb, rc) = (ada.clone(), bob.clone(), ra.clone(), rb.clone(), rc.clone());
        async move {
            (
                store.inbox_rooms(&ada).await.unwrap(),
                store.inbox_rooms(&bob).await.unwrap(),
                store.counts_after(&ada, &ra, 0).await.unwrap(),
                store.counts_after(&ada, &rb, 0).await.unwrap(),
                store.counts_after(&ada, &rc, 0).await.unwrap(),
                store.counts_after(&bob, &ra, 0).await.unwrap(),
                store.last_message(&ra).await.unwrap(),
                store.last_message(&rb).await.unwrap(),
            )
        }
    };
    let once = state(store.clone()).await;
    store.update_inbox(&update).await.unwrap();
    assert_eq!(
        state(store.clone()).await,
        once,
        "an update written again changes nothing"
    );
    assert_eq!(
        once.0,
        [inbox_room(&rb, 0), inbox_room(&rc, 0)],
        "rooms enter the inbox unread"
    );
    assert_eq!(once.1, [inbox_room(&ra, 0)]);
    assert_eq!(
        store.read_marker(&ada, &rb).await.unwrap(),
        None,
        "in the inbox, but no marker set"
    );

    // A marker never moves back, and entering the inbox again keeps it.
    store.set_read_marker(&ada, &ra, 5).await.unwrap();
    store.set_read_marker(&ada, &ra, 3).await.unwrap();
    assert_eq!(store.read_marker(&ada, &ra).await.unwrap(), Some(5));
    store.set_read_marker(&ada, &ra, 9).await.unwrap();
    assert_eq!(store.read_marker(&ada, &ra).await.unwrap(), Some(9));
    store.set_read_marker(&ada, &rc, 4).await.unwrap();
    store.update_inbox(&update).await.unwrap();
    assert_eq!(
        store.inbox_rooms(&ada).await.unwrap(),
        [inbox_room(&ra, 9), inbox_room(&rb, 0), inbox_room(&rc, 4)],
        "rooms in name order, from updates and from markers"
    );
    assert_eq!(store.read_marker(&ada, &rc).await.unwrap(), Some(4));
    assert_eq!(store.read_marker(&bob, &ra).await.unwrap(), None);
    store.set_read_marker(&bob, &rb, 0).await.unwrap();
    assert_eq!(
        store.read_marker(&bob, &rb).await.unwrap(),
        Some(0),
        "a marker set to 0 is set"
    );
    assert_eq!(
        store.inbox_rooms(&bob).await.unwrap(),
        [inbox_room(&ra, 0), inbox_room(&rb, 0)]
    );

    // Strictly after: ada sent 2 and 5 in ra, and was mentioned at 3, 7 and 9.
    for (after, counts) in [
        (0, (2, 3)),
        (1, (2, 3)),
        (2, (1, 3)),
        (3, (1, 2)),
        (5, (0, 2)),
        (8, (0, 1)),
        (9, (0, 0)),
        (i64::MAX, (0, 0)),
    ] {
        assert_eq!(
            store.counts_after(&ada, &ra, after).await.unwrap(),
            counts,
            "ada in room a after {after}"
        );
    }
    assert_eq!(store.counts_after(&ada, &rb, 0).await.unwrap(), (1, 1));
    assert_eq!(store.counts_after(&ada, &rb, 3).await.unwrap(), (0, 1));
    assert_eq!(store.counts_after(&ada, &rc, 0).await.unwrap(), (0, 0));
    assert_eq!(store.counts_after(&bob, &ra, 0).await.unwrap(), (1, 1));
    assert_eq!(store.counts_after(&bob, &ra, 3).await.unwrap(), (1, 0));
    assert_eq!(store.counts_after(&bob, &rb, 0).await.unwrap(), (0, 0));

    // The newest message stays, whatever order updates arrive in.
    assert_eq!(
        store.last_message(&ra).await.unwrap(),
        Some(message(&ra, 9))
    );
    assert_eq!(
        store.last_message(&rb).await.unwrap(),
        Some(message(&rb, 10)),
        "of one update's messages for a room, the newest"
    );
    let older = InboxUpdate {
        last: vec![message(&ra, 6)],
        ..InboxUpdate::default()
    };
    store.update_inbox(&older).await.unwrap();
    assert_eq!(
        store.last_message(&ra).await.unwrap(),
        Some(message(&ra, 9))
    );
    let newer = InboxUpdate {
        last: vec![message(&ra, 12)],
        ..InboxUpdate::default()
    };
    store.update_inbox(&newer).await.unwrap();
    store.update_inbox(&older).await.unwrap();
    assert_eq!(
        store.last_message(&ra).await.unwrap(),
        Some(message(&ra, 12))
    );
    assert_eq!(store.last_message(&rc).await.unwrap(), None);
}

pub async fn inbox_refuses_bad_input_and_writes_none_of_it(store: Arc<dyn Store>) {
    let eve = unique("eve");
    let room = unique("room");
    // Each bad update also carries good rows: none of them may be written.
    let good = InboxUpdate {
        rooms: vec![(eve.clone(), room.clone())],
        sent: vec![row(&eve, &room, 1)],
        mentions: vec![row(&eve, &room, 2)],
        last: vec![message(&room, 2)],
    };
    let mut empty_user = good.clone();
    empty_user.rooms.push((String::new(), room.clone()));
    let mut bad_room = good.clone();
    bad_room.mentions.push(row(&eve, "no spaces allowed", 3));
    let mut zero_seq = good.clone();
    zero_seq.sent.push(row(&eve, &room, 0));
    let mut bad_last = good.clone();
    bad_last.last.push(message("no spaces allowed", 3));
    let mut too_many = good.clone();
    too_many.sent = (1..=MAX_INBOX_UPDATE as i64 + 1)
        .map(|seq| row(&eve, &room, seq))
        .collect();
    for (what, update) in [
        ("empty user", empty_user),
        ("bad room", bad_room),
        ("seq 0", zero_seq),
        ("bad last message", bad_last),
        ("too many rows", too_many),
    ] {
        let err = store.update_inbox(&update).await.unwrap_err();
        assert_eq!(err.code(), "invalid", "{what}: {err}");
    }
    assert!(
        store.inbox_rooms(&eve).await.unwrap().is_empty(),
        "a refused update writes nothing"
    );
    assert_eq!(store.counts_after(&eve, &room, 0).await.unwrap(), (0, 0));
    assert_eq!(store.last_message(&room).await.unwrap(), None);

    let invalid = |result: Result<(), StoreError>, what: &str| match result {
        Err(e) => assert_eq!(e.code(), "invalid", "{what}: {e}"),
        Ok(()) => panic!("{what} was taken"),
    };
    invalid(
        store.set_read_marker(&eve, &room, -1).await,
        "negative marker",
    );
    invalid(store.set_read_marker("", &room, 1).await, "empty user");
    invalid(
        store.set_read_marker(&"u".repeat(129), &room, 1).await,
        "long user",
    );
    invalid(
        store.set_read_marker(&eve, "no spaces allowed", 1).await,
        "bad room",
    );
    assert_eq!(store.read_marker(&eve, &room).await.unwrap(), None);
    assert!(store.inbox_rooms(&eve).await.unwrap().is_empty());
    invalid(store.read_marker("", &room).await.map(|_| ()), "empty user");
    invalid(store.inbox_rooms("").await.map(|_| ()), "empty user");
    invalid(
        store.counts_after(&eve, "", 0).await.map(|_| ()),
        "empty room",
    );
    invalid(
        store.last_message("no spaces allowed").await.map(|_| ()),
        "bad room",
    );

    store.update_inbox(&good).await.unwrap();
    assert_eq!(
        store.counts_after(&eve, &room, 0).await.unwrap(),
        (1, 1),
        "still serving"
    );
}

pub async fn inbox_rooms_are_bounded(store: Arc<dyn Store>) {
    let user = unique("busy");
    let prefix = unique("room");
    let rooms: Vec<String> = (0..MAX_INBOX_ROOMS + 7)
        .map(|i| format!("{prefix}-{i:05}"))
        .collect();
    let entries: Vec<_> = rooms.iter().map(|r| (user.clone(), r.clone())).collect();
    for chunk in entries.chunks(MAX_INBOX_UPDATE) {
        let update = InboxUpdate {
            rooms: chunk.to_vec(),
            ..InboxUpdate::default()
        };
        store.update_inbox(&update).await.unwrap();
    }
    store.set_read_marker(&user, &rooms[3], 42).await.unwrap();
    let listed = store.inbox_rooms(&user).await.unwrap();
    assert_eq!(listed.len(), MAX_INBOX_ROOMS);
    let expected: Vec<_> = rooms[..MAX_INBOX_ROOMS]
        .iter()
        .enumerate()
        .map(|(i, r)| inbox_room(r, if i == 3 { 42 } else { 0 }))
        .collect();
    assert_eq!(listed, expected, "the first rooms in name order");
}

pub async fn deletions_keep_the_seq_and_remove_the_text(store: Arc<dyn Store>) {
    let room = unique("room");
    let batch: Vec<_> = (1..=25).map(|s| message(&room, s)).collect();
    store.append(&batch).await.unwrap();
    store
        .update_inbox(&InboxUpdate {
            last: vec![message(&room, 25)],
            ..Default::default()
        })
        .await
        .unwrap();
    let targets = vec![(room.clone(), 3), (room.clone(), 12), (room.clone(), 25)];
    store.delete_messages(&targets).await.unwrap();
    // A replay appends the messages again and deletes them again; in between and after,
    // they stay deleted.
    store.append(&batch).await.unwrap();
    store.delete_messages(&targets[..1]).await.unwrap();
    for direction in [Direction::Ascending, Direction::Descending] {
        let range = SeqRange {
            after: 0,
            before: 100,
            direction,
            limit: 100,
        };
        let all = store.read(&room, range).await.unwrap();
        assert_eq!(all.len(), 25, "no gap: every seq is still there");
        for m in &all {
            let gone = [3, 12, 25].contains(&m.seq);
            assert_eq!(m.deleted, gone, "seq {}", m.seq);
            if gone {
                assert_eq!(m.text, "", "a deleted message has no text");
                assert_eq!((m.from.as_str(), m.ts), ("ada", 1_700_000_000_000 + m.seq));
            } else {
                assert_eq!(m.text, message(&room, m.seq).text);
            }
        }
    }
    assert_eq!(store.head(&room).await.unwrap(), 25);
    let last = store.last_message(&room).await.unwrap().unwrap();
    assert_eq!((last.seq, last.deleted, last.text.as_str()), (25, true, ""));
    // A newer message after the deleted one is the room's last, with its text.
    store
        .update_inbox(&InboxUpdate {
            last: vec![message(&room, 26)],
            ..Default::default()
        })
        .await
        .unwrap();
    let last = store.last_message(&room).await.unwrap().unwrap();
    assert_eq!((last.seq, last.deleted), (26, false));
    assert_eq!(last.text, message(&room, 26).text);
    assert!(store
        .delete_messages(&[("bad room".into(), 1)])
        .await
        .is_err());
}

pub async fn mutes_are_kept_per_room_and_the_last_one_wins(store: Arc<dyn Store>) {
    let room = unique("room");
    let other = unique("room");
    let mute = |room: &str, user: &str, until| Mute {
        room: room.to_string(),
        user: user.to_string(),
        until,
    };
    assert_eq!(store.mutes(&room).await.unwrap(), vec![]);
    store
        .set_mutes(&[
            mute(&room, "eve", 100),
            mute(&room, "mallory", 200),
            mute(&other, "eve", 300),
            mute(&room, "eve", 50),
        ])
        .await
        .unwrap();
    let mut found = store.mutes(&room).await.unwrap();
    found.sort_by(|a, b| a.user.cmp(&b.user));
    assert_eq!(
        found,
        vec![mute(&room, "eve", 50), mute(&room, "mallory", 200)]
    );
    assert_eq!(
        store.mutes(&other).await.unwrap(),
        vec![mute(&other, "eve", 300)]
    );
    assert!(store
        .set_mutes(&[mute("bad room", "eve", 1)])
        .await
        .is_err());
    assert!(store.set_mutes(&[mute(&room, "", 1)]).await.is_err());
}

macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn deletions_keep_the_seq_and_remove_the_text() {
                let (_dir, store) = $make;
                super::deletions_keep_the_seq_and_remove_the_text(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mutes_are_kept_per_room_and_the_last_one_wins() {
                let (_dir, store) = $make;
                super::mutes_are_kept_per_room_and_the_last_one_wins(store).await;
            }

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

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn inbox_index() {
                let (_dir, store) = $make;
                super::inbox_index(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn inbox_refuses_bad_input_and_writes_none_of_it() {
                let (_dir, store) = $make;
                super::inbox_refuses_bad_input_and_writes_none_of_it(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn inbox_rooms_are_bounded() {
                let (_dir, store) = $make;
                super::inbox_rooms_are_bounded(store).await;
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
