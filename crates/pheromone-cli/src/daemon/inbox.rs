//! The bounded inbox of direct messages, between the `/pheromone/msg/1.0.0` request
//! handler that fills it and the `recv` requests that drain it.
//!
//! When full, the inbox refuses new messages rather than dropping old ones: the sender is
//! told (its `send` fails with "inbox full") while nothing already acknowledged is lost.
//! A message takes a [`Reservation`] before it is stored, so a handler can check for room
//! and store in two steps while the caps still hold. Each message goes to one `recv` (the
//! first to ask); with no `recv` running they wait in the inbox. Nothing here does network
//! IO.

use pheromone::PeerId;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::Notify;

/// A stored message.
#[derive(Debug, Clone)]
pub struct InboxMessage {
    /// The sender.
    pub from: PeerId,
    /// When it was stored.
    pub received_at: SystemTime,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Why a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxFull {
    /// Messages waiting.
    pub messages: usize,
    /// Bytes waiting or reserved.
    pub bytes: usize,
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
    // A std mutex: nothing awaits while it is held.
    state: Mutex<State>,
    arrived: Notify,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<InboxMessage>,
    /// Bytes of queued messages plus outstanding reservations.
    bytes: usize,
    /// Queued messages plus outstanding reservations.
    count: usize,
}

/// Space held for one message whose body is being read; released on drop unless
/// [`Reservation::store`] used it.
#[derive(Debug)]
pub struct Reservation {
    inbox: Inbox,
    len: usize,
    used: bool,
}

impl Inbox {
    /// An empty inbox holding at most `max_messages` messages and `max_bytes` bytes.
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                max_messages,
                max_bytes,
                state: Mutex::new(State::default()),
                arrived: Notify::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds room for a message of `len` bytes, or says the inbox is full.
    pub fn reserve(&self, len: usize) -> Result<Reservation, InboxFull> {
        let mut state = self.state();
        if state.count >= self.inner.max_messages
            || state.bytes.saturating_add(len) > self.inner.max_bytes
        {
            return Err(InboxFull {
                messages: state.queue.len(),
                bytes: state.bytes,
            });
        }
        state.count += 1;
        state.bytes += len;
        Ok(Reservation {
            inbox: self.clone(),
            len,
            used: false,
        })
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.state().queue.len()
    }

    /// Takes the oldest message, if any.
    pub fn try_next(&self) -> Option<InboxMessage> {
        let mut state = self.state();
        let message = state.queue.pop_front()?;
        state.count -= 1;
        state.bytes -= message.data.len();
        Some(message)
    }

    /// Waits for the oldest message.
    pub async fn next(&self) -> InboxMessage {
        loop {
            let arrived = self.inner.arrived.notified();
            tokio::pin!(arrived);
            // Registered before checking, so a push between the check and the await wakes us.
            arrived.as_mut().enable();
            if let Some(message) = self.try_next() {
                return message;
            }
            arrived.await;
        }
    }
}

impl Reservation {
    /// Stores the message in the space reserved; `data` must be the reserved length.
    pub fn store(mut self, from: PeerId, data: Vec<u8>) {
        let inbox = self.inbox.clone();
        {
            let mut state = inbox.state();
            // The body is exactly the announced length; adjust if a caller ever differs.
            state.bytes = state.bytes - self.len + data.len();
            state.queue.push_back(InboxMessage {
                from,
                received_at: SystemTime::now(),
                data,
            });
        }
        self.used = true;
        inbox.inner.arrived.notify_waiters();
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.used {
            let mut state = self.inbox.state();
            state.count -= 1;
            state.bytes -= self.len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn peer() -> PeerId {
        pheromone::Keypair::from_seed([1; 32]).peer_id()
    }

    #[test]
    fn refuses_when_full_and_frees_on_take() {
        let inbox = Inbox::new(2, 10);
        inbox.reserve(4).expect("room").store(peer(), vec![1; 4]);
        assert_eq!(
            inbox.reserve(7).unwrap_err(),
            InboxFull {
                messages: 1,
                bytes: 4
            }
        );
        let held = inbox.reserve(6).expect("room");
        assert!(inbox.reserve(0).is_err(), "two messages counted");
        drop(held);
        inbox
            .reserve(6)
            .expect("room again")
            .store(peer(), vec![2; 6]);
        assert_eq!(inbox.len(), 2);
        assert_eq!(inbox.try_next().expect("first").data, vec![1; 4]);
        assert_eq!(inbox.try_next().expect("second").data, vec![2; 6]);
        assert!(inbox.try_next().is_none());
        inbox.reserve(10).expect("empty again");
    }

    #[tokio::test]
    async fn next_waits_for_a_message() {
        let inbox = Inbox::new(8, 1024);
        let waiter = tokio::spawn({
            let inbox = inbox.clone();
            async move { inbox.next().await.data }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        inbox
            .reserve(3)
            .expect("room")
            .store(peer(), b"abc".to_vec());
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("in time")
            .expect("join");
        assert_eq!(got, b"abc");
    }

    #[tokio::test]
    async fn each_message_goes_to_one_reader() {
        let inbox = Inbox::new(8, 1024);
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let inbox = inbox.clone();
                tokio::spawn(async move { inbox.next().await.data })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        inbox.reserve(1).expect("room").store(peer(), vec![1]);
        inbox.reserve(1).expect("room").store(peer(), vec![2]);
        let mut got = Vec::new();
        for reader in readers {
            got.extend(
                tokio::time::timeout(Duration::from_secs(5), reader)
                    .await
                    .expect("in time")
                    .expect("join"),
            );
        }
        got.sort();
        assert_eq!(got, [1, 2]);
    }
}
