//! Everything besides proxying that does network or file I/O: the admin listener
//! (stats, consumers API and CLI client, dashboard), the access-log writer, the drain
//! of a graceful upgrade or stop, the built-in echo upstream, the JWKS refresher, the
//! quota saver, the state file (read at start-up, written by the consumers API and the
//! quota saver), the readiness probe and the Redis sync.

pub mod access_log;
pub mod admin;
pub mod drain;
pub mod echo;
pub mod jwks;
pub mod quota_saver;
pub mod readiness;
pub mod redis_sync;
pub mod region_sync;
pub mod state_file;

use http::Response;

/// A JSON response with its length set (Pingora's simple HTTP apps do not set it).
pub(crate) fn json_response(status: u16, body: String) -> Response<Vec<u8>> {
    let body = body.into_bytes();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body)
        .unwrap_or_default()
}
