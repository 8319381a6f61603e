//! Receive buffers that are reused instead of freed and reallocated.
//!
//! Decrypted Noise frames are handed to streams as slices of the buffer the socket was
//! read into, so a buffer stays alive until every stream has read its part. Allocating a
//! fresh buffer whenever the current one is still shared made the allocator return memory
//! to the kernel and fault it back in on every read (a tenth of the CPU time of a bulk
//! transfer). This keeps a few buffers in rotation and takes back whichever one the
//! streams have let go of, with `BytesMut::try_reclaim`.
//!
//! A buffer a stream still holds a slice of is never forgotten: [`ReadBuffers::held`]
//! counts every buffer until it is free again, so that what a connection pins is known.
//! A peer that sends frames just large enough to be handed out as slices, on a stream
//! nobody reads, would otherwise pin a whole buffer per frame; when the count passes the
//! connection's memory limit the driver has the session copy those slices out
//! (`Session::unshare_received`), and the buffers come back.

use bytes::BytesMut;
use pheromone_core::noise::frame;

/// Size of each buffer: several socket reads fit before rotating.
const BUFFER_CAPACITY: usize = 1024 * 1024;
/// Free buffers kept for reuse besides the current one; beyond that they are freed.
const MAX_SPARES: usize = 8;
/// Room kept free behind a read for the rest of a partial frame: one whole Noise frame
/// with its length prefix.
pub(super) const FRAME_ROOM: usize = frame::LEN_PREFIX + frame::MAX_FRAME_LEN;

/// The current receive buffer, and every earlier one: still held by streams, or free
/// and kept for reuse.
pub(super) struct ReadBuffers {
    current: BytesMut,
    spares: Vec<BytesMut>,
    /// Bytes written into the current buffer since it became current: the part of it that
    /// is in use (the rest of its capacity is untouched address space, not memory held,
    /// which is why an idle connection's 1 MiB buffer counts as the little it received).
    filled: usize,
}

impl ReadBuffers {
    /// Starts with `leftover` (bytes read during the handshake) in the current buffer.
    pub(super) fn new(leftover: BytesMut) -> Self {
        Self {
            filled: leftover.len(),
            current: leftover,
            spares: Vec::new(),
        }
    }

    /// Records that a read put `n` more bytes into the current buffer.
    pub(super) fn note_read(&mut self, n: usize) {
        self.filled += n;
    }

    /// The buffer that holds unprocessed ciphertext (at most a partial frame between reads).
    pub(super) fn current(&mut self) -> &mut BytesMut {
        &mut self.current
    }

    /// Most bytes the next read may put into the current buffer: its spare room less one
    /// whole Noise frame. A read that filled the buffer to the brim would leave a partial
    /// frame with no room for its rest, and the frame decoder would then grow the buffer
    /// with a fresh allocation outside this pool — allocated and freed at every rotation,
    /// which made the allocator hand the memory back to the kernel and fault it in again.
    pub(super) fn read_limit(&self) -> usize {
        (self.current.capacity() - self.current.len()).saturating_sub(FRAME_ROOM)
    }

    /// Makes room for at least `additional` more bytes in the current buffer, preferring a
    /// buffer the streams no longer use over a new allocation. A partial frame waiting in
    /// the current buffer moves along (it is smaller than one Noise frame).
    pub(super) fn reserve(&mut self, additional: usize) {
        if self.current.capacity() - self.current.len() >= additional {
            return;
        }
        if self.current.try_reclaim(additional) {
            // Reused from its start: what is in use is what is still in it.
            self.filled = self.current.len();
            return;
        }
        let reusable = self
            .spares
            .iter_mut()
            .position(|b| b.try_reclaim(BUFFER_CAPACITY));
        let mut next = match reusable {
            Some(i) => self.spares.swap_remove(i),
            None => BytesMut::with_capacity(BUFFER_CAPACITY.max(additional + self.current.len())),
        };
        next.clear();
        next.extend_from_slice(&self.current);
        self.filled = next.len();
        let mut previous = std::mem::replace(&mut self.current, next);
        previous.clear();
        self.spares.push(previous);
        self.trim(usize::MAX);
    }

