//! The averaging core: every decision a peer makes about its partners, as one IO-less state
//! machine per peer (in the manner of iroh-gossip's `proto`). It takes events (an
//! announcement heard or rejected, a round finished, a round's steps done, an averaging's
//! outcome, a tick) with the time and an RNG passed in, and returns what to do: announce
//! this version, fetch these models from these holders and merge them with these weights,
//! adopt this one, block or penalize or disconnect this peer. It owns the table of peers
//! heard (throttle, freshness, models already merged, blocks), the error budgets, the
//! version counter and the round time.
//!
//! It must not touch a socket, a clock, a thread or a model: the node task ([`crate::node`])
//! feeds it real events on its monotonic clock and an OS-seeded RNG and carries out its
//! actions over libp2p; the simulator ([`crate::sim`]) feeds it virtual time and a seeded
//! RNG. The checks on a fetched model's values (distance, held-back loss, aggregation) need
//! the model and run where it lives, in the shared pure [`super::robust`] code; their
//! verdicts come back here as [`Fate`]s and are charged here.

use super::budgets::{ErrorBudgets, Ledger};
use super::peers::{Heard, Heed, PeerTable};
use super::policy::{Known, PartnerModel, Policy, Staleness};
use murmur_protocol::{Announce, ManifestId};
use rand::Rng;
use rand::seq::SliceRandom;
use std::collections::BTreeMap;
use std::time::Duration;

/// Least time between two announced models: announcing faster would flood gossip with
/// models nobody has time to fetch. Rounds finished sooner are not announced (training goes
/// on; the next one is).
pub const MIN_ANNOUNCE_INTERVAL: Duration = Duration::from_millis(200);

/// A connected peer silent on gossip for this long, and for three of its own rounds, has a
/// connection whose gossip stream died (seen after a container's network was cut and
/// reconnected: pings still pass, no announcement does); it is disconnected so that a fresh
/// connection is made. A peer whose rounds are slow is given three of them.
pub const GOSSIP_SILENCE: Duration = Duration::from_secs(15);

/// How long a peer whose charges reached the error budget stays blocked (disconnected, its
/// connections refused, its announcements ignored). Afterwards half its charges are forgiven.
pub const BLOCK_FOR: Duration = Duration::from_secs(120);

/// A peer over its budget is blocked only if it was heard this recently: one that is present
/// and misbehaving. A peer cut off by a split (its requests time out, it is not heard) is
/// only avoided while over its budget.
pub const BLOCK_IF_HEARD_WITHIN: Duration = Duration::from_secs(5);

/// Every this long, one charge of every charged peer is forgiven, so a peer charged for
/// timeouts while a network split cut it off is chosen again some time after the heal.
pub const CHARGE_DECAY: Duration = Duration::from_secs(10);

/// Charges for a model that failed a check (a response with bad chunks costs one). Fetching
/// it forgave its peer up to two (a good manifest answer, and its chunks once the fetch
/// completed; [`super::fetch::state`] applies the same rules in the node and the simulator), so a
/// refusal must cost more than that: each refused model moves its peer at least two charges
/// closer to a block, each accepted one forgives one more.
pub const REJECTED_MODEL_CHARGES: u32 = 4;

/// With [`Staleness::SameRound`], a peer heard within this many of this peer's round times
/// is expected to announce this round's model, and waited for ([`Core::gather`]).
pub const LIVE_ROUNDS: u32 = 3;

/// Announcements older than this many freshness windows are forgotten.
pub const FORGET_AFTER_FRESHNESS: u32 = 4;

/// The core's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreConfig {
    pub policy: Policy,
    /// Charges a peer may take before it is avoided (and, if present, blocked).
    pub error_budget: u32,
}

/// This peer's own announced model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnModel {
    pub manifest: ManifestId,
    pub samples: u64,
}

/// What to do with a finished round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundStep {
    /// Snapshot it and announce it as this version.
    Announce { version: u64 },
    /// Too soon after the last announcement: say nothing (the next round is announced).
    TooSoon,
    /// Its weights or loss are not finite: never announce nor checkpoint it.
    NonFinite,
}

/// One partner of an averaging: whose model, who holds it, how late it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Partner<P> {
    pub known: Known<P>,
    /// Its announcer first, then every other peer whose latest announcement names it.
    /// Peers that never announced it are not asked (nor charged).
    pub holders: Vec<P>,
    /// Time since its announcement arrived, in this peer's rounds.
    pub lag_rounds: f64,
}

