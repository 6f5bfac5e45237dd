//! One averaging, as a task the node spawns: fetch the chosen partners' models (only from
//! peers that announced them, and only if their layout is ours; a straggler is not waited
//! for long once one model is in), hand them to the training thread, and charge the peers
//! whose models it refused. It reports what happened as an
//! [`AveragingEvent`]. It owns nothing past its run: the node chose the partners and the
//! training thread does the merge.

use super::{AveragingEvent, ModelFetch, REJECTED_MODEL_CHARGES, VERDICT_WAIT};
use crate::averaging::fetch::{self, ErrorBudgets, FetchError, FetchLimits, Fetched};
use crate::averaging::policy::{Known, PartnerModel, Policy};
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

/// One partner to fetch: its announcement, who holds the model, its lag in our rounds.
#[derive(Debug, Clone)]
pub struct Partner {
    pub known: Known<PeerId>,
    pub holders: Vec<PeerId>,
    pub lag_rounds: f64,
}

/// Everything one averaging needs.
pub struct Job {
    pub partners: Vec<Partner>,
    /// Adopt the (single) partner's model instead of merging.
    pub adopt: bool,
    pub own_samples: u64,
    pub layout: Layout,
    pub client: Client,
    pub store: ChunkStore,
    pub budgets: ErrorBudgets,
    pub counters: Arc<Counters>,
    pub limits: FetchLimits,
    pub policy: Policy,
    pub merges: mpsc::Sender<ToTrainer>,
    pub report: mpsc::Sender<AveragingEvent>,
    /// When the node started (events are timed from it).
    pub node_started: Instant,
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
        job.partners.iter().map(|_| None).collect();
    let mut running: FuturesUnordered<_> = job
        .partners
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (client, store, budgets) =
                (job.client.clone(), job.store.clone(), job.budgets.clone());
            let (holders, layout, limits, id) = (
                p.holders.clone(),
                job.layout.clone(),
                job.limits,
                p.known.manifest,
            );
            let task = tokio::spawn(async move {
                fetch::fetch(&client, &store, id, &holders, &budgets, limits, &layout).await
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
    let mut weighed = Vec::new();
    let mut models = Vec::new();
    for (p, result) in job.partners.iter().zip(results) {
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
                offered.push((models.len(), k.peer, f.params));
                weighed.push(PartnerModel {
                    samples: k.samples,
                    lag_rounds: p.lag_rounds,
                });
            }
            Some(Err(e)) => {
                Counters::inc(&job.counters.fetch_failures);
                tracing::warn!(peer = %k.peer, "fetch failed: {e}");
                view.error = Some(e.to_string());
            }
        }
        models.push(view);
    }
    let (tx, rx) = oneshot::channel();
    let message = if offered.is_empty() {
        ToTrainer::Skip
    } else if job.adopt {
        match offered.first() {
            Some((_, _, model)) => ToTrainer::Adopt {
                model: model.clone(),
                verdicts: Some(tx),
            },
            None => ToTrainer::Skip,
        }
    } else {
        ToTrainer::Merge {
            partners: offered.iter().map(|(_, _, m)| m.clone()).collect(),
            weights: job.policy.weights(job.own_samples, &weighed),
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
    let (mut taken, mut adopted) = (0, false);
    for ((index, peer, _), verdict) in offered.iter().zip(&verdicts) {
        match verdict {
            Ok(how) => {
                taken += 1;
                adopted |= *how == Taken::Adopted;
                job.budgets.forgive(*peer);
            }
            Err(why) => {
                for _ in 0..REJECTED_MODEL_CHARGES {
                    job.budgets.charge(*peer);
                }
                tracing::warn!(%peer, "model refused: {why}");
                if let Some(view) = models.get_mut(*index) {
                    view.error = Some(format!("refused: {why}"));
                }
            }
        }
    }
    let millis = started.elapsed().as_millis() as u64;
    let outcome = if adopted {
        "adopted"
    } else if taken > 0 {
        "merged"
    } else if !offered.is_empty()
        || models
            .iter()
            .any(|m| m.chunks_fetched + m.chunks_reused > 0)
    {
        "rejected"
    } else {
        "failed"
    };
    tracing::debug!(elapsed_ms = millis, outcome, "averaging done");
    let _ = job
        .report
        .send(AveragingEvent {
            at_secs: job.node_started.elapsed().as_secs_f64(),
            kind: if job.adopt { "adopt" } else { "merge" }.into(),
            outcome: outcome.into(),
            millis,
            models,
        })
        .await;
}
