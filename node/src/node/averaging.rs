//! One averaging, as a task the node spawns to carry out the core's [`Plan`]: fetch the
//! partners' models from the holders the plan names (only if their layout is ours; a
//! straggler is not waited for long once one model is in), hand them to the training thread
//! as the shared [`offer`] builds them, and report each partner's [`Fate`] (the core charges
//! the peers whose models were refused) with an [`AveragingEvent`] and what the fetches
//! charged and forgave (their [`Ledger`]s, which the core applies; a straggler's comes in a
//! later [`Report::Late`]). It owns nothing past its run: the core chose the partners and
//! owns the charges, and the training thread does the merge.

use super::VERDICT_WAIT;
use crate::averaging::core::{Fate, Outcome, Plan};
use crate::averaging::fetch::{
    self, ErrorBudgets, FetchError, FetchLimits, Fetched, Ledger, Rates,
};
use crate::averaging::offer::{self, STRAGGLER_WAIT};
use crate::averaging::robust::{Rejection, Taken};
use crate::metrics::Counters;
use crate::network::Client;
use crate::status::{AveragingEvent, ModelFetch};
use crate::store::ChunkStore;
use crate::train::worker::ToTrainer;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use murmur_protocol::Layout;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Everything one averaging needs.
pub struct Job {
    pub plan: Plan<PeerId>,
    pub layout: Layout,
    pub client: Client,
    pub store: ChunkStore,
    /// The core's error budgets when the averaging started (each fetch charges a copy).
    pub budgets: ErrorBudgets,
    /// The node's measured delivery rate per peer (shared by every fetch).
    pub rates: Rates,
    pub counters: Arc<Counters>,
    pub limits: FetchLimits,
    pub merges: mpsc::Sender<ToTrainer>,
    pub report: mpsc::Sender<Report>,
    /// When the node started (events are timed from it).
    pub node_started: Instant,
}

/// What an averaging reports.
#[derive(Debug)]
pub enum Report {
    /// It ended: its plan, each partner's fate in the plan's order, the event for the
    /// status page (its `outcome` set by the core), and what the fetches that ended in time
    /// charged and forgave.
    Done {
        plan: Plan<PeerId>,
        fates: Vec<Fate>,
        event: AveragingEvent,
        ledger: Ledger,
    },
    /// A straggler's fetch ended after the averaging did: what it charged and forgave.
    Late(Ledger),
}

/// Runs one averaging to the end.
pub async fn run(job: Job) {
    let started = Instant::now();
    // Every partner's model at once; a fetch still running STRAGGLER_WAIT after the first
    // model arrived is left out of the merge (its result stays `None`).
    let mut results: Vec<Option<Result<Fetched, FetchError>>> =
        job.plan.partners.iter().map(|_| None).collect();
    let mut ledger = Ledger::default();
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
                    &client, &store, id, &holders, budgets, &rates, limits, &layout,
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
        let (result, charged) = joined
            .unwrap_or_else(|e| (Err(FetchError::Assemble(e.to_string())), Ledger::default()));
        ledger.extend(charged);
        if result.is_ok() && cutoff.is_none() {
            cutoff = Some(tokio::time::Instant::now() + STRAGGLER_WAIT);
        }
        if let Some(slot) = results.get_mut(i) {
            *slot = Some(result);
        }
    }
    let mut fetched = Vec::new();
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
                fetched.push((i, f.params));
            }
            Some(Err(e)) => {
                Counters::inc(&job.counters.fetch_failures);
                tracing::warn!(peer = %k.peer, "fetch failed: {e}");
                view.error = Some(e.to_string());
            }
        }
        models.push(view);
    }
    let (offer, offered) = offer::offer(&job.plan, fetched);
    let verdicts: Vec<Result<Taken, Rejection>> = match offer {
        None => {
            let _ = job.merges.send(ToTrainer::Skip).await;
            Vec::new()
        }
        Some(offer) => {
            let (tx, rx) = oneshot::channel();
            let _ = job
                .merges
                .send(ToTrainer::Offer {
                    offer,
                    verdicts: Some(tx),
                })
                .await;
            tokio::time::timeout(VERDICT_WAIT, rx)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default()
        }
    };
    for (index, verdict) in offered.indices().iter().zip(&verdicts) {
        if let Err(why) = verdict {
            tracing::warn!(peer = %job.plan.partners[*index].known.peer, "model refused: {why}");
            if let Some(view) = models.get_mut(*index) {
                view.error = Some(format!("refused: {why}"));
            }
        }
    }
    // A model offered but never judged (the trainer did not answer) is not charged.
    let fates = offered.judge(&verdicts);
    let millis = started.elapsed().as_millis() as u64;
    let outcome = Outcome::of(&fates);
    let event = AveragingEvent {
        at_secs: job.node_started.elapsed().as_secs_f64(),
        kind: if job.plan.adopt { "adopt" } else { "merge" }.into(),
        outcome: outcome.as_str().into(),
        millis,
        models,
    };
    let report = job.report.clone();
    let _ = report
        .send(Report::Done {
            plan: job.plan,
            fates,
            event,
            ledger,
        })
        .await;
    // Stragglers go on to their end; what they charged still counts.
    while let Some((_, joined)) = running.next().await {
        if let Ok((_, charged)) = joined {
            let _ = report.send(Report::Late(charged)).await;
        }
    }
}
