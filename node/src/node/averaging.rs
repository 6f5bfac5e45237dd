//! One averaging, as a task the node spawns to carry out the core's [`Plan`]: fetch the
//! partners' models from the holders the plan names (only if their layout is ours; a
//! straggler is not waited for long once one model is in), hand them to the training thread
//! with the plan's weights, and report each partner's [`Fate`] (the core charges the peers
//! whose models were refused) with an [`AveragingEvent`]. It owns nothing past its run: the
//! core chose the partners and the training thread does the merge.

use super::{AveragingEvent, ModelFetch, VERDICT_WAIT};
use crate::averaging::core::{Fate, Outcome, Plan};
use crate::averaging::fetch::{self, ErrorBudgets, FetchError, FetchLimits, Fetched, Rates};
use crate::averaging::robust::{Rejection, Taken};
use crate::metrics::Counters;
use crate::network::Client;
use crate::store::ChunkStore;
use crate::train::worker::ToTrainer;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use murmur_protocol::Layout;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Everything one averaging needs.
pub struct Job {
    pub plan: Plan<PeerId>,
    pub layout: Layout,
    pub client: Client,
    pub store: ChunkStore,
    pub budgets: ErrorBudgets,
    /// The node's measured delivery rate per peer (shared by every fetch).
    pub rates: Rates,
    pub counters: Arc<Counters>,
    pub limits: FetchLimits,
    pub merges: mpsc::Sender<ToTrainer>,
    pub report: mpsc::Sender<Done>,
    /// When the node started (events are timed from it).
    pub node_started: Instant,
}

/// What an averaging reports: its plan, each partner's fate in the plan's order, and the
/// event for the status page (its `outcome` set by the core).
#[derive(Debug)]
pub struct Done {
    pub plan: Plan<PeerId>,
    pub fates: Vec<Fate>,
    pub event: AveragingEvent,
}

/// Once one partner's model is fetched, how much longer the others are waited for: a
/// partner that does not answer must not hold up the merge of one that did. A fetch still
/// running then goes on in the background (its peer is still charged if it fails), and its
/// model is not merged.
pub const STRAGGLER_WAIT: Duration = Duration::from_millis(500);

/// Fetches every partner's model at once; returns each result, `None` for a fetch still
/// running [`STRAGGLER_WAIT`] after the first model arrived.
async fn fetch_all(job: &Job) -> Vec<Option<Result<Fetched, FetchError>>> {
    let mut results: Vec<Option<Result<Fetched, FetchError>>> =
        job.plan.partners.iter().map(|_| None).collect();
    let mut running: FuturesUnordered<_> = job
        .plan
        .partners
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (client, store, budgets, rates) = (
                job.client.clone(),
                job.store.clone(),
                job.budgets.clone(),
                job.rates.clone(),
            );
            let (holders, layout, limits, id) = (
                p.holders.clone(),
                job.layout.clone(),
                job.limits,
                p.known.manifest,
            );
            let task = tokio::spawn(async move {
                fetch::fetch(
                    &client, &store, id, &holders, &budgets, &rates, limits, &layout,
                )
                .await
            });
            async move { (i, task.await) }
        })
        .collect();
    let mut cutoff: Option<tokio::time::Instant> = None;
    loop {
        let next = match cutoff {
            Some(at) => match tokio::time::timeout_at(at, running.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => running.next().await,
        };
        let Some((i, joined)) = next else { break };
        let result = joined.unwrap_or_else(|e| Err(FetchError::Assemble(e.to_string())));
        if result.is_ok() && cutoff.is_none() {
            cutoff = Some(tokio::time::Instant::now() + STRAGGLER_WAIT);
        }
        if let Some(slot) = results.get_mut(i) {
            *slot = Some(result);
        }
    }
    results
}

