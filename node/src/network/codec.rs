//! The request-response codec of the murmur sync protocol: each message is a `u32`
//! little-endian length and a body encoded by `murmur_protocol::codec`. The length is checked
//! against the limit of the expected kind before a byte of the body is read, so a peer cannot
//! make us allocate more than `MAX_RESPONSE_BYTES` (responses) or `MAX_REQUEST_BYTES`
//! (requests). Bytes on the wire are counted for the node's traffic counters. With an emulated
//! link ([`super::link`], a test aid) each frame also waits for that link's queues.

use super::link::{Link, LinkSpec};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use murmur_protocol::codec::{
    decode_frame_len, decode_request, decode_response, encode_request, encode_response,
    frame_prefix,
};
use murmur_protocol::limits::FRAME_PREFIX_LEN;
use murmur_protocol::{MessageKind, Request, Response};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes moved by the sync protocol, both directions, all peers.
#[derive(Debug, Default)]
pub struct Traffic {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    /// Requests this node answered `Busy` (a peer over its share, or the node at a limit).
    pub busy_sent: AtomicU64,
    /// `Busy` answers this node received.
    pub busy_received: AtomicU64,
    /// Connections, inbound or outbound, that failed or were refused before they were
    /// established (a handshake under another pre-shared key, a peer not allowed, a limit).
    pub connections_failed: AtomicU64,
    /// Network events dropped because the node task's queue was full (the node task was
    /// behind; the news they carried was stale by then).
    pub events_dropped: AtomicU64,
    /// Hole punches (DCUtR) that ended, and those that made a direct connection.
    pub punch_attempts: AtomicU64,
    pub punch_successes: AtomicU64,
    /// Reservations and circuits this node's relay accepted, and those it refused (over a
    /// cap or a rate limit).
    pub relay_reservations_served: AtomicU64,
    pub relay_circuits_served: AtomicU64,
    pub relay_refused: AtomicU64,
    /// Payload bytes of answers received over relayed connections, and over direct ones.
    pub fetched_relayed: AtomicU64,
    pub fetched_direct: AtomicU64,
    /// Requests of ours whose connection closed under them or could not be made (a relay
    /// cut the circuit, a peer not reachable yet): never charged to the peer.
    pub requests_lost: AtomicU64,
    /// Every byte written on direct connections (answers, gossip, circuits relayed for
    /// others): what `max_upload_mbps` caps.
    pub uploaded: AtomicU64,
}

/// Bytes reserved for a frame's body before any arrives (it grows as they do).
const FRAME_PREALLOC: usize = 64 * 1024;

/// The codec; cheap to clone (one per connection handler).
#[derive(Debug, Clone, Default)]
pub struct SyncCodec {
    traffic: Arc<Traffic>,
    /// The emulated link every frame passes through (a test aid), shared by every clone.
    link: Option<Arc<Link>>,
}

impl SyncCodec {
    /// A codec counting into `traffic`.
    pub fn new(traffic: Arc<Traffic>) -> Self {
        Self {
            traffic,
            link: None,
        }
    }

    /// Passes every frame written through an emulated link of `spec` (the writer waits
    /// for the upload queue and the latency) and every frame read through its download
    /// queue; `None` leaves the codec as it was.
    pub fn with_link(mut self, spec: Option<LinkSpec>) -> Self {
        self.link = spec.map(|s| Arc::new(Link::new(s)));
        self
    }

    async fn read_frame<T: AsyncRead + Unpin + Send>(
        &self,
        io: &mut T,
        kind: MessageKind,
    ) -> io::Result<Vec<u8>> {
        let mut prefix = [0u8; FRAME_PREFIX_LEN];
        io.read_exact(&mut prefix).await?;
        let len = decode_frame_len(kind, prefix).map_err(invalid)?;
        // The buffer grows with the bytes that arrive, not with what the prefix claims: a
        // peer claiming 16 MiB and sending nothing costs us no 16 MiB.
        let mut body = Vec::with_capacity(len.min(FRAME_PREALLOC));
        (&mut *io).take(len as u64).read_to_end(&mut body).await?;
        if body.len() != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("frame of {len} bytes ended after {}", body.len()),
            ));
        }
        self.traffic
            .received
            .fetch_add((FRAME_PREFIX_LEN + len) as u64, Ordering::Relaxed);
        if let Some(link) = &self.link {
            let wait = link.receive((FRAME_PREFIX_LEN + len) as u64);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        Ok(body)
    }

    async fn write_frame<T: AsyncWrite + Unpin + Send>(
        &self,
        io: &mut T,
        body: &[u8],
    ) -> io::Result<()> {
        if let Some(link) = &self.link {
            let wait = link.send((FRAME_PREFIX_LEN + body.len()) as u64);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        io.write_all(&frame_prefix(body.len())).await?;
        io.write_all(body).await?;
        io.close().await?;
        self.traffic
            .sent
            .fetch_add((FRAME_PREFIX_LEN + body.len()) as u64, Ordering::Relaxed);
        Ok(())
    }
}

fn invalid(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl libp2p::request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Request> {
        let body = self.read_frame(io, MessageKind::Request).await?;
        decode_request(&body).map_err(invalid)
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Response> {
        let body = self.read_frame(io, MessageKind::Response).await?;
        decode_response(&body).map_err(invalid)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Request,
    ) -> io::Result<()> {
        let body = encode_request(&req).map_err(invalid)?;
        self.write_frame(io, &body).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Response,
    ) -> io::Result<()> {
        let body = encode_response(&res).map_err(invalid)?;
        self.write_frame(io, &body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_protocol::codec::frame_prefix;

    fn read(bytes: Vec<u8>) -> io::Result<Vec<u8>> {
        let codec = SyncCodec::default();
        let mut io = futures::io::Cursor::new(bytes);
        futures::executor::block_on(codec.read_frame(&mut io, MessageKind::Response))
    }

    #[test]
    fn a_frame_is_read_whole_and_counted() {
        let mut bytes = frame_prefix(5).to_vec();
        bytes.extend_from_slice(b"hello, and more");
        assert_eq!(read(bytes).unwrap(), b"hello");
    }

    /// A prefix claiming 16 MiB followed by 3 bytes: an error, and no 16 MiB buffer (the
    /// buffer grows as bytes arrive; here it never passes the preallocation).
    #[test]
    fn a_frame_shorter_than_its_prefix_is_an_error() {
        let mut bytes = frame_prefix(16 << 20).to_vec();
        bytes.extend_from_slice(b"abc");
        let e = read(bytes).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("ended after 3"), "{e}");
        // Over the response limit: refused before reading the body.
        let e = read(frame_prefix(usize::MAX >> 1).to_vec()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    }
}
