//! The peer store: what the daemon remembers of the peers it met, kept in `peers.json` in
//! the data dir so that a restarted daemon finds its mesh again without `--bootstrap`.
//!
//! Per peer: its ID, the name it last announced, the addresses to dial it at (the address
//! we dialled, or the listen addresses it announced in identify), when a link to it was
//! last up, and how reliably it answered (links that came up, dials that failed). Bounded
//! to [`MAX_PEERS`] peers (the one seen longest ago goes first) and [`MAX_ADDRS`]
//! addresses each.
//!
//! The file is rewritten whole and atomically (temporary file, sync, rename, sync of the
//! dir) a moment after a change, not on every event. A file that is corrupt, too large,
//! of another version or not ours is moved aside and logged, and the daemon starts with
//! an empty store: losing the store costs a `--bootstrap`, never a start. Nothing here
//! does network IO; the redial lives in `redial.rs`.

use super::datadir::{self, DataDirError};
use pheromone::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// File name of the peer store in the data dir.
pub const PEERS_FILE: &str = "peers.json";
/// Peers remembered at most.
pub const MAX_PEERS: usize = 256;
/// Addresses remembered per peer at most.
pub const MAX_ADDRS: usize = 8;
/// Largest store file read (256 peers take well under 200 KiB).
const MAX_FILE_LEN: u64 = 4 << 20;
/// The file format's version.
const VERSION: u32 = 1;

/// One remembered peer, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remembered {
    /// Its peer ID.
    pub peer_id: String,
    /// The name it last announced (unauthenticated: for display only).
    #[serde(default)]
    pub name: Option<String>,
    /// Where to dial it, best first, without `/p2p/`.
    #[serde(default)]
    pub addrs: Vec<String>,
    /// Unix time (seconds) a link to it was last up.
    #[serde(default)]
    pub last_seen: u64,
    /// Links to it that came up.
    #[serde(default)]
    pub successes: u64,
    /// Dials to it that failed.
    #[serde(default)]
    pub failures: u64,
    /// Whether this node dialled it (rather than only being dialled by it): the side that
    /// dialled a link keeps it, so an operator's `disconnect` on the other side sticks.
    #[serde(default)]
    pub dialled: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct File {
    /// What wrote this: always `pheromone-peers`, so a foreign JSON file is told apart.
    kind: String,
    version: u32,
    peers: Vec<Remembered>,
}

const KIND: &str = "pheromone-peers";

/// What loading found, for the start-up log.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Peers remembered.
    pub peers: usize,
    /// Why the file was not used, and where it was moved, when it was not.
    pub fallback: Option<(String, Option<PathBuf>)>,
}

/// The store: a cloneable handle.
#[derive(Debug, Clone)]
pub struct PeerStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    // A std mutex: nothing awaits while it is held.
    state: Mutex<State>,
    changed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct State {
    peers: HashMap<PeerId, Remembered>,
    dirty: bool,
}

