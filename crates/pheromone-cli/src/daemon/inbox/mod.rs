//! The durable, bounded inbox of direct messages, between the `/pheromone/msg/*` request
//! handlers that fill it and the `recv` requests that drain it.
//!
//! Delivery contract (docs/cli.md, "Delivery semantics"):
//! - [`Inbox::store`] returns only once the message is in the log on disk, synced
//!   ([`log`]); only then does the handler ack the sender. A message whose id is already
//!   queued or was delivered recently is acked again without being stored twice, so a
//!   sender that retries after a lost ack does not make a duplicate.
//! - [`Inbox::lease`] hands the oldest unleased message to one reader; it stays in the
//!   inbox (and on disk) until [`Inbox::remove`] is called after the reader's client has
//!   acknowledged it. A lease dropped unacknowledged (the client went away) puts the
//!   message back for the next reader.
//! - When full (messages or bytes, counting messages being stored), new messages are
//!   refused and the sender is told; nothing already acknowledged is dropped.
//!
//! The queue lives in memory as well, rebuilt from the log at start. Nothing here does
//! network IO; disk IO runs on blocking threads.

pub mod log;

use super::datadir::DataDirError;
use log::{Log, MessageId, Record};
use pheromone::PeerId;
use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// Ids of delivered messages remembered to refuse duplicates (16 bytes each).
const SEEN_CAP: usize = 16 * 1024;
/// The log is compacted when it is past this size and twice the live messages.
const COMPACT_AT: u64 = 4 << 20;

/// A stored message.
#[derive(Debug, Clone)]
pub struct InboxMessage {
    /// Its id, chosen by the sender (random for senders of `/pheromone/msg/1.0.0`).
    pub id: MessageId,
    /// The sender.
    pub from: PeerId,
    /// When it was stored.
    pub received_at: SystemTime,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Why a message was refused because the inbox is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxFull {
    /// Messages waiting.
    pub messages: usize,
    /// Bytes waiting or being stored.
    pub bytes: usize,
}

/// Why [`Inbox::store`] did not store a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Over the message or byte cap.
    #[error("inbox full ({} messages, {} bytes waiting)", .0.messages, .0.bytes)]
    Full(InboxFull),
    /// The log could not be written; the message is not stored.
    #[error(transparent)]
    Disk(#[from] DataDirError),
}

/// What [`Inbox::store`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// It is on disk now.
    New,
    /// Its id was stored or delivered already; nothing was written.
    Duplicate,
}

/// What opening the inbox found on disk, for the start-up log.
#[derive(Debug, Default)]
pub struct Opened {
    /// Messages waiting from before.
    pub messages: usize,
    /// Bytes cut off a damaged tail of the log.
    pub dropped_tail: u64,
    /// Where a file that was not an inbox log was moved.
    pub moved_aside: Option<std::path::PathBuf>,
}

/// The inbox: a cloneable handle.
#[derive(Debug, Clone)]
pub struct Inbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max_messages: usize,
    max_bytes: usize,
    // Std mutexes: nothing awaits while they are held. Lock order: log, then state.
    log: Mutex<Log>,
    state: Mutex<State>,
    arrived: Notify,
    removed: Notify,
}

#[derive(Debug)]
struct Entry {
    message: InboxMessage,
    leased: bool,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Entry>,
    /// Ids in the queue.
    queued: HashSet<MessageId>,
    /// Ids delivered lately, oldest first, and the same as a set.
    seen: VecDeque<MessageId>,
    seen_set: HashSet<MessageId>,
    /// Bytes of queued messages plus those being stored.
    bytes: usize,
    /// Queued messages plus those being stored.
    count: usize,
}

impl State {
    fn knows(&self, id: &MessageId) -> bool {
        self.queued.contains(id) || self.seen_set.contains(id)
    }

    fn remember(&mut self, id: MessageId) {
        if self.seen_set.insert(id) {
            self.seen.push_back(id);
            if self.seen.len() > SEEN_CAP {
                if let Some(old) = self.seen.pop_front() {
                    self.seen_set.remove(&old);
                }
            }
        }
    }

    fn push(&mut self, message: InboxMessage) {
        self.queued.insert(message.id);
        self.queue.push_back(Entry {
            message,
            leased: false,
        });
    }

