//! Kademlia interop with rust-libp2p over real sockets on 127.0.0.1, on `/ipfs/kad/1.0.0`:
//! a libp2p node bootstraps from ours and finds our peers, and ours bootstraps from a
//! libp2p network and finds its peers.

#![allow(clippy::disallowed_methods)] // tests measure wall time

mod libp2p_peer;
mod node_util;

use futures::StreamExt as _;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, kad, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use libp2p_peer::{from_libp2p_addr, from_libp2p_peer, to_libp2p_addr, to_libp2p_peer};
use node_util::bounded;
use pheromone::discovery::DiscoveryConfig;
use pheromone::node::Node;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

#[derive(NetworkBehaviour)]
struct KadBehaviour {
    identify: identify::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
}

enum Command {
    AddAddress(PeerId, Multiaddr),
    Bootstrap(oneshot::Sender<Result<(), String>>),
    Closest(PeerId, oneshot::Sender<Vec<kad::PeerInfo>>),
    Table(oneshot::Sender<Vec<PeerId>>),
}

/// A rust-libp2p node with kad (server mode, `/ipfs/kad/1.0.0`) and identify, whose
/// identify answers feed kad's table as libp2p applications do.
struct KadPeer {
    peer_id: PeerId,
    listen_addr: Multiaddr,
    commands: mpsc::Sender<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KadPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KadPeer {
    async fn spawn() -> Self {
        let keypair = libp2p::identity::Keypair::generate_ed25519();
        let peer_id = keypair.public().to_peer_id();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("tcp")
            .with_behaviour(|key| {
                let mut config = kad::Config::new(StreamProtocol::new("/ipfs/kad/1.0.0"));
                config.set_query_timeout(Duration::from_secs(20));
                let mut kad = kad::Behaviour::with_config(
                    key.public().to_peer_id(),
                    kad::store::MemoryStore::new(key.public().to_peer_id()),
                    config,
                );
                // Loopback addresses are never "confirmed external": serve regardless.
                kad.set_mode(Some(kad::Mode::Server));
                KadBehaviour {
                    identify: identify::Behaviour::new(identify::Config::new(
                        "/interop-test/0.1.0".into(),
                        key.public(),
                    )),
                    kad,
                }
            })
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        swarm
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
            .expect("listen");
        let listen_addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                break address;
            }
        };
        let (commands, rx) = mpsc::channel(16);
        let task = tokio::spawn(drive(swarm, rx));
        Self {
            peer_id,
            listen_addr,
            commands,
            task,
        }
    }

    /// Our multiaddr of it, with `/p2p/`.
    fn addr(&self) -> pheromone::Multiaddr {
        from_libp2p_addr(&self.listen_addr)
            .with_p2p(from_libp2p_peer(&self.peer_id))
            .expect("p2p")
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> T {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.expect("swarm running");
        rx.await.expect("swarm answered")
    }

    async fn add_address(&self, peer: PeerId, addr: Multiaddr) {
        self.commands
            .send(Command::AddAddress(peer, addr))
            .await
            .expect("swarm running");
    }
}

