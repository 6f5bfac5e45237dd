//! Link emulation, a test and benchmark aid: the kernel here has no netem, so a node can
//! pretend its network link is slower than loopback (`--emulate-link 20mbit,40ms`,
//! `network.emulate_link`). It owns the emulated link's two queues (upload and download)
//! and the arithmetic of their delays; it does not touch sockets: the sync codec
//! ([`super::codec`]) sleeps for what [`Link::send`] and [`Link::receive`] return.
//!
//! The model, per node (not per connection, as a home link is shared by every peer):
//! - every sync-protocol frame this node writes (requests and responses) waits for the
//!   upload queue: it starts once the frames before it have left, takes `bytes / rate`, and
//!   arrives `latency` later (one-way latency, so a request and its answer see it twice);
//! - every frame this node reads waits for the download queue: when the frames before it
//!   still hold the download link, it waits behind them for its own `bytes / rate`.
//!
//! Gossip (announcements, a few hundred bytes each) is not delayed.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An emulated link: a rate and a one-way latency. At least one is set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkSpec {
    /// Bits per second both ways; `None` = unlimited.
    pub bits_per_sec: Option<u64>,
    /// Added to every frame sent.
    pub latency: Duration,
}

/// A link spec that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "link '{spec}': {reason} (expected a rate like 20mbit and/or a latency like 40ms, \
     comma-separated, e.g. 20mbit,40ms)"
)]
pub struct LinkSpecError {
    spec: String,
    reason: String,
}

/// Most latency an emulated link may add (a satellite hop is about 300 ms).
pub const MAX_LATENCY: Duration = Duration::from_secs(5);

/// Slowest emulated rate (a 4 MiB response takes 5.6 minutes at it: with the default 3 s
/// request timeout, links below about 11 Mbit/s need smaller chunks or a longer timeout).
pub const MIN_BITS_PER_SEC: u64 = 100_000;

impl FromStr for LinkSpec {
    type Err = LinkSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| LinkSpecError {
            spec: s.to_string(),
            reason,
        };
        let (mut rate, mut latency) = (None, None);
        for part in s.split(',').map(str::trim) {
            let lower = part.to_ascii_lowercase();
            if let Some(n) = lower.strip_suffix("bit") {
                if rate.is_some() {
                    return Err(err("two rates".into()));
                }
                let (digits, scale) = match n.as_bytes().last() {
                    Some(b'k') => (&n[..n.len() - 1], 1e3),
                    Some(b'm') => (&n[..n.len() - 1], 1e6),
                    Some(b'g') => (&n[..n.len() - 1], 1e9),
                    _ => (n, 1.0),
                };
                let v: f64 = digits
                    .parse()
                    .map_err(|_| err(format!("'{part}' is not a rate")))?;
                let bits = v * scale;
                if !(bits.is_finite() && bits >= MIN_BITS_PER_SEC as f64 && bits <= 1e12) {
                    return Err(err(format!(
                        "rate '{part}' outside {}kbit..=1000gbit",
                        MIN_BITS_PER_SEC / 1000
                    )));
                }
                rate = Some(bits as u64);
            } else if let Some((digits, unit)) = lower
                .strip_suffix("ms")
                .map(|d| (d, 1e-3))
                .or_else(|| lower.strip_suffix("us").map(|d| (d, 1e-6)))
                .or_else(|| lower.strip_suffix('s').map(|d| (d, 1.0)))
            {
                if latency.is_some() {
                    return Err(err("two latencies".into()));
                }
                let v: f64 = digits
                    .parse()
                    .map_err(|_| err(format!("'{part}' is not a latency")))?;
                let secs = v * unit;
                if !(secs.is_finite() && secs >= 0.0 && secs <= MAX_LATENCY.as_secs_f64()) {
                    return Err(err(format!(
                        "latency '{part}' outside 0..={}s",
                        MAX_LATENCY.as_secs()
                    )));
                }
                latency = Some(Duration::from_secs_f64(secs));
            } else {
                return Err(err(format!("'{part}' is neither a rate nor a latency")));
            }
        }
        Ok(Self {
            bits_per_sec: rate,
            latency: latency.unwrap_or_default(),
        })
    }
}

impl fmt::Display for LinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(b) = self.bits_per_sec {
            parts.push(if b % 1_000_000 == 0 {
                format!("{}mbit", b / 1_000_000)
            } else if b % 1000 == 0 {
                format!("{}kbit", b / 1000)
            } else {
                format!("{b}bit")
            });
        }
        if !self.latency.is_zero() || parts.is_empty() {
            parts.push(format!("{}ms", self.latency.as_secs_f64() * 1e3));
        }
        f.write_str(&parts.join(","))
    }
}

/// The two queues of one emulated link. Pure: the time is an argument.
#[derive(Debug, Clone, Copy)]
pub struct Queues {
    /// When the upload link is free again.
    up_free: Option<Instant>,
    /// When the download link is free again.
    down_free: Option<Instant>,
}

