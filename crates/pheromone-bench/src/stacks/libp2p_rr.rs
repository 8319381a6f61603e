//! rust-libp2p's request-response behaviour (`libp2p::request_response`) as the reference
//! for `Node::dispatch`: two swarms in this process, default TCP + Noise + yamux configs,
//! a codec that frames raw bytes behind a 4-byte length, the server echoing each request.
//! Like our node, the behaviour opens one stream per request.
//!
//! Each swarm runs on its own task; the client's task takes requests over a channel and
//! answers each caller through a oneshot once the response (or a failure) arrives.

use std::{
    collections::HashMap,
    io,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, StreamExt as _};
use libp2p::{
    noise,
    request_response::{self, OutboundRequestId, ProtocolSupport},
    swarm::SwarmEvent,
    tcp, yamux, PeerId, StreamProtocol, Swarm, SwarmBuilder,
};
use tokio::sync::{mpsc, oneshot};

use crate::{
    report::DispatchResult,
    workload::{self, AbortOnDrop},
};

/// The name printed in the `stack` field.
pub const NAME: &str = "libp2p";
const PROTOCOL: StreamProtocol = StreamProtocol::new("/bench/rr/1.0.0");
/// Largest message the codec reads, as our node's default.
const MAX_MESSAGE: usize = 1 << 20;
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Length-prefixed raw bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesCodec;

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message too large",
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, data: &[u8]) -> io::Result<()> {
    let len = u32::try_from(data.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut frame = Vec::with_capacity(4 + data.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(data);
    io.write_all(&frame).await?;
    io.close().await
}

impl request_response::Codec for BytesCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res).await
    }
}

type Behaviour = request_response::Behaviour<BytesCodec>;

fn swarm() -> Result<Swarm<Behaviour>> {
    Ok(SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| {
            request_response::Behaviour::new(
                [(PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(30))
                    .with_max_concurrent_streams(1024),
            )
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build())
}

/// Serves requests by echoing them until the task is dropped.
async fn serve(mut swarm: Swarm<Behaviour>) {
    loop {
        if let SwarmEvent::Behaviour(request_response::Event::Message {
            message:
                request_response::Message::Request {
                    request, channel, ..
                },
            ..
        }) = swarm.select_next_some().await
        {
            let _ = swarm.behaviour_mut().send_response(channel, request);
        }
    }
}

/// What the bench asks the client swarm to do.
enum Command {
    Request {
        data: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, String>>,
    },
    /// Closes the connection to the server and answers once it is gone.
    Disconnect { reply: oneshot::Sender<()> },
}

/// Drives the client swarm: sends requests, routes responses back, disconnects on demand.
async fn drive_client(
    mut swarm: Swarm<Behaviour>,
    server: PeerId,
    mut commands: mpsc::Receiver<Command>,
) {
    let mut waiting: HashMap<OutboundRequestId, oneshot::Sender<Result<Vec<u8>, String>>> =
        HashMap::new();
    let mut closes: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return,
                Some(Command::Request { data, reply }) => {
                    let id = swarm.behaviour_mut().send_request(&server, data);
                    waiting.insert(id, reply);
                }
                Some(Command::Disconnect { reply }) => {
                    if swarm.disconnect_peer_id(server).is_ok() {
                        closes.push(reply);
                    } else {
                        let _ = reply.send(());
                    }
                }
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Response { request_id, response },
                    ..
                }) => {
                    if let Some(reply) = waiting.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure { request_id, error, .. }) => {
                    if let Some(reply) = waiting.remove(&request_id) {
                        let _ = reply.send(Err(error.to_string()));
                    }
                }
                SwarmEvent::ConnectionClosed { num_established: 0, .. } => {
                    for reply in closes.drain(..) {
                        let _ = reply.send(());
                    }
                }
                _ => {}
            },
        }
    }
}

/// A server swarm and a client swarm that knows the server's address.
struct Pair {
    commands: mpsc::Sender<Command>,
    _client: AbortOnDrop<()>,
    _server: AbortOnDrop<()>,
}

impl Pair {
    async fn new() -> Result<Self> {
        let mut server = swarm()?;
        server.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
        let addr = loop {
            match server.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => break address,
                SwarmEvent::ListenerError { error, .. } => bail!("listener failed: {error}"),
                _ => {}
            }
        };
        let server_id = *server.local_peer_id();
        let mut client = swarm()?;
        client.add_peer_address(server_id, addr);
        let (commands, rx) = mpsc::channel(1024);
        Ok(Self {
            commands,
            _client: AbortOnDrop(tokio::spawn(drive_client(client, server_id, rx))),
            _server: AbortOnDrop(tokio::spawn(serve(server))),
        })
    }

    /// One request, answered.
    async fn request(&self, data: Vec<u8>) -> Result<Vec<u8>> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Request { data, reply })
            .await
            .map_err(|_| anyhow!("client swarm stopped"))?;
        answer
            .await
            .context("client swarm stopped")?
            .map_err(|e| anyhow!("request failed: {e}"))
    }

    async fn disconnect(&self) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Disconnect { reply })
            .await
            .map_err(|_| anyhow!("client swarm stopped"))?;
        answer.await.context("client swarm stopped")
    }
}

/// `requests` 64-byte requests with `concurrency` in flight over one connection.
pub async fn dispatch_long(concurrency: usize, requests: usize) -> Result<DispatchResult> {
    let pair = std::sync::Arc::new(Pair::new().await?);
    let message = workload::pattern(workload::MESSAGE);
    // Connect and warm up; not timed.
    for _ in 0..concurrency.max(10) {
        pair.request(message.clone()).await?;
    }
    let per_task = requests.div_ceil(concurrency.max(1));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let pair = pair.clone();
        let message = message.clone();
        tasks.push(AbortOnDrop(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let t0 = Instant::now();
                let reply = pair.request(message.clone()).await?;
                latencies.push(t0.elapsed());
                anyhow::ensure!(reply == message, "echo mismatch");
            }
            Ok::<_, anyhow::Error>(latencies)
        })));
    }
    let mut all = Vec::with_capacity(requests);
    for task in tasks {
        all.extend(task.join().await??);
    }
    let wall = start.elapsed();
    Ok(DispatchResult::new(
        NAME,
        "long",
        concurrency.max(1),
        &mut all,
        wall,
    ))
}

/// `n` sequential requests, each on a connection of its own: the behaviour dials on
/// `send_request`, then the bench disconnects and waits for the close.
pub async fn dispatch_short(n: usize) -> Result<DispatchResult> {
    let pair = Pair::new().await?;
    let message = workload::pattern(workload::MESSAGE);
    let mut latencies = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t0 = Instant::now();
        let reply = pair.request(message.clone()).await?;
        pair.disconnect().await?;
        latencies.push(t0.elapsed());
        anyhow::ensure!(reply == message, "echo mismatch");
    }
    let wall = start.elapsed();
    Ok(DispatchResult::new(NAME, "short", 1, &mut latencies, wall))
}
