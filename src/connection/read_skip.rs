//! When another tungstenite `read` could only end in `WouldBlock`, so we skip it.
//!
//! tungstenite's `read` zero-fills its read buffer before it asks the stream for bytes, so a
//! `read` made when the socket is empty and every arrived message has been returned costs that
//! fill for nothing, once per readiness event. Epoll is edge-triggered and reports every new
//! arrival, so after a short socket read the socket stays empty until the next event. This
//! type keeps the two facts that make the call useless:
//! * the socket is drained (the last read returned less than it asked for), and
//! * tungstenite has returned as many messages as the received bytes complete (counted by
//!   `protocol::boundary::Boundary` as bytes arrive, compared here with the messages returned).
//!
//! Skipping while a complete message still sits in tungstenite's buffer would strand it until
//! the peer sends again, so the comparison is exact (wrapping counts, equality only).
//!
//! It also keeps the read quota: a peer that streams megabytes gets at most `QUOTA` bytes read
//! per turn, then the worker serves everyone else before its next turn, so one busy peer
//! cannot stretch a loop pass (and every other connection's latency) to seconds.

/// Socket bytes read for one connection per turn (a readiness event or a read-list retry).
pub(crate) const QUOTA: u32 = 256 * 1024;

/// What the stream knows about whether reading on could yield anything.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ReadSkip {
    /// The last socket read returned fewer bytes than asked for: until the next readiness event,
    /// another read would only return `WouldBlock`.
    drained: bool,
    /// Messages tungstenite has returned (wrapping, like `Boundary::messages`).
    returned: u32,
    /// Socket bytes read this turn.
    taken: u32,
}

impl ReadSkip {
    /// A new turn: a readiness event arrived (the socket may hold new bytes), or the worker
    /// came back to a connection it left with input waiting.
    pub fn readiness(&mut self) {
        self.drained = false;
        self.taken = 0;
    }

    /// A socket read asked for `asked` bytes and got `got`.
    pub fn socket_read(&mut self, got: usize, asked: usize) {
        // 0 is end of stream, not an empty socket: the next read must report it again.
        self.drained = got > 0 && got < asked;
        self.taken = self.taken.saturating_add(got as u32);
    }

    /// This turn's quota is used up: further input waits for the next turn.
    pub fn quota_used(&self) -> bool {
        self.taken >= QUOTA
    }

    /// The socket is known to be empty until the next readiness event.
    pub fn socket_drained(&self) -> bool {
        self.drained
    }

    /// tungstenite returned a message.
    pub fn message_returned(&mut self) {
        self.returned = self.returned.wrapping_add(1);
    }

    /// Every one of the `arrived` messages has been returned.
    pub fn all_returned(&self, arrived: u32) -> bool {
        self.returned == arrived
    }

    /// Another `read` could only end in `WouldBlock`: the socket is drained, nothing read from
    /// it waits to be handed on (`nothing_ahead`), and every one of the `arrived` messages has
    /// been returned.
    pub fn nothing_to_parse(&self, arrived: u32, nothing_ahead: bool) -> bool {
        self.drained && nothing_ahead && self.all_returned(arrived)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_read_drains_until_the_next_readiness_event() {
        let mut skip = ReadSkip::default();
        assert!(!skip.socket_drained());
        skip.socket_read(4096, 4096);
        assert!(!skip.socket_drained(), "a full read may leave more behind");
        skip.socket_read(100, 4096);
        assert!(skip.socket_drained());
        skip.readiness();
        assert!(!skip.socket_drained());
        skip.socket_read(0, 4096);
        assert!(
            !skip.socket_drained(),
            "end of stream must be read again, not skipped"
        );
    }

    #[test]
    fn skips_only_when_every_arrived_message_was_returned() {
        let mut skip = ReadSkip::default();
        skip.socket_read(10, 4096);
        assert!(skip.nothing_to_parse(0, true));
        assert!(
            !skip.nothing_to_parse(1, true),
            "a message still inside tungstenite"
        );
        skip.message_returned();
        assert!(skip.nothing_to_parse(1, true));
        assert!(
            !skip.nothing_to_parse(1, false),
            "bytes read ahead still to hand on"
        );
        skip.readiness();
        assert!(
            !skip.nothing_to_parse(1, true),
            "new bytes may have arrived"
        );
    }

    #[test]
    fn the_quota_is_per_turn() {
        let mut skip = ReadSkip::default();
        skip.socket_read(QUOTA as usize - 1, QUOTA as usize);
        assert!(!skip.quota_used());
        skip.socket_read(1, 4096);
        assert!(skip.quota_used());
        skip.readiness();
        assert!(!skip.quota_used());
    }

    #[test]
    fn counts_compare_across_wrapping() {
        let mut skip = ReadSkip {
            drained: true,
            returned: u32::MAX,
            taken: 0,
        };
        skip.message_returned();
        assert!(skip.nothing_to_parse(0, true));
        assert!(!skip.nothing_to_parse(u32::MAX, true));
    }
}
