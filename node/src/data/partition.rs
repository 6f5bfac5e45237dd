//! Splitting a training set among peers. A [`Partition`] scheme, the labels, the number of
//! peers and a seed give each peer its list of sample indices; everything is drawn from
//! `ChaCha8Rng::seed_from_u64(seed)`, so every peer computes the same split and keeps its own
//! part ([`ShardSpec`] says which). Every index lands in exactly one peer's list, every list is
//! non-empty and sorted ascending.

use super::DataError;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma};
use std::fmt;
use std::str::FromStr;

/// How many Dirichlet draws are tried before empty peers are topped up from the largest.
pub const DIRICHLET_ATTEMPTS: usize = 100;

/// How a training set is split among peers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Partition {
    /// Shuffled, then cut into parts whose sizes differ by at most one.
    Iid,
    /// Label skew: for each class, proportions `p ~ Dirichlet(alpha, ..., alpha)` over the
    /// peers cut that class's shuffled samples. Small `alpha` (0.1) gives each peer a few
    /// classes, large `alpha` (100) is close to iid. `alpha` must be finite and > 0.
    ///
    /// If a draw leaves a peer without samples it is redrawn, up to [`DIRICHLET_ATTEMPTS`]
    /// times; if the last draw still leaves some empty, each empty peer takes one sample from
    /// the (then) largest peer.
    Dirichlet { alpha: f64 },
    /// As in the FedAvg paper (McMahan et al. 2017): samples sorted by label are cut into
    /// `peers * per_peer` shards of near-equal size (differing by at most one), and each peer
    /// gets `per_peer` random shards. `per_peer` must be >= 1.
    Shards { per_peer: usize },
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Partition::Iid => f.write_str("iid"),
            // f64's Display is the shortest text that parses back to the same value.
            Partition::Dirichlet { alpha } => write!(f, "dirichlet:{alpha}"),
            Partition::Shards { per_peer } => write!(f, "shards:{per_peer}"),
        }
    }
}

impl FromStr for Partition {
    type Err = DataError;

    /// Parses `iid`, `dirichlet:<alpha>` or `shards:<k>`.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| DataError::BadPartition {
            spec: spec.to_string(),
            reason,
        };
        let (scheme, param) = match spec.trim().split_once(':') {
            Some((scheme, param)) => (scheme, Some(param)),
            None => (spec.trim(), None),
        };
        let partition = match (scheme, param) {
            ("iid", None) => Partition::Iid,
            ("iid", Some(_)) => return Err(bad("iid takes no parameter".to_string())),
            ("dirichlet", Some(alpha)) => {
                let alpha: f64 = alpha
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("alpha {alpha:?} is not a number")))?;
                Partition::Dirichlet { alpha }
            }
            ("shards", Some(k)) => {
                let per_peer: usize = k
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("shards per peer {k:?} is not a whole number")))?;
                Partition::Shards { per_peer }
            }
            ("dirichlet" | "shards", None) => {
                return Err(bad(format!("{scheme} needs a parameter after a colon")));
            }
            _ => return Err(bad(format!("unknown scheme {scheme:?}"))),
        };
        partition.check().map_err(bad)?;
        Ok(partition)
    }
}

impl Partition {
    /// Checks the parameter, which the public fields let anyone set.
    fn check(&self) -> Result<(), String> {
        match *self {
            Partition::Iid => Ok(()),
            Partition::Dirichlet { alpha } if !(alpha.is_finite() && alpha > 0.0) => Err(format!(
                "alpha must be a finite number greater than 0, got {alpha}"
            )),
            Partition::Dirichlet { .. } => Ok(()),
            Partition::Shards { per_peer: 0 } => {
                Err("shards per peer must be at least 1, got 0".to_string())
            }
            Partition::Shards { .. } => Ok(()),
        }
    }
}

/// Which part of a partition this process keeps: `index` of `count` peers, 0-based, written
/// `index/count` (e.g. `0/4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardSpec {
    pub index: usize,
    pub count: usize,
}

impl ShardSpec {
    /// The training indices of this peer: part `index` of [`partition`] among `count` peers.
    pub fn indices(
        &self,
        labels: &[u8],
        classes: usize,
        scheme: &Partition,
        seed: u64,
    ) -> Result<Vec<usize>, DataError> {
        let mut parts = partition(labels, classes, self.count, scheme, seed)?;
        if self.index >= parts.len() {
            return Err(DataError::BadShard {
                spec: self.to_string(),
                reason: format!("index {} is not below count {}", self.index, self.count),
            });
        }
        Ok(parts.swap_remove(self.index))
    }
}

