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

/// A small tmpfs, mounted for one test and unmounted when dropped: a disk the test can fill.
/// Mounting needs root; without it the test fails, saying so, instead of passing untested.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`, e.g. `8m`) on a new temporary directory.
    pub fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match output {
            Ok(out) if out.status.success() => Self { dir },
            Ok(out) => panic!(
                "cannot mount a tmpfs on {} ({}): the disk-fault tests need root, to fill a \
                 small disk of their own",
                dir.path().display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => panic!("cannot run mount ({e}): the disk-fault tests need it, as root"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes one file until the disk takes no more, and returns its path.
    pub fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("filler created");
        let chunk = vec![0xa5u8; 64 * 1024];
        loop {
            // A short write fills the last pages, then the next one fails: the disk is full.
            match file.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Something still holds a file there (a child being reaped): detach it now, the
            // kernel frees it when the last user goes.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// A TCP proxy on loopback that forwards to `upstream` and can be cut (every connection
/// closed, new ones closed on accept) and opened again: a backend that goes out of reach
/// without stopping the shared server.
pub struct TcpProxy {
    addr: std::net::SocketAddr,
    open: Arc<std::sync::atomic::AtomicBool>,
    /// Bumped by `cut`: forwarding tasks of an older generation stop.
    cuts: tokio::sync::watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Starts a proxy to `upstream` (`host:port`), open or cut.
    pub async fn start(upstream: &str, open: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let is_open = Arc::new(std::sync::atomic::AtomicBool::new(open));
        let (cuts, _) = tokio::sync::watch::channel(0u64);
        let upstream = upstream.to_string();
        let (flag, watch) = (is_open.clone(), cuts.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !flag.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let upstream = upstream.clone();
                let mut cut = watch.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            open: is_open,
            cuts,
            accept,
        }
    }

    /// `127.0.0.1:port` of the proxy.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Closes every forwarded connection and refuses new ones until [`Self::open`].
    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    pub fn open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