/// Runs one averaging to the end.
pub async fn run(job: Job) {
    let started = Instant::now();
    let results = fetch_all(&job).await;
    let mut offered = Vec::new();
    let mut fates = Vec::new();
    let mut models = Vec::new();
    for (i, (p, result)) in job.plan.partners.iter().zip(results).enumerate() {
        let k = &p.known;
        let mut view = ModelFetch {
            peer_id: k.peer.to_string(),
            manifest: k.manifest.to_hex(),
            chunks_fetched: 0,
            chunks_reused: 0,
            sources: Default::default(),
            lag_rounds: p.lag_rounds,
            error: None,
        };
        match result {
            None => {
                tracing::debug!(peer = %k.peer, "model {} still on its way; merging without it", k.manifest.short());
                view.error = Some(format!(
                    "not fetched within {STRAGGLER_WAIT:?} of the first model"
                ));
                fates.push(Fate::Unfetched);
            }
            Some(Ok(f)) => {
                Counters::add(&job.counters.chunks_fetched, f.chunks_fetched as u64);
                Counters::add(&job.counters.chunks_reused, f.chunks_reused as u64);
                tracing::debug!(peer = %k.peer, fetched = f.chunks_fetched, reused = f.chunks_reused, sources = f.sources.len(), lag_rounds = format!("{:.2}", p.lag_rounds), "fetched model {}", k.manifest.short());
                view.chunks_fetched = f.chunks_fetched as u64;
                view.chunks_reused = f.chunks_reused as u64;
                view.sources = f
                    .sources
                    .iter()
                    .map(|(p, n)| (p.to_string(), *n as u64))
                    .collect();
                offered.push((i, f.params));
                // Until the trainer's verdict says otherwise.
                fates.push(Fate::Refused);
            }
            Some(Err(e)) => {
                Counters::inc(&job.counters.fetch_failures);
                tracing::warn!(peer = %k.peer, "fetch failed: {e}");
                view.error = Some(e.to_string());
                fates.push(Fate::Unfetched);
            }
        }
        models.push(view);
    }
    let (tx, rx) = oneshot::channel();
    let message = if offered.is_empty() {
        ToTrainer::Skip
    } else if job.plan.adopt {
        match offered.first() {
            Some((_, model)) => ToTrainer::Adopt {
                model: model.clone(),
                verdicts: Some(tx),
            },
            None => ToTrainer::Skip,
        }
    } else {
        let fetched: Vec<usize> = offered.iter().map(|(i, _)| *i).collect();
        ToTrainer::Merge {
            partners: offered.iter().map(|(_, m)| m.clone()).collect(),
            weights: job.plan.weights(&fetched),
            verdicts: Some(tx),
        }
    };
    let skip = matches!(message, ToTrainer::Skip);
    let _ = job.merges.send(message).await;
    let verdicts: Vec<Result<Taken, Rejection>> = if skip {
        Vec::new()
    } else {
        tokio::time::timeout(VERDICT_WAIT, rx)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    };
    for ((index, _), verdict) in offered.iter().zip(&verdicts) {
        let fate = match verdict {
            Ok(Taken::Adopted) => Fate::Adopted,
            Ok(Taken::Merged) => Fate::Merged,
            Err(why) => {
                tracing::warn!(peer = %job.plan.partners[*index].known.peer, "model refused: {why}");
                if let Some(view) = models.get_mut(*index) {
                    view.error = Some(format!("refused: {why}"));
                }
                Fate::Refused
            }
        };
        if let Some(slot) = fates.get_mut(*index) {
            *slot = fate;
        }
    }
    // A model offered but never judged (the trainer did not answer) is not charged.
    for (index, _) in offered.iter().skip(verdicts.len()) {
        if let Some(slot) = fates.get_mut(*index) {
            *slot = Fate::Unjudged;
        }
    }
    let millis = started.elapsed().as_millis() as u64;
    let outcome = Outcome::of(&fates);
    let event = AveragingEvent {
        at_secs: job.node_started.elapsed().as_secs_f64(),
        kind: if job.plan.adopt { "adopt" } else { "merge" }.into(),
        outcome: outcome.as_str().into(),
        millis,
        models,
    };
    let _ = job
        .report
        .send(Done {
            plan: job.plan,
            fates,
            event,
        })
        .await;
}
