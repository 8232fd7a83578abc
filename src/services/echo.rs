//! The built-in `kind: echo` upstream, served in-process on a loopback port, so
//! the default config runs with nothing else on the machine. It answers with what
//! it received: method, path, headers (as the gateway forwarded them) and body size.

use crate::error::StartupError;
use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use pingora_core::services::listening::Service;
use serde_json::{Map, Value};
use std::net::{SocketAddr, TcpListener};

/// The echo server reads at most this much body; more is counted, not kept.
const MAX_ECHOED_BODY: usize = 64 * 1024;

pub struct Echo;

impl Echo {
    /// The echo of upstream `name`, as a service on a free loopback port, and its address.
    pub fn service(name: &str) -> Result<(Service<Echo>, SocketAddr), StartupError> {
        let addr = free_loopback_addr()?;
        let mut echo = Service::new(format!("echo upstream {name}"), Echo);
        echo.add_tcp(&addr.to_string());
        log::info!("upstream {name}: built-in echo on {addr}");
        Ok((echo, addr))
    }
}

/// A loopback port for the in-process echo upstream. The socket is released for
/// Pingora to bind moments later; nothing else on loopback races for it in practice.
fn free_loopback_addr() -> Result<SocketAddr, StartupError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(StartupError::EchoBind)?;
    listener.local_addr().map_err(StartupError::EchoBind)
}

/// The echo's answer to a body it could not read; the message is escaped as JSON,
/// whatever the error says.
fn bad_request_body(message: &str) -> String {
    serde_json::json!({"error": "bad_request", "message": message}).to_string()
}

#[async_trait]
impl ServeHttp for Echo {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let mut body = Vec::new();
        let mut body_bytes = 0usize;
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    body_bytes += chunk.len();
                    let room = MAX_ECHOED_BODY.saturating_sub(body.len());
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) => break,
                Err(e) => return super::json_response(400, bad_request_body(&e.to_string())),
            }
        }
        let req = session.req_header();
        let mut headers = Map::new();
        for (name, value) in req.headers.iter() {
            headers.insert(
                name.as_str().to_owned(),
                Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
            );
        }
        let answer = serde_json::json!({
            "echo": true,
            "method": req.method.as_str(),
            "path": req.uri.path(),
            "query": req.uri.query(),
            "headers": headers,
            "body_bytes": body_bytes,
            "body": String::from_utf8_lossy(&body),
        });
        super::json_response(200, answer.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_message_is_escaped_into_valid_json() {
        let message = "bad chunk \"size\"\r\n\\ end";
        let body: Value = serde_json::from_str(&bad_request_body(message)).expect("valid JSON");
        assert_eq!(body["error"], "bad_request");
        assert_eq!(body["message"], message);
    }
}
