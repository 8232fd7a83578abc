//! A bare Pingora reverse proxy: one listener, one worker thread, every request to
//! one upstream over a pooled keep-alive connection, no filters of its own.
//!
//! BARE_LISTEN (127.0.0.1:18003) and BARE_UPSTREAM (127.0.0.1:18000) set the addresses.

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

struct Bare {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream.as_str(), false, String::new())))
    }
}

fn main() {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_string());
    let listen = var("BARE_LISTEN", "127.0.0.1:18003");
    let conf = ServerConf {
        threads: 1,
        // Out of the way of any other Pingora process's files.
        pid_file: format!("/tmp/bare-pingora-{}.pid", std::process::id()),
        upgrade_sock: format!("/tmp/bare-pingora-{}.sock", std::process::id()),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let bare = Bare {
        upstream: var("BARE_UPSTREAM", "127.0.0.1:18000"),
    };
    let mut service = http_proxy_service(&server.configuration, bare);
    service.add_tcp(&listen);
    server.add_service(service);
    server.run_forever();
}
