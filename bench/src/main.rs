//! `tidings-bench`: measures the backends and, with `load`, the whole system against a stock
//! socket.io baseline. Every figure in BENCHMARKS.md comes from here, with the command that
//! produced it. Prints one JSON record per scenario and backend (or target), then a readable
//! line.

mod load;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tidings_log::embedded::EmbeddedLog;
use tidings_log::kafka::{KafkaConfig, KafkaLog};
use tidings_log::{ConsumerOptions, Log, OutRecord, TopicSpec};
use tidings_store::cassandra::{CassandraConfig, CassandraStore};
use tidings_store::embedded::EmbeddedStore;
use tidings_store::{SeqRange, Store, StoredMessage};

#[derive(Parser)]
#[command(about = "Benchmarks of Tidings' log and store backends, and a Socket.IO load generator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum LogBackend {
    Embedded,
    Kafka,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum StoreBackend {
    Embedded,
    Cassandra,
}

#[derive(Subcommand)]
enum Command {
    /// Produce-to-durable latency and consume throughput.
    Log {
        #[arg(long, value_enum)]
        backend: LogBackend,
        /// Sequential produces timed one by one.
        #[arg(long, default_value_t = 2000)]
        latency_records: usize,
        /// Records produced (pipelined) and then consumed for throughput.
        #[arg(long, default_value_t = 100_000)]
        throughput_records: usize,
        #[arg(long, default_value_t = 200)]
        value_bytes: usize,
        /// Kafka producer linger.ms.
        #[arg(long, default_value_t = 0)]
        linger_ms: u32,
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
    },
    /// The embedded engine choice: redb against fjall on the log's access pattern
    /// (durable appends of small records, then a range scan).
    Engines {
        #[arg(long, default_value_t = 2000)]
        durable_appends: usize,
        #[arg(long, default_value_t = 100_000)]
        batched_records: usize,
        #[arg(long, default_value_t = 256)]
        batch: usize,
    },
    /// Append and read latency.
    Store {
        #[arg(long, value_enum)]
        backend: StoreBackend,
        #[arg(long, default_value_t = 2000)]
        appends: usize,
        #[arg(long, default_value_t = 1000)]
        reads: usize,
        #[arg(long, default_value = "127.0.0.1:9042")]
        contact: String,
        /// Then append this many messages in persistence-sized batches (1,000 per call,
        /// spread over --rooms rooms, in seq order per room) and report messages/s.
        #[arg(long, default_value_t = 100_000)]
        bulk: usize,
        #[arg(long, default_value_t = 100)]
        rooms: usize,
    },
    /// Socket.IO load against a running server (Tidings or the node baseline), loopback only.
    Load {
        #[command(subcommand)]
        scenario: load::Scenario,
    },
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn report(record: serde_json::Value) {
    println!("{record}");
}

async fn bench_log(
    backend: LogBackend,
    latency_records: usize,
    throughput_records: usize,
    value_bytes: usize,
    linger_ms: u32,
    brokers: String,
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log: Arc<dyn Log> = match backend {
        LogBackend::Embedded => Arc::new(EmbeddedLog::open(&dir.path().join("log.redb"))?),
        LogBackend::Kafka => {
            let mut config = KafkaConfig::new(brokers);
            config.linger_ms = linger_ms;
            Arc::new(KafkaLog::connect(config)?)
        }
    };
    let name = match backend {
        LogBackend::Embedded => "embedded",
        LogBackend::Kafka => "kafka",
    };
    let topic = format!("bench-{}", uuid::Uuid::new_v4().simple());
    log.ensure_topics(&[TopicSpec::new(&topic, 8)]).await?;
    let value = vec![b'x'; value_bytes];

    // Latency: one produce at a time, each awaited until durable.
    let mut latency = histogram();
    for i in 0..latency_records {
        let started = Instant::now();
        log.produce(OutRecord::new(
            &topic,
            format!("room-{}", i % 64),
            value.clone(),
        ))
        .await?;
        latency.record(started.elapsed().as_micros() as u64)?;
    }
    report(serde_json::json!({
        "scenario": "log.produce_latency", "backend": name, "records": latency_records,
        "value_bytes": value_bytes, "linger_ms": linger_ms,
        "p50_ms": ms(&latency, 0.5), "p99_ms": ms(&latency, 0.99), "max_ms": ms(&latency, 1.0),
    }));

    // Throughput: many produces in flight (as many edges would), then one consumer reads all.
    let started = Instant::now();
    let in_flight = 256;
    let mut pending = futures_unordered();
    for i in 0..throughput_records {
        if pending.len() >= in_flight {
            if let Some(r) = futures::StreamExt::next(&mut pending).await {
                r??;
            }
        }
        let producer = log.clone();
        let record = OutRecord::new(&topic, format!("room-{}", i % 64), value.clone());
        pending.push(tokio::spawn(async move {
            producer.produce(record).await.map(|_| ())
        }));
    }
    while let Some(r) = futures::StreamExt::next(&mut pending).await {
        r??;
    }
    let produce_secs = started.elapsed().as_secs_f64();
    let total = latency_records + throughput_records;
    report(serde_json::json!({
        "scenario": "log.produce_throughput", "backend": name, "records": throughput_records,
        "in_flight": in_flight, "records_per_s": (throughput_records as f64 / produce_secs).round(),
    }));

    let mut consumer = log
        .consumer(
            &format!("bench-{}", uuid::Uuid::new_v4().simple()),
            &[&topic],
            ConsumerOptions::default(),
        )
        .await?;
    let mut seen = 0;
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen < total && Instant::now() < deadline {
        let batch = consumer.poll(5000, Duration::from_secs(1)).await?;
        if !batch.is_empty() {
            first.get_or_insert_with(Instant::now);
        }
        seen += batch.len();
    }
    let consume_secs = first.map(|f| f.elapsed().as_secs_f64()).unwrap_or(f64::NAN);
    report(serde_json::json!({
        "scenario": "log.consume_throughput", "backend": name, "records": seen,
        "records_per_s": (seen as f64 / consume_secs).round(),
    }));
    Ok(())
}

fn futures_unordered<T>() -> futures::stream::FuturesUnordered<T> {
    futures::stream::FuturesUnordered::new()
}

async fn bench_store(
    backend: StoreBackend,
    appends: usize,
    reads: usize,
    contact: String,
    bulk: usize,
    rooms: usize,
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (store, name): (Arc<dyn Store>, &str) = match backend {
        StoreBackend::Embedded => (
            Arc::new(EmbeddedStore::open(&dir.path().join("store.redb"))?),
            "embedded",
        ),
        StoreBackend::Cassandra => {
            let mut config = CassandraConfig::new(vec![contact]);
            config.keyspace = "tidings_bench".into();
            CassandraStore::migrate(&config).await?;
            (
                Arc::new(CassandraStore::connect(&config).await?),
                "cassandra",
            )
        }
    };
    let room = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let mut append = histogram();
    for seq in 1..=appends as i64 {
        let message = StoredMessage {
            room: room.clone(),
            seq,
            client_id: format!("c{seq}"),
            from: "bench".into(),
            text: "x".repeat(200),
            ts: seq,
            deleted: false,
        };
        let started = Instant::now();
        store.append(&[message]).await?;
        append.record(started.elapsed().as_micros() as u64)?;
    }
    report(serde_json::json!({
        "scenario": "store.append_latency", "backend": name, "appends": appends,
        "p50_ms": ms(&append, 0.5), "p99_ms": ms(&append, 0.99), "max_ms": ms(&append, 1.0),
    }));

    // A history page: the 50 messages before a point, as `history` reads them.
    let mut read = histogram();
    for i in 0..reads {
        let before = appends as i64 - (i as i64 % (appends as i64 / 2));
        let started = Instant::now();
        let page = store.read(&room, SeqRange::before(before, 50)).await?;
        read.record(started.elapsed().as_micros() as u64)?;
        anyhow::ensure!(page.len() == 50, "short page");
    }
    report(serde_json::json!({
        "scenario": "store.read_page_latency", "backend": name, "reads": reads, "page": 50,
        "p50_ms": ms(&read, 0.5), "p99_ms": ms(&read, 0.99), "max_ms": ms(&read, 1.0),
    }));

    // Persistence's shape: batches of 1,000 from many rooms, each room's seqs in order.
    const BATCH: usize = 1000;
    let prefix = uuid::Uuid::new_v4().simple().to_string();
    let mut batch_latency = histogram();
    let started = Instant::now();
    let mut written = 0usize;
    while written < bulk {
        let n = BATCH.min(bulk - written);
        let batch: Vec<StoredMessage> = (written..written + n)
            .map(|i| StoredMessage {
                room: format!("bulk-{prefix}-{}", i % rooms),
                seq: (i / rooms) as i64 + 1,
                client_id: format!("c{i}"),
                from: "bench".into(),
                text: "x".repeat(64),
                ts: i as i64,
                deleted: false,
            })
            .collect();
        let t = Instant::now();
        store.append(&batch).await?;
        batch_latency.record(t.elapsed().as_micros() as u64)?;
        written += n;
    }
    let secs = started.elapsed().as_secs_f64();
    report(serde_json::json!({
        "scenario": "store.bulk_append", "backend": name, "messages": bulk, "rooms": rooms,
        "batch": BATCH, "messages_per_s": (bulk as f64 / secs).round(),
        "batch_p50_ms": ms(&batch_latency, 0.5), "batch_p99_ms": ms(&batch_latency, 0.99),
    }));
    Ok(())
}

fn log_key(offset: u64) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..4].copy_from_slice(&3u32.to_be_bytes());
    key[4..].copy_from_slice(&offset.to_be_bytes());
    key
}

