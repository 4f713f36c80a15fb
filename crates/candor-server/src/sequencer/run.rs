//! The sequencer task: collects submissions from the pool into batches, by size and by
//! time, and hands each to the [`Core`] on a blocking thread.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::Core;
use super::receipts::answer;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::state::{Phase, Submission};

/// Batching knobs.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub max_entries: usize,
    pub delay: Duration,
}

fn refuse(metrics: &Metrics, s: Submission) {
    answer(
        metrics,
        s,
        Err(ApiError::Unavailable(
            "the log is shutting down; nothing of this submission was logged".into(),
        )),
    );
}

/// The sequencer task: collects batches from `rx` and processes them on a blocking
/// thread, one at a time, until `phase` becomes `Finished` or every sender is gone.
pub async fn run(
    core: Core,
    mut rx: mpsc::UnboundedReceiver<Submission>,
    mut phase: watch::Receiver<Phase>,
    cfg: BatchConfig,
) {
    let metrics = core.shared.metrics.clone();
    let mut core = Some(core);
    // Batches being answered while later ones are sequenced.
    let mut replying: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    loop {
        let first = tokio::select! {
            s = rx.recv() => match s {
                Some(s) => s,
                None => break,
            },
            _ = phase.wait_for(|p| *p == Phase::Finished) => break,
        };
        if *phase.borrow() != Phase::Running {
            refuse(&metrics, first);
            continue;
        }
        // The window counts from when the oldest submission was accepted, not from now:
        // submissions that queued while the previous batch was sequenced have waited
        // already, and waiting a full window more would add it to every latency.
        let deadline = tokio::time::Instant::from_std(first.accepted) + cfg.delay;
        let mut n = first.items.len();
        let mut subs = vec![first];
        while n < cfg.max_entries {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => {
                    n += s.items.len();
                    subs.push(s);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let Some(mut c) = core.take() else { break };
        match tokio::task::spawn_blocking(move || {
            let job = c.process(subs);
            (c, job)
        })
        .await
        {
            Ok((c, job)) => {
                core = Some(c);
                if let Some(job) = job {
                    replying.retain(|h| !h.is_finished());
                    replying.push(tokio::task::spawn_blocking(move || job.run()));
                }
            }
            Err(e) => {
                // A panic in the core is a bug; stop sequencing (everything
                // published is durable) and let the submitters time out with 503s.
                tracing::error!("sequencer stopped: {e}");
                break;
            }
        }
    }
    rx.close();
    while let Ok(s) = rx.try_recv() {
        refuse(&metrics, s);
    }
    // Every batch sequenced is answered before the sequencer reports it has stopped.
    for h in replying {
        if let Err(e) = h.await {
            tracing::error!("answering a sequenced batch failed: {e}");
        }
    }
}
