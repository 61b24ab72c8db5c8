//! Durability across SIGKILL: a process is killed mid-stream and restarted; everything it was
//! told was durable must be there, exactly once. For the embedded backends the process that
//! holds the data is the client itself; for Kafka and Cassandra it is the server, so those
//! are killed too (through infra/services.sh). This binary runs on its own (cargo runs test
//! binaries one after another), so killing a server here cannot disturb other suites.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tidings_log::{Log, TopicSpec};
use tidings_store::{SeqRange, Store};
use tidings_tests::{services, unique, ChildProcess};

const CHILD: &str = env!("CARGO_BIN_EXE_crash_child");

/// Every record of a topic, by (partition, offset).
async fn read_all(log: &Arc<dyn Log>, topic: &str) -> HashMap<(u32, i64), Vec<u8>> {
    let mut out = HashMap::new();
    for partition in 0..log.partitions(topic).await.unwrap() {
        let end = log.end_offset(topic, partition).await.unwrap();
        let mut reader = log.reader(topic, partition, 0).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut last = -1;
        while last + 1 < end && tokio::time::Instant::now() < deadline {
            let batch = reader.poll(1000, Duration::from_millis(300)).await.unwrap();
            if batch.is_empty() && last >= 0 {
                // Transaction markers take offsets: an idle reader has seen everything.
                break;
            }
            for r in batch {
                last = r.offset;
                out.insert((partition, r.offset), r.value);
            }
        }
    }
    out
}

fn acked(lines: &[String]) -> Vec<(usize, u32, i64)> {
    lines
        .iter()
        .filter_map(|l| {
            let mut parts = l.strip_prefix("acked ")?.split(' ');
            Some((
                parts.next()?.parse().ok()?,
                parts.next()?.parse().ok()?,
                parts.next()?.parse().ok()?,
            ))
        })
        .collect()
}

async fn produce_kill_verify(
    spec: &str,
    open: impl Fn() -> futures::future::BoxFuture<'static, Arc<dyn Log>>,
    crash_server: Option<(&str, &str)>,
) {
    let topic = unique("crash-produce");
    {
        let log = open().await;
        log.ensure_topics(&[TopicSpec::new(&topic, 3)])
            .await
            .unwrap();
    }
    let mut child = ChildProcess::spawn(CHILD, &["produce", spec, &topic, "1000000"]);
    let mut lines = child.read_until("acked", 300, Duration::from_secs(60));
    if let Some((kill, _)) = crash_server {
        tidings_tests::services(&["kill9", kill]);
    }
    lines.extend(child.kill9());
    let acked = acked(&lines);
    assert!(
        acked.len() >= 300,
        "the child acked only {} records",
        acked.len()
    );
    if let Some((_, resume)) = crash_server {
        services(&["resume", resume]);
    }

    let log = open().await;
    let stored = read_all(&log, &topic).await;
    for (i, partition, offset) in &acked {
        let value = stored.get(&(*partition, *offset));
        assert_eq!(
            value.map(Vec::as_slice),
            Some(format!("value-{i}").as_bytes()),
            "acked record {i} at {partition}/{offset} is missing after the crash"
        );
    }
}

async fn copy_kill_resume_verify(
    spec: &str,
    open: impl Fn() -> futures::future::BoxFuture<'static, Arc<dyn Log>>,
) {
    let input = unique("crash-in");
    let output = unique("crash-out");
    {
        let log = open().await;
        log.ensure_topics(&[TopicSpec::new(&input, 3), TopicSpec::new(&output, 3)])
            .await
            .unwrap();
        for i in 0..400 {
            log.produce(tidings_log::OutRecord::new(
                &input,
                format!("k{i}"),
                format!("{i}").into_bytes(),
            ))
            .await
            .unwrap();
        }
    }
    let group = unique("copier");
    let instance = unique("copier-instance");
    let args = ["copy", spec, &input, &output, &group, &instance];
    let mut first = ChildProcess::spawn(CHILD, &args);
    let lines = first.read_until("committed", 8, Duration::from_secs(60));
    assert!(
        lines.iter().filter(|l| l.starts_with("committed")).count() >= 8,
        "copier made no progress: {lines:?}"
    );
    first.kill9();

    let second = ChildProcess::spawn(CHILD, &args);
    let lines = second.wait(Duration::from_secs(120));
    assert!(
        lines.iter().any(|l| l == "done"),
        "second copier did not finish: {lines:?}"
    );

    let log = open().await;
    let copied = read_all(&log, &output).await;
    let mut values: Vec<u32> = copied
        .values()
        .map(|v| String::from_utf8(v.clone()).unwrap().parse().unwrap())
        .collect();
    values.sort();
    assert_eq!(
        values,
        (0..400).collect::<Vec<u32>>(),
        "each input copied exactly once"
    );
}

