//! Where client frames begin and end, followed as bytes arrive.
//!
//! tungstenite keeps unparsed input and half-assembled messages inside its `WebSocket`, where we
//! cannot see them. To free that state on idle connections we must know it is empty: it is
//! when every byte read so far belongs to a complete frame and no fragmented data message is
//! open. This tracker reads only frame headers (skipping payloads) to know exactly that. It
//! validates nothing: tungstenite rejects malformed frames and the connection ends anyway.
//!
//! It also counts the messages those frames complete (each control frame, each final data
//! frame): one per `Message` tungstenite's `read` will return. When tungstenite has returned
//! as many as arrived and the socket is drained, another `read` could only end in
//! `WouldBlock`, after zero-filling tungstenite's read buffer; the connection skips it.

/// Frame-boundary state of one client stream.
#[derive(Debug, Clone, Default)]
pub struct Boundary {
    /// Bytes of the current header seen so far (a client header is 6 to 14 bytes).
    header: [u8; 14],
    have: u8,
    /// Payload bytes of the current frame still to come.
    payload_left: u64,
    /// A data message began with a non-final frame and its final frame has not arrived.
    fragmented: bool,
    /// The current frame, once its payload is in, completes a message (see `messages`).
    ends_message: bool,
    /// The current frame carries data (not a control frame).
    data: bool,
    /// Payload bytes of the data message not yet complete (every fragment so far, the current
    /// frame's included): what the parser holds for this peer until the message is returned.
    unfinished: u64,
    /// Messages completed so far: control frames and final data frames. Wrapping: only
    /// compared for equality with a count kept the same way.
    messages: u32,
}

