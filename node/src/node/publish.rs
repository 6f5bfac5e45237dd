//! Publishing a round: the node task turns the trainer's round into a snapshot in the
//! chosen encoding, stores it as its own model, checkpoints it when due and announces it
//! (the announcement from the shared builder, [`crate::averaging::announce`]). A hostile
//! node (tests only) serves a poisoned model and announces in bursts.

use super::*;

impl NodeTask {
    /// Snapshots, checkpoints and announces a finished round (unless the last announcement
    /// was too recent).
    pub(super) async fn on_round(&mut self, round: &RoundResult) -> anyhow::Result<()> {
        let finite = round.params.all_finite() && round.eval.loss.is_finite();
        let version = match self.core.round_finished(self.started.elapsed(), finite) {
            RoundStep::Announce { version } => version,
            RoundStep::TooSoon => return Ok(()),
            RoundStep::NonFinite => {
                // The training thread rolls such a model back before publishing it; never
                // announce or checkpoint one regardless.
                tracing::error!(
                    round = round.round,
                    "round with a non-finite model not announced"
                );
                return Ok(());
            }
        };
        self.layout = Some(round.params.layout().clone());
        Counters::inc(&self.counters.rounds);
        let params = round.params.clone();
        let chunk_size = self.opts.chunk_size;
        let seed = self.opts.network.network_id.clone();
        let encoding = self.opts.encoding;
        // Peers are served the model in the chosen encoding (in f32 when that is f32, or
        // when the encoding cannot carry this round's values); the checkpoint keeps the exact
        // f32 model and builds its own snapshot when one is written.
        let (served, projection) = tokio::task::spawn_blocking(move || {
            crate::cpu::on_comm_pool(move || {
                let projection = project(params.values(), seed.as_bytes());
                let encoded = match encoding {
                    murmur_protocol::Encoding::F32Le => None,
                    e => match Snapshot::from_params_encoded(params.clone(), e, chunk_size) {
                        Ok(s) => Some(s),
                        // A value the encoding cannot carry (f16 past 65,504): this round's
                        // model is served in f32.
                        Err(murmur_protocol::SnapshotError::Quantize(q)) => {
                            tracing::warn!("publishing this round in f32: {q}");
                            None
                        }
                        Err(other) => return Err(other.into()),
                    },
                };
                let served = match encoded {
                    Some(s) => s,
                    None => Snapshot::from_params(params, chunk_size)?,
                };
                anyhow::Ok((served, projection))
            })
        })
        .await??;
        // A hostile node announces and serves a poisoned model; it checkpoints its own.
        let announced = match self.opts.hostile {
            Some(h) => h.snapshot(&round.params, chunk_size, &mut self.rng)?,
            None => served,
        };
        let stats = self.store.insert_own(&announced);
        tracing::debug!(
            version = version,
            new = stats.new_chunks,
            reused = stats.reused_chunks,
            "snapshot"
        );
        if self
            .last_checkpoint
            .is_none_or(|t| t.elapsed() >= self.checkpoint_wait())
        {
            self.last_checkpoint = Some(Instant::now());
            self.unsaved = None;
            // A failed write is logged, counted and retried later: training, serving and
            // announcing go on.
            self.checkpoint(round.params.clone(), version, round.samples)
                .await;
        } else {
            self.unsaved = Some((round.params.clone(), version, round.samples));
        }

        self.core.announced(OwnModel {
            manifest: announced.id,
            samples: round.samples,
        });
        self.own = Some(Own {
            manifest: announced.id,
            samples: round.samples,
            accuracy: round.eval.accuracy,
            loss: round.eval.loss,
            eval_samples: round.eval_samples,
            projection: projection.clone(),
        });
        let counters = self.counters.snapshot(&self.traffic);
        let net = self.client.status().await;
        let announce = announcement(
            Announce {
                manifest: announced.id,
                version,
                samples: round.samples,
                metrics: MetricsSummary {
                    accuracy: round.eval.accuracy,
                    loss: round.eval.loss,
                    merges: counters.merges,
                    bytes_sent: counters.bytes_sent,
                    bytes_received: counters.bytes_received,
                    train_share: counters.train_share,
                    comm_share: counters.comm_share,
                },
                projection,
                neighbours: net
                    .connected
                    .iter()
                    .map(|p| bytes::Bytes::from(p.to_bytes()))
                    .collect(),
            },
            self.opts.hostile,
        );
        let version = announce.version;
        let _ = self.events.send(NodeEvent::Announce {
            at_secs: self.started.elapsed().as_secs_f64(),
            peer_id: self.peer_id.to_string(),
            own: true,
            version,
            manifest: announced.id.to_hex(),
            samples: round.samples,
            accuracy: announce.metrics.accuracy,
            loss: announce.metrics.loss,
        });
        if self.opts.hostile.is_some() {
            spawn_burst(self.client.clone(), announce.clone());
        }
        if let Err(e) = self.client.publish(announce).await {
            // Nobody subscribed yet (alone, or the mesh is still forming): not an error.
            tracing::debug!("announce not published: {e}");
        }
        tracing::info!(
            version = version,
            accuracy = format!("{:.4}", round.eval.accuracy),
            loss = format!("{:.4}", round.eval.loss),
            samples = round.samples,
            manifest = %announced.id.short(),
            "round"
        );
        self.publish_status(&net);
        Ok(())
    }
}

/// A hostile node's burst: the round's announcement again, [`hostile::BURST`] times in all,
/// [`hostile::BURST_EVERY`] apart, each with a higher version (gossip drops exact repeats).
fn spawn_burst(client: Client, announce: Announce) {
    tokio::spawn(async move {
        for i in 1..hostile::BURST {
            tokio::time::sleep(hostile::BURST_EVERY).await;
            // Distinct even at version u64::MAX: gossip ids are content hashes.
            let mut again = announce.clone();
            again.version = announce.version.saturating_add(i);
            again.metrics.merges = announce.metrics.merges.wrapping_add(i);
            let _ = client.publish(again).await;
        }
    });
}
