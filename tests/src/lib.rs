//! Helpers shared by the whole-system tests: the backends under test, built from the
//! environment `infra/test.sh` sets, and control of child processes that tests kill.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tidings_log::embedded::EmbeddedLog;
use tidings_log::kafka::{KafkaConfig, KafkaLog};
use tidings_log::Log;
use tidings_store::cassandra::{CassandraConfig, CassandraStore};
use tidings_store::embedded::EmbeddedStore;
use tidings_store::Store;

/// Kafka brokers of the test cluster (`infra/services.sh start` serves 127.0.0.1:9092).
pub fn kafka_brokers() -> String {
    std::env::var("TIDINGS_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Cassandra contact point of the test cluster.
pub fn cassandra_contact() -> String {
    std::env::var("TIDINGS_CASSANDRA").unwrap_or_else(|_| "127.0.0.1:9042".into())
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

pub async fn kafka_log() -> Arc<dyn Log> {
    let log =
        KafkaLog::connect(KafkaConfig::new(kafka_brokers())).expect("kafka client config is valid");
    log.ping(Duration::from_secs(20)).await.unwrap_or_else(|e| {
        panic!(
            "Kafka at {} is not reachable ({e}); run the tests through infra/test.sh, which starts it",
            kafka_brokers()
        )
    });
    Arc::new(log)
}

pub fn embedded_log(dir: &Path) -> Arc<dyn Log> {
    Arc::new(EmbeddedLog::open(&dir.join("log.redb")).expect("embedded log opens"))
}

/// The keyspace the store tests use; a small bucket size so range reads cross buckets.
pub fn cassandra_config() -> CassandraConfig {
    let mut config = CassandraConfig::new(vec![cassandra_contact()]);
    config.keyspace = "tidings_test".into();
    config.bucket_size = 10;
    config
}

static MIGRATED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

pub async fn cassandra_store() -> Arc<dyn Store> {
    let config = cassandra_config();
    MIGRATED
        .get_or_init(|| async {
            CassandraStore::migrate(&config).await.unwrap_or_else(|e| {
                panic!(
                    "Cassandra at {} is not reachable ({e}); run the tests through infra/test.sh, which starts it",
                    cassandra_contact()
                )
            })
        })
        .await;
    Arc::new(
        CassandraStore::connect(&config)
            .await
            .expect("store connects"),
    )
}

pub fn embedded_store(dir: &Path) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open(&dir.join("store.redb")).expect("embedded store opens"))
}

/// Waits until `check` holds, polling; panics with `what` after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process (the `crash_child` binary) whose stdout lines the test reads.
pub struct ChildProcess {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl ChildProcess {
    pub fn spawn(program: &str, args: &[&str]) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let stdout: ChildStdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Collects lines until `count` of them start with `prefix` (or the child ends).
    pub fn read_until(&mut self, prefix: &str, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while seen
            .iter()
            .filter(|l: &&String| l.starts_with(prefix))
            .count()
            < count
        {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        seen
    }

    /// SIGKILL: no cleanup, no flush, exactly like a crash.
    pub fn kill9(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.lines.try_iter().collect()
    }

    pub fn wait(mut self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            out.extend(self.lines.try_iter());
            if let Ok(Some(_)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(50));
                out.extend(self.lines.try_iter());
                return out;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("child did not finish in {timeout:?}; output so far: {out:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs `infra/services.sh <args>` (crash tests kill and resume the real servers).
pub fn services(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/services.sh");
    let status = Command::new("bash")
        .arg(script)
        .args(args)
        .status()
        .expect("infra/services.sh runs");
    assert!(status.success(), "infra/services.sh {args:?} failed");
}
