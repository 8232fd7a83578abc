//! How slowly a client may take a response or send a request body, per request:
//! `client.min_send_rate_bps`, `routes[].response_timeout_ms` and
//! `client.min_receive_rate_bps`. The connection-wide deadlines (header, send) live
//! in `connection::stream`; these need the request's phases.
//!
//! Streams whose pace is the application's are exempt: WebSocket sessions,
//! server-sent events and gRPC, where a slow trickle is the point.

use super::forward::is_websocket;
use crate::config::ClientLimits;
use http::{header, HeaderMap, StatusCode};
use pingora_error::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use std::time::{Duration, Instant};

/// The time a body may take before its rate counts: a connection's slow start.
/// Pingora's own send rate gives each write at least this long too.
const GRACE: Duration = Duration::from_secs(1);

/// Pingora's default wait for one read of a request body; a rate never loosens it.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Pace {
    send_timeout: Duration,
    min_send_rate: Option<u64>,
    min_receive_rate: Option<u64>,
}

/// A request body under `min_receive_rate_bps`, timed from its first piece: before it,
/// a client may be waiting for a `100 Continue` the upstream has yet to send.
#[derive(Debug, Clone, Copy)]
pub struct Upload {
    started: Option<Instant>,
    received: u64,
}

/// A response whose pace is the client's to keep: its deadline, if its route has one.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    pub due: Option<Instant>,
}

fn content_type_is(headers: &HeaderMap, prefix: &[u8]) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= prefix.len() && v[..prefix.len()].eq_ignore_ascii_case(prefix)
    })
}

/// gRPC requests and responses (`application/grpc`, `application/grpc+proto`, ...).
fn is_grpc(headers: &HeaderMap) -> bool {
    content_type_is(headers, b"application/grpc")
}

/// A response that streams at the application's pace: a protocol switch (WebSocket),
/// server-sent events, gRPC.
pub fn is_stream(response: &ResponseHeader) -> bool {
    response.status == StatusCode::SWITCHING_PROTOCOLS
        || content_type_is(&response.headers, b"text/event-stream")
        || is_grpc(&response.headers)
}

impl Pace {
    pub fn new(client: &ClientLimits) -> Self {
        Pace {
            send_timeout: client.send_timeout,
            min_send_rate: client.min_send_rate_bps,
            min_receive_rate: client.min_receive_rate_bps,
        }
    }

    /// On HTTP/2 a stream waits for its flow-control window, which the connection's
    /// own send deadline never sees: each write of a response chunk is bounded here.
    pub fn bound_h2_writes(&self, session: &mut Session) {
        if session.as_downstream().is_http2() {
            session.set_write_timeout(Some(self.send_timeout));
        }
    }

    /// A response head about to be sent: from here the client must keep up.
    pub fn deliver(
        &self,
        session: &mut Session,
        response: &ResponseHeader,
        requested: Option<Instant>,
        deadline: Option<Duration>,
    ) -> Option<Delivery> {
        if is_stream(response) {
            return None;
        }
        // HTTP/1.1: Pingora bounds each write by its size at this rate (HTTP/2: per chunk, below).
        if let Some(rate) = self.min_send_rate {
            session.set_min_send_rate(Some(rate as usize));
        }
        if self.min_send_rate.is_none() && deadline.is_none() {
            return None;
        }
        Some(Delivery {
            due: deadline.and_then(|d| Some(requested? + d)),
        })
    }

    /// A response chunk about to be written: cut once past the route's deadline, and
    /// its write may take no longer than what remains (and, on HTTP/2, than its size
    /// at the minimum rate).
    pub fn send_chunk(&self, session: &mut Session, delivery: Delivery, len: usize) -> Result<()> {
        let mut limit = None;
        if session.as_downstream().is_http2() {
            if let Some(rate) = self.min_send_rate {
                let at_rate = Duration::from_secs_f64(len as f64 / rate as f64).max(GRACE);
                limit = Some(at_rate.min(self.send_timeout));
            }
        }
        if let Some(due) = delivery.due {
            let remaining = due.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Error::e_explain(ErrorType::WriteTimedout, "response over response_timeout_ms");
            }
            limit = Some(limit.unwrap_or(self.send_timeout).min(remaining));
        }
        if limit.is_some() {
            session.set_write_timeout(limit);
        }
        Ok(())
    }

    /// The request body starts to be read (its head is on its way upstream); gRPC and
    /// WebSocket requests stream at the application's pace. Without a minimum rate
    /// nothing is looked at.
    pub fn start_upload(&self, request: &HeaderMap) -> Option<Upload> {
        self.min_receive_rate?;
        if is_websocket(request) || is_grpc(request) {
            return None;
        }
        Some(Upload {
            started: None,
            received: 0,
        })
    }

    /// A piece of the request body arrived: 408 when the body is behind the minimum
    /// rate (after a second's grace); the next read must come before it falls behind.
    pub fn received(&self, session: &mut Session, upload: &mut Upload, len: usize) -> Result<()> {
        let Some(rate) = self.min_receive_rate else {
            return Ok(());
        };
        let now = Instant::now();
        upload.started.get_or_insert(now);
        upload.received += len as u64;
        let within = upload.next_read_within(rate, now);
        if within.is_zero() {
            return Error::e_explain(
                ErrorType::HTTPStatus(408),
                "request body under min_receive_rate_bps",
            );
        }
        // HTTP/1.1 only: Pingora has no read timeout for an HTTP/2 stream's body.
        session.set_read_timeout(Some(within));
        Ok(())
    }
}

impl Upload {
    /// How long until the body falls behind `rate` with what it has now; zero when it has.
    fn next_read_within(&self, rate: u64, now: Instant) -> Duration {
        let credit = GRACE + Duration::from_secs_f64(self.received as f64 / rate as f64);
        (self.started.unwrap_or(now) + credit)
            .saturating_duration_since(now)
            .min(BODY_READ_TIMEOUT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_falls_behind_its_rate_after_the_grace() {
        let started = Instant::now();
        let mut upload = Upload {
            started: Some(started),
            received: 0,
        };
        assert_eq!(upload.next_read_within(1000, started), GRACE);
        upload.received = 2000;
        assert_eq!(
            upload.next_read_within(1000, started + GRACE),
            Duration::from_secs(2)
        );
        assert!(upload
            .next_read_within(1000, started + Duration::from_secs(3))
            .is_zero());
        upload.received = 10_000_000;
        assert_eq!(upload.next_read_within(1, started), BODY_READ_TIMEOUT);
    }

    #[test]
    fn event_streams_grpc_and_upgrades_are_streams() {
        let mut r = ResponseHeader::build(200, None).expect("head");
        assert!(!is_stream(&r));
        r.insert_header("content-type", "text/event-stream; charset=utf-8")
            .expect("ct");
        assert!(is_stream(&r));
        r.insert_header("content-type", "application/grpc+proto")
            .expect("ct");
        assert!(is_stream(&r));
        r.insert_header("content-type", "application/json").expect("ct");
        assert!(!is_stream(&r));
        r.set_status(101).expect("101");
        assert!(is_stream(&r));
    }
}
