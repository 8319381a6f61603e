//! The operator's alias book: names this node's operator bound to peer IDs — the config's
//! `[aliases]` table, `pheromone alias NAME PEER_ID` (until the daemon stops), and the
//! aliases given to the node's contacts (`add_contact`). Only these names, peer IDs and
//! `/p2p/` addresses resolve where a name grants access or aims a command: `expose
//! --allow`, and the targets of `exec` and `forward`. Names that peers announce in
//! identify are anyone's to claim (a stranger can announce a trusted host's name before
//! it connects), so they stay for display, `ping`, `send` and `dispatch` only.
//!
//! No network here: a table, and [`Net::resolve_trusted`] on top of [`Net::resolve`].

use super::config::validate_name;
use super::net::{Net, Target};
use crate::control_proto::{AliasEntry, ControlError, ErrorCode};
use pheromone::PeerId;
use std::collections::BTreeMap;

/// Most aliases kept (config and CLI together): a typo loop in a script must not grow the
/// daemon without bound.
pub const MAX_ALIASES: usize = 4096;

/// Where an alias came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Config,
    Cli,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Cli => "cli",
        }
    }
}

/// Names the operator bound to peers. See the module docs.
#[derive(Debug, Default)]
pub struct AliasBook {
    names: BTreeMap<String, (PeerId, Source)>,
}

impl AliasBook {
    /// The book the config's `[aliases]` table starts with (already validated).
    pub fn from_config(aliases: &BTreeMap<String, PeerId>) -> Self {
        Self {
            names: aliases
                .iter()
                .map(|(name, peer)| (name.clone(), (*peer, Source::Config)))
                .collect(),
        }
    }

    /// The peer `name` is bound to.
    pub fn get(&self, name: &str) -> Option<PeerId> {
        self.names.get(name).map(|(peer, _)| *peer)
    }

    /// Binds `name` to `peer` (replacing an earlier binding of the name).
    pub fn set(&mut self, name: &str, peer: PeerId) -> Result<AliasEntry, ControlError> {
        validate_name(name).map_err(|e| ControlError::new(ErrorCode::BadRequest, e.to_string()))?;
        if name.parse::<PeerId>().is_ok() {
            return Err(ControlError::new(
                ErrorCode::BadRequest,
                format!("alias {name:?} is a peer ID itself; pick a name"),
            ));
        }
        if !self.names.contains_key(name) && self.names.len() >= MAX_ALIASES {
            return Err(ControlError::new(
                ErrorCode::BadRequest,
                format!("the alias book is full ({MAX_ALIASES} names); unalias some first"),
            ));
        }
        self.names.insert(name.to_owned(), (peer, Source::Cli));
        Ok(entry(name, peer, Source::Cli))
    }

    /// Forgets `name`.
    pub fn remove(&mut self, name: &str) -> Result<AliasEntry, ControlError> {
        let (peer, source) = self
            .names
            .remove(name)
            .ok_or_else(|| ControlError::new(ErrorCode::NotFound, format!("no alias {name:?}")))?;
        Ok(entry(name, peer, source))
    }

    /// Every alias, by name.
    pub fn list(&self) -> Vec<AliasEntry> {
        self.names
            .iter()
            .map(|(name, (peer, source))| entry(name, *peer, *source))
            .collect()
    }
}

fn entry(name: &str, peer: PeerId, source: Source) -> AliasEntry {
    AliasEntry {
        name: name.to_owned(),
        peer_id: peer.to_string(),
        source: source.as_str().to_owned(),
    }
}

impl Net {
    /// Turns a `PEER` argument that grants access or aims a command into a peer: a peer
    /// ID, a multiaddr with `/p2p/`, or a name the operator bound (alias book, then the
    /// aliases of contacts). A name some peer merely announces is refused, with a hint.
    pub fn resolve_trusted(&self, spec: &str) -> Result<Target, ControlError> {
        if spec.starts_with('/') || spec.parse::<PeerId>().is_ok() || spec.is_empty() {
            return self.resolve(spec);
        }
        if let Some(peer) = self.aliases().get(spec) {
            return self.resolve(&peer.to_string());
        }
        let contacts: Vec<PeerId> = self
            .node()
            .contacts()
            .iter()
            .filter(|c| !c.alias.is_empty() && c.alias == spec)
            .map(|c| c.peer)
            .collect();
        match contacts.as_slice() {
            [peer] => return self.resolve(&peer.to_string()),
            [] => {}
            several => return Err(super::errors::ambiguous_name(spec, several)),
        }
        Err(ControlError::new(
            ErrorCode::UntrustedName,
            format!(
                "{spec:?} is not an alias you set: names peers announce are not trusted to \
                 pick who gets access or runs commands; give the peer ID, or bind the name \
                 with `pheromone alias {spec} PEER_ID` (or [aliases] in the config)"
            ),
        ))
    }

    /// `pheromone alias NAME PEER`: `peer` is a peer ID or a `/p2p/` address (a name
    /// would make the alias as untrusted as what it names).
    pub fn set_alias(&self, name: &str, peer: &str) -> Result<AliasEntry, ControlError> {
        let peer = if peer.starts_with('/') {
            self.resolve(peer)?.peer
        } else {
            peer.parse::<PeerId>().map_err(|e| {
                ControlError::new(
                    ErrorCode::BadRequest,
                    format!("{peer:?} is not a peer ID ({e}); an alias names a peer ID"),
                )
            })?
        };
        self.aliases().set(name, peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerId {
        pheromone::Keypair::from_seed([n; 32]).peer_id()
    }

    #[test]
    fn the_book_binds_replaces_and_forgets() {
        let config = BTreeMap::from([("web".to_owned(), peer(1))]);
        let mut book = AliasBook::from_config(&config);
        assert_eq!(book.get("web"), Some(peer(1)));
        book.set("db", peer(2)).expect("set");
        book.set("web", peer(3)).expect("replace");
        assert_eq!(book.get("web"), Some(peer(3)));
        let listed: Vec<(String, String)> = book
            .list()
            .into_iter()
            .map(|e| (e.name, e.source))
            .collect();
        assert_eq!(
            listed,
            vec![("db".into(), "cli".into()), ("web".into(), "cli".into())]
        );
        assert!(book.set(&peer(4).to_string(), peer(4)).is_err());
        assert!(book.set("bad name!", peer(4)).is_err());
        book.remove("db").expect("remove");
        assert_eq!(book.remove("db").unwrap_err().code, ErrorCode::NotFound);
    }
}
