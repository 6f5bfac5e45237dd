//! Serving limits under abuse, with real processes and real sockets. Three `murmur run`
//! processes on loopback: a victim and two honest peers bootstrapped from it. While they
//! train and merge, this test throws at the victim, from many connections:
//! - raw TCP garbage before any handshake;
//! - on the sync protocol: garbage bodies, truncated frames, huge length prefixes, valid but
//!   oversized requests (64 ids of the largest chunk), requests repeating one id 64 times;
//! - a flood of valid requests from several peer ids, as fast as the streams allow.
//!
//! It asserts the victim stays up, its peak RSS (`VmHWM`) stays under a bound measured for
//! this test, the two honest peers keep merging, the flooders get `Busy`, and an honest
//! client's fetch of the victim's whole model during the flood finishes within the node's
//! fetch deadline. The figures are printed (run with `--nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, noise, tcp, yamux};
use murmur_node::config::{NodeConfig, template};
use murmur_node::data::ShardSpec;
use murmur_protocol::codec::{decode_manifest, decode_response, encode_request, frame_prefix};
use murmur_protocol::{ChunkId, ChunkReply, ManifestId, Request, Response};
use serde_json::Value;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const NETWORK: &str = "flood-test";

/// The honest client's whole-model fetch must finish within the node's fetch deadline
/// (`averaging.fetch_timeout_secs`, 10 s by default).
const HONEST_DEADLINE: Duration = Duration::from_secs(10);

/// How long the flood lasts.
const FLOOD_FOR: Duration = Duration::from_secs(25);

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One run of the test: the model every peer trains, its chunk size, the victim's upload
/// limit and the memory bound asserted.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    name: &'static str,
    model: &'static str,
    chunk_size: u32,
    /// The victim's `network.max_upload_mbps` (0 = unlimited, the default).
    victim_upload_mbps: f64,
    rss_bound_mb: u64,
}

/// The two tests share the machine's two cores: they run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Writes peer `i`'s config; returns its path, API address, listen address and peer id.
fn write_peer(
    dir: &Path,
    i: usize,
    bootstrap: Option<&Multiaddr>,
    scenario: &Scenario,
) -> (std::path::PathBuf, SocketAddr, Multiaddr, PeerId) {
    let data_dir = dir.join(format!("peer{i}"));
    let key = murmur_node::identity::load_or_create(&data_dir).unwrap();
    let listen: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", free_port())
        .parse()
        .unwrap();
    let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut cfg = NodeConfig {
        network_id: NETWORK.to_string(),
        data_dir,
        ..NodeConfig::default()
    };
    cfg.network.listen = vec![listen.clone()];
    cfg.network.bootstrap = bootstrap.into_iter().cloned().collect();
    cfg.network.mdns = false;
    cfg.training.model = scenario.model.parse().unwrap();
    cfg.averaging.chunk_size = scenario.chunk_size;
    if i == 0 {
        cfg.network.max_upload_mbps = scenario.victim_upload_mbps;
    }
    cfg.training.shard = ShardSpec { index: i, count: 3 };
    cfg.training.threads = 1;
    cfg.dashboard.listen = api;
    let path = dir.join(format!("peer{i}.toml"));
    std::fs::write(&path, template::render(&cfg)).unwrap();
    (path, api, listen, key.public().to_peer_id())
}

