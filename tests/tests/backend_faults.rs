//! `writable()` of the distributed backends when the server is out of reach, without stopping
//! the shared Kafka and Cassandra: each client talks to them through a loopback proxy the test
//! cuts. Cassandra's driver keeps using the address it was given for a single node (it joins
//! `system.local`'s address to the contact point's port), so cutting the proxy cuts the store
//! off. Kafka's client follows the broker's advertised address once it has bootstrapped, so a
//! proxy cannot cut it afterwards: its test starts with the proxy cut, so the client has never
//! reached a broker, then opens it.

use std::time::Duration;
use tidings_log::kafka::{KafkaConfig, KafkaLog};
use tidings_log::{Log, OutRecord, TopicSpec};
use tidings_store::cassandra::CassandraStore;
use tidings_store::{Store, StoredMessage};
use tidings_tests::{cassandra_config, eventually, kafka_brokers, unique, TcpProxy};

/// Reconnection backoffs of both clients top out at 10 s.
const RECONNECT_WITHIN: Duration = Duration::from_secs(60);

/// `writable()` must fail with `unavailable` within its short timeout, not hang.
async fn refused_quickly<E: std::fmt::Display + Coded>(
    writable: impl std::future::Future<Output = Result<(), E>>,
    when: &str,
) {
    let started = std::time::Instant::now();
    let err = match writable.await {
        Ok(()) => panic!("writable() succeeded {when}"),
        Err(e) => e,
    };
    assert_eq!(err.code(), "unavailable", "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "writable() must answer within its short timeout, took {:?}",
        started.elapsed()
    );
}

/// The client-facing code of a log or store error.
trait Coded {
    fn code(&self) -> &'static str;
}

impl Coded for tidings_log::LogError {
    fn code(&self) -> &'static str {
        tidings_log::LogError::code(self)
    }
}

impl Coded for tidings_store::StoreError {
    fn code(&self) -> &'static str {
        tidings_store::StoreError::code(self)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_log_is_not_writable_until_a_broker_answers() {
    // Only a bootstrap address: the first broker of the list is enough for the proxy.
    let brokers = kafka_brokers();
    let upstream = brokers.split(',').next().expect("a broker");
    let proxy = TcpProxy::start(upstream, false).await;
    let log = KafkaLog::connect(KafkaConfig::new(proxy.addr())).expect("client config");

    refused_quickly(log.writable(), "with no broker in reach").await;

    proxy.open();
    eventually(
        RECONNECT_WITHIN,
        "writable() once the broker answers",
        || async { log.writable().await.is_ok() },
    )
    .await;
    // And with a topic in use, whose partitions must have leaders.
    let topic = unique("writable");
    log.ensure_topics(&[TopicSpec::new(&topic, 2)])
        .await
        .unwrap();
    eventually(RECONNECT_WITHIN, "the new topic's metadata", || async {
        log.partitions(&topic).await.is_ok()
    })
    .await;
    log.writable().await.expect("writable with a topic in use");
    log.produce(OutRecord::new(&topic, "k", b"v".to_vec()))
        .await
        .expect("an append, as writable() said");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cassandra_store_is_not_writable_while_cut_off() {
    // Keyspace and tables, through the real address.
    tidings_tests::cassandra_store().await;
    let mut config = cassandra_config();
    let upstream = config.contact_points[0].clone();
    let proxy = TcpProxy::start(&upstream, true).await;
    config.contact_points = vec![proxy.addr()];
    let store = CassandraStore::connect(&config)
        .await
        .expect("store connects through the proxy");
    store.writable().await.expect("writable through the proxy");

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..2 {
        refused_quickly(store.writable(), "while the node is out of reach").await;
    }

    proxy.open();
    eventually(
        RECONNECT_WITHIN,
        "writable() once the node is back",
        || async { store.writable().await.is_ok() },
    )
    .await;
    let room = unique("writable");
    store
        .append(&[StoredMessage {
            room: room.clone(),
            seq: 1,
            client_id: "c1".into(),
            from: "someone".into(),
            text: "back".into(),
            ts: 1,
            deleted: false,
        }])
        .await
        .expect("an append, as writable() said");
    assert_eq!(store.head(&room).await.unwrap(), 1);
}
