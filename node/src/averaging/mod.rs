//! Decentralized averaging: whom to pull from and how to merge ([`policy`], pure and
//! deterministic), the outer step on a merge ([`outer`], pure), the acceptance check and
//! robust aggregation rules that keep a hostile partner from taking a merge over ([`robust`],
//! pure), and how to get a model's
//! chunks from the peers that hold it ([`fetch`]).
//! It owns no long-lived state besides the per-peer error budgets; the node decides when to
//! average, the training thread applies the merge.

pub mod fetch;
pub mod outer;
pub mod policy;
pub mod robust;
