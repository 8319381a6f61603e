//! A rust-libp2p peer for the interop tests: one `Swarm` (TCP + Noise + yamux, or TCP +
//! libp2p-tls + yamux with `spawn_tls`, and QUIC v1; default configs) with ping, identify, an echo protocol and `libp2p-stream` combined, listening on
//! 127.0.0.1 and driven on its own task. Tests see its swarm events through a channel and
//! open raw streams through `libp2p_stream::Control`. Also the conversions between our types and
//! libp2p's, done through their shared wire encodings so that a mismatch shows up as a test
//! failure rather than being papered over.

#![allow(dead_code)]

mod echo;

pub use echo::Echo;

use futures::StreamExt as _;
use libp2p::{
    identify, kad, noise, ping,
    swarm::{ConnectionId, NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, Swarm, SwarmBuilder,
};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What the libp2p peer says in identify's `protocolVersion`.
pub const PROTOCOL_VERSION: &str = "/interop-test/0.1.0";
/// What the libp2p peer says in identify's `agentVersion`.
pub const AGENT_VERSION: &str = "rust-libp2p-interop/0.57";
/// How often libp2p's ping behaviour pings each connection; short, so a test sees several.
pub const PING_INTERVAL: Duration = Duration::from_millis(200);
/// Swarm events queued for the test before further ones are dropped; tests only wait for
/// events near the start of a connection, so the cap is never reached in practice.
const EVENT_QUEUE: usize = 4096;

/// The Kademlia protocol id the libp2p peer serves: pheromone's, as a pheromone network
/// configures its libp2p members.
pub const KAD_PROTOCOL: &str = "/pheromone/kad/1.0.0";

/// Ping, identify, echo, Kademlia (server mode) and raw streams on one swarm.
#[derive(NetworkBehaviour)]
pub struct PeerBehaviour {
    pub ping: ping::Behaviour,
    pub identify: identify::Behaviour,
    pub echo: Echo,
    pub stream: libp2p_stream::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
}

/// One swarm event as the tests see it.
pub type Event = SwarmEvent<PeerBehaviourEvent>;

enum Command {
    /// Dial `addr`; answer with the remote's peer ID once the connection is established.
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, String>>,
    },
    /// Close every connection to `peer` the way libp2p does it (yamux GoAway, then the
    /// socket); the test watches for the result.
    Disconnect { peer: PeerId },
    /// Put `peer` at `addr` into the Kademlia table.
    AddAddress { peer: PeerId, addr: Multiaddr },
    /// Run a Kademlia closest-peers lookup for `key` (FIND_NODE); the peers found.
    Closest {
        key: PeerId,
        reply: oneshot::Sender<Result<Vec<PeerId>, String>>,
    },
    /// How many identify requests of `peer` this swarm answered.
    IdentifyAnswered {
        peer: PeerId,
        reply: oneshot::Sender<usize>,
    },
}

/// A running libp2p peer; dropping it stops the swarm.
pub struct Libp2pPeer {
    pub keypair: libp2p::identity::Keypair,
    pub peer_id: PeerId,
    /// The address the swarm listens on (`/ip4/127.0.0.1/tcp/PORT`, no `/p2p/`).
    pub listen_addr: Multiaddr,
    pub control: libp2p_stream::Control,
    events: mpsc::Receiver<Event>,
    commands: mpsc::Sender<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Libp2pPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Libp2pPeer {
    /// Starts a swarm listening on an ephemeral loopback port and echoing streams of
    /// `echo_protocol`, with rust-libp2p's default identify (no signed peer record).
    pub async fn spawn(echo_protocol: &'static str) -> Self {
        Self::spawn_with(echo_protocol, false).await
    }

    /// Like [`spawn`](Self::spawn); with `signed_peer_record`, identify also sends a signed
    /// peer record (field 8, as go-libp2p always does), which we must skip.
    pub async fn spawn_with(echo_protocol: &'static str, signed_peer_record: bool) -> Self {
        Self::spawn_listening(echo_protocol, signed_peer_record, "/ip4/127.0.0.1/tcp/0").await
    }

    /// Like [`spawn_with`](Self::spawn_with), listening on `listen` (a TCP or a QUIC
    /// address; the swarm dials both kinds whatever it listens on).
    pub async fn spawn_listening(
        echo_protocol: &'static str,
        signed_peer_record: bool,
        listen: &str,
    ) -> Self {
        let keypair = libp2p::identity::Keypair::generate_ed25519();
        let swarm = SwarmBuilder::with_existing_identity(keypair.clone())
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("tcp transport")
            .with_quic()
            .with_behaviour(|key| behaviour(key, echo_protocol, signed_peer_record))
            .expect("behaviour")
            // Nothing in a test keeps a connection busy all the time; it must not be closed
            // as idle between steps.
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        Self::start(keypair, swarm, listen).await
    }

    /// A peer whose TCP transport speaks `/tls/1.0.0` only (libp2p-tls, no Noise), and
    /// QUIC; listening on `listen`.
    pub async fn spawn_tls(echo_protocol: &'static str, listen: &str) -> Self {
        let keypair = libp2p::identity::Keypair::generate_ed25519();
        let swarm = SwarmBuilder::with_existing_identity(keypair.clone())
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                libp2p::tls::Config::new,
                yamux::Config::default,
            )
            .expect("tcp transport")
            .with_quic()
            .with_behaviour(|key| behaviour(key, echo_protocol, false))
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        Self::start(keypair, swarm, listen).await
    }