impl PeerStore {
    /// Loads the store of data dir `dir`; a bad file is moved aside (see the module docs).
    /// Fails only when the data dir itself cannot be read.
    pub fn load(dir: &Path) -> Result<(Self, Loaded), DataDirError> {
        let path = dir.join(PEERS_FILE);
        let mut loaded = Loaded::default();
        let mut state = State::default();
        match read(&path) {
            Ok(Some(file)) => {
                for entry in file.peers {
                    let Ok(peer) = entry.peer_id.parse::<PeerId>() else {
                        continue;
                    };
                    state.peers.insert(peer, sanitize(entry));
                }
                evict(&mut state.peers);
            }
            Ok(None) => {}
            Err(why) => {
                let aside = dir.join(format!("{PEERS_FILE}.corrupt-{}", std::process::id()));
                let moved = std::fs::rename(&path, &aside).ok().map(|()| aside);
                loaded.fallback = Some((why, moved));
            }
        }
        loaded.peers = state.peers.len();
        let store = Self {
            inner: Arc::new(Inner {
                path,
                state: Mutex::new(state),
                changed: tokio::sync::Notify::new(),
            }),
        };
        Ok((store, loaded))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn touch(&self, state: &mut State) {
        state.dirty = true;
        self.inner.changed.notify_one();
    }

    /// A link to `peer` came up (`dialled` by us or not); `addrs` are where it can be
    /// dialled (may be empty).
    pub fn connected(
        &self,
        peer: PeerId,
        dialled: bool,
        addrs: &[Multiaddr],
        name: Option<String>,
        now: u64,
    ) {
        let mut state = self.state();
        let entry = state.peers.entry(peer).or_insert_with(|| Remembered {
            peer_id: peer.to_string(),
            name: None,
            addrs: Vec::new(),
            last_seen: now,
            successes: 0,
            failures: 0,
            dialled: false,
        });
        entry.dialled |= dialled;
        entry.successes = entry.successes.saturating_add(1);
        entry.last_seen = now;
        if name.is_some() {
            entry.name = name;
        }
        merge_addrs(&mut entry.addrs, addrs);
        evict(&mut state.peers);
        self.touch(&mut state);
    }

    /// Identify told us where `peer` listens and what it is called.
    pub fn identified(&self, peer: PeerId, addrs: &[Multiaddr], name: Option<String>) {
        let mut state = self.state();
        let Some(entry) = state.peers.get_mut(&peer) else {
            return;
        };
        let before = (entry.addrs.clone(), entry.name.clone());
        if name.is_some() {
            entry.name = name;
        }
        merge_addrs(&mut entry.addrs, addrs);
        if before != (entry.addrs.clone(), entry.name.clone()) {
            self.touch(&mut state);
        }
    }

    /// A link to `peer` went down at `now`.
    pub fn disconnected(&self, peer: PeerId, now: u64) {
        let mut state = self.state();
        if let Some(entry) = state.peers.get_mut(&peer) {
            entry.last_seen = now;
            self.touch(&mut state);
        }
    }

    /// A dial to `peer` failed.
    pub fn failed(&self, peer: PeerId) {
        let mut state = self.state();
        if let Some(entry) = state.peers.get_mut(&peer) {
            entry.failures = entry.failures.saturating_add(1);
            self.touch(&mut state);
        }
    }

    /// Addresses to dial `peer` at, with `/p2p/`, best first.
    pub fn dial_addrs(&self, peer: &PeerId) -> Vec<Multiaddr> {
        let state = self.state();
        let Some(entry) = state.peers.get(peer) else {
            return Vec::new();
        };
        entry
            .addrs
            .iter()
            .filter_map(|a| a.parse::<Multiaddr>().ok()?.with_p2p(*peer).ok())
            .collect()
    }

    /// Every remembered peer, seen most recently first.
    pub fn list(&self) -> Vec<Remembered> {
        let mut peers: Vec<Remembered> = self.state().peers.values().cloned().collect();
        peers.sort_by(|a, b| {
            b.last_seen
                .cmp(&a.last_seen)
                .then_with(|| a.peer_id.cmp(&b.peer_id))
        });
        peers
    }

    /// Writes the store if it changed since the last write.
    pub fn save_if_changed(&self) -> Result<(), DataDirError> {
        let bytes = {
            let mut state = self.state();
            if !state.dirty {
                return Ok(());
            }
            state.dirty = false;
            let file = File {
                kind: KIND.to_owned(),
                version: VERSION,
                peers: {
                    let mut peers: Vec<Remembered> = state.peers.values().cloned().collect();
                    peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
                    peers
                },
            };
            serde_json::to_vec_pretty(&file).unwrap_or_default()
        };
        let result = datadir::write_atomic(&self.inner.path, &bytes);
        if result.is_err() {
            // Try again on the next change.
            self.state().dirty = true;
        }
        result
    }

    /// Waits for the next change.
    pub async fn changed(&self) {
        self.inner.changed.notified().await;
    }
}

/// Reads and checks the file: `None` when absent, the reason when unusable.
fn read(path: &Path) -> Result<Option<File>, String> {
    let file = match datadir::open_read(path) {
        Ok(Some(file)) => file,
        Ok(None) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(format!("it is larger than {MAX_FILE_LEN} bytes"));
    }
    let file: File =
        serde_json::from_slice(&bytes).map_err(|e| format!("it is not a peer store: {e}"))?;
    if file.kind != KIND {
        return Err(format!("it is a {:?} file, not a peer store", file.kind));
    }
    if file.version != VERSION {
        return Err(format!(
            "it is version {}, this daemon reads version {VERSION}",
            file.version
        ));
    }
    Ok(Some(file))
}

/// Caps what a file (possibly edited by hand) may make us hold.
fn sanitize(mut entry: Remembered) -> Remembered {
    entry
        .addrs
        .retain(|a| a.len() <= 256 && a.parse::<Multiaddr>().is_ok());
    entry.addrs.truncate(MAX_ADDRS);
    if entry.name.as_ref().is_some_and(|n| n.len() > 64) {
        entry.name = None;
    }
    entry
}

/// Puts `new` dialable addresses first, keeping at most [`MAX_ADDRS`].
fn merge_addrs(addrs: &mut Vec<String>, new: &[Multiaddr]) {
    let mut merged: Vec<String> = new
        .iter()
        .filter(|a| dialable(a))
        .map(|a| a.clone().without_p2p().to_string())
        .collect();
    for old in addrs.drain(..) {
        if !merged.contains(&old) {
            merged.push(old);
        }
    }
    merged.dedup();
    merged.truncate(MAX_ADDRS);
    *addrs = merged;
}

/// An address a restarted daemon can dial: a concrete TCP or QUIC socket address.
fn dialable(addr: &Multiaddr) -> bool {
    let socket = addr.tcp_socket_addr().or_else(|| addr.quic_socket_addr());
    socket.is_some_and(|s| !s.ip().is_unspecified() && s.port() != 0)
}

/// Forgets the peers seen longest ago until at most [`MAX_PEERS`] remain.
fn evict(peers: &mut HashMap<PeerId, Remembered>) {
    while peers.len() > MAX_PEERS {
        let oldest = peers
            .iter()
            .min_by_key(|(_, r)| (r.last_seen, r.successes))
            .map(|(p, _)| *p);
        match oldest {
            Some(p) => peers.remove(&p),
            None => return,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerId {
        pheromone::Keypair::from_seed([n; 32]).peer_id()
    }

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr")
    }

    #[test]
    fn peers_survive_a_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, loaded) = PeerStore::load(dir.path()).expect("load");
        assert_eq!(loaded.peers, 0);
        store.connected(peer(1), true, &[addr(4001)], Some("luda".into()), 100);
        store.identified(
            peer(1),
            &[addr(4002), "/ip4/0.0.0.0/tcp/9".parse().expect("a")],
            None,
        );
        store.failed(peer(1));
        store.connected(peer(2), false, &[], None, 50);
        store.save_if_changed().expect("save");
        let (store, loaded) = PeerStore::load(dir.path()).expect("reload");
        assert_eq!(loaded.peers, 2);
        assert!(loaded.fallback.is_none());
        let list = store.list();
        assert_eq!(list[0].peer_id, peer(1).to_string());
        assert_eq!(list[0].name.as_deref(), Some("luda"));
        assert_eq!(
            list[0].addrs,
            ["/ip4/127.0.0.1/tcp/4002", "/ip4/127.0.0.1/tcp/4001"],
            "the wildcard address is not dialable"
        );
        assert_eq!((list[0].successes, list[0].failures), (1, 1));
        assert!(list[0].dialled && !list[1].dialled);
        assert_eq!(
            store.dial_addrs(&peer(1))[1],
            addr(4001).with_p2p(peer(1)).expect("p2p")
        );
    }

