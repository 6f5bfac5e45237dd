//! The node's upload cap, held in the transport: with `network.max_upload_mbps` set, every
//! byte this node writes on a direct connection (TCP, pnet-wrapped TCP, QUIC) passes one
//! shared token bucket, the [`UploadGate`]. That is what makes the bytes a relay forwards
//! count against the cap: libp2p's relay copies a circuit inside its own connection
//! handler, out of reach of the serving limits. Answers pass the gate too, after the
//! serving limits ([`super::limits`]) admitted them (those say `Busy` early rather than
//! queue); gossip and the other protocols pass it as well. A circuit this node is an end of
//! is not wrapped: its bytes pass the gate once, on the connection to the relay.
//!
//! Every byte written through the wrappers is counted (`Traffic::uploaded`), gate or not.
//!
//! It owns the gate and the muxer and substream wrappers; it decides nothing about peers
//! and does not know which protocol a substream carries.

use super::codec::Traffic;
use super::limits::Bucket;
use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerBox, StreamMuxerEvent, SubstreamBox};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

/// The gate's bucket holds this many seconds of the rate...
pub const GATE_BURST_SECS: f64 = 0.25;

/// ...and at least this many bytes (four yamux frames of 16 KiB). A write that starts may
/// take the bucket into debt (a yamux write is at most one frame; a QUIC write takes what
/// the stream's send buffer holds), paid for by the waits of the writes after it.
pub const MIN_GATE_BURST: f64 = 64.0 * 1024.0;

/// Shortest wait for a write the gate holds back (the timer's resolution).
const MIN_WAIT: Duration = Duration::from_millis(1);

/// One token bucket for all the bytes this node writes: refilled at `rate` bytes per second,
/// holding at most [`gate_burst`] of them. A write starts when the bucket is not in debt
/// and is charged in full once written.
#[derive(Debug)]
pub struct UploadGate {
    rate: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

/// The gate's burst for `rate` bytes per second.
pub fn gate_burst(rate: f64) -> f64 {
    (rate * GATE_BURST_SECS).max(MIN_GATE_BURST)
}

impl UploadGate {
    /// A gate at `rate` bytes per second (positive and finite), its bucket full at `now`.
    pub fn new(rate: f64, now: Instant) -> Self {
        let burst = gate_burst(rate);
        Self {
            rate,
            burst,
            bucket: Mutex::new(Bucket::full(burst, now)),
        }
    }

    fn with<T>(&self, now: Instant, f: impl FnOnce(&mut Bucket) -> T) -> T {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        bucket.refill(now, self.rate, self.burst);
        f(&mut bucket)
    }

    /// How long a write must wait at `now`: zero while the bucket is not in debt (less than
    /// a byte of it, so that a wait that paid the debt is not followed by another), else
    /// until the debt is paid.
    pub fn wait(&self, now: Instant) -> Duration {
        let level = self.with(now, |b| b.level());
        if level > -1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-level / self.rate).max(MIN_WAIT)
        }
    }

    /// `bytes` were written at `now`.
    pub fn charge(&self, now: Instant, bytes: usize) {
        self.with(now, |b| b.charge(bytes as f64));
    }
}

/// `muxer`'s substreams, their writes held back by `gate` (if any) and counted in
/// `traffic`.
pub fn wrap<M>(muxer: M, gate: Option<Arc<UploadGate>>, traffic: Arc<Traffic>) -> StreamMuxerBox
where
    M: StreamMuxer + Send + 'static,
    M::Substream: Send + 'static,
    M::Error: Send + Sync + 'static,
{
    StreamMuxerBox::new(Gated {
        inner: StreamMuxerBox::new(muxer),
        gate,
        traffic,
    })
}

/// A muxer whose substreams pass the gate.
struct Gated {
    inner: StreamMuxerBox,
    gate: Option<Arc<UploadGate>>,
    traffic: Arc<Traffic>,
}

impl Gated {
    fn stream(&self, inner: SubstreamBox) -> GatedStream {
        GatedStream {
            inner,
            gate: self.gate.clone(),
            traffic: self.traffic.clone(),
            sleep: None,
        }
    }
}

