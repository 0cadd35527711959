//! The worker's TLS scratch buffers: where records are read, decrypted and encrypted, so no
//! connection owns a buffer for any of that.
//!
//! One pair per thread, made on first use. A worker's sockets all live on its thread and a
//! read or write finishes with the scratch before it returns (what must outlive the call is
//! copied to the connection's `Held` buffers), so any session on the thread may use them and
//! none can see another's bytes half-done. Thread-local rather than passed in: `Read` and
//! `Write`, which the layers above call, have no room for a worker's buffer, and a thread is
//! exactly a worker here. A re-entrant use would be a bug; `RefCell` makes it a panic, which
//! the worker survives, rather than a corruption.

use std::cell::RefCell;

/// The largest TLS record on the wire: a 5-byte header and 2^14 bytes of plaintext with up to
/// 2048 bytes of expansion (RFC 8446 5.2, RFC 5246 6.2.3).
pub(crate) const MAX_RECORD: usize = 5 + 16 * 1024 + 2048;

/// Plaintext encrypted per write: one call's records, and so the most a write can leave held
/// when the socket refuses them.
pub(crate) const SEND_LIMIT: usize = 32 * 1024;

/// Received bytes processed at once: a 64 KiB read behind a partial record (or behind a
/// handshake message being assembled, which rustls bounds at 64 KiB).
const RECV_SCRATCH: usize = 64 * 1024 + MAX_RECORD;

/// Room for `SEND_LIMIT` of plaintext as records: a few records' headers and tags, and a key
/// update rustls may put in front. A write that does not fit takes less plaintext.
const SEAL_SLACK: usize = 1024;

thread_local! {
    static RECV: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static SEND: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's receive scratch.
pub(crate) fn with_recv<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    RECV.with_borrow_mut(|buf| {
        if buf.is_empty() {
            buf.resize(RECV_SCRATCH, 0);
        }
        f(buf)
    })
}

/// Runs `f` with this thread's send scratch, split into room to gather `SEND_LIMIT` bytes of
/// plaintext and room for the records they make.
pub(crate) fn with_send<R>(f: impl FnOnce(&mut [u8], &mut [u8]) -> R) -> R {
    SEND.with_borrow_mut(|buf| {
        if buf.is_empty() {
            buf.resize(2 * SEND_LIMIT + SEAL_SLACK, 0);
        }
        let (stage, out) = buf.split_at_mut(SEND_LIMIT);
        f(stage, out)
    })
}
