//! An upstream that closes kept-alive connections under the gateway: on the next request, or
//! after each answer. It records every request each connection saw.

use super::request::{read_request, Request};
use super::server::Server;
use super::Gateway;
use std::io::{BufReader, Write};
use std::sync::{Arc, Mutex};

/// What an upstream connection saw: its number, the request's place on it, method and path,
/// and whether it was answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub conn: usize,
    pub nth: usize,
    pub method: String,
    pub path: String,
    pub answered: bool,
}

#[derive(Clone, Copy)]
pub enum Closing {
    /// Answers the first request of a connection, keeps it alive (no `Connection: close`),
    /// and closes it unanswered when a second request arrives: the server that closed an idle
    /// connection just as the gateway reused it, every time.
    OnTheNextRequest,
    /// Closes the connection right after each answer, which said nothing of closing.
    AfterEachAnswer,
}

pub struct ClosingUpstream {
    server: Server,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl ClosingUpstream {
    pub fn start(closing: Closing) -> ClosingUpstream {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let server = Server::start(move |stream, conn| {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut out = stream;
            for nth in 0.. {
                let Some(Request {
                    method, target: path, ..
                }) = read_request(&mut reader)
                else {
                    return;
                };
                let answered = nth == 0;
                log.lock().expect("seen").push(Seen {
                    conn,
                    nth,
                    method,
                    path,
                    answered,
                });
                if !answered {
                    return; // closed with the request unanswered
                }
                let body = format!("{{\"conn\":{conn}}}");
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if out.write_all(answer.as_bytes()).is_err() {
                    return;
                }
                if matches!(closing, Closing::AfterEachAnswer) {
                    return;
                }
            }
        });
        ClosingUpstream { server, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }

    pub fn times_seen(&self, method: &str, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .count()
    }

    pub fn gateway(&self) -> Gateway {
        Gateway::start(&format!(
            "upstreams:\n  backend: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ name: all, path_prefix: /, upstream: backend }}\n",
            self.server.addr
        ))
    }
}