fn spawn(config: &Path, log: &Path) -> Proc {
    let log = std::fs::File::create(log).unwrap();
    Proc(
        common::murmur()
            .args(["run", "--exit-with-parent", "--config"])
            .arg(config)
            .env("RAYON_NUM_THREADS", "1")
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// GET /api/status, or `None` if the node does not answer.
async fn status(api: SocketAddr) -> Option<Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(api).await.ok()?;
    s.write_all(b"GET /api/status HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .ok()?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut raw))
        .await
        .ok()?
        .ok()?;
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    serde_json::from_slice(&raw[end + 4..]).ok()
}

async fn merges(api: SocketAddr) -> u64 {
    status(api)
        .await
        .map_or(0, |s| s["counters"]["merges"].as_u64().unwrap_or(0))
}

/// Polls until `cond` holds on the status of `api`, or panics after `deadline`.
async fn wait_status(
    api: SocketAddr,
    what: &str,
    deadline: Duration,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        if let Some(s) = status(api).await
            && cond(&s)
        {
            return s;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `VmRSS` and `VmHWM` of a process, in kB.
fn memory_kb(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Raw bytes on the sync protocol: a request is written as given (anything, framed or not),
/// a response is read to its end (at most 17 MiB).
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
    ) -> io::Result<Vec<u8>> {
        Err(io::Error::other("this client serves nothing"))
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        io.take(17 << 20).read_to_end(&mut out).await?;
        Ok(out)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&req).await?;
        io.close().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> io::Result<()> {
        Err(io::Error::other("this client serves nothing"))
    }
}

/// The sync protocol, and ping: a murmur node closes a connection whose pings fail.
#[derive(libp2p::swarm::NetworkBehaviour)]
struct ClientBehaviour {
    sync: request_response::Behaviour<RawCodec>,
    ping: libp2p::ping::Behaviour,
}

type Client = Swarm<ClientBehaviour>;

fn client() -> Client {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| ClientBehaviour {
            ping: libp2p::ping::Behaviour::default(),
            sync: request_response::Behaviour::<RawCodec>::new(
                [(
                    StreamProtocol::try_from_owned(format!(
                        "/murmur/{NETWORK}/sync/{}",
                        murmur_protocol::codec::WIRE_VERSION
                    ))
                    .unwrap(),
                    ProtocolSupport::Outbound,
                )],
                request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
            ),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// Dials `addr` and waits for the connection, within 10 s.
async fn connect(swarm: &mut Client, peer: PeerId, addr: &Multiaddr) {
    swarm
        .dial(addr.clone().with(libp2p::multiaddr::Protocol::P2p(peer)))
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            Ok(SwarmEvent::ConnectionEstablished { .. }) => return,
            Ok(SwarmEvent::OutgoingConnectionError { error, .. }) => panic!("dial failed: {error}"),
            Ok(_) => {}
            Err(_) => panic!("no connection within 10 s"),
        }
    }
}

/// A framed, valid request.
fn framed(req: &Request) -> Vec<u8> {
    let body = encode_request(req).unwrap();
    let mut out = frame_prefix(body.len()).to_vec();
    out.extend_from_slice(&body);
    out
}

/// The body of `Response::Busy`: the wire version, variant 2.
const BUSY: &[u8] = &[murmur_protocol::codec::WIRE_VERSION, 2, 0, 0, 0];

/// Decodes a framed response; `None` for anything else (a closed stream, garbage).
fn parse(raw: &[u8]) -> Option<Response> {
    let body = raw.get(4..)?;
    decode_response(body).ok()
}

/// Sends one request and waits for its answer (driving the swarm), within `deadline`.
async fn ask(
    swarm: &mut Client,
    peer: PeerId,
    req: &Request,
    deadline: tokio::time::Instant,
) -> Option<Response> {
    let id = swarm.behaviour_mut().sync.send_request(&peer, framed(req));
    loop {
        match tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .ok()?
        {
            SwarmEvent::Behaviour(ClientBehaviourEvent::Sync(
                request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                },
            )) if request_id == id => return parse(&response),
            SwarmEvent::Behaviour(ClientBehaviourEvent::Sync(
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                },
            )) if request_id == id => {
                eprintln!("request failed: {error}");
                return None;
            }
            _ => {}
        }
    }
}

/// What the abusive clients saw.
#[derive(Debug, Default)]
struct Tally {
    sent: AtomicU64,
    served: AtomicU64,
    busy: AtomicU64,
    failed: AtomicU64,
}

/// Keeps up to 90 requests in flight on one connection until `until`, cycling through
/// `requests`, and tallies the answers.
async fn flood(
    mut swarm: Client,
    peer: PeerId,
    requests: Vec<Vec<u8>>,
    until: Instant,
    tally: Arc<Tally>,
) {
    let mut inflight = 0usize;
    let mut next = 0usize;
    while Instant::now() < until {
        while inflight < 90 {
            swarm
                .behaviour_mut()
                .sync
                .send_request(&peer, requests[next % requests.len()].clone());
            next += 1;
            inflight += 1;
            tally.sent.fetch_add(1, Ordering::Relaxed);
        }
        let event = tokio::time::timeout(Duration::from_secs(1), swarm.select_next_some()).await;
        match event {
            Ok(SwarmEvent::Behaviour(ClientBehaviourEvent::Sync(
                request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                },
            ))) => {
                inflight -= 1;
                // Classified by its first bytes, not decoded: decoding megabytes in this
                // process would take the CPU the honest client needs.
                match response.get(4..9) {
                    Some(BUSY) => tally.busy.fetch_add(1, Ordering::Relaxed),
                    Some(_) => tally.served.fetch_add(1, Ordering::Relaxed),
                    None => tally.failed.fetch_add(1, Ordering::Relaxed),
                };
            }
            Ok(SwarmEvent::Behaviour(ClientBehaviourEvent::Sync(
                request_response::Event::OutboundFailure { .. },
            ))) => {
                inflight -= 1;
                tally.failed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(SwarmEvent::ConnectionClosed {
                num_established: 0, ..
            }) => {
                // Redial: request-response dials the peer again on the next request.
                inflight = 0;
            }
            _ => {}
        }
    }
}

/// Raw TCP connections that send garbage before (instead of) a handshake, until `until`.
async fn garbage(addr: SocketAddr, until: Instant) -> u64 {
    use tokio::io::AsyncWriteExt;
    let mut n = 0;
    let junk: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    while Instant::now() < until {
        let mut conns = Vec::new();
        for i in 0..32 {
            if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                // Some send a multistream-select header first, then junk.
                if i % 2 == 0 {
                    let _ = s.write_all(b"\x13/multistream/1.0.0\n").await;
                }
                let _ = tokio::time::timeout(
                    Duration::from_millis(50),
                    s.write_all(&junk[..(i + 1) * 1024]),
                )
                .await;
                conns.push(s);
                n += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(conns);
    }
    n
}

/// What the honest client's fetch took: its time, the `Busy` answers and the failed
/// requests (cut off by the victim's 3 s request timeout, or unanswered) on the way.
#[derive(Debug)]
#[allow(dead_code)] // Read through Debug, in the printed figures.
struct HonestFetch {
    time: Duration,
    busy: u64,
    failed: u64,
}

/// Fetches the victim's whole model: the manifest, then every chunk in requests of 4, one
/// at a time, backing off 100 ms on `Busy` and asking again after a failed request (cut off
/// by the victim's request timeout), until [`HONEST_DEADLINE`].
async fn honest_fetch(
    addr: Multiaddr,
    peer: PeerId,
    manifest_id: ManifestId,
) -> Result<HonestFetch, String> {
    let mut swarm = client();
    connect(&mut swarm, peer, &addr).await;
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + HONEST_DEADLINE;
    let (mut busy, mut failed) = (0u64, 0u64);
    let mut manifest = None;
    let mut queue: Vec<ChunkId> = Vec::new();
    loop {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "not done after {:?}: {busy} Busy, {failed} failed, {} chunks missing",
                start.elapsed(),
                queue.len()
            ));
        }
        let request = match &manifest {
            None => Request::Manifest(manifest_id),
            Some(_) if queue.is_empty() => break,
            Some(_) => Request::Chunks(queue.iter().take(4).copied().collect()),
        };
        match (ask(&mut swarm, peer, &request, deadline).await, &request) {
            (Some(Response::Manifest(Some(bytes))), _) => {
                let m = decode_manifest(&bytes, &manifest_id).unwrap();
                queue = m.chunks.clone();
                queue.sort();
                queue.dedup();
                manifest = Some(m);
            }
            (Some(Response::Chunks(replies)), Request::Chunks(batch)) => {
                assert_eq!(replies.len(), batch.len());
                for (id, reply) in batch.iter().zip(replies) {
                    if let ChunkReply::Data(d) = reply {
                        assert_eq!(ChunkId::of(&d), *id);
                        queue.retain(|c| c != id);
                    }
                }
            }
            (Some(Response::Busy), _) => {
                busy += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (None, _) => failed += 1,
            (other, _) => return Err(format!("{request:?} answered {other:?}")),
        }
    }
    Ok(HonestFetch {
        time: start.elapsed(),
        busy,
        failed,
    })
}

