//! CPU time by activity, measured from the kernel's CPU clocks (no estimates).
//!
//! - [`process_time`]: user + system time of the whole process, every thread live or
//!   exited (`CLOCK_PROCESS_CPUTIME_ID`); [`children_time`]: that of its waited-for children.
//! - [`ThreadClock`]: one thread's CPU clock (`pthread_getcpuclockid`), readable from any
//!   thread; the kernel brings a running thread's time up to date on each read.
//! - [`ThreadSet`]: a registry of threads whose CPU time is summed. A thread joins it when it
//!   starts and leaves it when it stops; leaving adds its final time to a running total, so
//!   threads that come and go (tokio's blocking pool) keep their time. Two sets are global:
//!   [`RUNTIME`], the tokio runtime's threads (registered by [`count_runtime_threads`]'s
//!   start/stop hooks: libp2p, noise encryption, yamux, gossipsub, fetching, verifying and
//!   serving chunks, hashing snapshots, the HTTP API, checkpoint writes), and [`COMPUTE`],
//!   the threads of rayon's global pool that candle runs its kernels on
//!   ([`register_compute_pool`]).
//!
//! The only `unsafe` of the crate's library is here: three libc calls, each given a valid
//! out-pointer. A thread's clock id names the thread by its kernel id, which may be reused
//! once the thread is gone, so a set drops a thread's clock when the thread leaves (before it
//! exits) and only threads that never exit (the compute pool, the training thread while it
//! runs) are read without one.

#![allow(unsafe_code)]

use std::sync::{Mutex, MutexGuard, Once, OnceLock, PoisonError};
use std::thread::ThreadId;
use std::time::Duration;

/// Reads `clock`; `None` if the kernel refuses (a clock of a thread that has exited).
fn clock_time(clock: libc::clockid_t) -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u32::try_from(ts.tv_nsec).ok()?;
    Some(Duration::new(secs, nanos))
}

/// User + system CPU time of this process so far (all its threads, live and exited; not its
/// children); `None` if the clock cannot be read.
pub fn process_time() -> Option<Duration> {
    clock_time(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// User + system CPU time of this process's children that have exited and been waited for;
/// `None` if the kernel refuses.
pub fn children_time() -> Option<Duration> {
    // SAFETY: an all-zero `rusage` is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for the duration of the call.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    if rc != 0 {
        return None;
    }
    let time = |t: libc::timeval| {
        let secs = u64::try_from(t.tv_sec).ok()?;
        let micros = u32::try_from(t.tv_usec).ok()?;
        Some(Duration::new(secs, micros.checked_mul(1_000)?))
    };
    Some(time(usage.ru_utime)? + time(usage.ru_stime)?)
}

/// One thread's CPU clock, readable from any thread.
#[derive(Debug, Clone, Copy)]
pub struct ThreadClock {
    id: libc::clockid_t,
}

impl ThreadClock {
    /// The calling thread's clock; `None` if the system has none.
    pub fn current() -> Option<Self> {
        let mut id: libc::clockid_t = 0;
        // SAFETY: `pthread_self` is always valid for the calling thread, and `id` is a valid,
        // writable clockid_t for the duration of the call.
        let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) };
        (rc == 0).then_some(Self { id })
    }

    /// CPU time the thread has used so far; `None` once it has exited (while its kernel id
    /// is not reused).
    pub fn read(&self) -> Option<Duration> {
        clock_time(self.id)
    }
}

/// Threads whose CPU time is summed: the live ones' clocks plus what the stopped ones used.
#[derive(Debug)]
pub struct ThreadSet {
    inner: Mutex<Members>,
}

#[derive(Debug)]
struct Members {
    live: Vec<(ThreadId, ThreadClock)>,
    /// CPU time of the threads that left.
    retired: Duration,
}

impl Default for ThreadSet {
    fn default() -> Self {
        Self::new()
    }
}

