//! Bytes a TLS session must keep between calls (a partial record, plaintext the caller had no
//! room for, records the socket refused), in a buffer that exists only while it holds any.
//!
//! Everything else a session touches lives in the worker's scratch buffers (`scratch`), so
//! what a connection keeps is what it cannot hand on yet, and nothing once it is quiet: the
//! buffer is freed, not cleared, as soon as its last byte is taken.

/// `buf[start..]` is held; an empty `Held` owns no allocation.
#[derive(Debug, Default)]
pub(crate) struct Held {
    buf: Vec<u8>,
    start: usize,
}

impl Held {
    pub fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..]
    }

    /// Heap bytes this buffer owns (what the connection is charged for).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Appends `bytes` (nothing is allocated for none).
    pub fn extend(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.start > 0 {
            // What was taken goes before anything is added, so the buffer never grows by it.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Appends `len` bytes written by `fill`, which returns how many it wrote.
    pub fn extend_with<E>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<(), E> {
        let end = self.buf.len();
        self.buf.resize(end + len, 0);
        let written = fill(&mut self.buf[end..]);
        let keep = end + *written.as_ref().unwrap_or(&0);
        self.buf.truncate(keep);
        if self.is_empty() {
            self.clear();
        }
        written.map(|_| ())
    }

    /// Forgets the first `n` bytes; the buffer is freed once nothing is left.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
        if self.is_empty() {
            self.clear();
        }
    }

    /// Moves as much as fits into `dst`.
    pub fn take(&mut self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.len());
        dst[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.consume(n);
        n
    }

    /// Drops everything held and the allocation with it.
    pub fn clear(&mut self) {
        *self = Held::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_is_freed_as_soon_as_its_last_byte_is_taken() {
        let mut held = Held::default();
        held.extend(&[]);
        assert_eq!(held.capacity(), 0, "nothing held, nothing allocated");
        held.extend(b"hello world");
        let mut five = [0u8; 5];
        assert_eq!(held.take(&mut five), 5);
        assert_eq!(&five, b"hello");
        assert_eq!(held.bytes(), b" world");
        held.extend(b"!");
        assert_eq!(held.bytes(), b" world!");
        held.consume(7);
        assert!(held.is_empty());
        assert_eq!(held.capacity(), 0);
    }

    #[test]
    fn extend_with_keeps_only_what_was_written() {
        let mut held = Held::default();
        held.extend_with(10, |dst| {
            dst[..3].copy_from_slice(b"abc");
            Ok::<_, ()>(3)
        })
        .unwrap();
        assert_eq!(held.bytes(), b"abc");
        assert!(held.extend_with(10, |_| Err::<usize, _>(())).is_err());
        assert_eq!(held.bytes(), b"abc", "a failed fill adds nothing");
        held.consume(3);
        held.extend_with(4, |_| Ok::<_, ()>(0)).unwrap();
        assert_eq!(held.capacity(), 0);
    }
}
