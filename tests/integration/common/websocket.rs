//! A WebSocket echo upstream: it answers the upgrade, then sends back every frame's payload
//! as an unmasked text frame (payloads under 126 bytes: all the tests send).

use super::request::read_request;
use std::io::{BufReader, Read, Write};
use std::net::SocketAddr;

pub fn start_websocket_echo() -> SocketAddr {
    let listener = super::ports::listener();
    let addr = listener.local_addr().expect("ws addr");
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut conn = conn;
                if read_request(&mut reader).is_none() {
                    return;
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
                );
                let mut header = [0u8; 2];
                while reader.read_exact(&mut header).is_ok() {
                    let len = usize::from(header[1] & 0x7f);
                    let mut mask = [0u8; 4];
                    let mut payload = vec![0u8; len];
                    if reader
                        .read_exact(&mut mask)
                        .and_then(|_| reader.read_exact(&mut payload))
                        .is_err()
                    {
                        return;
                    }
                    for (i, b) in payload.iter_mut().enumerate() {
                        *b ^= mask[i % 4];
                    }
                    let mut frame = vec![0x81, len as u8];
                    frame.extend_from_slice(&payload);
                    if conn.write_all(&frame).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}
