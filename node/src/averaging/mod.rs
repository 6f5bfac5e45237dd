//! Decentralized averaging: every partner decision of a peer as one IO-less state machine
//! ([`core`], with its peer table [`peers`] and error budgets [`budgets`]); whom to pull
//! from and how to weigh ([`policy`], pure and deterministic); the outer step on a merge
//! ([`outer`], pure); the acceptance checks and robust aggregation rules that keep a hostile
//! partner from taking a merge over ([`robust`], pure); and how to get a model's chunks from
//! the peers that hold it ([`fetch`], async), preferring those that deliver faster ([`rates`]). The node task and the simulator each drive one
//! core per peer and carry out its actions; the training code applies the merge.

pub mod announce;
pub mod budgets;
pub mod core;
pub mod fetch;
pub mod offer;
pub mod outer;
pub mod peers;
pub mod policy;
pub mod rates;
pub mod robust;
