//! rust-libp2p as the reference peer: TCP + Noise + yamux (or libp2p-quic) with default
//! configs, two
//! `Swarm`s in this process on 127.0.0.1, raw streams through `libp2p-stream`. Each swarm
//! runs on its own task driven by a small command loop (dial, disconnect); stream work goes
//! through `libp2p_stream::Control` and the shared workloads, so the bytes on every stream
//! are the same as on the other stacks.

use std::{collections::HashMap, future::Future, io, time::Duration, time::Instant};

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use futures::StreamExt as _;
use libp2p::{
    noise,
    swarm::{
        dial_opts::{DialOpts, PeerCondition},
        ConnectionId, SwarmEvent,
    },
    tcp, yamux, Multiaddr, PeerId, Stream, StreamProtocol, Swarm, SwarmBuilder,
};
use libp2p_stream::{Behaviour, Control};
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt as _};

use crate::{
    report::{ConnectResult, RrResult, ThroughputResult},
    workload::{self, AbortOnDrop, Measure},
};

/// The name printed in the `stack` field.
pub const NAME: &str = "libp2p";
/// The name of the QUIC variant (libp2p-quic with its defaults).
pub const NAME_QUIC: &str = "libp2p-quic";

/// Which link the swarms use: TCP + Noise + yamux, or QUIC v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// TCP + Noise + yamux.
    Tcp,
    /// QUIC v1.
    Quic,
}

impl Link {
    fn name(self) -> &'static str {
        match self {
            Link::Tcp => NAME,
            Link::Quic => NAME_QUIC,
        }
    }

    fn listen(self) -> &'static str {
        match self {
            Link::Tcp => "/ip4/127.0.0.1/tcp/0",
            Link::Quic => "/ip4/127.0.0.1/udp/0/quic-v1",
        }
    }
}

/// The protocol the throughput and rr benches negotiate on each stream.
const BENCH: StreamProtocol = StreamProtocol::new("/bench/1.0.0");
/// The standard ping protocol, served here as a 32-byte echo per the libp2p ping spec.
const PING: StreamProtocol = StreamProtocol::new("/ipfs/ping/1.0.0");
/// Connections outlive the gaps between a bench's steps; each bench closes its own.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on queued commands to a swarm task; the benches issue one at a time.
const COMMAND_QUEUE: usize = 16;

/// A libp2p stream seen through tokio's IO traits, as the shared workloads expect.
type BenchStream = Compat<Stream>;

/// What the bench asks a swarm task to do.
enum Command {
    /// Dial `peer` at `addr` and answer once the upgraded connection is established.
    Dial {
        peer: PeerId,
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Close every connection to `peer` and answer once the last one has closed.
    Disconnect {
        peer: PeerId,
        reply: oneshot::Sender<()>,
    },
}

/// One swarm running on its own task.
struct Node {
    peer_id: PeerId,
    control: Control,
    listen_addr: Option<Multiaddr>,
    commands: mpsc::Sender<Command>,
    _task: AbortOnDrop<()>,
}

impl Node {
    /// Builds a swarm with default TCP, Noise and yamux configs; listens on an ephemeral
    /// loopback port when `listen` is set.
    async fn spawn(listen: Option<Link>) -> Result<Self> {
        let mut swarm = SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_quic()
            .with_behaviour(|_| Behaviour::new())?
            .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
            .build();
        let listen_addr = if let Some(link) = listen {
            swarm.listen_on(link.listen().parse()?)?;
            Some(wait_for_listen_addr(&mut swarm).await?)
        } else {
            None
        };
        let peer_id = *swarm.local_peer_id();
        let control = swarm.behaviour().new_control();
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        let task = AbortOnDrop(tokio::spawn(drive(swarm, rx)));
        Ok(Self {
            peer_id,
            control,
            listen_addr,
            commands,
            _task: task,
        })
    }

    /// Serves every inbound stream of `protocol` with `handler`, one task per stream.
    fn serve<F, Fut>(&mut self, protocol: StreamProtocol, handler: F) -> Result<AbortOnDrop<()>>
    where
        F: Fn(BenchStream) -> Fut + Send + 'static,
        Fut: Future<Output = io::Result<()>> + Send + 'static,
    {
        let mut incoming = self.control.accept(protocol)?;
        Ok(AbortOnDrop(tokio::spawn(async move {
            while let Some((_, stream)) = incoming.next().await {
                tokio::spawn(handler(stream.compat()));
            }
        })))
    }

    /// Dials `peer` at `addr` and waits for the upgraded connection.
    async fn dial(&self, peer: PeerId, addr: Multiaddr) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Dial { peer, addr, reply })
            .await
            .map_err(|_| anyhow!("swarm task stopped"))?;
        answer
            .await
            .context("swarm task stopped")?
            .map_err(|e| anyhow!("dial failed: {e}"))
    }

    /// Closes every connection to `peer` and waits until they are gone.
    async fn disconnect(&self, peer: PeerId) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Disconnect { peer, reply })
            .await
            .map_err(|_| anyhow!("swarm task stopped"))?;
        answer.await.context("swarm task stopped")
    }

    /// Opens a stream to `peer` for `protocol` on the existing connection.
    async fn open(&mut self, peer: PeerId, protocol: StreamProtocol) -> Result<BenchStream> {
        let stream = self
            .control
            .open_stream(peer, protocol)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        Ok(stream.compat())
    }
}