impl ThreadSet {
    /// An empty set.
    pub const fn new() -> Self {
        Self {
            inner: Mutex::new(Members {
                live: Vec::new(),
                retired: Duration::ZERO,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Members> {
        // The data stays consistent whatever a panicking holder did (a push or a removal).
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds the calling thread (once; joining again does nothing).
    pub fn enter(&self) {
        let id = std::thread::current().id();
        let mut m = self.lock();
        if m.live.iter().any(|(t, _)| *t == id) {
            return;
        }
        if let Some(clock) = ThreadClock::current() {
            m.live.push((id, clock));
        }
    }

    /// Removes the calling thread, keeping the CPU time it used.
    pub fn leave(&self) {
        let id = std::thread::current().id();
        let mut m = self.lock();
        if let Some(i) = m.live.iter().position(|(t, _)| *t == id) {
            let (_, clock) = m.live.swap_remove(i);
            m.retired += clock.read().unwrap_or_default();
        }
    }

    /// CPU time of every thread that has been in the set: the live ones' clocks now plus
    /// the final time of those that left.
    pub fn total(&self) -> Duration {
        let m = self.lock();
        m.live
            .iter()
            .filter_map(|(_, c)| c.read())
            .fold(m.retired, |sum, t| sum + t)
    }

    /// Live members.
    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    /// True with no live member.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The tokio runtime's threads (workers and blocking pool), see [`count_runtime_threads`].
pub static RUNTIME: ThreadSet = ThreadSet::new();

/// The threads of rayon's global pool, on which candle runs its parallel kernels (see
/// [`register_compute_pool`]).
pub static COMPUTE: ThreadSet = ThreadSet::new();

/// Makes `builder`'s runtime register every thread it starts in [`RUNTIME`] and keep its
/// time when it stops.
pub fn count_runtime_threads(
    builder: &mut tokio::runtime::Builder,
) -> &mut tokio::runtime::Builder {
    builder
        .on_thread_start(|| RUNTIME.enter())
        .on_thread_stop(|| RUNTIME.leave())
}

/// Registers every thread of rayon's global pool in [`COMPUTE`] (once per process; starts
/// the pool if it is not yet running). Its threads live as long as the process.
pub fn register_compute_pool() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if rayon::current_thread_index().is_none() {
            rayon::broadcast(|_| COMPUTE.enter());
        }
    });
}

/// A rayon pool for the node's communication work (hashing and chunking published
/// snapshots, encoding them, assembling fetched models, checkpoint hashing), as many threads
/// as the compute pool, each registered in [`RUNTIME`]: that work counts as communication
/// and is never taken for a training step running on the compute pool at the same time.
/// `None` if the pool cannot be started (the work then runs on the caller's pool).
fn comm_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(rayon::current_num_threads().max(1))
            .thread_name(|i| format!("murmur-comm-{i}"))
            .start_handler(|_| RUNTIME.enter())
            .exit_handler(|_| RUNTIME.leave())
            .build()
            .ok()
    })
    .as_ref()
}