/// One engine behind the two operations the embedded log needs.
trait Engine {
    fn name(&self) -> &'static str;
    /// Writes `records` and returns once they are on disk (fsync).
    fn append_durably(&mut self, records: &[([u8; 12], Vec<u8>)]) -> Result<()>;
    fn scan(&self, from: [u8; 12], count: usize) -> Result<usize>;
}

struct Redb(redb::Database);
const REDB_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("records");

impl Engine for Redb {
    fn name(&self) -> &'static str {
        "redb"
    }
    fn append_durably(&mut self, records: &[([u8; 12], Vec<u8>)]) -> Result<()> {
        let txn = self.0.begin_write()?;
        {
            let mut table = txn.open_table(REDB_TABLE)?;
            for (k, v) in records {
                table.insert(&k[..], &v[..])?;
            }
        }
        txn.commit()?;
        Ok(())
    }
    fn scan(&self, from: [u8; 12], count: usize) -> Result<usize> {
        use redb::ReadableDatabase;
        let txn = self.0.begin_read()?;
        let table = txn.open_table(REDB_TABLE)?;
        let mut n = 0;
        for entry in table.range(&from[..]..)?.take(count) {
            let (_, v) = entry?;
            n += v.value().len().min(1);
        }
        Ok(n)
    }
}

