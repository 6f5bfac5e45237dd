//! The request-response codec of the node (`node/src/network/codec.rs`, `SyncCodec`), with
//! its framing reproduced here line for line so the fuzz crate does not depend on the node
//! (libp2p, candle): read a 4-byte prefix with `read_exact`, check it with
//! `codec::decode_frame_len` against the expected kind's limit, read the body into a buffer
//! that grows as bytes arrive (at most 64 KiB reserved up front) and check its length, then
//! `codec::decode_request` / `decode_response`. Everything the node decides about a frame is
//! made by those two protocol functions; the copy here is only the I/O around them.
//!
//! Input: byte 0 picks the side (bit 0: 0 = a server reading a request, 1 = a client reading
//! a response) and how many bytes the stream yields per poll (bits 1..8; 0 = all at once), with
//! a `Pending` before every read, like a slow network; the rest is what the peer sent.
//! Properties: never panics; a length prefix is accepted only within 1..=limit and the
//! prefix of the accepted length is the same 4 bytes; a frame that decodes is exactly
//! `frame_prefix(len) ++ encode(message)` (the node's own writer would send the same bytes).
#![no_main]

use futures::io::{AsyncRead, AsyncReadExt};
use libfuzzer_sys::fuzz_target;
use murmur_protocol::MessageKind;
use murmur_protocol::codec::{
    decode_frame_len, decode_request, decode_response, encode_request, encode_response,
    frame_prefix,
};
use murmur_protocol::limits::FRAME_PREFIX_LEN;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A peer's stream: `step` bytes per read at most, and `Pending` before each read.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
    ready: bool,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if !self.ready {
            self.ready = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.ready = false;
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(n))
    }
}

/// As in the node: the body's buffer grows with the bytes that arrive.
const FRAME_PREALLOC: usize = 64 * 1024;

/// `SyncCodec::read_frame`, as in the node.
async fn read_frame<T: AsyncRead + Unpin>(io: &mut T, kind: MessageKind) -> io::Result<Vec<u8>> {
    let mut prefix = [0u8; FRAME_PREFIX_LEN];
    io.read_exact(&mut prefix).await?;
    let len = decode_frame_len(kind, prefix).map_err(invalid)?;
    // The property the node relies on before it allocates.
    assert!(len >= 1 && len <= kind.max_len());
    assert_eq!(frame_prefix(len), prefix);
    let mut body = Vec::with_capacity(len.min(FRAME_PREALLOC));
    (&mut *io).take(len as u64).read_to_end(&mut body).await?;
    if body.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame of {len} bytes ended after {}", body.len()),
        ));
    }
    Ok(body)
}

fn invalid(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let step = match usize::from(mode >> 1) {
        0 => usize::MAX,
        n => n,
    };
    let mut io = Trickle {
        data: stream,
        step,
        ready: false,
    };
    let response = mode & 1 == 1;
    let kind = if response {
        MessageKind::Response
    } else {
        MessageKind::Request
    };
    let Ok(body) = futures::executor::block_on(read_frame(&mut io, kind)) else {
        return;
    };
    assert_eq!(
        &stream[FRAME_PREFIX_LEN..FRAME_PREFIX_LEN + body.len()],
        &body[..]
    );
    // `read_request` / `read_response`, then what `write_request` / `write_response` send.
    let reencoded = if response {
        let Ok(msg) = decode_response(&body) else {
            return;
        };
        encode_response(&msg).unwrap()
    } else {
        let Ok(msg) = decode_request(&body) else {
            return;
        };
        encode_request(&msg).unwrap()
    };
    let mut frame = frame_prefix(reencoded.len()).to_vec();
    frame.extend_from_slice(&reencoded);
    assert_eq!(&frame[..], &stream[..FRAME_PREFIX_LEN + body.len()]);
});