    /// What a compacted log holds: the queue and the recent ids.
    fn snapshot(&self) -> Vec<Record> {
        let stored = self.queue.iter().map(|e| Record::Stored {
            id: e.message.id,
            from: e.message.from,
            at_ms: unix_ms(e.message.received_at),
            data: e.message.data.clone(),
        });
        stored
            .chain(self.seen.iter().map(|id| Record::Seen(*id)))
            .collect()
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// A message handed to one reader; see the module docs.
#[derive(Debug)]
pub struct Lease {
    inbox: Inbox,
    message: InboxMessage,
}

impl Lease {
    /// The message.
    pub fn message(&self) -> &InboxMessage {
        &self.message
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = self.inbox.state();
        if let Some(entry) = state
            .queue
            .iter_mut()
            .find(|e| e.message.id == self.message.id)
        {
            entry.leased = false;
            drop(state);
            self.inbox.inner.arrived.notify_waiters();
        }
    }
}

impl Inbox {
    /// Opens the inbox kept in `dir` (creating its log), with what was waiting there,
    /// holding at most `max_messages` messages and `max_bytes` bytes of new ones.
    pub fn open(
        dir: &Path,
        max_messages: usize,
        max_bytes: usize,
    ) -> Result<(Self, Opened), DataDirError> {
        let (mut log, replay) = Log::open(dir)?;
        let mut state = State::default();
        for record in replay.records {
            match record {
                Record::Stored {
                    id,
                    from,
                    at_ms,
                    data,
                } => {
                    if state.knows(&id) {
                        continue;
                    }
                    state.bytes += data.len();
                    state.count += 1;
                    state.push(InboxMessage {
                        id,
                        from,
                        received_at: SystemTime::UNIX_EPOCH + Duration::from_millis(at_ms),
                        data,
                    });
                }
                Record::Removed(id) => {
                    if state.queued.remove(&id) {
                        if let Some(at) = state.queue.iter().position(|e| e.message.id == id) {
                            if let Some(entry) = state.queue.remove(at) {
                                state.bytes -= entry.message.data.len();
                                state.count -= 1;
                            }
                        }
                    }
                    state.remember(id);
                }
                Record::Seen(id) => state.remember(id),
            }
        }
        // Start from a compact log: what replay kept, nothing it dropped.
        log.compact(&state.snapshot())?;
        let opened = Opened {
            messages: state.queue.len(),
            dropped_tail: replay.dropped_tail,
            moved_aside: replay.moved_aside,
        };
        let inbox = Self {
            inner: Arc::new(Inner {
                max_messages,
                max_bytes,
                log: Mutex::new(log),
                state: Mutex::new(state),
                arrived: Notify::new(),
                removed: Notify::new(),
            }),
        };
        Ok((inbox, opened))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.inner.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Messages waiting (leased ones included).
    pub fn len(&self) -> usize {
        self.state().queue.len()
    }

    /// Stores a message on disk, or says why not. Returns once it is synced.
    pub async fn store(
        &self,
        id: MessageId,
        from: PeerId,
        data: Vec<u8>,
    ) -> Result<Stored, StoreError> {
        {
            let mut state = self.state();
            if state.knows(&id) {
                return Ok(Stored::Duplicate);
            }
            if state.count >= self.inner.max_messages
                || state.bytes.saturating_add(data.len()) > self.inner.max_bytes
            {
                return Err(StoreError::Full(InboxFull {
                    messages: state.queue.len(),
                    bytes: state.bytes,
                }));
            }
            state.count += 1;
            state.bytes += data.len();
        }
        let this = self.clone();
        // Runs to the end even if the caller is dropped (the peer went away): the
        // reservation is settled in there either way.
        let stored = tokio::task::spawn_blocking(move || this.store_blocking(id, from, data))
            .await
            .unwrap_or_else(|e| {
                Err(StoreError::Disk(DataDirError::Io {
                    path: log::INBOX_LOG.into(),
                    action: "append to",
                    source: std::io::Error::other(e.to_string()),
                }))
            })?;
        if stored == Stored::New {
            self.inner.arrived.notify_waiters();
        }
        Ok(stored)
    }

    fn store_blocking(
        &self,
        id: MessageId,
        from: PeerId,
        data: Vec<u8>,
    ) -> Result<Stored, StoreError> {
        let len = data.len();
        let release = |inbox: &Inbox| {
            let mut state = inbox.state();
            state.count -= 1;
            state.bytes -= len;
        };
        let mut log = self.log();
        // Checked again under the log lock: the same id may have been stored meanwhile.
        if self.state().knows(&id) {
            release(self);
            return Ok(Stored::Duplicate);
        }
        let received_at = SystemTime::now();
        let record = Record::Stored {
            id,
            from,
            at_ms: unix_ms(received_at),
            data,
        };
        if let Err(e) = log.append(std::slice::from_ref(&record)) {
            release(self);
            return Err(e.into());
        }
        let Record::Stored { data, .. } = record else {
            unreachable!("built above as Stored")
        };
        self.state().push(InboxMessage {
            id,
            from,
            received_at,
            data,
        });
        Ok(Stored::New)
    }

    /// Waits for the oldest message no reader holds, and holds it.
    pub async fn lease(&self) -> Lease {
        loop {
            let arrived = self.inner.arrived.notified();
            tokio::pin!(arrived);
            // Registered before checking, so a store between the check and the await
            // wakes us.
            arrived.as_mut().enable();
            if let Some(lease) = self.try_lease() {
                return lease;
            }
            arrived.await;
        }
    }

    /// The oldest message no reader holds, if any, now held.
    pub fn try_lease(&self) -> Option<Lease> {
        let mut state = self.state();
        let entry = state.queue.iter_mut().find(|e| !e.leased)?;
        entry.leased = true;
        let message = entry.message.clone();
        Some(Lease {
            inbox: self.clone(),
            message,
        })
    }

    /// Whether `id` is held by a reader now.
    pub fn is_leased(&self, id: &MessageId) -> bool {
        self.state()
            .queue
            .iter()
            .any(|e| e.leased && e.message.id == *id)
    }

    /// Removes a message for good (its reader's client has it): on disk first. False if
    /// it was not in the inbox.
    pub async fn remove(&self, id: MessageId) -> Result<bool, DataDirError> {
        let this = self.clone();
        let removed = tokio::task::spawn_blocking(move || this.remove_blocking(id))
            .await
            .unwrap_or_else(|e| {
                Err(DataDirError::Io {
                    path: log::INBOX_LOG.into(),
                    action: "append to",
                    source: std::io::Error::other(e.to_string()),
                })
            })?;
        if removed {
            self.inner.removed.notify_waiters();
        }
        Ok(removed)
    }

    fn remove_blocking(&self, id: MessageId) -> Result<bool, DataDirError> {
        let mut log = self.log();
        if !self.state().queued.contains(&id) {
            return Ok(false);
        }
        log.append(&[Record::Removed(id)])?;
        let mut state = self.state();
        state.queued.remove(&id);
        if let Some(at) = state.queue.iter().position(|e| e.message.id == id) {
            if let Some(entry) = state.queue.remove(at) {
                state.bytes -= entry.message.data.len();
                state.count -= 1;
            }
        }
        state.remember(id);
        let live = state.bytes as u64 + (state.seen.len() as u64) * 32;
        if log.len() > COMPACT_AT && log.len() > 2 * live {
            let snapshot = state.snapshot();
            drop(state);
            if let Err(e) = log.compact(&snapshot) {
                // The log as it is stays valid; compaction is tried again on the next
                // removal.
                tracing::warn!(error = %e, "cannot compact the inbox log");
            }
        }
        Ok(true)
    }

    /// Waits until `id` is no longer in the inbox.
    pub async fn removed(&self, id: &MessageId) {
        loop {
            let removed = self.inner.removed.notified();
            tokio::pin!(removed);
            removed.as_mut().enable();
            if !self.state().queued.contains(id) {
                return;
            }
            removed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        pheromone::Keypair::from_seed([1; 32]).peer_id()
    }

    fn id(n: u8) -> MessageId {
        [n; 16]
    }

    fn open(dir: &Path, messages: usize, bytes: usize) -> Inbox {
        Inbox::open(dir, messages, bytes).expect("open").0
    }

    #[tokio::test]
    async fn refuses_when_full_and_frees_on_remove() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inbox = open(dir.path(), 2, 10);
        inbox.store(id(1), peer(), vec![1; 4]).await.expect("room");
        let full = inbox
            .store(id(2), peer(), vec![2; 7])
            .await
            .expect_err("bytes");
        assert!(
            matches!(
                full,
                StoreError::Full(InboxFull {
                    messages: 1,
                    bytes: 4
                })
            ),
            "{full}"
        );
        inbox.store(id(3), peer(), vec![3; 6]).await.expect("room");
        assert!(
            inbox.store(id(4), peer(), vec![]).await.is_err(),
            "count cap"
        );
        let lease = inbox.try_lease().expect("first");
        assert_eq!(lease.message().data, vec![1; 4]);
        assert!(inbox.remove(id(1)).await.expect("remove"));
        drop(lease);
        inbox
            .store(id(4), peer(), vec![])
            .await
            .expect("room again");
        assert_eq!(inbox.len(), 2);
    }

    #[tokio::test]
    async fn a_message_survives_reopening_until_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inbox = open(dir.path(), 8, 1024);
        inbox
            .store(id(1), peer(), b"one".to_vec())
            .await
            .expect("store");
        inbox
            .store(id(2), peer(), b"two".to_vec())
            .await
            .expect("store");
        // Leased but not removed: still there after a restart.
        let lease = inbox.try_lease().expect("lease");
        assert_eq!(lease.message().id, id(1));
        drop(lease);
        drop(inbox);
        let (inbox, opened) = Inbox::open(dir.path(), 8, 1024).expect("reopen");
        assert_eq!(opened.messages, 2);
        let lease = inbox.try_lease().expect("lease");
        assert_eq!(lease.message().data, b"one");
        assert_eq!(lease.message().from, peer());
        assert!(inbox.remove(id(1)).await.expect("remove"));
        drop(lease);
        drop(inbox);
        let inbox = open(dir.path(), 8, 1024);
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox.try_lease().expect("lease").message().data, b"two");
    }

    #[tokio::test]
    async fn duplicates_are_acked_not_stored_even_after_delivery_and_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inbox = open(dir.path(), 8, 1024);
        assert_eq!(
            inbox
                .store(id(1), peer(), b"x".to_vec())
                .await
                .expect("store"),
            Stored::New
        );
        assert_eq!(
            inbox
                .store(id(1), peer(), b"x".to_vec())
                .await
                .expect("store"),
            Stored::Duplicate
        );
        let lease = inbox.try_lease().expect("lease");
        inbox.remove(lease.message().id).await.expect("remove");
        drop(lease);
        drop(inbox);
        let inbox = open(dir.path(), 8, 1024);
        assert_eq!(
            inbox
                .store(id(1), peer(), b"x".to_vec())
                .await
                .expect("store"),
            Stored::Duplicate
        );
        assert_eq!(inbox.len(), 0);
    }