/// An averaging to carry out: fetch every partner's model from its holders, then hand the
/// fetched ones to the trainer with [`Plan::weights`] (or, with `adopt`, offer the one model
/// for adoption), then report each partner's [`Fate`] with [`Core::averaging_done`].
#[derive(Debug, Clone, PartialEq)]
pub struct Plan<P> {
    pub partners: Vec<Partner<P>>,
    /// Offer the (single) partner's model for adoption instead of merging.
    pub adopt: bool,
    /// This peer's samples when the plan was made (a partner's claim is capped at it).
    pub own_samples: u64,
    policy: Policy,
}

impl<P> Plan<P> {
    /// Merge weights for the partners whose models arrived (`fetched`, indices into
    /// `partners`): this peer's first, then one per fetched partner, summing to 1.
    pub fn weights(&self, fetched: &[usize]) -> Vec<f32> {
        let models: Vec<PartnerModel> = fetched
            .iter()
            .filter_map(|&i| self.partners.get(i))
            .map(|p| PartnerModel {
                samples: p.known.samples,
                lag_rounds: p.lag_rounds,
            })
            .collect();
        self.policy.weights(self.own_samples, &models)
    }
}

/// What became of one partner's model in an averaging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Adopted outright.
    Adopted,
    /// Passed the checks and merged.
    Merged,
    /// Fetched, then refused by a check.
    Refused,
    /// Not fetched (failed, timed out, or still on its way when the merge went ahead).
    Unfetched,
    /// Fetched and offered, but the trainer never said what became of it: not charged.
    Unjudged,
}

/// How an averaging ended, from its partners' fates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Adopted,
    Merged,
    /// Something was fetched and nothing taken.
    Rejected,
    /// Nothing was fetched.
    Failed,
}

impl Outcome {
    /// The outcome of partners that met these fates.
    pub fn of(fates: &[Fate]) -> Outcome {
        if fates.contains(&Fate::Adopted) {
            Outcome::Adopted
        } else if fates.contains(&Fate::Merged) {
            Outcome::Merged
        } else if fates
            .iter()
            .any(|f| matches!(f, Fate::Refused | Fate::Unjudged))
        {
            Outcome::Rejected
        } else {
            Outcome::Failed
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Adopted => "adopted",
            Outcome::Merged => "merged",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
        }
    }
}

/// Something the driver must do to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<P> {
    /// Cut it off for this long (disconnect, refuse its connections, ignore it).
    Block { peer: P, until: Duration },
    /// Its charges changed: set its gossip score from them.
    Penalize { peer: P, charges: u32 },
    /// Connected but silent on gossip: disconnect it so that a fresh connection is made.
    Disconnect { peer: P },
    /// Its block ended (half its charges were forgiven).
    Unblocked { peer: P },
}

/// One peer's averaging state machine.
#[derive(Debug)]
pub struct Core<P> {
    config: CoreConfig,
    peers: PeerTable<P>,
    budgets: ErrorBudgets<P>,
    version: u64,
    own: Option<OwnModel>,
    /// True once this peer has a model of the network's (resumed, adopted or merged): until
    /// then it offers one fresh model at a time for adoption instead of averaging.
    adopted: bool,
    last_announce: Option<Duration>,
    /// Recent time per announced round (moving average): the unit of a partner's lag.
    round_time: Option<Duration>,
    /// True while a planned averaging has not been reported done.
    averaging: bool,
    /// When the last averaging ended (or was planned, or given up for want of partners):
    /// with [`Staleness::SameRound`], only models heard since are this round's. A model that
    /// arrived before this peer's last merge went in is a round old, even if it came after
    /// that merge was planned.
    fresh_since: Option<Duration>,
    /// With [`Staleness::SameRound`], the end of the current wait for partners' models.
    gather_until: Option<Duration>,
    last_decay: Duration,
    /// The charges last turned into each peer's gossip score.
    penalized: BTreeMap<P, u32>,
}

