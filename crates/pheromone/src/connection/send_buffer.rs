//! The ciphertext of one connection waiting for its socket.
//!
//! The Noise sender seals AES-256-GCM out of place: it reads the session's plaintext and
//! writes the frames straight into this buffer. For that the room it writes into must be
//! initialized memory, and zero-filling it before every seal would cost a pass over each
//! byte sent. So this buffer keeps its bytes between uses — a `Vec` that only grows (and
//! shrinks back after an outsized burst) — and tracks the waiting range with two cursors.
//! It frames, encrypts and writes nothing itself.

/// Capacity kept after a burst: beyond it, an emptied buffer gives its memory back.
const KEEP_CAPACITY: usize = 4 * 1024 * 1024;

/// Bytes `data[start..end]` wait for the socket; the rest is room.
pub(super) struct SendBuffer {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl SendBuffer {
    /// An empty buffer with `capacity` bytes of room ready.
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            data: vec![0; capacity],
            start: 0,
            end: 0,
        }
    }

    /// Whether nothing waits.
    pub(super) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The bytes waiting, oldest first.
    pub(super) fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// Drops the first `n` waiting bytes (the socket took them).
    pub(super) fn advance(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.data.len() > KEEP_CAPACITY {
                self.data.truncate(KEEP_CAPACITY);
                self.data.shrink_to_fit();
            }
        }
    }

    /// Lets `fill` write into `len` bytes of room behind the waiting bytes; the first
    /// `Ok(n)` of them then wait too. On an error nothing is added.
    pub(super) fn append_with<E>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        if self.data.len() - self.end < len {
            // Move what waits to the front first: it is usually little (a partial write).
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.data.len() - self.end < len {
                self.data.resize(self.end + len, 0);
            }
        }
        let n = fill(&mut self.data[self.end..self.end + len])?;
        self.end += n.min(len);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(buf: &mut SendBuffer, bytes: &[u8]) {
        buf.append_with(bytes.len(), |room| {
            room.copy_from_slice(bytes);
            Ok::<_, ()>(bytes.len())
        })
        .expect("append");
    }

    #[test]
    fn bytes_come_out_in_order_across_partial_takes_and_growth() {
        let mut buf = SendBuffer::with_capacity(8);
        let mut expected = Vec::new();
        let mut got = Vec::new();
        for round in 0..50u8 {
            let chunk: Vec<u8> = (0..(round as usize * 7 % 23 + 1))
                .map(|i| round ^ i as u8)
                .collect();
            append(&mut buf, &chunk);
            expected.extend_from_slice(&chunk);
            // The socket takes an odd share each time.
            let take = buf.pending().len() * 2 / 3;
            got.extend_from_slice(&buf.pending()[..take]);
            buf.advance(take);
        }
        got.extend_from_slice(buf.pending());
        let rest = buf.pending().len();
        buf.advance(rest);
        assert!(buf.is_empty());
        assert_eq!(got, expected);
    }

    #[test]
    fn a_failed_fill_adds_nothing_and_room_is_reused() {
        let mut buf = SendBuffer::with_capacity(16);
        append(&mut buf, b"abc");
        let failed = buf.append_with(5, |room| {
            room.fill(9);
            Err("no")
        });
        assert_eq!(failed, Err("no"));
        assert_eq!(buf.pending(), b"abc");
        buf.advance(3);
        assert!(buf.is_empty());
        let before = buf.data.as_ptr();
        append(&mut buf, &[1; 16]);
        assert_eq!(buf.data.as_ptr(), before, "no reallocation for what fits");
    }

    #[test]
    fn an_outsized_burst_is_given_back_once_drained() {
        let mut buf = SendBuffer::with_capacity(1024);
        append(&mut buf, &vec![3; KEEP_CAPACITY + 1]);
        buf.advance(KEEP_CAPACITY + 1);
        assert!(buf.data.len() <= KEEP_CAPACITY);
    }
}
