//! Follows what the gateway writes to a client after a WebSocket upgrade (the
//! 101 head, then the upstream's frames, passed through as raw bytes in chunks
//! of any size) just far enough to know when it stands between two frames: the
//! only place a close frame of the gateway's own can go without corrupting one.

#[derive(Debug, Default)]
pub struct WsFrames {
    /// The last bytes of the 101 response head, until its blank line was written.
    head_tail: u32,
    head_done: bool,
    header: [u8; 14],
    header_have: usize,
    payload_left: u64,
}

impl WsFrames {
    /// Nothing of a frame has been written but not finished.
    pub fn at_boundary(&self) -> bool {
        self.head_done && self.header_have == 0 && self.payload_left == 0
    }

    /// How many bytes may still be written without passing the end of the frame
    /// in progress (inside a frame header, one at a time: its length is not known yet).
    pub fn frame_left(&self) -> usize {
        if self.header_have > 0 || !self.head_done {
            1
        } else {
            usize::try_from(self.payload_left).unwrap_or(usize::MAX)
        }
    }

    /// Takes the next bytes written to the client, in order.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !self.head_done {
            let Some((&b, rest)) = bytes.split_first() else {
                return;
            };
            bytes = rest;
            self.head_tail = self.head_tail << 8 | u32::from(b);
            self.head_done = self.head_tail == u32::from_be_bytes(*b"\r\n\r\n");
        }
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len() as u64);
                self.payload_left -= n;
                bytes = &bytes[n as usize..];
                continue;
            }
            self.header[self.header_have] = bytes[0];
            self.header_have += 1;
            bytes = &bytes[1..];
            if let Some(len) = self.payload_len() {
                self.header_have = 0;
                self.payload_left = len;
            }
        }
    }

    /// The payload length once the frame header is whole.
    fn payload_len(&self) -> Option<u64> {
        let h = &self.header[..self.header_have];
        let (&b1, rest) = h.get(1).zip(h.get(2..))?;
        let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
        let (ext, len) = match b1 & 0x7f {
            126 => (
                2,
                rest.get(..2).map(|b| u64::from(u16::from_be_bytes([b[0], b[1]]))),
            ),
            127 => (
                8,
                rest.get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes),
            ),
            n => (0, Some(u64::from(n))),
        };
        (rest.len() == ext + mask).then_some(len).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_after_the_head_and_between_frames_of_any_length() {
        let mut frames = WsFrames::default();
        frames.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n");
        assert!(!frames.at_boundary(), "the head is not over");
        frames.feed(b"\r\n");
        assert!(frames.at_boundary());
        let mut long = vec![0x82, 126, 0x01, 0x00];
        long.extend(vec![0u8; 256]);
        let mut stream = vec![0x81, 2, b'h', b'i'];
        stream.extend(&long);
        stream.extend([0x82, 127, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3]);
        for (i, b) in stream.iter().enumerate() {
            frames.feed(std::slice::from_ref(b));
            let ends = [3, 3 + long.len(), stream.len() - 1];
            assert_eq!(frames.at_boundary(), ends.contains(&i), "after byte {i}");
        }
    }
}