impl<P: Copy + Ord> Core<P> {
    /// A core for a peer at `version`; `resumed` if it starts from a model of the network's
    /// (a checkpoint), so it never tries to adopt one.
    pub fn new(config: CoreConfig, version: u64, resumed: bool) -> Self {
        let budgets = ErrorBudgets::new(config.error_budget);
        Self {
            config,
            peers: PeerTable::default(),
            budgets,
            version,
            own: None,
            adopted: resumed,
            last_announce: None,
            round_time: None,
            averaging: false,
            fresh_since: None,
            gather_until: None,
            last_decay: Duration::ZERO,
            penalized: BTreeMap::new(),
        }
    }

    /// The error budgets, read-only: a fetch works on a copy ([`super::budgets::Tally`])
    /// and returns a [`Ledger`] for [`Core::settle`].
    pub fn budgets(&self) -> &ErrorBudgets<P> {
        &self.budgets
    }

    /// Applies the charges and pardons a fetch recorded.
    pub fn settle(&mut self, ledger: &Ledger<P>) {
        self.budgets.settle(ledger);
    }

    /// Every peer heard and not forgotten, with its latest announcement.
    pub fn peers(&self) -> impl Iterator<Item = (&P, &Heard)> {
        self.peers.known.iter()
    }

    /// Peers blocked, until when.
    pub fn blocked(&self) -> impl Iterator<Item = (&P, &Duration)> {
        self.peers.blocked.iter()
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn own(&self) -> Option<OwnModel> {
        self.own
    }

    /// True once this peer holds a model of the network's.
    pub fn joined(&self) -> bool {
        self.adopted
    }

    /// True while an averaging it planned is running.
    pub fn averaging(&self) -> bool {
        self.averaging
    }

    /// This peer's recent time per round, if it has announced twice.
    pub fn round_time(&self) -> Option<Duration> {
        self.round_time
    }

    /// An announcement from `from` arrived at `now`. A peer is heard at most once per the
    /// longer of [`MIN_ANNOUNCE_INTERVAL`] and half of this peer's round time: announcing in
    /// bursts does not make it look fresher.
    pub fn hear(&mut self, now: Duration, from: P, announce: Announce) -> Heed {
        let min_interval = MIN_ANNOUNCE_INTERVAL.max(self.round_time.unwrap_or_default() / 2);
        self.peers.hear(from, announce, now, min_interval)
    }

    /// An announcement from `from` failed validation: one charge.
    pub fn announcement_rejected(&mut self, from: P) {
        self.budgets.charge(from, 1);
    }

    /// The trainer finished a round at `now` (`finite`: its weights and loss are finite).
    pub fn round_finished(&mut self, now: Duration, finite: bool) -> RoundStep {
        if self
            .last_announce
            .is_some_and(|t| now.saturating_sub(t) < MIN_ANNOUNCE_INTERVAL)
        {
            return RoundStep::TooSoon;
        }
        if !finite {
            return RoundStep::NonFinite;
        }
        if let Some(last) = self.last_announce {
            let t = now.saturating_sub(last);
            self.round_time = Some(self.round_time.map_or(t, |avg| (avg * 3 + t) / 4));
        }
        self.last_announce = Some(now);
        self.version += 1;
        RoundStep::Announce {
            version: self.version,
        }
    }

    /// The round's model was announced as `own`.
    pub fn announced(&mut self, own: OwnModel) {
        self.own = Some(own);
    }

    /// Peers with a model this peer has not merged yet, as the policy sees them (with
    /// [`Staleness::SameRound`], only models heard since the last plan).
    fn known(&self) -> Vec<Known<P>> {
        let same_round = self.config.policy.staleness == Staleness::SameRound;
        self.peers
            .known
            .iter()
            .filter(|(p, h)| self.peers.merged.get(*p) != Some(&h.announce.manifest))
            .filter(|(_, h)| !same_round || self.fresh_since.is_none_or(|t| h.at > t))
            .map(|(peer, h)| Known {
                peer: *peer,
                manifest: h.announce.manifest,
                version: h.announce.version,
                samples: h.announce.samples,
                seen_at: h.at,
            })
            .collect()
    }

    /// Who to ask for model `id`: `first` (its announcer), then every other peer whose
    /// latest announcement names it, in a random order (so that peers do not all turn to
    /// the same holders first).
    fn holders(&self, id: &ManifestId, first: P, rng: &mut impl Rng) -> Vec<P> {
        let mut others: Vec<P> = self
            .peers
            .known
            .iter()
            .filter(|(p, h)| **p != first && h.announce.manifest == *id)
            .map(|(p, _)| *p)
            .collect();
        others.shuffle(rng);
        std::iter::once(first).chain(others).collect()
    }

    /// True if the next plan is a fresh peer's adoption attempt (it has not joined, and
    /// some announcement claims a later version than its own).
    fn adopting(&self, known: &[Known<P>]) -> bool {
        !self.adopted && known.iter().any(|k| k.version > self.version)
    }

    /// Peers heard within [`LIVE_ROUNDS`] of this peer's round times (the freshness window
    /// before it has one), other than those over their error budget.
    fn live(&self, now: Duration) -> usize {
        let window = self
            .round_time
            .map_or(self.config.policy.freshness, |t| t * LIVE_ROUNDS);
        self.peers
            .known
            .iter()
            .filter(|(p, h)| now.saturating_sub(h.at) <= window && !self.budgets.exhausted(p))
            .count()
    }

    /// With [`Staleness::SameRound`], called when the round's steps are done and again on
    /// every announcement heard until it says go: until when to wait for more partners'
    /// models of this round before [`Core::plan`], or `None` to plan now. The wait starts
    /// at the first call after a plan, lasts at most [`Policy::gather`], and ends as soon
    /// as `fanout` new models are in (fewer if fewer peers were heard lately: a peer gone
    /// or slow holds the others up at most `gather`). Other rules, an adoption attempt, or
    /// an averaging still running never wait.
    pub fn gather(&mut self, now: Duration) -> Option<Duration> {
        let policy = &self.config.policy;
        if policy.staleness != Staleness::SameRound || self.averaging || self.own.is_none() {
            return None;
        }
        let known = self.known();
        if self.adopting(&known) {
            return None;
        }
        let until = *self.gather_until.get_or_insert(now + policy.gather);
        let fresh = known
            .iter()
            .filter(|k| !self.budgets.exhausted(&k.peer))
            .count();
        let wanted = policy.fanout.min(self.live(now));
        (now < until && fresh < wanted).then_some(until)
    }

    /// The trainer finished a round's steps at `now`: the averaging to run, if any (none
    /// while one runs, before this peer announced a model, or with no eligible partner; the
    /// trainer is then told to go on without).
    ///
    /// A fresh peer that hears the network has moved on (some announcement claims a later
    /// version than its own) tries to adopt a model instead: a fresh one drawn at random,
    /// which the trainer takes only if it clearly beats its own on held-back data. The claim
    /// only starts the attempt; it picks nothing.
    pub fn plan(&mut self, now: Duration, rng: &mut impl Rng) -> Option<Plan<P>> {
        if self.averaging {
            return None;
        }
        let own = self.own?;
        let known = self.known();
        self.gather_until = None;
        self.fresh_since = Some(now);
        let avoid: Vec<P> = known
            .iter()
            .map(|k| k.peer)
            .filter(|p| self.budgets.exhausted(p))
            .collect();
        let policy = &self.config.policy;
        let recent = self.round_time.unwrap_or(MIN_ANNOUNCE_INTERVAL);
        let candidate = if !self.adopting(&known) {
            None
        } else {
            policy
                .adoption_candidate(&known, Some(&own.manifest), &avoid, now, rng)
                .cloned()
        };
        let adopt = candidate.is_some();
        let chosen: Vec<Known<P>> = match candidate {
            Some(k) => vec![k],
            None => policy
                .choose(&known, Some(&own.manifest), &avoid, now, recent, rng)
                .into_iter()
                .cloned()
                .collect(),
        };
        if chosen.is_empty() {
            return None;
        }
        // Averaging with the network joins it; an adoption joins it once it succeeds.
        if !adopt {
            self.adopted = true;
        }
        let round = recent.max(Duration::from_millis(1));
        let partners: Vec<Partner<P>> = chosen
            .into_iter()
            .map(|k| Partner {
                holders: self.holders(&k.manifest, k.peer, rng),
                lag_rounds: now.saturating_sub(k.seen_at).as_secs_f64() / round.as_secs_f64(),
                known: k,
            })
            .collect();
        for p in &partners {
            self.peers.merged.insert(p.known.peer, p.known.manifest);
        }
        self.averaging = true;
        Some(Plan {
            partners,
            adopt,
            own_samples: own.samples,
            policy: policy.clone(),
        })
    }

    /// The averaging planned last ended at `now`: each partner's fate (in the plan's order) is
    /// charged (a refused model, [`REJECTED_MODEL_CHARGES`]) or forgiven (a taken one, one
    /// charge). What its fetches recorded comes in their ledgers ([`Core::settle`]).
    /// Returns the outcome.
    pub fn averaging_done(&mut self, now: Duration, plan: &Plan<P>, fates: &[Fate]) -> Outcome {
        self.averaging = false;
        self.fresh_since = Some(now);
        for (partner, fate) in plan.partners.iter().zip(fates) {
            let peer = partner.known.peer;
            match fate {
                Fate::Adopted | Fate::Merged => self.budgets.forgive(peer),
                Fate::Refused => self.budgets.charge(peer, REJECTED_MODEL_CHARGES),
                Fate::Unfetched | Fate::Unjudged => {}
            }
        }
        let outcome = Outcome::of(fates);
        if plan.adopt && matches!(outcome, Outcome::Adopted | Outcome::Merged) {
            // Adopted outright, or merged with: either way it has joined.
            self.adopted = true;
        }
        outcome
    }

    /// The averaging planned last ended with no report (its task died): the next may start.
    pub fn averaging_abandoned(&mut self) {
        self.averaging = false;
    }

    /// Housekeeping at `now`, with the peers connected: forgets old announcements, ends
    /// blocks (forgiving half the charges), fades charges, blocks present peers over their
    /// budget, turns charges into gossip scores, and disconnects connected peers silent on
    /// gossip for [`GOSSIP_SILENCE`] and three of their rounds.
    pub fn tick(&mut self, now: Duration, connected: &[P]) -> Vec<Action<P>> {
        let mut actions = Vec::new();
        for peer in connected {
            if let Some(h) = self.peers.known.get(peer)
                && now.saturating_sub(h.at) > GOSSIP_SILENCE.max(h.interval.unwrap_or_default() * 3)
            {
                // Forget it until it is heard again, so it is not dropped twice.
                self.peers.known.remove(peer);
                actions.push(Action::Disconnect { peer: *peer });
            }
        }
        let keep = self.config.policy.freshness * FORGET_AFTER_FRESHNESS;
        for peer in self.peers.prune(now, keep) {
            self.budgets.pardon(&peer);
            actions.push(Action::Unblocked { peer });
        }
        if now.saturating_sub(self.last_decay) >= CHARGE_DECAY {
            self.last_decay = now;
            for (peer, _) in self.budgets.snapshot() {
                self.budgets.forgive(peer);
            }
        }
        let charges = self.budgets.snapshot();
        for &(peer, n) in &charges {
            let present = self
                .peers
                .known
                .get(&peer)
                .is_some_and(|h| now.saturating_sub(h.at) <= BLOCK_IF_HEARD_WITHIN);
            if present && self.budgets.exhausted(&peer) && !self.peers.blocked.contains_key(&peer) {
                let until = now + BLOCK_FOR;
                self.peers.block(peer, until);
                actions.push(Action::Block { peer, until });
            }
            if self.penalized.get(&peer) != Some(&n) {
                self.penalized.insert(peer, n);
                actions.push(Action::Penalize { peer, charges: n });
            }
        }
        self.penalized
            .retain(|p, _| charges.iter().any(|(c, _)| c == p));
        self.budgets.prune();
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::averaging::policy::{Staleness, Weighting};
    use murmur_protocol::MetricsSummary;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const S: Duration = Duration::from_secs(1);

    fn config(fanout: usize) -> CoreConfig {
        CoreConfig {
            policy: Policy {
                fanout,
                freshness: Duration::from_secs(30),
                weighting: Weighting::Uniform,
                staleness: Staleness::Ignore,
                gather: Duration::ZERO,
            },
            error_budget: 8,
        }
    }

    fn announce(tag: u64, version: u64) -> Announce {
        Announce {
            manifest: ManifestId::of(&tag.to_le_bytes()),
            version,
            samples: 100,
            metrics: MetricsSummary::default(),
            projection: Vec::new(),
            neighbours: Vec::new(),
        }
    }

    /// Says that the core's model was announced, with `samples`.
    fn own(core: &mut Core<u32>, samples: u64) {
        core.announced(OwnModel {
            manifest: ManifestId::of(b"own"),
            samples,
        });
    }

    /// A core that announced its first model at `at`.
    fn started(fanout: usize, at: Duration) -> Core<u32> {
        let mut core = Core::new(config(fanout), 0, true);
        assert_eq!(
            core.round_finished(at, true),
            RoundStep::Announce { version: 1 }
        );
        core.announced(OwnModel {
            manifest: ManifestId::of(b"own"),
            samples: 100,
        });
        core
    }

    #[test]
    fn no_plan_before_the_first_announcement_nor_while_one_runs() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut core: Core<u32> = Core::new(config(2), 0, true);
        core.hear(S, 1, announce(1, 1));
        assert!(core.plan(S, &mut rng).is_none(), "no own model yet");
        core.round_finished(S, true);
        core.announced(OwnModel {
            manifest: ManifestId::of(b"own"),
            samples: 1,
        });
        let plan = core.plan(S, &mut rng).expect("a partner is fresh");
        assert_eq!(plan.partners.len(), 1);
        core.hear(2 * S, 2, announce(2, 1));
        assert!(core.plan(2 * S, &mut rng).is_none(), "one at a time");
        assert_eq!(
            core.averaging_done(S, &plan, &[Fate::Merged]),
            Outcome::Merged
        );
        let next = core.plan(2 * S, &mut rng).expect("peer 2 is new");
        assert_eq!(
            next.partners[0].known.peer, 2,
            "peer 1's model was merged already"
        );
    }

    #[test]
    fn rounds_are_announced_with_a_version_unless_too_soon_or_not_finite() {
        let mut core: Core<u32> = Core::new(config(2), 5, true);
        assert_eq!(
            core.round_finished(S, true),
            RoundStep::Announce { version: 6 }
        );
        assert_eq!(
            core.round_finished(S + Duration::from_millis(100), true),
            RoundStep::TooSoon
        );
        assert_eq!(core.round_finished(2 * S, false), RoundStep::NonFinite);
        assert_eq!(
            core.round_finished(3 * S, true),
            RoundStep::Announce { version: 7 }
        );
        assert_eq!(core.round_time(), Some(2 * S));
        assert_eq!(
            core.round_finished(4 * S, true),
            RoundStep::Announce { version: 8 }
        );
        assert_eq!(core.round_time(), Some(Duration::from_millis(1750)));
    }

    #[test]
    fn holders_are_the_peers_announcing_the_model_and_lag_is_in_our_rounds() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut core = started(1, Duration::ZERO);
        core.round_finished(S, true);
        core.hear(S, 1, announce(9, 3));
        core.hear(S, 2, announce(9, 3));
        core.hear(S, 3, announce(8, 3));
        // Peers 1 and 2 announce one model, 3 another; draw until model 9 is picked.
        let plan = (0..20)
            .find_map(|_| {
                let plan = core.plan(3 * S, &mut rng)?;
                core.averaging_abandoned();
                core.peers.merged.clear();
                (plan.partners[0].known.manifest == ManifestId::of(&9u64.to_le_bytes()))
                    .then_some(plan)
            })
            .expect("model 9 is drawn");
        let p = &plan.partners[0];
        let mut holders = p.holders.clone();
        assert_eq!(holders[0], p.known.peer, "its announcer first");
        holders.sort();
        assert_eq!(holders, vec![1, 2]);
        assert!((p.lag_rounds - 2.0).abs() < 1e-9, "{}", p.lag_rounds);
    }

