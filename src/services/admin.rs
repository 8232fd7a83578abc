//! The admin listener (separate port): `/health` while the process runs, `/ready`
//! once the config is loaded and every proxy listener accepts connections.

use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub struct Admin {
    ready: Arc<AtomicBool>,
}

impl Admin {
    pub fn new(ready: Arc<AtomicBool>) -> Self {
        Admin { ready }
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let get = req.method == http::Method::GET || req.method == http::Method::HEAD;
        match (get, req.uri.path()) {
            (true, "/health") => super::json_response(200, r#"{"status":"ok"}"#.into()),
            (true, "/ready") if self.ready.load(Ordering::Acquire) => {
                super::json_response(200, r#"{"status":"ready"}"#.into())
            }
            (true, "/ready") => super::json_response(503, r#"{"status":"starting"}"#.into()),
            (false, "/health" | "/ready") => super::json_response(
                405,
                r#"{"error":"method_not_allowed","message":"use GET"}"#.into(),
            ),
            _ => super::json_response(
                404,
                r#"{"error":"no_route","message":"no admin endpoint here"}"#.into(),
            ),
        }
    }
}
