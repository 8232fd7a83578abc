//! An upstream that switches protocols, asked or not, recording the request heads it received
//! as they came (lowercased): what the gateway let through to it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A raw TCP upstream that switches protocols: to a request asking for a WebSocket it
/// answers `101` and then `pong` to the client's `ping`; to any other request it answers
/// an unasked-for `101` followed by raw bytes, and so it does to `/h2c`, switching to h2c
/// whatever was asked. Records the request heads it received.
pub struct SwitchingUpstream {
    pub addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl SwitchingUpstream {
    pub fn start() -> SwitchingUpstream {
        let listener = super::ports::listener();
        let addr = listener.local_addr().expect("addr");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopping) = (heads.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let seen = seen.clone();
                thread::spawn(move || switch(conn, &seen));
            }
        });
        SwitchingUpstream { addr, heads, stop }
    }

    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("heads").clone()
    }
}

impl Drop for SwitchingUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake the accept loop
    }
}

fn switch(mut conn: TcpStream, heads: &Mutex<Vec<String>>) {
    // Bounded: a gateway that never closes its side ends this thread after 10 s.
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    heads.lock().expect("heads").push(head.clone());
    if head.starts_with("get /h2c ") {
        let _ = conn.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nRAWBYTES",
        );
    } else if head.contains("\r\nupgrade: websocket\r\n") {
        let _ = conn.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        );
        let mut ping = Vec::new();
        let read = (&buf[end..]).chain(&conn).take(4).read_to_end(&mut ping);
        if read.is_ok() && ping == b"ping" {
            let _ = conn.write_all(b"pong");
        }
    } else {
        let _ = conn.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\nRAWBYTES",
        );
    }
    // Hold the connection until the gateway closes it.
    let _ = conn.read_to_end(&mut Vec::new());
}