    /// Bytes of receive buffer this connection holds: what the current buffer was filled
    /// with, and every earlier buffer whole, free or still holding a slice some stream has
    /// not read (rotated buffers were filled).
    pub(super) fn held(&self) -> usize {
        self.filled
            + self
                .spares
                .iter()
                .map(|b| b.capacity().max(BUFFER_CAPACITY))
                .sum::<usize>()
    }

    /// Frees spare buffers nobody holds a slice of, beyond [`MAX_SPARES`] or beyond what
    /// keeps [`held`](Self::held) under `limit`. Buffers still shared stay (they are
    /// memory held all the same, and become reusable once read).
    pub(super) fn trim(&mut self, limit: usize) {
        let mut held = self.held();
        let mut free_kept = 0;
        self.spares.retain_mut(|b| {
            let free = b.try_reclaim(BUFFER_CAPACITY);
            if !free {
                return true;
            }
            if free_kept < MAX_SPARES && held <= limit {
                free_kept += 1;
                return true;
            }
            held -= b.capacity().max(BUFFER_CAPACITY);
            false
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;

    /// Fills the current buffer and hands all of it out, as decryption does.
    fn fill_and_hand_out(buffers: &mut ReadBuffers) -> bytes::Bytes {
        let current = buffers.current();
        let room = current.capacity() - current.len();
        current.extend_from_slice(&vec![7u8; room]);
        current.split().freeze()
    }

    #[test]
    fn buffers_come_back_once_their_slices_are_dropped() {
        let mut buffers = ReadBuffers::new(BytesMut::new());
        buffers.reserve(1000);
        let first = buffers.current().as_ptr();
        let held = fill_and_hand_out(&mut buffers);
        // Still shared with `held`: a second buffer is needed.
        buffers.reserve(1000);
        assert_ne!(buffers.current().as_ptr(), first);
        let held_too = fill_and_hand_out(&mut buffers);
        drop(held);
        // The first buffer is free again and is taken back instead of allocating.
        buffers.reserve(1000);
        assert_eq!(buffers.current().as_ptr(), first);
        drop(held_too);
    }

    #[test]
    fn a_full_read_leaves_room_for_the_rest_of_its_last_frame() {
        let mut buffers = ReadBuffers::new(BytesMut::new());
        buffers.reserve(256 * 1024 + FRAME_ROOM);
        let limit = buffers.read_limit();
        let before = (buffers.current().as_ptr(), buffers.current().capacity());
        // A read of everything allowed whose last bytes start the largest frame there is.
        let current = buffers.current();
        current.extend_from_slice(&vec![0u8; limit - 3]);
        current.extend_from_slice(&[0xff, 0xff, 0]);
        current.advance(limit - 3);
        assert_eq!(frame::decode(current, frame::MAX_FRAME_LEN), Ok(None));
        // The decoder found room for the rest where it was: no allocation.
        let after = buffers.current();
        assert_eq!(after.as_ptr(), before.0.wrapping_add(limit - 3));
        assert!(after.capacity() >= frame::LEN_PREFIX + frame::MAX_FRAME_LEN);
    }

    #[test]
    fn buffers_still_held_are_counted_until_free_and_trimmed_after() {
        let mut buffers = ReadBuffers::new(BytesMut::new());
        let mut held = Vec::new();
        for _ in 0..20 {
            buffers.reserve(1000);
            held.push(fill_and_hand_out(&mut buffers));
        }
        // Twenty buffers hold a slice each: none is forgotten (the current one counts what
        // reads put in it, and this test wrote past the driver).
        assert!(buffers.held() >= 19 * BUFFER_CAPACITY, "{}", buffers.held());
        held.clear();
        buffers.trim(2 * BUFFER_CAPACITY);
        assert!(buffers.held() <= 2 * BUFFER_CAPACITY, "{}", buffers.held());
    }

    #[test]
    fn a_partial_frame_moves_to_the_next_buffer() {
        let mut buffers = ReadBuffers::new(BytesMut::from(&b"abc"[..]));
        let held = fill_and_hand_out(&mut buffers);
        buffers.current().extend_from_slice(b"partial");
        let _held = held;
        buffers.reserve(BUFFER_CAPACITY);
        assert_eq!(&buffers.current()[..], b"partial");
    }
}