impl StreamMuxer for Gated {
    type Substream = GatedStream;
    type Error = io::Error;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        let stream = ready!(Pin::new(&mut this.inner).poll_inbound(cx))?;
        Poll::Ready(Ok(this.stream(stream)))
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        let stream = ready!(Pin::new(&mut this.inner).poll_outbound(cx))?;
        Poll::Ready(Ok(this.stream(stream)))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll(cx)
    }
}

/// The time, from tokio's clock (the one its timers run on, paused in tests).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// A substream whose writes wait for the gate (if any) and are counted.
struct GatedStream {
    inner: SubstreamBox,
    gate: Option<Arc<UploadGate>>,
    traffic: Arc<Traffic>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl GatedStream {
    /// Ready once the gate lets a write start.
    fn poll_gate(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(gate) = &self.gate else {
            return Poll::Ready(());
        };
        loop {
            if let Some(sleep) = &mut self.sleep {
                ready!(sleep.as_mut().poll(cx));
                self.sleep = None;
            }
            let wait = gate.wait(now());
            if wait.is_zero() {
                return Poll::Ready(());
            }
            self.sleep = Some(Box::pin(tokio::time::sleep(wait)));
        }
    }
}

impl AsyncRead for GatedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for GatedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_gate(cx));
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        if let Some(gate) = &this.gate {
            gate.charge(now(), written);
        }
        this.traffic
            .uploaded
            .fetch_add(written as u64, Ordering::Relaxed);
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full bucket lets writes through until it is in debt; then each waits for the debt
    /// to be paid at the rate, so the bytes written by time t never pass burst + rate * t
    /// plus one write.
    #[test]
    fn writes_wait_for_the_debt_at_the_rate() {
        let t0 = Instant::now();
        let rate = 1_000_000.0;
        let gate = UploadGate::new(rate, t0);
        assert_eq!(gate_burst(rate), 250_000.0);
        assert_eq!(gate_burst(1000.0), MIN_GATE_BURST);
        assert_eq!(gate.wait(t0), Duration::ZERO);
        gate.charge(t0, 200_000);
        assert_eq!(gate.wait(t0), Duration::ZERO, "50 kB left");
        gate.charge(t0, 100_000);
        // 50 kB of debt at 1 MB/s: 50 ms.
        assert_eq!(gate.wait(t0), Duration::from_millis(50));
        assert_eq!(
            gate.wait(t0 + Duration::from_millis(20)),
            Duration::from_millis(30)
        );
        assert_eq!(gate.wait(t0 + Duration::from_millis(50)), Duration::ZERO);
        // A long idle spell refills to the burst, no more.
        let idle = t0 + Duration::from_secs(60);
        gate.charge(idle, 251_000);
        assert_eq!(gate.wait(idle), MIN_WAIT);
    }

    /// A gated substream writing into memory.
    fn sink(gate: Option<Arc<UploadGate>>, traffic: &Arc<Traffic>) -> GatedStream {
        GatedStream {
            inner: SubstreamBox::new(futures::io::Cursor::new(Vec::new())),
            gate,
            traffic: traffic.clone(),
            sleep: None,
        }
    }

    /// Writes on a gated substream are paced: 500 kB in writes of 10 kB through a 1 MB/s
    /// gate (burst 250 kB) cannot be written in less than 0.24 s (the last write goes out
    /// on credit). Every byte is counted, gate or not.
    #[tokio::test]
    async fn gated_writes_take_at_least_the_time_the_rate_says() {
        use futures::AsyncWriteExt;
        let traffic = Arc::new(Traffic::default());
        let gate = Arc::new(UploadGate::new(1_000_000.0, now()));
        let mut stream = sink(Some(gate), &traffic);
        let start = std::time::Instant::now();
        for _ in 0..50 {
            stream.write_all(&[0u8; 10_000]).await.unwrap();
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(239), "{took:?}");
        assert_eq!(traffic.uploaded.load(Ordering::Relaxed), 500_000);
        let mut plain = sink(None, &traffic);
        for _ in 0..50 {
            plain.write_all(&[0u8; 10_000]).await.unwrap();
        }
        assert_eq!(traffic.uploaded.load(Ordering::Relaxed), 1_000_000);
    }
}
