//! Connection-level protections in front of any HTTP application (the proxy
//! and the admin listener): PROXY headers, connection caps, TLS, the header and
//! send deadlines of a wrapped stream (HTTP/1.1 and HTTP/2) with the head clock the
//! proxy keeps it, the drain's close of WebSocket sessions, and strict checks of
//! request heads.

pub mod guard;
pub mod h2_frames;
pub mod head;
pub mod head_clock;
pub mod limits;
pub mod proxy_protocol;
pub mod stream;
pub mod websocket_close;
pub mod ws_frames;
