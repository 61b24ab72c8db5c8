//! A process for tests to SIGKILL mid-stream. It prints one line per durable step, so the
//! test knows exactly what was acknowledged before the kill.
//!
//! crash_child produce <embedded:DIR|kafka> <topic> <count>
//! crash_child copy    <embedded:DIR|kafka> <in> <out> <group> <instance-id>
//! crash_child append  <embedded:DIR|cassandra> <room> <count>

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tidings_log::embedded::EmbeddedLog;
use tidings_log::{ConsumerOptions, Log, OutRecord};
use tidings_store::embedded::EmbeddedStore;
use tidings_store::{Store, StoredMessage};
use tidings_tests::{cassandra_store, kafka_log};

/// redb locks its file per process; a killed predecessor's lock goes with it, but a parent
/// test that just closed the file may still be releasing it.
fn retry_open<T>(mut open: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match open() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

async fn log(spec: &str) -> Result<Arc<dyn Log>> {
    match spec.split_once(':') {
        Some(("embedded", dir)) => {
            let path = std::path::Path::new(dir).join("log.redb");
            Ok(Arc::new(retry_open(|| Ok(EmbeddedLog::open(&path)?))?))
        }
        _ if spec == "kafka" => Ok(kafka_log().await),
        _ => bail!("unknown log backend {spec}"),
    }
}

async fn store(spec: &str) -> Result<Arc<dyn Store>> {
    match spec.split_once(':') {
        Some(("embedded", dir)) => {
            let path = std::path::Path::new(dir).join("store.redb");
            Ok(Arc::new(retry_open(|| Ok(EmbeddedStore::open(&path)?))?))
        }
        _ if spec == "cassandra" => Ok(cassandra_store().await),
        _ => bail!("unknown store backend {spec}"),
    }
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).context("missing argument");
    match arg(0)? {
        "produce" => {
            let log = log(arg(1)?).await?;
            let topic = arg(2)?;
            let count: usize = arg(3)?.parse()?;
            say("ready".into());
            for i in 0..count {
                let key = format!("key-{}", i % 7);
                let value = format!("value-{i}").into_bytes();
                let position = log.produce(OutRecord::new(topic, key, value)).await?;
                say(format!(
                    "acked {i} {} {}",
                    position.partition, position.offset
                ));
            }
        }
        "copy" => {
            let log = log(arg(1)?).await?;
            let (input, output, group, instance) = (arg(2)?, arg(3)?, arg(4)?, arg(5)?);
            let options = ConsumerOptions {
                transactional_id: Some(instance.to_string()),
                ..Default::default()
            };
            let mut consumer = log.consumer(group, &[input], options).await?;
            say("ready".into());
            let started = Instant::now();
            let mut idle_since: Option<Instant> = None;
            loop {
                let records = consumer.poll(10, Duration::from_millis(500)).await?;
                if records.is_empty() {
                    // Done once idle for a while after work (or never given any).
                    let idle = idle_since.get_or_insert_with(Instant::now);
                    if idle.elapsed() > Duration::from_secs(4)
                        && started.elapsed() > Duration::from_secs(8)
                    {
                        break;
                    }
                    continue;
                }
                idle_since = None;
                let mut checkpoints = std::collections::HashMap::new();
                let outputs: Vec<OutRecord> = records
                    .iter()
                    .map(|r| {
                        checkpoints.insert((r.topic.clone(), r.partition), r.next_checkpoint());
                        OutRecord::new(output, r.key.clone(), r.value.clone())
                    })
                    .collect();
                let checkpoints: Vec<_> = checkpoints.into_values().collect();
                consumer.commit_with(outputs, &checkpoints).await?;
                say(format!("committed {}", records.len()));
                // Slow enough that a kill lands between transactions and inside them.
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            say("done".into());
        }
        "append" => {
            let store = store(arg(1)?).await?;
            let room = arg(2)?;
            let count: i64 = arg(3)?.parse()?;
            say("ready".into());
            for seq in 1..=count {
                let message = StoredMessage {
                    room: room.to_string(),
                    seq,
                    client_id: format!("c{seq}"),
                    from: "crash".into(),
                    text: format!("text {seq}"),
                    ts: seq,
                    deleted: false,
                };
                store.append(&[message]).await?;
                say(format!("acked {seq}"));
            }
        }
        other => bail!("unknown mode {other}"),
    }
    Ok(())
}
