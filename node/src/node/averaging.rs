//! One averaging, as a task the node spawns: fetch the chosen partners' models (only from
//! peers that announced them, and only if their layout is ours), hand them to the training
//! thread, and charge the peers whose models it refused. It reports what happened as an
//! [`AveragingEvent`]. It owns nothing past its run: the node chose the partners and the
//! training thread does the merge.

use super::{AveragingEvent, ModelFetch, REJECTED_MODEL_CHARGES, VERDICT_WAIT};
use crate::averaging::fetch::{self, ErrorBudgets, FetchLimits};
use crate::averaging::policy::{Known, PartnerModel, Policy};
use crate::averaging::robust::{Rejection, Taken};
use crate::metrics::Counters;
use crate::network::Client;
use crate::store::ChunkStore;
use crate::train::worker::ToTrainer;
use libp2p::PeerId;
use murmur_protocol::Layout;
use std::sync::Arc;
use std::time::Instant;
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

/// Runs one averaging to the end.
pub async fn run(job: Job) {
    let started = Instant::now();
    let results = futures::future::join_all(job.partners.iter().map(|p| {
        fetch::fetch(
            &job.client,
            &job.store,
            p.known.manifest,
            &p.holders,
            &job.budgets,
            job.limits,
            &job.layout,
        )
    }))
    .await;
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
            Ok(f) => {
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
            Err(e) => {
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
