//! Typing: each typing notice becomes one delivery per edge hosting its room (the edge skips
//! the typist's own connections).
//!
//! Notices are worthless after seconds, so a new group starts at the end of the topic, and
//! losing some in a crash is fine. The room directory is loaded from the subscriptions topic
//! and kept current by following every partition of it (one task each).

use crate::dead_letter::decode_or_dead_letter;
use crate::directory::{Directory, Followed};
use crate::runtime::{self, checkpoints_of, delivery};
use crate::{Backfill, Context, Processor, ProcessorError};
use async_trait::async_trait;
use tidings_log::topics::{DEAD_LETTERS, DELIVERIES, SUBSCRIPTIONS, TYPING};
use tidings_log::{ConsumerOptions, OutRecord, StartAt};
use tidings_schemas::{ClientEvent, Delivery, LogRecord};
use tokio_util::sync::CancellationToken;

pub const GROUP: &str = "tidings-typing";
/// Notices per poll.
const BATCH: usize = 500;

pub struct Typing;

#[async_trait]
impl Processor for Typing {
    fn name(&self) -> &'static str {
        "typing"
    }

    fn consumes(&self) -> &'static [&'static str] {
        &[TYPING, SUBSCRIPTIONS]
    }

    fn produces(&self) -> &'static [&'static str] {
        &[DELIVERIES, DEAD_LETTERS]
    }

    fn backfill(&self) -> Backfill {
        Backfill::Refused(
            "typing relays notices to the edges: run over history, old notices would reach live clients",
        )
    }

    async fn session(
        &self,
        ctx: &Context,
        shutdown: &CancellationToken,
    ) -> Result<(), ProcessorError> {
        session(ctx, shutdown).await
    }
}

async fn session(ctx: &Context, shutdown: &CancellationToken) -> Result<(), ProcessorError> {
    // The followers live exactly as long as this session.
    let followers = shutdown.child_token();
    let _stop_followers = followers.clone().drop_guard();
    let directory = Directory::followed(&ctx.log, false, &followers).await?;

    let options = ConsumerOptions {
        start_at: StartAt::Latest,
        ..Default::default()
    };
    let mut consumer = ctx.log.consumer(GROUP, &[TYPING], options).await?;
    crate::health::set_ready("typing", true);
    loop {
        let records = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            polled = consumer.poll(BATCH, runtime::POLL_WAIT) => polled?,
        };
        if records.is_empty() {
            continue;
        }
        let batch_started = std::time::Instant::now();
        let mut out = Vec::new();
        for record in &records {
            // A dead letter goes out with the notices, before the offsets move past it.
            if let Some(event) = decode_or_dead_letter::<ClientEvent>("typing", record, &mut out) {
                relay(ctx, &directory, &event, &mut out)?;
            }
        }
        // At least once is plenty for typing notices; one ordered batch, then the offsets.
        ctx.log.produce_batch(out).await?;
        consumer.commit(&checkpoints_of(&records)).await?;
        crate::health::batch("typing", &records, batch_started.elapsed());
    }
}

fn relay(
    ctx: &Context,
    directory: &Followed,
    event: &ClientEvent,
    out: &mut Vec<OutRecord>,
) -> Result<(), ProcessorError> {
    let Some(room) = event.room.as_deref() else {
        return Ok(());
    };
    if event.kind != "typing" {
        return Ok(());
    }
    // Edges are copied out so the lock is not held while encoding.
    let edges: Vec<String> = directory.lock().edges(room).map(str::to_string).collect();
    for edge in edges {
        let notice = Delivery {
            room: Some(room.to_string()),
            user: event.user.clone(),
            on: Some(event.on.unwrap_or(false)),
            ..delivery("typing", &edge, &ctx.node, &event.trace_id)
        };
        out.push(OutRecord::new(DELIVERIES, &edge, notice.encode()?));
    }
    Ok(())
}
