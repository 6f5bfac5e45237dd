//! The per-peer error budgets: bad answers charged to each peer and forgiven for good ones.
//! One table per peer, owned by the averaging [`core`](super::core), which alone changes it.
//! A fetch works on a [`Tally`]: a copy of the table taken when it starts, on which it
//! charges and forgives as it goes (so a holder it charged out of budget is not asked again)
//! while recording each entry in a [`Ledger`]; the fetch returns the ledger and the core
//! applies it ([`ErrorBudgets::settle`]). Generic over the peer's name, so the simulator
//! uses the same table; ordered, so that what is read from it comes out the same in every
//! run. No I/O, no clock, no lock.

use libp2p::PeerId;
use std::collections::BTreeMap;

/// Bad answers charged per peer. A peer whose charges reach the budget is avoided; a good
/// manifest answer, and the chunks a peer served to a fetch that completed, forgive one
/// charge each, so a peer that was only slow for a while comes back.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorBudgets<P = PeerId> {
    budget: u32,
    charges: BTreeMap<P, u32>,
}

impl<P: Copy + Ord> ErrorBudgets<P> {
    /// Budgets of `budget` bad answers per peer.
    pub fn new(budget: u32) -> Self {
        Self {
            budget: budget.max(1),
            charges: BTreeMap::new(),
        }
    }

    /// Records `n` bad answers from `peer`.
    pub fn charge(&mut self, peer: P, n: u32) {
        let e = self.charges.entry(peer).or_default();
        *e = e.saturating_add(n);
    }

    /// Records a good answer from `peer`.
    pub fn forgive(&mut self, peer: P) {
        if let Some(n) = self.charges.get_mut(&peer) {
            *n = n.saturating_sub(1);
        }
    }

    /// Forgives half of `peer`'s charges (rounding the remainder down), e.g. when a block
    /// for spending its budget ended.
    pub fn pardon(&mut self, peer: &P) {
        if let Some(n) = self.charges.get_mut(peer) {
            *n /= 2;
        }
    }

    /// Applies what a fetch recorded, in its order.
    pub fn settle(&mut self, ledger: &Ledger<P>) {
        for entry in &ledger.entries {
            match *entry {
                Entry::Charge(peer, n) => self.charge(peer, n),
                Entry::Forgive(peer) => self.forgive(peer),
            }
        }
    }

    /// Forgets peers with no charges left.
    pub fn prune(&mut self) {
        self.charges.retain(|_, n| *n > 0);
    }

    /// True when `peer` should be avoided.
    pub fn exhausted(&self, peer: &P) -> bool {
        self.charges.get(peer).is_some_and(|&n| n >= self.budget)
    }

    /// Charges per peer, in the peers' order.
    pub fn snapshot(&self) -> Vec<(P, u32)> {
        self.charges.iter().map(|(p, n)| (*p, *n)).collect()
    }
}

/// One charge or pardon a fetch recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<P> {
    /// `n` bad answers.
    Charge(P, u32),
    /// One good answer.
    Forgive(P),
}

/// What a fetch recorded against the peers it asked, in order, for the core to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ledger<P = PeerId> {
    entries: Vec<Entry<P>>,
}

impl<P> Default for Ledger<P> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<P: Copy> Ledger<P> {
    /// The entries, in the order they were recorded.
    pub fn entries(&self) -> &[Entry<P>] {
        &self.entries
    }

    /// Appends another ledger's entries.
    pub fn extend(&mut self, other: Ledger<P>) {
        self.entries.extend(other.entries);
    }
}

/// A fetch's working copy of the budgets: charges and pardons apply to the copy at once and
/// are recorded in its ledger.
#[derive(Debug, Clone)]
pub struct Tally<P = PeerId> {
    budgets: ErrorBudgets<P>,
    ledger: Ledger<P>,
}

impl<P: Copy + Ord> Tally<P> {
    /// A tally starting from `budgets` as they are now.
    pub fn new(budgets: ErrorBudgets<P>) -> Self {
        Self {
            budgets,
            ledger: Ledger::default(),
        }
    }

    /// `n` bad answers from `peer`.
    pub fn charge(&mut self, peer: P, n: u32) {
        self.budgets.charge(peer, n);
        self.ledger.entries.push(Entry::Charge(peer, n));
    }

    /// A good answer from `peer`.
    pub fn forgive(&mut self, peer: P) {
        self.budgets.forgive(peer);
        self.ledger.entries.push(Entry::Forgive(peer));
    }

    /// True when `peer` should be avoided.
    pub fn exhausted(&self, peer: &P) -> bool {
        self.budgets.exhausted(peer)
    }

    /// What was recorded so far.
    pub fn ledger(&self) -> &Ledger<P> {
        &self.ledger
    }

    /// What was recorded, for the core.
    pub fn into_ledger(self) -> Ledger<P> {
        self.ledger
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_charge_forgive_pardon_and_prune() {
        let (a, b) = (1u32, 2u32);
        let mut budgets = ErrorBudgets::new(3);
        budgets.charge(a, 3);
        budgets.charge(b, 1);
        assert!(budgets.exhausted(&a) && !budgets.exhausted(&b));
        budgets.pardon(&a);
        assert!(!budgets.exhausted(&a));
        budgets.forgive(b);
        budgets.prune();
        assert_eq!(budgets.snapshot(), vec![(a, 1)]);
        budgets.charge(b, 4);
        assert!(budgets.exhausted(&b));
    }

    /// A tally sees its own charges at once and leaves the table it copied alone; settling
    /// its ledger brings the table to the same state.
    #[test]
    fn a_tally_records_a_ledger_that_settles_into_the_budgets() {
        let mut budgets = ErrorBudgets::new(3);
        budgets.charge(1u32, 1);
        let mut tally = Tally::new(budgets.clone());
        tally.charge(1, 2);
        assert!(tally.exhausted(&1));
        assert!(!budgets.exhausted(&1), "the table is the core's alone");
        tally.forgive(2);
        tally.forgive(1);
        let ledger = tally.into_ledger();
        assert_eq!(
            ledger.entries(),
            &[Entry::Charge(1, 2), Entry::Forgive(2), Entry::Forgive(1)]
        );
        budgets.settle(&ledger);
        assert_eq!(budgets.snapshot(), vec![(1, 2)]);
        let mut twice = Ledger::default();
        twice.extend(ledger.clone());
        twice.extend(ledger);
        assert_eq!(twice.entries().len(), 6);
    }
}
