//! How much of a response one connection holds for a client that reads slowly.
//!
//! Pingora reads an HTTP/1.x upstream's body in reads of up to 64 KiB, each kept as
//! its own buffer, and holds about ten of them between the upstream and a client that
//! is not taking them: over half a MiB for each slow reader. A read returns at most
//! what the upstream socket has queued, so a new upstream connection starts with a
//! small receive buffer (reads of at most `2 * NARROW`), and a response gets a full
//! one once its client's TCP has acknowledged `WIDEN_AFTER` bytes of it, or at once
//! when it declares a length of at most `SMALL` (it can hold no more than that) or
//! streams at the application's pace. A large download spends its first 256 KiB in
//! small round trips to the upstream (in-cluster, a few ms); a slow reader holds about
//! ten small reads.
//!
//! A pooled connection keeps its window: a narrow one widens for a later response by
//! the same rule, and a widened one stays wide, since narrowing an established window
//! makes the kernel drop what the upstream may already send into the old one, and each
//! drop costs a 200 ms retransmission.
//!
//! The upstream socket is touched only while Pingora holds its connection for this
//! request: from `connected_to_upstream` until the response body is done.

use super::pace::is_stream;
use http::header;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpSocket;

/// What a new upstream socket may queue until a client shows it keeps up (Linux
/// doubles it for its bookkeeping; reads stay within that).
const NARROW: usize = 8 * 1024;
/// The largest segment an upstream may send. A receive window under about one
/// segment stalls (the sender waits out a timer for each): loopback's 64 KiB segments
/// would need a window eight times `NARROW`; Ethernet's (1460) are below this.
const MAX_SEGMENT: usize = 4096;
/// Bytes of a response the client must have acknowledged before it reads at full size.
const WIDEN_AFTER: u64 = 256 * 1024;
/// A response no longer than this holds at most itself for a slow reader: it is read
/// at full size from its head on, so small and medium answers keep their latency.
const SMALL: u64 = 128 * 1024;
/// How much more is handed to the client before its acknowledgements are looked at
/// again: what its connection buffers counts as handed over, not as taken.
const CHECK_EVERY: u64 = 256 * 1024;
/// The receive buffer given back: Linux caps it at `net.core.rmem_max` (the buffer no
/// longer grows on its own once set).
const WIDE: usize = 4 * 1024 * 1024;

/// Which upstream sockets are narrow, by descriptor, so that a response on a pooled
/// connection already widened costs no system call. Set by the hook that narrows a
/// new socket (every new HTTP/1.x upstream socket passes it, so a descriptor number
/// reused by one is marked afresh), cleared when it is widened. A descriptor past the
/// table counts as narrow: at worst a widen too many.
static NARROW_SOCKETS: [AtomicU64; 1 << 14] = [const { AtomicU64::new(0) }; 1 << 14];

fn mark_narrow(socket: RawFd, narrow: bool) {
    let Some(word) = usize::try_from(socket)
        .ok()
        .and_then(|fd| NARROW_SOCKETS.get(fd / 64))
    else {
        return;
    };
    let bit = 1u64 << (socket % 64);
    if narrow {
        word.fetch_or(bit, Ordering::Relaxed);
    } else {
        word.fetch_and(!bit, Ordering::Relaxed);
    }
}

fn is_narrow(socket: RawFd) -> bool {
    usize::try_from(socket)
        .ok()
        .and_then(|fd| NARROW_SOCKETS.get(fd / 64))
        .is_none_or(|word| word.load(Ordering::Relaxed) & (1u64 << (socket % 64)) != 0)
}

/// For `PeerOptions::upstream_tcp_sock_tweak_hook`: a new HTTP/1.x upstream
/// connection, before it connects.
pub type SocketHook = Arc<dyn Fn(&TcpSocket) -> pingora_error::Result<()> + Send + Sync>;

/// A new upstream connection's window starts narrow (set before connecting, so the
/// upstream never sees a wider one), with segments that fit it.
pub fn narrow_new_connections() -> SocketHook {
    Arc::new(|socket: &TcpSocket| {
        let fd = socket.as_raw_fd();
        set_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, NARROW);
        set_option(fd, libc::IPPROTO_TCP, libc::TCP_MAXSEG, MAX_SEGMENT);
        mark_narrow(fd, true);
        Ok(())
    })
}

/// The upstream socket of a response read narrowly, and its client's progress.
#[derive(Debug)]
pub struct Narrowed {
    socket: RawFd,
    /// Body bytes handed to the client's connection.
    sent: u64,
    /// `sent` at which the client's acknowledgements are looked at next.
    next_check: u64,
    /// What the client's TCP had acknowledged on this connection before this response.
    acked_before: u64,
}

fn set_option(socket: RawFd, level: libc::c_int, name: libc::c_int, value: usize) {
    let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
    // SAFETY: the pointer and length describe `value`, a c_int as these options take.
    // (The socket is one Pingora holds for this request, see the module comment; a
    // closed one would only fail.)
    let rc = unsafe {
        libc::setsockopt(
            socket,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        log::debug!("could not set option {name} of an upstream socket: {e}");
    }
}

/// Shrinking the receive buffer also lowered the window's clamp, which a larger
/// buffer alone leaves where it was: both are raised.
fn widen(socket: RawFd) {
    set_option(socket, libc::SOL_SOCKET, libc::SO_RCVBUF, WIDE);
    set_option(socket, libc::IPPROTO_TCP, libc::TCP_WINDOW_CLAMP, WIDE);
    mark_narrow(socket, false);
}

/// Bytes the client's TCP has acknowledged on its connection (all of its streams, on
/// HTTP/2; TLS records, over TLS).
fn client_acked(session: &Session) -> Option<u64> {
    let digest = session.as_downstream().digest()?;
    Some(digest.socket_digest.as_ref()?.tcp_info()?.tcpi_bytes_acked)
}

impl Narrowed {
    /// The response head from the upstream read through `socket`: `Some` while its
    /// body is to be read narrowly until the client has taken enough.
    pub fn start(socket: RawFd, response: &ResponseHeader, session: &Session) -> Option<Narrowed> {
        if !is_narrow(socket) {
            return None;
        }
        if is_stream(response) {
            widen(socket);
            return None;
        }
        let length = response
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if length.is_some_and(|len| len <= SMALL) {
            widen(socket);
            return None;
        }
        let Some(acked_before) = client_acked(session) else {
            // The client's progress is unknown: read as before.
            widen(socket);
            return None;
        };
        Some(Narrowed {
            socket,
            sent: 0,
            next_check: WIDEN_AFTER,
            acked_before,
        })
    }

    /// A body chunk about to be handed to the client: `true` once the socket is wide
    /// (the client has taken enough), and this is done.
    pub fn sent(&mut self, len: usize, session: &Session) -> bool {
        self.sent += len as u64;
        if self.sent < self.next_check {
            return false;
        }
        self.next_check = self.sent + CHECK_EVERY;
        let taken = client_acked(session).map(|acked| acked.saturating_sub(self.acked_before));
        if taken.is_some_and(|taken| taken < WIDEN_AFTER) {
            return false;
        }
        widen(self.socket);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_are_marked_narrow_until_widened_and_unknown_ones_count_as_narrow() {
        let socket: RawFd = 1000 * 64 + 7;
        assert!(!is_narrow(socket));
        mark_narrow(socket, true);
        assert!(is_narrow(socket) && !is_narrow(socket + 1));
        mark_narrow(socket, false);
        assert!(!is_narrow(socket));
        assert!(is_narrow(1 << 24), "past the table");
        assert!(is_narrow(-1));
    }
}