struct Fjall(fjall::Database, fjall::Keyspace);

impl Engine for Fjall {
    fn name(&self) -> &'static str {
        "fjall"
    }
    fn append_durably(&mut self, records: &[([u8; 12], Vec<u8>)]) -> Result<()> {
        let mut batch = self.0.batch().durability(Some(fjall::PersistMode::SyncAll));
        for (k, v) in records {
            batch.insert(&self.1, k.to_vec(), v.clone());
        }
        batch.commit()?;
        Ok(())
    }
    fn scan(&self, from: [u8; 12], count: usize) -> Result<usize> {
        let mut n = 0;
        for guard in self.1.range(from..).take(count) {
            let (_, v) = guard.into_inner()?;
            n += v.len().min(1);
        }
        Ok(n)
    }
}

fn bench_engines(durable_appends: usize, batched_records: usize, batch: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let fjall_db = fjall::Database::builder(dir.path().join("fjall")).open()?;
    let keyspace = fjall_db.keyspace("records", fjall::KeyspaceCreateOptions::default)?;
    let engines: Vec<Box<dyn Engine>> = vec![
        Box::new(Redb(redb::Database::create(dir.path().join("redb"))?)),
        Box::new(Fjall(fjall_db, keyspace)),
    ];
    let value = vec![b'x'; 200];
    for mut engine in engines {
        let mut latency = histogram();
        for offset in 0..durable_appends as u64 {
            let started = Instant::now();
            engine.append_durably(&[(log_key(offset), value.clone())])?;
            latency.record(started.elapsed().as_micros() as u64)?;
        }
        let started = Instant::now();
        let mut offset = durable_appends as u64;
        for _ in 0..batched_records.div_ceil(batch) {
            let records: Vec<_> = (0..batch as u64)
                .map(|i| (log_key(offset + i), value.clone()))
                .collect();
            offset += batch as u64;
            engine.append_durably(&records)?;
        }
        let batched_secs = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let scanned = engine.scan(log_key(0), offset as usize)?;
        let scan_secs = started.elapsed().as_secs_f64();
        report(serde_json::json!({
            "scenario": "engine.log_pattern", "engine": engine.name(),
            "durable_append_p50_ms": ms(&latency, 0.5), "durable_append_p99_ms": ms(&latency, 0.99),
            "batched_records_per_s": ((offset as usize - durable_appends) as f64 / batched_secs).round(),
            "batch": batch,
            "scan_records_per_s": (scanned as f64 / scan_secs).round(),
        }));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Log {
            backend,
            latency_records,
            throughput_records,
            value_bytes,
            linger_ms,
            brokers,
        } => {
            bench_log(
                backend,
                latency_records,
                throughput_records,
                value_bytes,
                linger_ms,
                brokers,
            )
            .await
        }
        Command::Engines {
            durable_appends,
            batched_records,
            batch,
        } => bench_engines(durable_appends, batched_records, batch),
        Command::Store {
            backend,
            appends,
            reads,
            contact,
            bulk,
            rooms,
        } => bench_store(backend, appends, reads, contact, bulk, rooms.max(1)).await,
        Command::Load { scenario } => load::run(scenario).await,
    }
}