async fn drive(mut swarm: Swarm<KadBehaviour>, mut commands: mpsc::Receiver<Command>) {
    let mut bootstraps: Vec<(kad::QueryId, oneshot::Sender<Result<(), String>>)> = Vec::new();
    let mut closest: Vec<(kad::QueryId, oneshot::Sender<Vec<kad::PeerInfo>>)> = Vec::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return,
                Some(Command::AddAddress(peer, addr)) => {
                    swarm.behaviour_mut().kad.add_address(&peer, addr);
                }
                Some(Command::Bootstrap(reply)) => match swarm.behaviour_mut().kad.bootstrap() {
                    Ok(id) => bootstraps.push((id, reply)),
                    Err(e) => {
                        let _ = reply.send(Err(e.to_string()));
                    }
                },
                Some(Command::Closest(peer, reply)) => {
                    let id = swarm.behaviour_mut().kad.get_closest_peers(peer);
                    closest.push((id, reply));
                }
                Some(Command::Table(reply)) => {
                    let peers = swarm
                        .behaviour_mut()
                        .kad
                        .kbuckets()
                        .flat_map(|b| b.iter().map(|e| *e.node.key.preimage()).collect::<Vec<_>>())
                        .collect();
                    let _ = reply.send(peers);
                }
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(KadBehaviourEvent::Identify(identify::Event::Received {
                    peer_id, info, ..
                })) if info.protocols.iter().any(|p| p.as_ref() == "/ipfs/kad/1.0.0") => {
                    for addr in info.listen_addrs {
                        swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
                SwarmEvent::Behaviour(KadBehaviourEvent::Kad(
                    kad::Event::OutboundQueryProgressed { id, result, step, .. },
                )) => match result {
                    kad::QueryResult::Bootstrap(r) if step.last => {
                        if let Some(i) = bootstraps.iter().position(|(q, _)| *q == id) {
                            let (_, reply) = bootstraps.swap_remove(i);
                            let _ = reply.send(r.map(drop).map_err(|e| format!("{e:?}")));
                        }
                    }
                    kad::QueryResult::GetClosestPeers(r) => {
                        if let Some(i) = closest.iter().position(|(q, _)| *q == id) {
                            let (_, reply) = closest.swap_remove(i);
                            let peers = match r {
                                Ok(ok) => ok.peers,
                                Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                            };
                            let _ = reply.send(peers);
                        }
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
}

/// `count` pheromone nodes speaking `/ipfs/kad/1.0.0`, all joined through the first.
async fn our_network(count: usize) -> Vec<Node> {
    let first = Node::builder()
        .listen("/ip4/127.0.0.1/tcp/0")
        .discovery(Some(DiscoveryConfig::ipfs()))
        .build()
        .await
        .expect("node");
    let boot = first.listen_addrs()[0].clone();
    let mut nodes = vec![first];
    for _ in 1..count {
        let mut config = DiscoveryConfig::ipfs();
        config.bootstrap.push(boot.clone());
        let node = Node::builder()
            .listen("/ip4/127.0.0.1/tcp/0")
            .discovery(Some(config))
            .build()
            .await
            .expect("node");
        node.discovery()
            .expect("discovery")
            .bootstrap()
            .await
            .expect("join");
        nodes.push(node);
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_libp2p_node_bootstraps_from_ours_and_finds_our_peers() {
    bounded(async {
        let ours = our_network(4).await;
        let theirs = KadPeer::spawn().await;
        let entry = &ours[0];
        theirs
            .add_address(
                to_libp2p_peer(&entry.peer_id()),
                to_libp2p_addr(&entry.listen_addrs()[0].clone().without_p2p()),
            )
            .await;
        theirs
            .call(Command::Bootstrap)
            .await
            .expect("libp2p bootstrap through our node");
        // Its table fills with our peers, learned from our FIND_NODE answers.
        let want: Vec<PeerId> = ours.iter().map(|n| to_libp2p_peer(&n.peer_id())).collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let table = theirs.call(Command::Table).await;
            if want.iter().all(|p| table.contains(p)) {
                break;
            }
            if Instant::now() >= deadline {
                let mut ours_tables = Vec::new();
                for node in &ours {
                    let t = node.discovery().expect("d").table().await.expect("table");
                    ours_tables.push((node.peer_id(), t));
                }
                panic!("libp2p's table {table:?} lacks some of {want:?}; ours: {ours_tables:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // And a lookup of each of our peers names it, at its real address.
        for node in &ours[1..] {
            let target = to_libp2p_peer(&node.peer_id());
            let found = theirs.call(|tx| Command::Closest(target, tx)).await;
            let info = found
                .iter()
                .find(|p| p.peer_id == target)
                .unwrap_or_else(|| panic!("{target} not among {found:?}"));
            // libp2p hands addresses back with `/p2p/<id>` appended.
            let real = node.listen_addrs()[0].clone().without_p2p();
            assert!(
                info.addrs
                    .iter()
                    .any(|a| from_libp2p_addr(a).without_p2p() == real),
                "{:?} lacks {real}",
                info.addrs
            );
        }
        // Our side saw libp2p's requests and answered them.
        let m = entry
            .discovery()
            .expect("d")
            .metrics()
            .await
            .expect("metrics");
        assert!(m.kad.inbound_requests > 0, "{m:?}");
        assert_eq!(m.kad.malformed, 0, "{m:?}");
        for node in &ours {
            node.close().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_node_bootstraps_from_libp2p_and_finds_its_peers() {
    bounded(async {
        let entry = KadPeer::spawn().await;
        let mut others = Vec::new();
        for _ in 0..3 {
            let peer = KadPeer::spawn().await;
            peer.add_address(entry.peer_id, entry.listen_addr.clone())
                .await;
            peer.call(Command::Bootstrap)
                .await
                .expect("libp2p joins libp2p");
            others.push(peer);
        }
        // The entry node learns the others from identify on their connections.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let table = entry.call(Command::Table).await;
            if others.iter().all(|o| table.contains(&o.peer_id)) {
                break;
            }
            assert!(Instant::now() < deadline, "the libp2p network did not form");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut config = DiscoveryConfig::ipfs();
        config.bootstrap.push(entry.addr());
        let ours = Node::builder()
            .listen("/ip4/127.0.0.1/tcp/0")
            .discovery(Some(config))
            .build()
            .await
            .expect("node");
        let discovery = ours.discovery().expect("discovery");
        let joined = discovery.bootstrap().await.expect("bootstrap from libp2p");
        assert!(joined.table_size >= 1, "{joined:?}");
        for other in &others {
            let target = from_libp2p_peer(&other.peer_id);
            let found = discovery
                .find_peer(target)
                .await
                .unwrap_or_else(|e| panic!("{target}: {e}"));
            let real = from_libp2p_addr(&other.listen_addr);
            assert!(
                found.addrs.iter().any(|a| a.clone().without_p2p() == real),
                "{:?} lacks {real}",
                found.addrs
            );
            // The address is good: a dial reaches that very peer.
            let conn = ours
                .endpoint()
                .dial(&other.addr())
                .await
                .expect("dial the found peer");
            assert_eq!(conn.remote_peer(), target);
        }
        let table = discovery.table().await.expect("table");
        assert!(table.len() >= 2, "{table:?}");
        ours.close().await;
    })
    .await;
}