    /// A same-round core that announced its first model at 0 s and heard peers 1 to 3 at
    /// 1 s (a round time of 1 s after its second announcement at 1 s).
    fn same_round(fanout: usize) -> Core<u32> {
        let mut cfg = config(fanout);
        cfg.policy.staleness = Staleness::SameRound;
        cfg.policy.gather = S / 2;
        let mut core = Core::new(cfg, 0, true);
        core.round_finished(Duration::ZERO, true);
        core.round_finished(S, true);
        own(&mut core, 100);
        for p in 1..4 {
            core.hear(S, p, announce(u64::from(p), 1));
        }
        core
    }

    #[test]
    fn same_round_waits_for_fanout_new_models_then_merges_only_those() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut core = same_round(2);
        // The first plan: nothing merged yet, every model heard counts.
        assert_eq!(core.gather(S), None, "three new models for a fanout of 2");
        let plan = core.plan(S, &mut rng).expect("a plan");
        assert_eq!(plan.partners.len(), 2);
        let first: Vec<u32> = plan.partners.iter().map(|p| p.known.peer).collect();
        core.averaging_done(S, &plan, &[Fate::Merged, Fate::Merged]);
        // Next round's steps end at 2 s: the model left over from 1 s is a round old and
        // does not count; the wait lasts `gather` (0.5 s) from the first call.
        let t = 2 * S;
        assert_eq!(core.gather(t), Some(t + S / 2));
        core.hear(t + S / 10, first[0], announce(10, 2));
        assert_eq!(core.gather(t + S / 10), Some(t + S / 2), "one of two in");
        core.hear(t + S / 5, first[1], announce(11, 2));
        assert_eq!(core.gather(t + S / 5), None, "two of two in");
        let plan = core.plan(t + S / 5, &mut rng).expect("a plan");
        let mut peers: Vec<u32> = plan.partners.iter().map(|p| p.known.peer).collect();
        peers.sort();
        let mut expected = first.clone();
        expected.sort();
        assert_eq!(peers, expected, "only this round's models, not the old one");
        // Weighed alike whatever their lag: 1/3 each.
        for w in plan.weights(&[0, 1]) {
            assert!((w - 1.0 / 3.0).abs() < 1e-6, "{w}");
        }
        // The third peer's model of this round arrives after the plan, before the merge
        // went in: it is this round's, so the next round does not count it.
        let third = (1..4).find(|p| !first.contains(p)).expect("a third peer");
        core.hear(t + S / 4, third, announce(13, 2));
        core.averaging_done(t + S * 3 / 10, &plan, &[Fate::Merged, Fate::Merged]);
        // A round where one partner's model comes: the wait ends at its deadline and the
        // plan merges what came.
        let t = 3 * S;
        assert_eq!(core.gather(t), Some(t + S / 2));
        core.hear(t + S / 10, first[0], announce(12, 3));
        assert_eq!(core.gather(t + S / 2), None, "the deadline");
        let plan = core.plan(t + S / 2, &mut rng).expect("a plan");
        assert_eq!(plan.partners.len(), 1);
        assert_eq!(plan.partners[0].known.peer, first[0]);
        core.averaging_done(t + S / 2, &plan, &[Fate::Merged]);
        // No new model at all by the deadline: no plan (the trainer goes on alone).
        let t = 4 * S;
        assert_eq!(core.gather(t), Some(t + S / 2));
        assert_eq!(core.gather(t + S / 2), None);
        assert!(core.plan(t + S / 2, &mut rng).is_none());
    }

    #[test]
    fn same_round_waits_only_for_peers_heard_lately_and_not_over_budget() {
        let mut core = same_round(3);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let plan = core.plan(S, &mut rng).expect("a plan");
        core.averaging_done(S, &plan, &[Fate::Merged; 3]);
        // Peer 3 over its budget: two new models are all there is to wait for.
        for _ in 0..8 {
            core.announcement_rejected(3);
        }
        let t = 2 * S;
        core.hear(t, 1, announce(21, 2));
        assert_eq!(core.gather(t), Some(t + S / 2));
        core.hear(t, 2, announce(22, 2));
        assert_eq!(core.gather(t), None, "peer 3 is not waited for");
        core.plan(t, &mut rng).expect("a plan");
        core.averaging_abandoned();
        // 10 s later (round time 1 s, so the 3 rounds' window is 3 s) only peer 1 was heard
        // lately: one model is enough.
        let t = 12 * S;
        core.hear(t, 1, announce(31, 3));
        assert_eq!(core.gather(t), None);
        // Other rules never wait.
        let mut other = started(2, Duration::ZERO);
        assert_eq!(other.gather(S), None);
    }

    #[test]
    fn a_fresh_peer_offers_one_model_for_adoption_and_joins_once_taken() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut core: Core<u32> = Core::new(config(3), 0, false);
        core.round_finished(S, true);
        own(&mut core, 10);
        for p in 1..5 {
            core.hear(S, p, announce(u64::from(p), 40));
        }
        let plan = core.plan(S, &mut rng).expect("an adoption");
        assert!(plan.adopt && plan.partners.len() == 1);
        assert_eq!(
            core.averaging_done(S, &plan, &[Fate::Refused]),
            Outcome::Rejected
        );
        assert!(!core.joined(), "a refused adoption does not join");
        let plan = core.plan(S, &mut rng).expect("another adoption");
        assert!(plan.adopt);
        assert_eq!(
            core.averaging_done(S, &plan, &[Fate::Adopted]),
            Outcome::Adopted
        );
        assert!(core.joined());
        let plan = core.plan(S, &mut rng).expect("now a merge");
        assert!(!plan.adopt && plan.partners.len() == 2);
    }

    #[test]
    fn refused_models_are_charged_until_their_peer_is_blocked_then_pardoned() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut core = started(1, Duration::ZERO);
        let mut now = S;
        let mut blocked_at = None;
        for i in 0..2u64 {
            core.hear(now, 7, announce(100 + i, 2));
            let plan = core.plan(now, &mut rng).expect("peer 7 is fresh");
            core.averaging_done(S, &plan, &[Fate::Refused]);
            for action in core.tick(now, &[]) {
                if let Action::Block { peer: 7, until } = action {
                    blocked_at = Some((now, until));
                }
            }
            now += S;
        }
        let (at, until) = blocked_at.expect("8 charges spend the budget of 8");
        assert_eq!(until, at + BLOCK_FOR);
        assert_eq!(core.hear(now, 7, announce(200, 3)), Heed::Blocked);
        assert!(
            core.plan(now, &mut rng).is_none(),
            "a blocked peer is never picked"
        );
        let actions = core.tick(until, &[]);
        assert!(actions.contains(&Action::Unblocked { peer: 7 }));
        assert_eq!(core.hear(until, 7, announce(201, 3)), Heed::Recorded);
    }

    #[test]
    fn charges_fade_and_are_turned_into_scores() {
        let mut core = started(1, Duration::ZERO);
        core.announcement_rejected(3);
        core.announcement_rejected(3);
        let actions = core.tick(S, &[]);
        assert!(actions.contains(&Action::Penalize {
            peer: 3,
            charges: 2
        }));
        assert!(
            core.tick(2 * S, &[]).is_empty(),
            "unchanged: nothing to say"
        );
        let faded = core.tick(CHARGE_DECAY + S, &[]);
        assert!(faded.contains(&Action::Penalize {
            peer: 3,
            charges: 1
        }));
    }

    #[test]
    fn an_absent_peer_over_budget_is_avoided_not_blocked() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut core = started(2, Duration::ZERO);
        core.hear(S, 1, announce(1, 2));
        core.hear(S, 2, announce(2, 2));
        let mut tally = crate::averaging::budgets::Tally::new(core.budgets().clone());
        tally.charge(1, 8);
        core.settle(&tally.into_ledger());
        let later = S + BLOCK_IF_HEARD_WITHIN + S;
        let actions = core.tick(later, &[]);
        assert!(!actions.iter().any(|a| matches!(a, Action::Block { .. })));
        let plan = core.plan(later, &mut rng).expect("peer 2 is left");
        assert_eq!(plan.partners.len(), 1);
        assert_eq!(plan.partners[0].known.peer, 2);
    }

    #[test]
    fn silent_connected_peers_are_disconnected_once() {
        let mut core = started(1, Duration::ZERO);
        core.hear(S, 4, announce(4, 1));
        let later = S + GOSSIP_SILENCE + S;
        assert_eq!(core.tick(later, &[4]), vec![Action::Disconnect { peer: 4 }]);
        assert!(core.tick(later + S, &[4]).is_empty());
    }

    #[test]
    fn weights_cover_the_fetched_partners_only() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let mut core = started(2, Duration::ZERO);
        core.hear(S, 1, announce(1, 2));
        core.hear(S, 2, announce(2, 2));
        let plan = core.plan(S, &mut rng).expect("two partners");
        assert_eq!(plan.weights(&[0, 1]), vec![1.0 / 3.0; 3]);
        assert_eq!(plan.weights(&[1]), vec![0.5, 0.5]);
    }

    #[test]
    fn the_same_seed_and_events_give_the_same_plans() {
        let run = |seed: u64| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut core = started(3, Duration::ZERO);
            let mut picks = Vec::new();
            for r in 1..30u64 {
                let now = S * r as u32;
                for p in 1..20u32 {
                    core.hear(now, p, announce(r * 100 + u64::from(p), r));
                }
                if let Some(plan) = core.plan(now, &mut rng) {
                    picks.extend(plan.partners.iter().map(|p| p.known.peer));
                    core.averaging_done(S, &plan, &[Fate::Merged; 3]);
                }
                core.round_finished(now, true);
            }
            picks
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }
}
