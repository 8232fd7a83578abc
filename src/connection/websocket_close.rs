//! How open WebSocket sessions end when the drain window is over: a process-wide
//! switch the drain throws, and each session's way to its close frame, sent where
//! the gateway stands between two of the upstream's frames.

use super::ws_frames::WsFrames;
use pingora_core::protocols::Stream;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// Set when the drain window is over: open WebSocket sessions close.
static WEBSOCKETS_CLOSING: AtomicBool = AtomicBool::new(false);
static CLOSE_WEBSOCKETS: Notify = Notify::const_new();
/// Status 1001 "going away", the close a server sends when it shuts down.
const GOING_AWAY: [u8; 4] = [0x88, 0x02, 0x03, 0xE9];

/// Ends every open WebSocket session: each gets a close frame where the gateway
/// stands between two of the upstream's frames, then its connection ends.
pub fn close_websockets() {
    WEBSOCKETS_CLOSING.store(true, Ordering::Release);
    CLOSE_WEBSOCKETS.notify_waiters();
}

/// Where a WebSocket session stands with respect to the drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// The drain asked to close: the upstream's frame being written is finished,
    /// then the close frame goes out.
    Closing,
    /// The close frame is out (or could not be): reads end, writes go nowhere.
    Closed,
}

/// One session's frames written so far and its progress toward the close.
pub(super) struct WebSocketState {
    written: WsFrames,
    close: Pin<Box<Notified<'static>>>,
    phase: Phase,
    /// Bytes of the close frame written so far.
    close_sent: usize,
    /// The read side, parked until the frame being written ends.
    reader: Option<Waker>,
}

impl WebSocketState {
    pub(super) fn new() -> Self {
        let mut close = Box::pin(CLOSE_WEBSOCKETS.notified());
        // Registered now, so a close announced before the first poll is not missed.
        close.as_mut().enable();
        WebSocketState {
            written: WsFrames::default(),
            close,
            phase: Phase::Open,
            close_sent: 0,
            reader: None,
        }
    }

    pub(super) fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// How much of a write of `len` bytes goes to the client: all of it while the
    /// session is open, only the rest of the frame being written while it closes,
    /// `None` (it goes nowhere) once that frame is out.
    pub(super) fn passes(&self, len: usize) -> Option<usize> {
        match self.phase {
            Phase::Open => Some(len),
            Phase::Closing if !self.written.at_boundary() => Some(len.min(self.written.frame_left())),
            Phase::Closing | Phase::Closed => None,
        }
    }

    /// Follows bytes written to the client; the frame being finished for a close
    /// wakes the read side, which sends it.
    pub(super) fn wrote(&mut self, bytes: &[u8]) {
        self.written.feed(bytes);
        if self.phase == Phase::Closing && self.written.at_boundary() {
            if let Some(reader) = self.reader.take() {
                reader.wake();
            }
        }
    }

    /// A WebSocket session reads as usual until the drain closes it: then the
    /// upstream's frame being written is finished, a close frame follows, and the
    /// session reads as ended.
    pub(super) fn poll_read(
        &mut self,
        inner: &mut Stream,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.phase == Phase::Open {
            if !WEBSOCKETS_CLOSING.load(Ordering::Acquire) {
                match Pin::new(&mut *inner).poll_read(cx, buf) {
                    Poll::Pending => {}
                    ready => return ready,
                }
                if self.close.as_mut().poll(cx).is_pending() && !WEBSOCKETS_CLOSING.load(Ordering::Acquire) {
                    return Poll::Pending;
                }
            }
            self.phase = Phase::Closing;
        }
        if self.phase == Phase::Closing {
            if !self.written.at_boundary() {
                // The writer finishes the frame and wakes this side.
                self.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
            while self.close_sent < GOING_AWAY.len() {
                match Pin::new(&mut *inner).poll_write(cx, &GOING_AWAY[self.close_sent..]) {
                    Poll::Ready(Ok(n)) if n > 0 => self.close_sent += n,
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(_) => break,
                }
            }
            if Pin::new(&mut *inner).poll_flush(cx).is_pending() {
                return Poll::Pending;
            }
            self.phase = Phase::Closed;
        }
        Poll::Ready(Ok(()))
    }
}
