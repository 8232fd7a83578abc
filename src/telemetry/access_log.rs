//! The JSON access-log line and its queue. Each line is serialized into one
//! buffer and handed to the writer thread (`services::access_log`) through a
//! bounded channel: a full channel drops the line and counts it, and never holds
//! up a request.

use super::metrics::registered;
use prometheus::{IntCounter, Registry};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::SyncSender;
use std::time::Duration;

/// Lines the channel holds before new ones are dropped.
pub const ACCESS_LOG_QUEUE: usize = 16_384;

/// One access-log line: a JSON object with these keys, one per line, which log
/// shippers parse. Borrowed from the request's state and serialized straight into
/// the one buffer that is queued.
#[derive(Serialize)]
pub struct AccessLine<'a> {
    #[serde(rename = "time", serialize_with = "as_rfc3339")]
    pub time_ms: u64,
    pub request_id: &'a str,
    pub route: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub latency_ms: f64,
    #[serde(serialize_with = "display_opt")]
    pub upstream: Option<SocketAddr>,
    pub consumer: Option<&'a str>,
    pub limited: Option<&'static str>,
    #[serde(serialize_with = "display_opt")]
    pub client_ip: Option<IpAddr>,
}

fn as_rfc3339<S: serde::Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&rfc3339(*ms))
}

fn display_opt<T: std::fmt::Display, S: serde::Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-23T10:49:30.123Z`.
pub fn rfc3339(unix_ms: u64) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(unix_ms))
}

pub(super) struct AccessLog {
    /// `None` when access logging is off.
    lines: Option<SyncSender<Vec<u8>>>,
    dropped: IntCounter,
}

impl AccessLog {
    pub(super) fn new(lines: Option<SyncSender<Vec<u8>>>, registry: &Registry) -> prometheus::Result<Self> {
        let dropped = registered(
            registry,
            IntCounter::new(
                "floodgate_access_log_dropped_total",
                "Access-log lines dropped because the writer fell behind",
            )?,
        )?;
        Ok(AccessLog { lines, dropped })
    }

    pub(super) fn enabled(&self) -> bool {
        self.lines.is_some()
    }

    /// Queues `line`; never waits.
    pub(super) fn send(&self, line: &AccessLine<'_>) {
        if let Some(tx) = &self.lines {
            let mut buf = Vec::with_capacity(320);
            if serde_json::to_writer(&mut buf, line).is_ok() {
                buf.push(b'\n');
                if tx.try_send(buf).is_err() {
                    self.dropped.inc();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_430_970_123).to_string(), "2026-11-23T10:49:30.123Z");
        assert_eq!(rfc3339(951_782_400_000).to_string(), "2000-02-29T00:00:00.000Z");
    }
}