impl Boundary {
    /// Follows `data`, the next bytes of the stream.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.payload_left > 0 {
                let skip = self.payload_left.min(data.len() as u64);
                self.payload_left -= skip;
                if self.data {
                    self.unfinished += skip;
                }
                data = &data[skip as usize..];
                if self.payload_left == 0 {
                    self.end_frame();
                }
                continue;
            }
            self.header[self.have as usize] = data[0];
            self.have += 1;
            data = &data[1..];
            if let Some(len) = self.header_complete() {
                self.end_header(len);
            }
        }
    }

    /// The header's payload length once all of the header has arrived.
    fn header_complete(&self) -> Option<u64> {
        let have = self.have as usize;
        if have < 2 {
            return None;
        }
        let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        let (extended, len7) = match self.header[1] & 0x7f {
            126 => (2, None),
            127 => (8, None),
            n => (0, Some(n as u64)),
        };
        if have < 2 + extended + mask {
            return None;
        }
        Some(match len7 {
            Some(n) => n,
            None => self.header[2..2 + extended]
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | *b as u64),
        })
    }

    fn end_header(&mut self, len: u64) {
        let fin = self.header[0] & 0x80 != 0;
        let opcode = self.header[0] & 0x0f;
        if opcode < 8 {
            // Data frames (continuation, text, binary, reserved): fin ends a message.
            self.fragmented = !fin;
        }
        self.ends_message = fin || opcode >= 8;
        self.data = opcode < 8;
        self.have = 0;
        self.payload_left = len;
        if len == 0 {
            self.end_frame();
        }
    }

    fn end_frame(&mut self) {
        if self.ends_message {
            self.messages = self.messages.wrapping_add(1);
            if self.data {
                self.unfinished = 0;
            }
        }
    }

    /// Payload bytes received of the data message still in progress (0 between messages).
    pub fn unfinished(&self) -> u64 {
        self.unfinished
    }

    /// Messages the bytes seen so far complete: control frames and final data frames, the
    /// count of `Message`s tungstenite's `read` returns once it has parsed all of them.
    pub fn messages(&self) -> u32 {
        self.messages
    }

    /// Payload bytes of the current frame not seen yet (0 between frames or inside a header).
    pub fn payload_left(&self) -> u64 {
        self.payload_left
    }

    /// Every byte seen belongs to a complete frame and no fragmented message is open.
    pub fn at_rest(&self) -> bool {
        self.have == 0 && self.payload_left == 0 && !self.fragmented
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(first: u8, len: usize) -> Vec<u8> {
        testkit::client_frame(first, &vec![0x55; len], true)
    }

    #[test]
    fn complete_frames_rest_partial_ones_do_not() {
        for len in [0, 5, 125, 126, 300, 65535, 65536, 70000] {
            let bytes = frame(0x82, len);
            let mut b = Boundary::default();
            assert!(b.at_rest());
            for split in [1, 2, 3, 7, bytes.len() - 1] {
                if split >= bytes.len() {
                    continue;
                }
                let mut b = Boundary::default();
                b.feed(&bytes[..split]);
                assert!(!b.at_rest(), "len {len} split {split}");
                b.feed(&bytes[split..]);
                assert!(b.at_rest(), "len {len} split {split}");
            }
            b.feed(&bytes);
            assert!(b.at_rest());
        }
    }

    #[test]
    fn byte_at_a_time_matches_whole_feed() {
        let mut stream = frame(0x81, 3);
        stream.extend(frame(0x89, 10));
        stream.extend(frame(0x82, 200));
        let mut b = Boundary::default();
        for byte in &stream {
            b.feed(std::slice::from_ref(byte));
        }
        assert!(b.at_rest());
    }

    #[test]
    fn counts_the_messages_tungstenite_will_return() {
        let mut stream = frame(0x81, 3); // text
        stream.extend(frame(0x89, 0)); // ping, empty: complete at its header
        stream.extend(frame(0x02, 200)); // binary, not final
        stream.extend(frame(0x8a, 5)); // pong between fragments
        stream.extend(frame(0x80, 70_000)); // final continuation
        stream.extend(frame(0x82, 0)); // empty binary
        stream.extend(frame(0x88, 2)); // close
        let whole = {
            let mut b = Boundary::default();
            b.feed(&stream);
            b.messages()
        };
        assert_eq!(whole, 6);
        for chunk in [1, 2, 7, 100, 4096] {
            let mut b = Boundary::default();
            let mut counts = Vec::new();
            for piece in stream.chunks(chunk) {
                b.feed(piece);
                counts.push(b.messages());
            }
            assert_eq!(b.messages(), whole, "chunk {chunk}");
            assert!(counts.windows(2).all(|w| w[0] <= w[1]));
        }
        // Not one byte early: the last payload byte is what completes the message.
        let text = frame(0x81, 3);
        let mut b = Boundary::default();
        b.feed(&text[..text.len() - 1]);
        assert_eq!(b.messages(), 0);
        b.feed(&text[text.len() - 1..]);
        assert_eq!(b.messages(), 1);
    }

    #[test]
    fn counts_the_payload_of_the_message_in_progress_across_fragments() {
        let mut b = Boundary::default();
        let first = frame(0x02, 1000); // binary, not final
        b.feed(&first[..first.len() - 400]);
        assert_eq!(b.unfinished(), 600);
        b.feed(&first[first.len() - 400..]);
        assert_eq!(b.unfinished(), 1000);
        b.feed(&frame(0x89, 100)); // a ping in between holds nothing of the message
        assert_eq!(b.unfinished(), 1000);
        let last = frame(0x80, 500);
        b.feed(&last[..last.len() - 1]);
        assert_eq!(b.unfinished(), 1499);
        b.feed(&last[last.len() - 1..]);
        assert_eq!(b.unfinished(), 0, "complete: handed to the parser's caller");
        b.feed(&frame(0x82, 70_000)[..30_000]);
        assert_eq!(b.unfinished(), 30_000 - 14, "header bytes are not payload");
    }

    #[test]
    fn open_fragmented_message_is_not_at_rest_even_between_frames() {
        let mut b = Boundary::default();
        b.feed(&frame(0x01, 4)); // text, not final
        assert!(!b.at_rest());
        b.feed(&frame(0x89, 2)); // a ping in between
        assert!(!b.at_rest());
        b.feed(&frame(0x00, 4)); // continuation, not final
        assert!(!b.at_rest());
        b.feed(&frame(0x80, 4)); // final continuation
        assert!(b.at_rest());
    }
}