    #[test]
    fn the_store_is_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = PeerStore::load(dir.path()).expect("load");
        for n in 0..(MAX_PEERS + 10) {
            let p = pheromone::Keypair::from_seed({
                let mut seed = [0u8; 32];
                seed[..8].copy_from_slice(&(n as u64).to_le_bytes());
                seed
            })
            .peer_id();
            let addrs: Vec<Multiaddr> = (0..20).map(|i| addr(1000 + i)).collect();
            store.connected(p, true, &addrs, None, n as u64);
        }
        let list = store.list();
        assert_eq!(list.len(), MAX_PEERS);
        assert!(
            list.iter().all(|r| r.last_seen >= 10),
            "the oldest went first"
        );
        assert!(list.iter().all(|r| r.addrs.len() == MAX_ADDRS));
    }

    #[test]
    fn garbage_foreign_or_newer_files_fall_back_to_an_empty_store() {
        let cases: [&[u8]; 4] = [
            b"\x00\x9f\xff garbage bytes \x01\x02",
            br#"{"some": "other program's json"}"#,
            br#"{"kind": "pheromone-peers", "version": 99, "peers": []}"#,
            br#"{"kind": "pheromone-peers", "version": 1, "peers": [{"peer_id": 5}]}"#,
        ];
        for bytes in cases {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::write(dir.path().join(PEERS_FILE), bytes).expect("write");
            let (store, loaded) = PeerStore::load(dir.path()).expect("load never fails");
            let (why, moved) = loaded.fallback.expect("fell back");
            assert!(!why.is_empty());
            let moved = moved.expect("moved aside");
            assert_eq!(std::fs::read(moved).expect("kept"), bytes);
            assert!(store.list().is_empty());
            store.connected(peer(1), true, &[addr(1)], None, 1);
            store.save_if_changed().expect("save over it");
            assert_eq!(PeerStore::load(dir.path()).expect("load").1.peers, 1);
        }
    }

    #[test]
    fn a_bad_peer_id_or_address_in_the_file_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = peer(1).to_string();
        let text = format!(
            r#"{{"kind": "pheromone-peers", "version": 1, "peers": [
                {{"peer_id": "not-a-peer"}},
                {{"peer_id": "{good}", "addrs": ["nonsense", "/ip4/127.0.0.1/tcp/7"]}}
            ]}}"#
        );
        std::fs::write(dir.path().join(PEERS_FILE), text).expect("write");
        let (store, loaded) = PeerStore::load(dir.path()).expect("load");
        assert!(loaded.fallback.is_none());
        assert_eq!(store.list().len(), 1);
        assert_eq!(store.list()[0].addrs, ["/ip4/127.0.0.1/tcp/7"]);
    }
}