impl Queues {
    /// Idle queues.
    pub const fn new() -> Self {
        Self {
            up_free: None,
            down_free: None,
        }
    }

    /// A frame of `bytes` handed to the link at `now`: how long until it has arrived (its
    /// wait behind earlier frames, its own transmission and the latency).
    pub fn send(&mut self, spec: &LinkSpec, now: Instant, bytes: u64) -> Duration {
        let Some(rate) = spec.bits_per_sec else {
            return spec.latency;
        };
        let start = self.up_free.map_or(now, |f| f.max(now));
        let done = start + transmission(rate, bytes);
        self.up_free = Some(done);
        done - now + spec.latency
    }

    /// A frame of `bytes` read at `now`: how long it must still wait for the download
    /// link. Nothing when the link was idle (the sender's upload already paced it);
    /// behind the frames still holding it otherwise.
    pub fn receive(&mut self, spec: &LinkSpec, now: Instant, bytes: u64) -> Duration {
        let Some(rate) = spec.bits_per_sec else {
            return Duration::ZERO;
        };
        let done = self
            .down_free
            .map_or(now, |f| (f + transmission(rate, bytes)).max(now));
        self.down_free = Some(done);
        done - now
    }
}

impl Default for Queues {
    fn default() -> Self {
        Self::new()
    }
}

/// Time to put `bytes` on a link of `bits_per_sec`.
fn transmission(bits_per_sec: u64, bytes: u64) -> Duration {
    Duration::from_secs_f64(bytes as f64 * 8.0 / bits_per_sec.max(1) as f64)
}

/// An emulated link shared by every connection of a node.
#[derive(Debug)]
pub struct Link {
    spec: LinkSpec,
    queues: Mutex<Queues>,
}

impl Link {
    /// An idle link.
    pub fn new(spec: LinkSpec) -> Self {
        Self {
            spec,
            queues: Mutex::new(Queues::new()),
        }
    }

    /// See [`Queues::send`], on the clock now.
    pub fn send(&self, bytes: u64) -> Duration {
        let now = Instant::now();
        let mut q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        q.send(&self.spec, now, bytes)
    }

    /// See [`Queues::receive`], on the clock now.
    pub fn receive(&self, bytes: u64) -> Duration {
        let now = Instant::now();
        let mut q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        q.receive(&self.spec, now, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> LinkSpec {
        s.parse().unwrap()
    }

    #[test]
    fn specs_parse_and_print() {
        let s = spec("20mbit,40ms");
        assert_eq!(s.bits_per_sec, Some(20_000_000));
        assert_eq!(s.latency, Duration::from_millis(40));
        assert_eq!(s.to_string(), "20mbit,40ms");
        assert_eq!(spec("40ms , 512kbit").bits_per_sec, Some(512_000));
        assert_eq!(spec("1gbit").latency, Duration::ZERO);
        assert_eq!(spec("1gbit").to_string(), "1000mbit");
        assert_eq!(spec("0.5s").latency, Duration::from_millis(500));
        assert_eq!(spec("250us").bits_per_sec, None);
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        for (s, why) in [
            ("", "neither"),
            ("20mbit,30mbit", "two rates"),
            ("40ms,1ms", "two latencies"),
            ("fastmbit", "not a rate"),
            ("10kbit", "outside"),
            ("xms", "not a latency"),
            ("10s", "outside"),
            ("2000gbit", "outside"),
            ("-1ms", "outside"),
            ("20mb", "neither"),
        ] {
            let e = s.parse::<LinkSpec>().unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn uploads_queue_behind_each_other_and_add_latency() {
        let s = spec("8mbit,40ms"); // 1 MB/s
        let t0 = Instant::now();
        let mut q = Queues::new();
        // 100 kB: 100 ms on the link, then 40 ms of latency.
        assert_eq!(q.send(&s, t0, 100_000), Duration::from_millis(140));
        // A second one handed over at once waits for the first.
        assert_eq!(q.send(&s, t0, 100_000), Duration::from_millis(240));
        // Once the link has been idle, a frame goes at once again.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(q.send(&s, later, 1_000), Duration::from_millis(41));
    }

    #[test]
    fn downloads_wait_only_behind_frames_still_arriving() {
        let s = spec("8mbit");
        let t0 = Instant::now();
        let mut q = Queues::new();
        // The first frame, paced by its sender, arrives without a further wait.
        assert_eq!(q.receive(&s, t0, 100_000), Duration::ZERO);
        // A second arriving at once (from another sender) waits for its own 100 ms.
        assert_eq!(q.receive(&s, t0, 100_000), Duration::from_millis(100));
        // A third, 50 ms later, queues behind both.
        let t1 = t0 + Duration::from_millis(50);
        assert_eq!(q.receive(&s, t1, 100_000), Duration::from_millis(150));
        // Latency alone never delays a read.
        assert_eq!(
            Queues::new().receive(&spec("40ms"), t0, 1 << 20),
            Duration::ZERO
        );
        assert_eq!(
            Queues::new().send(&spec("40ms"), t0, 1 << 20),
            Duration::from_millis(40)
        );
    }
}