    async fn start(
        keypair: libp2p::identity::Keypair,
        mut swarm: Swarm<PeerBehaviour>,
        listen: &str,
    ) -> Self {
        swarm
            .listen_on(listen.parse().expect("addr"))
            .expect("listen");
        let listen_addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                break address;
            }
        };
        let control = swarm.behaviour().stream.new_control();
        let (event_tx, events) = mpsc::channel(EVENT_QUEUE);
        let (commands, command_rx) = mpsc::channel(16);
        let task = tokio::spawn(drive(swarm, command_rx, event_tx));
        Self {
            peer_id: keypair.public().to_peer_id(),
            keypair,
            listen_addr,
            control,
            events,
            commands,
            task,
        }
    }
}

/// The behaviours every test peer runs.
fn behaviour(
    key: &libp2p::identity::Keypair,
    echo_protocol: &'static str,
    signed_peer_record: bool,
) -> PeerBehaviour {
    PeerBehaviour {
        ping: ping::Behaviour::new(ping::Config::new().with_interval(PING_INTERVAL)),
        identify: identify::Behaviour::new(
            if signed_peer_record {
                identify::Config::new_with_signed_peer_record(PROTOCOL_VERSION.to_owned(), key)
            } else {
                identify::Config::new(PROTOCOL_VERSION.to_owned(), key.public())
            }
            .with_agent_version(AGENT_VERSION.to_owned()),
        ),
        echo: Echo::new(echo_protocol),
        stream: libp2p_stream::Behaviour::new(),
        kad: {
            let id = key.public().to_peer_id();
            let mut config = kad::Config::new(libp2p::StreamProtocol::new(KAD_PROTOCOL));
            config.set_query_timeout(Duration::from_secs(10));
            let mut kad = kad::Behaviour::with_config(id, kad::store::MemoryStore::new(id), config);
            // Loopback addresses are never "confirmed external": serve regardless.
            kad.set_mode(Some(kad::Mode::Server));
            kad
        },
    }
}

impl Libp2pPeer {
    /// Dials `addr` (with or without `/p2p/`) and waits for the upgraded connection.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, String> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Dial { addr, reply })
            .await
            .map_err(|_| "swarm task stopped".to_owned())?;
        answer.await.map_err(|_| "swarm task stopped".to_owned())?
    }

    /// Its listen address with `/p2p/`, in our type, for dialling it.
    pub fn addr(&self) -> pheromone::Multiaddr {
        from_libp2p_addr(&self.listen_addr)
            .with_p2p(from_libp2p_peer(&self.peer_id))
            .expect("p2p suffix")
    }

    /// Waits until the swarm has a connection with `peer`. Our side of an upgrade can finish
    /// before libp2p's swarm has registered the connection, and a stream libp2p opens before
    /// then makes it try to dial the peer itself.
    pub async fn wait_connected(&mut self, peer: PeerId) {
        self.wait_for(|event| match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == peer => Some(()),
            _ => None,
        })
        .await
    }

    /// Asks libp2p to close its connections to `peer`.
    pub async fn disconnect(&self, peer: PeerId) {
        self.commands
            .send(Command::Disconnect { peer })
            .await
            .expect("swarm task stopped");
    }

    /// Puts `peer` at `addr` into the Kademlia table.
    pub async fn add_kad_address(&self, peer: PeerId, addr: Multiaddr) {
        self.commands
            .send(Command::AddAddress { peer, addr })
            .await
            .expect("swarm task stopped");
    }

    /// A Kademlia lookup of the peers closest to `key`: FIND_NODE requests to the table.
    pub async fn closest(&self, key: PeerId) -> Result<Vec<PeerId>, String> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Closest { key, reply })
            .await
            .map_err(|_| "swarm task stopped".to_owned())?;
        answer.await.map_err(|_| "swarm task stopped".to_owned())?
    }

    /// How many identify requests of `peer` the swarm answered.
    pub async fn identify_answered(&self, peer: PeerId) -> usize {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::IdentifyAnswered { peer, reply })
            .await
            .expect("swarm task stopped");
        answer.await.expect("swarm task stopped")
    }

    /// Drops the swarm events queued so far.
    pub fn drain_events(&mut self) {
        while self.events.try_recv().is_ok() {}
    }

    /// Waits for the first swarm event `select` picks, skipping the others.
    pub async fn wait_for<T>(&mut self, mut select: impl FnMut(Event) -> Option<T>) -> T {
        loop {
            let event = self.events.recv().await.expect("swarm task stopped");
            if let Some(found) = select(event) {
                return found;
            }
        }
    }
}