async fn wait_for_listen_addr(swarm: &mut Swarm<Behaviour>) -> Result<Multiaddr> {
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => return Ok(address),
            SwarmEvent::ListenerError { error, .. } => bail!("listener failed: {error}"),
            SwarmEvent::ListenerClosed { reason, .. } => bail!("listener closed: {reason:?}"),
            _ => {}
        }
    }
}

/// Polls the swarm and carries out commands until the command channel closes.
async fn drive(mut swarm: Swarm<Behaviour>, mut commands: mpsc::Receiver<Command>) {
    let mut dials: HashMap<ConnectionId, oneshot::Sender<Result<(), String>>> = HashMap::new();
    let mut closes: HashMap<PeerId, Vec<oneshot::Sender<()>>> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return,
                Some(Command::Dial { peer, addr, reply }) => {
                    let opts = DialOpts::peer_id(peer)
                        .addresses(vec![addr])
                        .condition(PeerCondition::Always)
                        .build();
                    let id = opts.connection_id();
                    match swarm.dial(opts) {
                        Ok(()) => {
                            dials.insert(id, reply);
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e.to_string()));
                        }
                    }
                }
                Some(Command::Disconnect { peer, reply }) => {
                    if swarm.disconnect_peer_id(peer).is_ok() {
                        closes.entry(peer).or_default().push(reply);
                    } else {
                        // Not connected: already where the caller wants to be.
                        let _ = reply.send(());
                    }
                }
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { connection_id, .. } => {
                    if let Some(reply) = dials.remove(&connection_id) {
                        let _ = reply.send(Ok(()));
                    }
                }
                SwarmEvent::OutgoingConnectionError { connection_id, error, .. } => {
                    if let Some(reply) = dials.remove(&connection_id) {
                        let _ = reply.send(Err(error.to_string()));
                    }
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                    for reply in closes.remove(&peer_id).unwrap_or_default() {
                        let _ = reply.send(());
                    }
                }
                _ => {}
            },
        }
    }
}

/// A listening server swarm serving `protocol` with `handler`, and a client swarm.
struct Pair {
    client: Node,
    server_peer: PeerId,
    server_addr: Multiaddr,
    _server: Node,
    _accept: AbortOnDrop<()>,
}

impl Pair {
    async fn new<F, Fut>(link: Link, protocol: StreamProtocol, handler: F) -> Result<Self>
    where
        F: Fn(BenchStream) -> Fut + Send + 'static,
        Fut: Future<Output = io::Result<()>> + Send + 'static,
    {
        let mut server = Node::spawn(Some(link)).await?;
        let accept = server.serve(protocol, handler)?;
        let client = Node::spawn(None).await?;
        let server_addr = server
            .listen_addr
            .clone()
            .context("server has no listen address")?;
        Ok(Self {
            client,
            server_peer: server.peer_id,
            server_addr,
            _server: server,
            _accept: accept,
        })
    }

    async fn dial(&self) -> Result<()> {
        self.client
            .dial(self.server_peer, self.server_addr.clone())
            .await
    }
}

/// Bulk transfer of `total` bytes on one stream of one connection.
pub async fn throughput(link: Link, total: u64) -> Result<ThroughputResult> {
    let (done_tx, done_rx) = mpsc::channel(1);
    let mut pair = Pair::new(link, BENCH, move |mut stream| {
        let done = done_tx.clone();
        async move {
            let got = workload::sink_bulk(&mut stream).await?;
            let _ = done.send(got).await;
            Ok(())
        }
    })
    .await?;
    let mut done_rx = done_rx;
    pair.dial().await?;
    let peer = pair.server_peer;
    let mut stream = pair.client.open(peer, BENCH).await?;
    let measure = Measure::start();
    workload::send_bulk(&mut stream, total).await?;
    let (wall, cpu) = measure.stop();
    let got = done_rx.recv().await.context("receiver stopped")?;
    ensure!(got == total, "receiver got {got} of {total} bytes");
    Ok(ThroughputResult::new(link.name(), total, wall, cpu))
}

/// `requests` round trips of 64 bytes over `concurrency` streams of one connection.
pub async fn request_response(link: Link, concurrency: usize, requests: usize) -> Result<RrResult> {
    let mut pair = Pair::new(link, BENCH, workload::echo).await?;
    pair.dial().await?;
    let peer = pair.server_peer;
    let mut streams = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let mut stream = pair.client.open(peer, BENCH).await?;
        // libp2p-stream drops inbound streams the acceptor has not taken yet once its
        // small queue is full; one round trip per stream before opening the next keeps
        // a burst of opens from being reset. Set-up is not measured.
        workload::round_trips(&mut stream, 1, None).await?;
        streams.push(stream);
    }
    let (mut latencies, wall) = workload::rr_on_streams(streams, requests).await?;
    Ok(RrResult::new(
        link.name(),
        concurrency.max(1),
        &mut latencies,
        wall,
    ))
}

/// `n` sequential connections: dial with the full TCP + Noise + yamux upgrade, open a
/// `/ipfs/ping/1.0.0` stream, one 32-byte ping, close.
pub async fn connect(link: Link, n: usize) -> Result<ConnectResult> {
    let mut pair = Pair::new(link, PING, workload::echo).await?;
    let peer = pair.server_peer;
    let mut latencies = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t0 = Instant::now();
        pair.dial().await?;
        let mut stream = pair.client.open(peer, PING).await?;
        workload::ping(&mut stream).await?;
        latencies.push(t0.elapsed());
        drop(stream);
        pair.client.disconnect(peer).await?;
    }
    let wall = start.elapsed();
    Ok(ConnectResult::new(link.name(), &mut latencies, wall))
}
