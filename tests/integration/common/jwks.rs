//! JWKS servers: one serving a key set document (counting fetches, answering after a delay if
//! asked), and one that accepts connections and never answers.

use super::request::read_request;
use serde_json::Value;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A loopback HTTP server serving one JWKS document, counting fetches.
pub struct JwksServer {
    pub url: String,
    pub doc: Arc<Mutex<String>>,
    pub fetches: Arc<Mutex<usize>>,
}

pub fn jwks_server(doc: Value) -> JwksServer {
    jwks_server_after(doc, Duration::ZERO)
}

/// As `jwks_server`, each answer given `delay` after the request arrived.
pub fn jwks_server_after(doc: Value, delay: Duration) -> JwksServer {
    let listener = super::ports::listener();
    let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
    let doc = Arc::new(Mutex::new(doc.to_string()));
    let fetches = Arc::new(Mutex::new(0));
    let (d, n) = (doc.clone(), fetches.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            // Answered whatever the request: every connection counts as a fetch.
            let _ = read_request(&mut reader);
            *n.lock().expect("count") += 1;
            // The server's slowness is the input here, not a wait for a condition.
            std::thread::sleep(delay);
            let body = d.lock().expect("doc").clone();
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    JwksServer { url, doc, fetches }
}

/// A JWKS URL whose server accepts connections and holds them, never answering.
pub struct SilentServer {
    pub url: String,
    /// The connections it accepted, held open.
    pub accepted: Arc<Mutex<Vec<TcpStream>>>,
}

impl SilentServer {
    pub fn start() -> SilentServer {
        let listener = super::ports::listener();
        let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let held = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                held.lock().expect("held").push(stream);
            }
        });
        SilentServer { url, accepted }
    }
}