/// Polls the swarm, carries out commands and forwards every event to the test.
async fn drive(
    mut swarm: Swarm<PeerBehaviour>,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
) {
    let mut dials: HashMap<ConnectionId, oneshot::Sender<Result<PeerId, String>>> = HashMap::new();
    let mut lookups: HashMap<kad::QueryId, oneshot::Sender<Result<Vec<PeerId>, String>>> =
        HashMap::new();
    let mut answered: HashMap<PeerId, usize> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return,
                Some(Command::Dial { addr, reply }) => {
                    let opts = libp2p::swarm::dial_opts::DialOpts::from(addr);
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
                Some(Command::Disconnect { peer }) => {
                    let _ = swarm.disconnect_peer_id(peer);
                }
                Some(Command::AddAddress { peer, addr }) => {
                    swarm.behaviour_mut().kad.add_address(&peer, addr);
                }
                Some(Command::Closest { key, reply }) => {
                    let id = swarm.behaviour_mut().kad.get_closest_peers(key);
                    lookups.insert(id, reply);
                }
                Some(Command::IdentifyAnswered { peer, reply }) => {
                    let _ = reply.send(answered.get(&peer).copied().unwrap_or(0));
                }
            },
            event = swarm.select_next_some() => {
                match &event {
                    SwarmEvent::ConnectionEstablished { connection_id, peer_id, .. } => {
                        if let Some(reply) = dials.remove(connection_id) {
                            let _ = reply.send(Ok(*peer_id));
                        }
                    }
                    SwarmEvent::OutgoingConnectionError { connection_id, error, .. } => {
                        if let Some(reply) = dials.remove(connection_id) {
                            let _ = reply.send(Err(error.to_string()));
                        }
                    }
                    SwarmEvent::Behaviour(PeerBehaviourEvent::Identify(identify::Event::Sent {
                        peer_id,
                        ..
                    })) => *answered.entry(*peer_id).or_default() += 1,
                    SwarmEvent::Behaviour(PeerBehaviourEvent::Kad(
                        kad::Event::OutboundQueryProgressed {
                            id,
                            result: kad::QueryResult::GetClosestPeers(result),
                            step,
                            ..
                        },
                    )) if step.last => {
                        if let Some(reply) = lookups.remove(id) {
                            let _ = reply.send(match result {
                                Ok(ok) => Ok(ok.peers.iter().map(|p| p.peer_id).collect()),
                                Err(e) => Err(e.to_string()),
                            });
                        }
                    }
                    _ => {}
                }
                // A full queue means the test stopped looking; dropping is harmless then.
                let _ = events.try_send(event);
            }
        }
    }
}

/// Our multiaddr in libp2p's type, through the binary encoding both implement.
pub fn to_libp2p_addr(addr: &pheromone::Multiaddr) -> Multiaddr {
    Multiaddr::try_from(addr.to_bytes()).expect("libp2p parses our multiaddr")
}

/// libp2p's multiaddr in our type, through the binary encoding.
pub fn from_libp2p_addr(addr: &Multiaddr) -> pheromone::Multiaddr {
    pheromone::Multiaddr::from_bytes(&addr.to_vec()).expect("we parse libp2p's multiaddr")
}

/// Our peer ID in libp2p's type, through the binary encoding.
pub fn to_libp2p_peer(peer: &pheromone::PeerId) -> PeerId {
    PeerId::from_bytes(&peer.to_bytes()).expect("libp2p parses our peer ID")
}

/// libp2p's peer ID in our type, through the binary encoding.
pub fn from_libp2p_peer(peer: &PeerId) -> pheromone::PeerId {
    pheromone::PeerId::from_bytes(&peer.to_bytes()).expect("we parse libp2p's peer ID")
}

/// Our public key in libp2p's type, through the protobuf encoding.
pub fn to_libp2p_key(key: &pheromone::PublicKey) -> libp2p::identity::PublicKey {
    libp2p::identity::PublicKey::try_decode_protobuf(&key.to_protobuf_encoding())
        .expect("libp2p parses our public key")
}