    #[tokio::test]
    async fn a_dropped_lease_gives_the_message_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inbox = open(dir.path(), 8, 1024);
        inbox.store(id(1), peer(), vec![1]).await.expect("store");
        inbox.store(id(2), peer(), vec![2]).await.expect("store");
        let first = inbox.try_lease().expect("first");
        let second = inbox.try_lease().expect("second");
        assert_eq!((first.message().id, second.message().id), (id(1), id(2)));
        assert!(inbox.try_lease().is_none(), "both held");
        drop(first);
        assert_eq!(inbox.try_lease().expect("back").message().id, id(1));
    }

    #[tokio::test]
    async fn lease_waits_for_a_message_and_removed_wakes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inbox = open(dir.path(), 8, 1024);
        let waiter = tokio::spawn({
            let inbox = inbox.clone();
            async move {
                let lease = inbox.lease().await;
                let got = lease.message().data.clone();
                inbox.removed(&lease.message().id).await;
                got
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        inbox
            .store(id(7), peer(), b"abc".to_vec())
            .await
            .expect("store");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !inbox.is_leased(&id(7)) {
            assert!(tokio::time::Instant::now() < deadline, "never leased");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        inbox.remove(id(7)).await.expect("remove");
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("in time")
            .expect("join");
        assert_eq!(got, b"abc");
    }

    #[tokio::test]
    async fn the_log_is_compacted_and_stays_correct() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inbox = open(dir.path(), 8, 64 << 20);
        let big = vec![5u8; 1 << 20];
        for n in 0..6u8 {
            inbox
                .store(id(n), peer(), big.clone())
                .await
                .expect("store");
            let lease = inbox.try_lease().expect("lease");
            inbox.remove(lease.message().id).await.expect("remove");
        }
        inbox
            .store(id(100), peer(), b"kept".to_vec())
            .await
            .expect("store");
        let size = std::fs::metadata(dir.path().join(log::INBOX_LOG))
            .expect("meta")
            .len();
        assert!(size < 3 << 20, "compacted, got {size} bytes");
        drop(inbox);
        let inbox = open(dir.path(), 8, 64 << 20);
        assert_eq!(inbox.len(), 1);
        for n in 0..6u8 {
            assert_eq!(
                inbox.store(id(n), peer(), vec![]).await.expect("store"),
                Stored::Duplicate,
                "id {n} remembered across compaction"
            );
        }
    }
}