/// The defaults, a small model (4,810 parameters in 19 chunks of 1 KiB: a fetch is several
/// requests and a request of 64 ids names every chunk). Measured (debug build, 2 cores,
/// 2026-11-29): peak RSS 69-74 MB from 54-59 MB before the flood; bound twice that. The
/// honest fetch took 0.10-0.38 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_node_stays_up_bounded_and_fair() {
    run(Scenario {
        name: "defaults, small model",
        model: "mlp:64",
        chunk_size: 1024,
        victim_upload_mbps: 0.0,
        rss_bound_mb: 150,
    })
    .await;
}

/// A large model (1.07 M parameters, 17 chunks of 256 KiB: a request of every chunk asks
/// for more than the 4 MiB a response carries, so each valid flood request costs a full
/// response) from a victim capped at 80 Mbit/s of upload (`network.max_upload_mbps`).
/// Measured (debug build, 2 cores, 2026-11-29): peak RSS 255-299 MB from 157-178 MB before
/// the flood; bound twice that. The honest fetch of 4.3 MB took 6.4-7.2 s (1-2 `Busy`) of
/// its 10 s deadline: the machine's two cores, not the node's limits, set that pace. Not in
/// CI (`cargo test -p murmur-node --test flood -- --ignored` runs it): with 30% margin on a
/// shared 2-core machine it measures the machine as much as the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement at 70% of its deadline on 2 cores; run with --ignored"]
async fn a_flooded_node_with_an_upload_limit_shares_it() {
    run(Scenario {
        name: "max_upload_mbps = 80, 4.3 MB model",
        model: "mlp:1000-1000",
        chunk_size: 256 * 1024,
        victim_upload_mbps: 80.0,
        rss_bound_mb: 600,
    })
    .await;
}