/// Runs `f` (and the parallel work it starts) on the communication pool; on the calling
/// thread when rayon runs one thread (`threads = 1`, the default), where the pool would add
/// a hand-over and a spinning idle thread and nothing in parallel: `murmur_protocol`'s
/// codecs and hashing then run sequentially (they never hand work to the compute pool).
pub fn on_comm_pool<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if rayon::current_num_threads() <= 1 {
        return f();
    }
    match comm_pool() {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

/// The CPU clock of a training thread and the compute pool working for it: what one call on
/// that thread cost, kernels run on the pool included.
#[derive(Debug)]
pub struct ComputeClock {
    own: Option<ThreadClock>,
}

impl ComputeClock {
    /// The calling thread's compute clock (registers the pool, see
    /// [`register_compute_pool`]).
    pub fn current() -> Self {
        register_compute_pool();
        Self {
            own: ThreadClock::current(),
        }
    }

    /// The calling thread's time plus the pool's; `None` if the thread's clock is unreadable.
    pub fn read(&self) -> Option<Duration> {
        Some(self.own.as_ref()?.read()? + COMPUTE.total())
    }

    /// Runs `f` and returns its result with the CPU time it took (zero if unmeasurable).
    pub fn measure<T>(&self, f: impl FnOnce() -> T) -> (T, Duration) {
        let before = self.read();
        let out = f();
        let spent = match (before, self.read()) {
            (Some(b), Some(a)) => a.saturating_sub(b),
            _ => Duration::ZERO,
        };
        (out, spent)
    }
}

/// `part / whole` as a fraction in `0..=1`: zero when `whole` is zero, and at most one (the
/// clocks are read one after the other, so a part may pass the whole by a hair).
pub fn share(part: u64, whole: u64) -> f32 {
    if whole == 0 {
        return 0.0;
    }
    ((part as f64 / whole as f64).clamp(0.0, 1.0)) as f32
}

/// Microseconds of `d`, saturating.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Messages between a test and its thread: one at a time.
    const HANDOFF: usize = 1;

    /// Spins until the calling thread has used `d` of CPU time (wall time means little on
    /// a loaded machine).
    fn spin(d: Duration) {
        let clock = ThreadClock::current().unwrap();
        let start = clock.read().unwrap();
        let mut x = 0u64;
        while clock.read().unwrap() < start + d {
            for _ in 0..1000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
    }

    #[test]
    fn the_process_time_grows_with_work() {
        let before = process_time().unwrap();
        spin(Duration::from_millis(60));
        let after = process_time().unwrap();
        assert!(
            after >= before + Duration::from_millis(60),
            "{before:?} -> {after:?}"
        );
    }

    #[test]
    fn a_spinning_member_is_counted_and_a_stopped_ones_time_is_kept() {
        let set = Arc::new(ThreadSet::new());
        let (started_tx, started_rx) = std::sync::mpsc::sync_channel(HANDOFF);
        let (go_tx, go_rx) = std::sync::mpsc::sync_channel::<()>(HANDOFF);
        let s = set.clone();
        let worker = std::thread::spawn(move || {
            s.enter();
            s.enter(); // once only
            spin(Duration::from_millis(50));
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            s.leave();
        });
        started_rx.recv().unwrap();
        assert_eq!(set.len(), 1);
        let live = set.total();
        assert!(live >= Duration::from_millis(45), "{live:?}");
        assert!(live < Duration::from_secs(5), "{live:?}");
        go_tx.send(()).unwrap();
        worker.join().unwrap();
        assert!(set.is_empty());
        let kept = set.total();
        assert!(kept >= live, "{live:?} then {kept:?}");
        assert!(
            kept < live + Duration::from_millis(100),
            "{live:?} then {kept:?}"
        );
        // Leaving without having entered changes nothing; an idle member adds ~nothing.
        set.leave();
        set.enter();
        assert!(set.total() < kept + Duration::from_millis(100));
    }

    #[test]
    fn a_thread_clock_reads_its_own_thread_from_anywhere() {
        let (tx, rx) = std::sync::mpsc::sync_channel(HANDOFF);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<()>(HANDOFF);
        let t = std::thread::spawn(move || {
            spin(Duration::from_millis(50));
            tx.send(ThreadClock::current().unwrap()).unwrap();
            done_rx.recv().unwrap();
        });
        let clock = rx.recv().unwrap();
        // Read here, on another thread that has done little: the spinner's time.
        let spent = clock.read().unwrap();
        assert!(spent >= Duration::from_millis(45), "{spent:?}");
        done_tx.send(()).unwrap();
        t.join().unwrap();
    }

    #[test]
    fn runtime_threads_are_registered_by_the_hooks() {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(2).enable_all();
        let runtime = count_runtime_threads(&mut builder).build().unwrap();
        let before = RUNTIME.total();
        runtime.block_on(async {
            tokio::spawn(async { spin(Duration::from_millis(50)) })
                .await
                .unwrap();
            tokio::task::spawn_blocking(|| spin(Duration::from_millis(50)))
                .await
                .unwrap();
        });
        assert!(RUNTIME.len() >= 3, "2 workers and a blocking thread");
        drop(runtime);
        let spent = RUNTIME.total().saturating_sub(before);
        assert!(spent >= Duration::from_millis(90), "{spent:?}");
    }

    #[test]
    fn the_compute_clock_counts_work_done_on_the_pool() {
        let clock = ComputeClock::current();
        assert!(!COMPUTE.is_empty());
        let ((), spent) = clock.measure(|| {
            rayon::broadcast(|_| spin(Duration::from_millis(30)));
        });
        assert!(spent >= Duration::from_millis(25), "{spent:?}");
    }

    #[test]
    fn shares_are_fractions() {
        assert_eq!(share(0, 0), 0.0);
        assert_eq!(share(5, 0), 0.0);
        assert_eq!(share(1, 4), 0.25);
        assert_eq!(share(7, 4), 1.0);
        assert_eq!(micros(Duration::from_millis(3)), 3000);
    }
}