async fn append_kill_verify(
    spec: &str,
    open: impl Fn() -> futures::future::BoxFuture<'static, Arc<dyn Store>>,
    crash_server: bool,
) {
    let room = unique("crash-room");
    let mut child = ChildProcess::spawn(CHILD, &["append", spec, &room, "1000000"]);
    let mut lines = child.read_until("acked", 200, Duration::from_secs(120));
    if crash_server {
        services(&["kill9", "cassandra"]);
    }
    lines.extend(child.kill9());
    let acked: Vec<i64> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("acked ")?.parse().ok())
        .collect();
    assert!(acked.len() >= 200, "the child acked only {}", acked.len());
    if crash_server {
        services(&["resume", "cassandra"]);
    }
    let store = open().await;
    let last = *acked.iter().max().unwrap();
    let messages = store.read(&room, SeqRange::after(0, 10_000)).await.unwrap();
    let stored: HashSet<i64> = messages.iter().map(|m| m.seq).collect();
    let missing: Vec<i64> = acked
        .iter()
        .copied()
        .filter(|s| !stored.contains(s))
        .collect();
    assert!(
        missing.is_empty(),
        "acked messages missing after the crash: {missing:?} (stored {})",
        stored.len()
    );
    let head = store.head(&room).await.unwrap();
    assert!(head >= last, "head {head} is behind the last acked {last}");
    let seqs: Vec<i64> = messages.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "no gaps, no duplicates"
    );
}

fn embedded_log_at(dir: &Path) -> impl Fn() -> futures::future::BoxFuture<'static, Arc<dyn Log>> {
    let dir = dir.to_path_buf();
    move || {
        let dir = dir.clone();
        Box::pin(async move {
            // The killed child's file lock is released by the kernel; the open may still race it.
            for _ in 0..100 {
                if let Ok(log) = tidings_log::embedded::EmbeddedLog::open(&dir.join("log.redb")) {
                    return Arc::new(log) as Arc<dyn Log>;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("embedded log does not reopen");
        })
    }
}

fn kafka() -> futures::future::BoxFuture<'static, Arc<dyn Log>> {
    Box::pin(tidings_tests::kafka_log())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_log_keeps_every_acked_record_across_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("embedded:{}", dir.path().display());
    produce_kill_verify(&spec, embedded_log_at(dir.path()), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_exactly_once_copy_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("embedded:{}", dir.path().display());
    copy_kill_resume_verify(&spec, embedded_log_at(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_keeps_every_acked_append_across_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("embedded:{}", dir.path().display());
    let path = dir.path().to_path_buf();
    append_kill_verify(
        &spec,
        move || {
            let path = path.clone();
            Box::pin(async move {
                for _ in 0..100 {
                    if let Ok(s) =
                        tidings_store::embedded::EmbeddedStore::open(&path.join("store.redb"))
                    {
                        return Arc::new(s) as Arc<dyn Store>;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                panic!("embedded store does not reopen");
            })
        },
        false,
    )
    .await;
}

/// The Kafka and Cassandra crash tests kill shared servers, so they run in sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_keep_every_acked_write_across_sigkill() {
    // Kafka: the broker is SIGKILLed while a producer is mid-stream, then restarted.
    produce_kill_verify("kafka", kafka, Some(("kafka", "kafka"))).await;
    // Kafka transactions: the copier is SIGKILLed mid-transaction; its successor fences it.
    copy_kill_resume_verify("kafka", kafka).await;
    // Cassandra: the server is SIGKILLed while appends are in flight, then restarted.
    append_kill_verify(
        "cassandra",
        || Box::pin(tidings_tests::cassandra_store()),
        true,
    )
    .await;
}
