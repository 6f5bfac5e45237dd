//! The node task's loop: what it does with each event (an announcement heard or refused, a
//! round trained or published, an averaging's report, the housekeeping tick), driving the
//! averaging core and carrying out its plans and actions. It must not touch the swarm (only
//! the network `Client`) nor the model (only the trainer's queue).

use super::*;

impl NodeTask {
    pub(super) async fn run(
        mut self,
        trainer: TrainerHandle,
        mut events: mpsc::Receiver<Event>,
        mut averaged: mpsc::Receiver<averaging::Report>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut rounds = trainer.rounds.clone();
        let mut trained = trainer.trained.clone();
        let mut averaging: Option<JoinHandle<()>> = None;
        let mut tick = tokio::time::interval(STATUS_EVERY);
        let overlap = self.opts.round.overlap;
        if overlap {
            // Nothing was started before the first round: it must not wait for a merge.
            let _ = trainer.merges.try_send(ToTrainer::Skip);
        }
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                Some(event) = events.recv() => {
                    self.on_event(event);
                    if self.gathering.is_some() {
                        // A partner's model of this round may be in: plan once enough are.
                        self.next_averaging(&trainer, &mut averaging, &mut averaged);
                    }
                }
                _ = sleep_until(self.started, self.gathering), if self.gathering.is_some() => {
                    self.next_averaging(&trainer, &mut averaging, &mut averaged);
                }
                Some(done) = averaged.recv() => self.on_averaged(done),
                changed = rounds.changed() => {
                    if changed.is_err() {
                        tracing::error!("training thread stopped");
                        break;
                    }
                    let round = rounds.borrow_and_update().clone();
                    if let Some(round) = round
                        && let Err(e) = self.on_round(&round).await
                    {
                        tracing::error!("round {}: {e:#}", round.round);
                    }
                    if overlap {
                        // The next round's averaging, fetched while that round trains.
                        self.next_averaging(&trainer, &mut averaging, &mut averaged);
                    }
                }
                changed = trained.changed() => {
                    if changed.is_err() {
                        tracing::error!("training thread stopped");
                        break;
                    }
                    trained.borrow_and_update();
                    if !overlap {
                        self.next_averaging(&trainer, &mut averaging, &mut averaged);
                    }
                }
                _ = tick.tick() => {
                    if !trainer.is_running() {
                        tracing::error!("training thread ended");
                        break;
                    }
                    let net = self.client.status().await;
                    self.tick(&net).await;
                    self.publish_status(&net);
                }
            }
        }
        if let Some(task) = averaging {
            task.abort();
        }
        if let Some((params, version, samples)) = self.unsaved.take() {
            self.checkpoint(params, version, samples).await;
        }
        if let Err(e) = trainer.stop() {
            tracing::error!("training thread: {e}");
        }
    }

    /// An averaging task reported: the core applies what its fetches charged and forgave,
    /// charges or forgives its partners and says how it went.
    pub(super) fn on_averaged(&mut self, report: averaging::Report) {
        let (plan, fates, mut event) = match report {
            averaging::Report::Late(ledger) => {
                self.core.settle(&ledger);
                return;
            }
            averaging::Report::Done {
                plan,
                fates,
                event,
                ledger,
            } => {
                self.core.settle(&ledger);
                (plan, fates, event)
            }
        };
        let outcome = self
            .core
            .averaging_done(self.started.elapsed(), &plan, &fates);
        event.outcome = outcome.as_str().into();
        tracing::debug!(outcome = outcome.as_str(), "averaging done");
        if self.averagings.len() >= RECENT_AVERAGINGS {
            self.averagings.pop_front();
        }
        let _ = self.events.send(NodeEvent::Averaging(event.clone()));
        if outcome == Outcome::Adopted {
            self.adoption = Some(event.clone());
        }
        self.averagings.push_back(event);
    }

    pub(super) fn on_event(&mut self, event: Event) {
        match event {
            Event::Announce { from, announce } => {
                if from == self.peer_id {
                    return;
                }
                let (manifest, version, samples, metrics) = (
                    announce.manifest,
                    announce.version,
                    announce.samples,
                    announce.metrics,
                );
                match self.core.hear(self.started.elapsed(), from, *announce) {
                    Heed::Recorded => {}
                    Heed::Throttled => {
                        Counters::inc(&self.counters.announces_throttled);
                        return;
                    }
                    Heed::Blocked => return,
                }
                self.store.touch(&manifest);
                let _ = self.events.send(NodeEvent::Announce {
                    at_secs: self.started.elapsed().as_secs_f64(),
                    peer_id: from.to_string(),
                    own: false,
                    version,
                    manifest: manifest.to_hex(),
                    samples,
                    accuracy: metrics.accuracy,
                    loss: metrics.loss,
                });
            }
            Event::Rejected { from, reason } => {
                Counters::inc(&self.counters.announces_rejected);
                self.core.announcement_rejected(from);
                tracing::debug!(%from, "announcement rejected: {reason}");
                let _ = self.events.send(NodeEvent::Rejected {
                    at_secs: self.started.elapsed().as_secs_f64(),
                    peer_id: from.to_string(),
                    reason,
                });
            }
            Event::Listening(_) => {}
        }
    }

    /// Starts the next averaging, or tells the trainer there is none for its round.
    pub(super) fn next_averaging(
        &mut self,
        trainer: &TrainerHandle,
        averaging: &mut Option<JoinHandle<()>>,
        averaged: &mut mpsc::Receiver<averaging::Report>,
    ) {
        // Whether the averaging task ended, read before its report is looked for: a task
        // that ended sent its report first, so one still missing after the drain below
        // never comes.
        let ended = averaging.as_ref().is_none_or(|t| t.is_finished());
        while let Ok(done) = averaged.try_recv() {
            self.on_averaged(done);
        }
        if self.core.averaging() && ended {
            tracing::warn!("an averaging task ended without a report");
            self.core.averaging_abandoned();
        }
        // With the same-round exchange, wait (bounded) for the partners' models of this
        // round; this runs again on every announcement heard and at the deadline.
        self.gathering = self.core.gather(self.started.elapsed());
        if self.gathering.is_some() {
            return;
        }
        // One averaging at a time (the core says); the trainer hears of every round
        // without one.
        match self.start_averaging(trainer) {
            Some(task) => *averaging = Some(task),
            None => {
                let _ = trainer.merges.try_send(ToTrainer::Skip);
            }
        }
    }

    /// Starts the averaging the core plans, if any.
    pub(super) fn start_averaging(&mut self, trainer: &TrainerHandle) -> Option<JoinHandle<()>> {
        let layout = self.layout.clone()?;
        let plan = self.core.plan(self.started.elapsed(), &mut self.rng)?;
        let job = averaging::Job {
            plan,
            layout,
            client: self.client.clone(),
            store: self.store.clone(),
            budgets: self.core.budgets().clone(),
            rates: self.rates.clone(),
            counters: self.counters.clone(),
            limits: self.opts.fetch,
            merges: trainer.merges.clone(),
            report: self.averaged.clone(),
            node_started: self.started,
        };
        Some(tokio::spawn(averaging::run(job)))
    }

    /// The core's housekeeping, carried out: blocks, gossip scores, disconnects.
    pub(super) async fn tick(&mut self, net: &network::NetStatus) {
        let now = self.started.elapsed();
        for action in self.core.tick(now, &net.connected) {
            match action {
                Action::Block { peer, until } => {
                    let span = until.saturating_sub(now);
                    tracing::warn!(%peer, "error budget spent: blocking for {span:?}");
                    self.client.block(peer).await;
                }
                Action::Penalize { peer, charges } => self.client.penalize(peer, charges).await,
                Action::Disconnect { peer } => {
                    tracing::info!(%peer, "connected but silent on gossip; reconnecting");
                    self.client.disconnect(peer).await;
                }
                Action::Unblocked { peer } => {
                    tracing::info!(%peer, "block ended");
                    self.client.unblock(peer).await;
                }
            }
        }
    }
}

/// Sleeps until `at` on `started`'s clock (never, if `None`).
async fn sleep_until(started: Instant, at: Option<Duration>) {
    match at {
        Some(at) => tokio::time::sleep_until((started + at).into()).await,
        None => std::future::pending().await,
    }
}
