//! Follows the frames a client sends on an HTTP/2 connection just far enough to
//! know when a header block (HEADERS, then CONTINUATION up to END_HEADERS) is in
//! progress, so the header deadline can hold on HTTP/2 as it does on HTTP/1.1.

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

#[derive(Debug)]
pub struct H2Frames {
    preface_left: usize,
    header: [u8; FRAME_HEADER_LEN],
    header_have: usize,
    payload_left: usize,
    /// The frame being read carries END_HEADERS of a header block.
    ends_block: bool,
    in_block: bool,
    blocks_started: u64,
    blocks_done: u64,
}

impl Default for H2Frames {
    fn default() -> Self {
        H2Frames {
            preface_left: PREFACE_LEN,
            header: [0; FRAME_HEADER_LEN],
            header_have: 0,
            payload_left: 0,
            ends_block: false,
            in_block: false,
            blocks_started: 0,
            blocks_done: 0,
        }
    }
}

impl H2Frames {
    /// A header block has started and not yet ended.
    pub fn in_block(&self) -> bool {
        self.in_block
    }

    /// Header blocks begun so far (a new one needs a deadline of its own).
    pub fn blocks_started(&self) -> u64 {
        self.blocks_started
    }

    /// Header blocks received whole so far.
    pub fn blocks_done(&self) -> u64 {
        self.blocks_done
    }

    /// Takes the next bytes the client sent, in order.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(bytes.len());
                self.preface_left -= n;
                bytes = &bytes[n..];
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
                if self.payload_left == 0 {
                    self.frame_done();
                }
            } else {
                let n = (FRAME_HEADER_LEN - self.header_have).min(bytes.len());
                self.header[self.header_have..self.header_have + n].copy_from_slice(&bytes[..n]);
                self.header_have += n;
                bytes = &bytes[n..];
                if self.header_have == FRAME_HEADER_LEN {
                    self.header_have = 0;
                    self.frame_started();
                }
            }
        }
    }

    fn frame_started(&mut self) {
        let [l0, l1, l2, kind, flags, ..] = self.header;
        self.payload_left = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
        self.ends_block = matches!(kind, HEADERS | CONTINUATION) && flags & END_HEADERS != 0;
        if kind == HEADERS {
            self.in_block = true;
            self.blocks_started += 1;
        }
        if self.payload_left == 0 {
            self.frame_done();
        }
    }

    fn frame_done(&mut self) {
        if self.in_block && self.ends_block {
            self.in_block = false;
            self.blocks_done += 1;
        }
        self.ends_block = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn a_header_block_spans_headers_and_continuations_byte_by_byte() {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(0x4, 0, &[0; 6])); // SETTINGS
        let block_start = bytes.len();
        bytes.extend(frame(HEADERS, 0, b"abc"));
        bytes.extend(frame(CONTINUATION, END_HEADERS, b"de"));
        bytes.extend(frame(0x0, 1, b"body")); // DATA
        let mut frames = H2Frames::default();
        let mut started_at = None;
        for (i, b) in bytes.iter().enumerate() {
            frames.feed(std::slice::from_ref(b));
            if frames.in_block() && started_at.is_none() {
                started_at = Some(i);
            }
        }
        assert_eq!(started_at, Some(block_start + FRAME_HEADER_LEN - 1));
        assert!(!frames.in_block());
        assert_eq!(frames.blocks_done(), 1);
    }

    #[test]
    fn headers_with_end_headers_completes_in_one_read() {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(HEADERS, END_HEADERS | 0x1, b"xyz"));
        bytes.extend(frame(HEADERS, 0, b"partial"));
        let mut frames = H2Frames::default();
        frames.feed(&bytes);
        assert_eq!(frames.blocks_done(), 1);
        assert_eq!(
            frames.blocks_started(),
            2,
            "a new block in the same read is seen as new"
        );
        assert!(frames.in_block(), "the second block is still open");
    }
}