async fn run(scenario: Scenario) {
    let _one = ONE_AT_A_TIME.lock().await;
    println!("scenario: {} ({scenario:?})", scenario.name);
    let rss_bound_mb = scenario.rss_bound_mb;
    assert_eq!(
        murmur_protocol::codec::encode_response(&Response::Busy).unwrap(),
        BUSY
    );
    let dir = tempfile::tempdir().unwrap();
    let (c0, api0, listen0, victim) = write_peer(dir.path(), 0, None, &scenario);
    let dial0: Multiaddr = format!("{listen0}/p2p/{victim}").parse().unwrap();
    let (c1, api1, _, _) = write_peer(dir.path(), 1, Some(&dial0), &scenario);
    let (c2, api2, _, _) = write_peer(dir.path(), 2, Some(&dial0), &scenario);
    let mut v = spawn(&c0, &dir.path().join("peer0.log"));
    let _a = spawn(&c1, &dir.path().join("peer1.log"));
    let _b = spawn(&c2, &dir.path().join("peer2.log"));
    let pid = v.0.id();

    // Everyone trains and merges before the flood.
    for api in [api1, api2] {
        wait_status(
            api,
            "an honest peer merging",
            Duration::from_secs(90),
            |s| s["counters"]["merges"].as_u64().unwrap_or(0) >= 2,
        )
        .await;
    }
    let s0 = wait_status(
        api0,
        "the victim announcing",
        Duration::from_secs(30),
        |s| s["manifest"].as_str().is_some_and(|m| m.len() == 64),
    )
    .await;
    let manifest = s0["manifest"]
        .as_str()
        .unwrap()
        .parse::<ManifestId>()
        .unwrap();
    let (rss_before, hwm_before) = memory_kb(pid);

    // The victim's chunk ids, to make valid requests of.
    let mut probe = client();
    connect(&mut probe, victim, &listen0).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let answer = ask(&mut probe, victim, &Request::Manifest(manifest), deadline).await;
    let Some(Response::Manifest(Some(bytes))) = answer else {
        panic!("the victim did not serve its manifest: {answer:?}; {s0}");
    };
    let chunks = decode_manifest(&bytes, &manifest).unwrap().chunks;
    println!(
        "the victim's model: manifest {}, {} chunks; honest peers' merges before: {} and {}",
        manifest.short(),
        chunks.len(),
        merges(api1).await,
        merges(api2).await
    );
    drop(probe);

    // The abuse: valid and invalid sync requests from 6 peer ids, 90 streams each.
    let until = Instant::now() + FLOOD_FOR;
    let repeated = framed(&Request::Chunks(vec![chunks[0]; 64]));
    let all: Vec<ChunkId> = chunks.iter().copied().cycle().take(64).collect();
    let valid_big = framed(&Request::Chunks(all));
    let mut huge_prefix = u32::MAX.to_le_bytes().to_vec();
    huge_prefix.extend_from_slice(&[1; 64]);
    let mut truncated = framed(&Request::Chunks(chunks.iter().copied().take(8).collect()));
    truncated.truncate(truncated.len() / 2);
    let garbage_body = {
        let mut g = frame_prefix(200).to_vec();
        g.extend((0..200u32).map(|i| (i * 37) as u8));
        g
    };
    let over_limit = {
        // A frame claiming 5 KiB: over the request limit.
        let mut g = frame_prefix(5 * 1024).to_vec();
        g.extend(vec![0u8; 5 * 1024]);
        g
    };
    let mixes: Vec<Vec<Vec<u8>>> = vec![
        vec![framed(&Request::Manifest(manifest)), valid_big.clone()],
        vec![repeated.clone(), valid_big.clone()],
        vec![valid_big.clone()],
        vec![
            repeated,
            huge_prefix,
            truncated,
            garbage_body,
            over_limit,
            valid_big,
        ],
    ];
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for i in 0..6 {
        let mut swarm = client();
        connect(&mut swarm, victim, &listen0).await;
        tasks.push(tokio::spawn(flood(
            swarm,
            victim,
            mixes[i % mixes.len()].clone(),
            until,
            tally.clone(),
        )));
    }
    let tcp_addr = SocketAddr::from((
        [127, 0, 0, 1],
        listen0
            .iter()
            .find_map(|p| match p {
                libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
                _ => None,
            })
            .unwrap(),
    ));
    let junk = tokio::spawn(garbage(tcp_addr, until));

    // The honest peers' merges, from a few seconds into the flood.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (m1, m2) = (merges(api1).await, merges(api2).await);
    // An honest fetch of the whole model in the middle of the flood.
    let honest = honest_fetch(listen0.clone(), victim, manifest).await;

    let mut peak_hwm = hwm_before;
    let mut peak_rss = rss_before;
    while Instant::now() < until {
        assert!(
            v.0.try_wait().unwrap().is_none(),
            "the victim died under the flood"
        );
        let (rss, hwm) = memory_kb(pid);
        peak_rss = peak_rss.max(rss);
        peak_hwm = peak_hwm.max(hwm);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let junk_conns = junk.await.unwrap();
    assert!(
        v.0.try_wait().unwrap().is_none(),
        "the victim died under the flood"
    );
    let (_, hwm) = memory_kb(pid);
    peak_hwm = peak_hwm.max(hwm);

    // The honest peers kept merging during the flood.
    let (n1, n2) = (merges(api1).await, merges(api2).await);
    // The status page is refreshed by the node task: wait until it counts every Busy the
    // flooders saw.
    let t = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let seen = t(&tally.busy);
    let victim_status = wait_status(
        api0,
        "the victim counting the Busy answers the flooders saw",
        Duration::from_secs(15),
        |s| s["counters"]["busy_sent"].as_u64().unwrap_or(0) >= seen,
    )
    .await;
    let busy_sent = victim_status["counters"]["busy_sent"].as_u64().unwrap_or(0);
    println!(
        "flood: {} s, {} sync requests sent by 6 flooders ({} served, {} Busy, {} failed or \
         refused), {junk_conns} raw garbage connections; victim answered Busy {busy_sent} times",
        FLOOD_FOR.as_secs(),
        t(&tally.sent),
        t(&tally.served),
        t(&tally.busy),
        t(&tally.failed),
    );
    println!(
        "victim memory: RSS before the flood {} MB (peak so far {} MB), peak RSS (VmHWM) {} MB, \
         sampled peak VmRSS {} MB; bound {rss_bound_mb} MB",
        rss_before / 1024,
        hwm_before / 1024,
        peak_hwm / 1024,
        peak_rss / 1024
    );
    println!(
        "honest fetch of the whole model during the flood: {honest:?}, deadline \
         {HONEST_DEADLINE:?}"
    );
    println!("honest peers' merges during the flood: {m1} -> {n1}, {m2} -> {n2}");
    for api in [api1, api2] {
        if let Some(s) = status(api).await {
            println!(
                "honest peer {}: busy_received {}, fetch_failures {}, charges against the \
                 victim {}",
                s["peer_id"].as_str().unwrap_or("?"),
                s["counters"]["busy_received"],
                s["counters"]["fetch_failures"],
                s["error_charges"][victim.to_string()]
            );
        }
    }

    assert!(
        peak_hwm / 1024 < rss_bound_mb,
        "peak RSS {} MB over {rss_bound_mb} MB",
        peak_hwm / 1024
    );
    let honest = honest.unwrap();
    assert!(honest.time < HONEST_DEADLINE);
    assert!(
        n1 > m1 && n2 > m2,
        "an honest peer stopped merging: {m1} -> {n1}, {m2} -> {n2}"
    );
    assert!(t(&tally.busy) > 0, "the flooders never got Busy");
    // Each flooder got at most its share: 50 requests/s sustained plus a 100-request burst.
    let share = 6 * (50 * FLOOD_FOR.as_secs() + 100);
    assert!(
        t(&tally.served) <= share + 6 * 16,
        "{} served, share {share}",
        t(&tally.served)
    );
}
