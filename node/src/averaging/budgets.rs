//! The per-peer error budgets: bad answers charged to each peer and forgiven for good ones.
//! One table per node, shared (behind a lock) by the averaging core, which charges refused
//! models and decides blocks, and by the fetches it starts, which charge bad or missing
//! chunks. Generic over the peer's name, so the simulator uses the same table; ordered, so
//! that what is read from it comes out the same in every run.

use libp2p::PeerId;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Bad answers charged per peer, shared by every fetch of a node. A peer whose charges reach
/// the budget is avoided; a good manifest answer, and the chunks a peer served to a fetch
/// that completed, forgive one charge each, so a peer that was only slow for a while comes
/// back.
#[derive(Debug, Clone)]
pub struct ErrorBudgets<P = PeerId> {
    budget: u32,
    charges: Arc<Mutex<BTreeMap<P, u32>>>,
}

impl<P: Copy + Ord> ErrorBudgets<P> {
    /// Budgets of `budget` bad answers per peer.
    pub fn new(budget: u32) -> Self {
        Self {
            budget: budget.max(1),
            charges: Arc::default(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<P, u32>) -> T) -> T {
        f(&mut self.charges.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Records a bad answer from `peer`.
    pub fn charge(&self, peer: P) {
        self.with(|c| *c.entry(peer).or_default() += 1);
    }

    /// Records `n` bad answers from `peer` at once (a refused model, a timeout).
    pub fn charge_n(&self, peer: P, n: u32) {
        self.with(|c| {
            let e = c.entry(peer).or_default();
            *e = e.saturating_add(n);
        });
    }

    /// Records a good answer from `peer`.
    pub fn forgive(&self, peer: P) {
        self.with(|c| {
            if let Some(n) = c.get_mut(&peer) {
                *n = n.saturating_sub(1);
            }
        });
    }

    /// Forgives half of `peer`'s charges (rounding the remainder down), e.g. when a block
    /// for spending its budget ended.
    pub fn pardon(&self, peer: &P) {
        self.with(|c| {
            if let Some(n) = c.get_mut(peer) {
                *n /= 2;
            }
        });
    }

    /// Forgets peers with no charges left.
    pub fn prune(&self) {
        self.with(|c| c.retain(|_, n| *n > 0));
    }

    /// True when `peer` should be avoided.
    pub fn exhausted(&self, peer: &P) -> bool {
        self.with(|c| c.get(peer).is_some_and(|&n| n >= self.budget))
    }

    /// Charges per peer, in the peers' order.
    pub fn snapshot(&self) -> Vec<(P, u32)> {
        self.with(|c| c.iter().map(|(p, n)| (*p, *n)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_charge_forgive_pardon_and_prune() {
        let (a, b) = (1u32, 2u32);
        let budgets = ErrorBudgets::new(3);
        for _ in 0..3 {
            budgets.charge(a);
        }
        budgets.charge(b);
        assert!(budgets.exhausted(&a) && !budgets.exhausted(&b));
        budgets.pardon(&a);
        assert!(!budgets.exhausted(&a));
        budgets.forgive(b);
        budgets.prune();
        assert_eq!(budgets.snapshot(), vec![(a, 1)]);
        budgets.charge_n(b, 4);
        assert!(budgets.exhausted(&b));
    }
}