impl fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for ShardSpec {
    type Err = DataError;

    /// Parses `i/n` with `0 <= i < n`.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| DataError::BadShard {
            spec: spec.to_string(),
            reason,
        };
        let (index, count) = spec
            .trim()
            .split_once('/')
            .ok_or_else(|| bad("no '/'".to_string()))?;
        let number = |text: &str, what: &str| {
            text.trim()
                .parse::<usize>()
                .map_err(|_| bad(format!("{what} {text:?} is not a whole number")))
        };
        let index = number(index, "index")?;
        let count = number(count, "count")?;
        if count == 0 {
            return Err(bad("count must be at least 1".to_string()));
        }
        if index >= count {
            return Err(bad(format!(
                "index {index} is not below count {count} (indices are 0-based)"
            )));
        }
        Ok(ShardSpec { index, count })
    }
}

/// Splits the samples with these `labels` (each `< classes`) among `peers` peers: the indices
/// into `labels` each peer gets. Deterministic in `seed`. Every index is in exactly one list,
/// every list is non-empty (so `peers <= labels.len()` is required) and sorted ascending.
pub fn partition(
    labels: &[u8],
    classes: usize,
    peers: usize,
    scheme: &Partition,
    seed: u64,
) -> Result<Vec<Vec<usize>>, DataError> {
    let samples = labels.len();
    let fail = |reason: String| DataError::CannotPartition {
        samples,
        peers,
        scheme: scheme.to_string(),
        reason,
    };
    scheme.check().map_err(fail)?;
    if peers == 0 {
        return Err(fail("at least one peer is needed".to_string()));
    }
    if peers > samples {
        return Err(fail("every peer needs at least one sample".to_string()));
    }
    if let Some((i, &label)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &label)| usize::from(label) >= classes)
    {
        return Err(fail(format!(
            "label {label} at index {i} is not below the {classes} classes"
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut parts = match *scheme {
        Partition::Iid => iid(samples, peers, &mut rng),
        Partition::Dirichlet { alpha } => {
            let gamma = Gamma::new(alpha, 1.0).map_err(|e| fail(e.to_string()))?;
            dirichlet(labels, classes, peers, &gamma, &mut rng)
        }
        Partition::Shards { per_peer } => {
            let shards = peers
                .checked_mul(per_peer)
                .filter(|&shards| shards <= samples)
                .ok_or_else(|| {
                    fail(format!(
                        "{peers} peers x {per_peer} shards each is more shards than samples"
                    ))
                })?;
            shards_of(labels, peers, per_peer, shards, &mut rng)
        }
    };
    for part in &mut parts {
        part.sort_unstable();
    }
    Ok(parts)
}

/// The `part`-th of `parts` near-equal ranges of `0..len`: sizes differ by at most one.
fn cut(len: usize, parts: usize, part: usize) -> std::ops::Range<usize> {
    let (base, extra) = (len / parts, len % parts);
    let start = part * base + part.min(extra);
    start..start + base + usize::from(part < extra)
}

fn iid(samples: usize, peers: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..samples).collect();
    order.shuffle(rng);
    (0..peers)
        .map(|peer| order[cut(samples, peers, peer)].to_vec())
        .collect()
}

fn dirichlet(
    labels: &[u8],
    classes: usize,
    peers: usize,
    gamma: &Gamma<f64>,
    rng: &mut ChaCha8Rng,
) -> Vec<Vec<usize>> {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &label) in labels.iter().enumerate() {
        by_class[usize::from(label)].push(i);
    }
    for members in &mut by_class {
        members.shuffle(rng);
    }
    // Draw how many samples of each class each peer gets until no peer is left empty; the
    // lists are only built once, from the last draw.
    let mut counts = Vec::new();
    for _ in 0..DIRICHLET_ATTEMPTS {
        counts = by_class
            .iter()
            .map(|members| dirichlet_counts(members.len(), peers, gamma, rng))
            .collect();
        if (0..peers).all(|peer| counts.iter().any(|class: &Vec<usize>| class[peer] > 0)) {
            break;
        }
    }
    let mut parts: Vec<Vec<usize>> = vec![Vec::new(); peers];
    for (members, class_counts) in by_class.iter().zip(&counts) {
        let mut start = 0;
        for (part, &count) in parts.iter_mut().zip(class_counts) {
            part.extend_from_slice(&members[start..start + count]);
            start += count;
        }
    }
    // Top up empty peers from the largest one, which holds at least two samples while any
    // peer is empty because there are at least as many samples as peers.
    while let Some(empty) = parts.iter().position(Vec::is_empty) {
        let largest = (0..peers)
            .max_by_key(|&peer| (parts[peer].len(), std::cmp::Reverse(peer)))
            .unwrap_or(empty);
        if let Some(sample) = parts[largest].pop() {
            parts[empty].push(sample);
        } else {
            break; // Unreachable (no samples at all), but never loop forever.
        }
    }
    parts
}

/// How many of a class's `len` samples each peer gets, from one Dirichlet draw (normalized
/// Gamma(alpha, 1) variables), rounding the cumulative proportions so the counts sum to `len`.
fn dirichlet_counts(
    len: usize,
    peers: usize,
    gamma: &Gamma<f64>,
    rng: &mut ChaCha8Rng,
) -> Vec<usize> {
    let draws: Vec<f64> = (0..peers).map(|_| gamma.sample(rng)).collect();
    let total: f64 = draws.iter().sum();
    let mut counts = vec![0; peers];
    if !(total > 0.0 && total.is_finite()) {
        // Every draw underflowed (tiny alpha): the limit is all mass on one peer.
        counts[rng.random_range(0..peers)] = len;
        return counts;
    }
    let mut cumulative = 0.0;
    let mut start = 0;
    for (peer, draw) in draws.iter().enumerate() {
        cumulative += draw;
        let end = if peer + 1 == peers {
            len
        } else {
            ((cumulative / total * len as f64).round() as usize).clamp(start, len)
        };
        counts[peer] = end - start;
        start = end;
    }
    counts
}

fn shards_of(
    labels: &[u8],
    peers: usize,
    per_peer: usize,
    shards: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<Vec<usize>> {
    let samples = labels.len();
    let mut by_label: Vec<usize> = (0..samples).collect();
    by_label.sort_by_key(|&i| labels[i]); // stable: ties stay in index order
    let mut order: Vec<usize> = (0..shards).collect();
    order.shuffle(rng);
    order
        .chunks(per_peer)
        .take(peers)
        .map(|mine| {
            mine.iter()
                .flat_map(|&shard| &by_label[cut(samples, shards, shard)])
                .copied()
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMES: [Partition; 5] = [
        Partition::Iid,
        Partition::Dirichlet { alpha: 0.1 },
        Partition::Dirichlet { alpha: 10.0 },
        Partition::Shards { per_peer: 1 },
        Partition::Shards { per_peer: 2 },
    ];

    /// `n` labels over 10 classes, unbalanced: class c is about (c + 1) / 55 of the samples.
    fn labels(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| {
                let r = (i * 7919) % 55;
                (0..10u8)
                    .find(|&c| r < usize::from(c + 1) * usize::from(c + 2) / 2)
                    .unwrap()
            })
            .collect()
    }

    fn check_invariants(parts: &[Vec<usize>], samples: usize, peers: usize) {
        assert_eq!(parts.len(), peers);
        let mut seen = vec![0u32; samples];
        for part in parts {
            assert!(!part.is_empty(), "an empty peer among {peers}");
            assert!(part.windows(2).all(|w| w[0] < w[1]), "not sorted");
            for &i in part {
                seen[i] += 1;
            }
        }
        assert!(
            seen.iter().all(|&n| n == 1),
            "an index not in exactly one peer"
        );
    }

    /// Mean over peers of the fraction of a peer's samples in its most common class.
    fn mean_max_class_fraction(labels: &[u8], parts: &[Vec<usize>]) -> f64 {
        let sum: f64 = parts
            .iter()
            .map(|part| {
                let mut counts = [0usize; 10];
                for &i in part {
                    counts[usize::from(labels[i])] += 1;
                }
                *counts.iter().max().unwrap() as f64 / part.len() as f64
            })
            .sum();
        sum / parts.len() as f64
    }

    #[test]
    fn every_sample_in_exactly_one_peer() {
        let labels = labels(1000);
        for scheme in SCHEMES {
            for peers in [1, 2, 3, 7, 10, 64, 100, 500] {
                if let Partition::Shards { per_peer } = scheme
                    && peers * per_peer > 1000
                {
                    continue;
                }
                let parts = partition(&labels, 10, peers, &scheme, 42).unwrap();
                check_invariants(&parts, 1000, peers);
            }
        }
    }

    #[test]
    fn iid_and_shards_sizes_are_near_equal() {
        let labels = labels(1003);
        for peers in [1, 3, 10, 17] {
            let parts = partition(&labels, 10, peers, &Partition::Iid, 1).unwrap();
            let sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= 1, "iid sizes {sizes:?}");
            for per_peer in [1, 2, 3] {
                let parts =
                    partition(&labels, 10, peers, &Partition::Shards { per_peer }, 1).unwrap();
                let sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(max - min <= per_peer, "shards:{per_peer} sizes {sizes:?}");
            }
        }
    }

    #[test]
    fn shards_give_each_peer_few_classes() {
        // 100 samples per class, 100 peers x 2 shards of 5: a shard spans at most 2 classes.
        let labels: Vec<u8> = (0..1000).map(|i| (i % 10) as u8).collect();
        let parts = partition(&labels, 10, 100, &Partition::Shards { per_peer: 2 }, 3).unwrap();
        for part in &parts {
            assert_eq!(part.len(), 10);
            let mut classes: Vec<u8> = part.iter().map(|&i| labels[i]).collect();
            classes.sort_unstable();
            classes.dedup();
            assert!(classes.len() <= 4, "{classes:?}");
        }
    }

    #[test]
    fn same_seed_same_split_other_seed_other_split() {
        let labels = labels(2000);
        for scheme in SCHEMES {
            let a = partition(&labels, 10, 8, &scheme, 7).unwrap();
            let b = partition(&labels, 10, 8, &scheme, 7).unwrap();
            let c = partition(&labels, 10, 8, &scheme, 8).unwrap();
            assert_eq!(a, b, "{scheme}");
            assert_ne!(a, c, "{scheme}");
        }
    }

    #[test]
    fn dirichlet_skews_labels_and_iid_does_not() {
        let labels: Vec<u8> = (0..6000).map(|i| (i % 10) as u8).collect();
        for seed in 0..5 {
            let iid = partition(&labels, 10, 20, &Partition::Iid, seed).unwrap();
            let skewed =
                partition(&labels, 10, 20, &Partition::Dirichlet { alpha: 0.1 }, seed).unwrap();
            let mild = partition(
                &labels,
                10,
                20,
                &Partition::Dirichlet { alpha: 1000.0 },
                seed,
            )
            .unwrap();
            let (iid, skewed, mild) = (
                mean_max_class_fraction(&labels, &iid),
                mean_max_class_fraction(&labels, &skewed),
                mean_max_class_fraction(&labels, &mild),
            );
            assert!(iid < 0.2, "iid mean max class fraction {iid}");
            assert!(mild < 0.2, "dirichlet:1000 mean max class fraction {mild}");
            assert!(
                skewed > 0.5,
                "dirichlet:0.1 mean max class fraction {skewed}"
            );
        }
    }

    #[test]
    fn dirichlet_never_leaves_a_peer_empty() {
        // Tiny alpha, barely more samples than peers: redraws cannot help, top-ups must.
        let labels = labels(60);
        for seed in 0..20 {
            let parts = partition(
                &labels,
                10,
                50,
                &Partition::Dirichlet { alpha: 0.001 },
                seed,
            )
            .unwrap();
            check_invariants(&parts, 60, 50);
        }
        let parts = partition(&labels, 10, 60, &Partition::Dirichlet { alpha: 1e-300 }, 0).unwrap();
        check_invariants(&parts, 60, 60);
    }

    #[test]
    fn impossible_partitions_are_errors() {
        let labels = labels(100);
        let err = |peers, scheme: Partition| {
            partition(&labels, 10, peers, &scheme, 0)
                .unwrap_err()
                .to_string()
        };
        assert!(err(0, Partition::Iid).contains("at least one peer"));
        assert!(err(101, Partition::Iid).contains("at least one sample"));
        let text = err(51, Partition::Shards { per_peer: 2 });
        assert!(text.contains("more shards than samples"), "{text}");
        let text = err(
            2,
            Partition::Shards {
                per_peer: usize::MAX,
            },
        );
        assert!(text.contains("more shards than samples"), "{text}");
        assert!(err(2, Partition::Shards { per_peer: 0 }).contains("at least 1"));
        assert!(err(2, Partition::Dirichlet { alpha: f64::NAN }).contains("alpha"));
        assert!(err(2, Partition::Dirichlet { alpha: 0.0 }).contains("alpha"));
        let text = partition(&[0, 1, 5], 5, 2, &Partition::Iid, 0)
            .unwrap_err()
            .to_string();
        assert!(text.contains("label 5 at index 2"), "{text}");
        assert!(partition(&[], 10, 1, &Partition::Iid, 0).is_err());
        assert_eq!(
            partition(&[3], 10, 1, &Partition::Iid, 0).unwrap(),
            vec![vec![0]]
        );
    }

    #[test]
    fn partition_specs_parse_and_round_trip() {
        for (text, expected) in [
            ("iid", Partition::Iid),
            ("dirichlet:0.5", Partition::Dirichlet { alpha: 0.5 }),
            ("dirichlet:0.1", Partition::Dirichlet { alpha: 0.1 }),
            ("dirichlet:3", Partition::Dirichlet { alpha: 3.0 }),
            ("dirichlet:1e-3", Partition::Dirichlet { alpha: 0.001 }),
            ("shards:2", Partition::Shards { per_peer: 2 }),
        ] {
            let parsed: Partition = text.parse().unwrap();
            assert_eq!(parsed, expected, "{text}");
            assert_eq!(parsed.to_string().parse::<Partition>().unwrap(), parsed);
        }
        assert_eq!(
            Partition::Dirichlet { alpha: 0.5 }.to_string(),
            "dirichlet:0.5"
        );
        assert_eq!(Partition::Shards { per_peer: 2 }.to_string(), "shards:2");
    }

    #[test]
    fn bad_partition_specs_say_what_is_allowed() {
        for (text, reason) in [
            ("dirichlet:-1", "greater than 0"),
            ("dirichlet:0", "greater than 0"),
            ("dirichlet:nan", "greater than 0"),
            ("dirichlet:inf", "greater than 0"),
            ("dirichlet:abc", "not a number"),
            ("dirichlet", "needs a parameter"),
            ("shards:0", "at least 1"),
            ("shards:-1", "not a whole number"),
            ("shards:1.5", "not a whole number"),
            ("shards", "needs a parameter"),
            ("iid:3", "no parameter"),
            ("foo", "unknown scheme \"foo\""),
            ("", "unknown scheme"),
        ] {
            let err = text.parse::<Partition>().unwrap_err();
            assert!(matches!(err, DataError::BadPartition { .. }), "{err:?}");
            let message = err.to_string();
            assert!(message.contains(reason), "{text}: {message}");
            assert!(
                message.contains("allowed: iid, dirichlet:<alpha>"),
                "{message}"
            );
        }
    }

    #[test]
    fn shard_specs_parse_and_reject_nonsense() {
        assert_eq!(
            "0/1".parse::<ShardSpec>().unwrap(),
            ShardSpec { index: 0, count: 1 }
        );
        let spec: ShardSpec = "3/4".parse().unwrap();
        assert_eq!(spec, ShardSpec { index: 3, count: 4 });
        assert_eq!(spec.to_string(), "3/4");
        for (text, reason) in [
            ("3/2", "not below count 2"),
            ("2/2", "not below count 2"),
            ("1/0", "at least 1"),
            ("0/0", "at least 1"),
            ("a/2", "not a whole number"),
            ("-1/2", "not a whole number"),
            ("1", "no '/'"),
            ("", "no '/'"),
        ] {
            let message = text.parse::<ShardSpec>().unwrap_err().to_string();
            assert!(message.contains(reason), "{text}: {message}");
            assert!(message.contains("expected i/n"), "{message}");
        }
    }

    #[test]
    fn shard_spec_picks_its_part() {
        let labels = labels(100);
        let scheme = Partition::Dirichlet { alpha: 0.5 };
        let parts = partition(&labels, 10, 4, &scheme, 9).unwrap();
        for (index, part) in parts.iter().enumerate() {
            let spec = ShardSpec { index, count: 4 };
            assert_eq!(&spec.indices(&labels, 10, &scheme, 9).unwrap(), part);
        }
        let spec = ShardSpec { index: 4, count: 4 };
        assert!(spec.indices(&labels, 10, &scheme, 9).is_err());
    }
}
