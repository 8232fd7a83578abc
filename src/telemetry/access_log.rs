//! The JSON access-log line and its queue. Each line is written into one buffer
//! and handed to the writer thread (`services::access_log`) through a bounded
//! channel: a full channel drops the line and counts it, and never holds up a
//! request.

use super::metrics::registered;
use crate::vocab::client_addr;
use crate::vocab::hex::push_hex;
use crate::vocab::limit_scope::Scope;
use prometheus::{IntCounter, Registry};
use std::cell::RefCell;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::SyncSender;
use std::time::Duration;

/// Lines the channel holds before new ones are dropped.
pub const ACCESS_LOG_QUEUE: usize = 16_384;
/// Room a line's buffer starts with: most lines fit.
pub const LINE_CAPACITY: usize = 320;

/// One access-log line: a JSON object with these keys, in this order, one per
/// line, which log shippers parse. Borrowed from the request's state.
pub struct AccessLine<'a> {
    pub time_ms: u64,
    pub request_id: &'a str,
    pub route: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub latency_ms: f64,
    pub upstream: Option<SocketAddr>,
    pub consumer: Option<&'a str>,
    pub limited: Option<Scope>,
    pub client_ip: Option<IpAddr>,
    /// The trace and SERVER span ids, where tracing is configured (sampled or not).
    pub trace: Option<(u128, u64)>,
}

impl AccessLine<'_> {
    /// The line as JSON, written by hand: the keys are fixed, so only the values
    /// need encoding, and most of them never need escaping.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":\"");
        write_time(out, self.time_ms);
        out.extend_from_slice(b"\",\"request_id\":");
        json_str(out, self.request_id);
        out.extend_from_slice(b",\"route\":");
        json_opt(out, self.route);
        out.extend_from_slice(b",\"method\":");
        json_str(out, self.method);
        out.extend_from_slice(b",\"path\":");
        json_str(out, self.path);
        out.extend_from_slice(b",\"status\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.status).as_bytes());
        out.extend_from_slice(b",\"latency_ms\":");
        if self.latency_ms.is_finite() {
            out.extend_from_slice(ryu::Buffer::new().format_finite(self.latency_ms).as_bytes());
        } else {
            out.extend_from_slice(b"null");
        }
        out.extend_from_slice(b",\"upstream\":");
        match self.upstream {
            Some(addr) => {
                out.push(b'"');
                write_target(out, addr);
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"consumer\":");
        json_opt(out, self.consumer);
        out.extend_from_slice(b",\"limited\":");
        json_opt(out, self.limited.map(Scope::as_str));
        out.extend_from_slice(b",\"client_ip\":");
        match self.client_ip {
            Some(ip) => {
                out.push(b'"');
                out.extend_from_slice(client_addr::text(ip).as_bytes());
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        if let Some((trace_id, span_id)) = self.trace {
            out.extend_from_slice(b",\"trace_id\":\"");
            push_hex(out, trace_id, 32);
            out.extend_from_slice(b"\",\"span_id\":\"");
            push_hex(out, u128::from(span_id), 16);
            out.push(b'"');
        }
        out.push(b'}');
    }
}

fn json_opt(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(v) => json_str(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string: `"` and `\` escaped, control characters as `\uXXXX` (or their
/// short forms), everything else as it is.
fn json_str(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    let bytes = value.as_bytes();
    // Most values need no escape: one branch-free pass tells.
    if !bytes
        .iter()
        .fold(false, |any, &b| any | (b < 0x20) | (b == b'"') | (b == b'\\'))
    {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut plain_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain_from..i]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.extend_from_slice(escaped);
        }
        plain_from = i + 1;
    }
    out.extend_from_slice(&bytes[plain_from..]);
    out.push(b'"');
}

/// Upstream targets a worker remembers as text: pools are small.
const TARGETS_REMEMBERED: usize = 16;

thread_local! {
    static TARGETS: RefCell<Vec<(SocketAddr, Box<str>)>> = const { RefCell::new(Vec::new()) };
}

/// An upstream target's address, formatted once per worker.
fn write_target(out: &mut Vec<u8>, addr: SocketAddr) {
    TARGETS.with_borrow_mut(|known| {
        if let Some((_, text)) = known.iter().find(|(a, _)| *a == addr) {
            out.extend_from_slice(text.as_bytes());
            return;
        }
        let text: Box<str> = addr.to_string().into();
        out.extend_from_slice(text.as_bytes());
        if known.len() == TARGETS_REMEMBERED {
            known.remove(0);
        }
        known.push((addr, text));
    });
}

thread_local! {
    /// The second last formatted, as `2026-11-23T10:49:30.`: lines come many a second.
    static SECOND: RefCell<(u64, [u8; 20])> = const { RefCell::new((u64::MAX, [0; 20])) };
}

/// RFC 3339 UTC with milliseconds, the date and time formatted once a second.
fn write_time(out: &mut Vec<u8>, unix_ms: u64) {
    let (second, ms) = (unix_ms / 1000, unix_ms % 1000);
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != second {
            let full = rfc3339(second * 1000).to_string();
            text.copy_from_slice(&full.as_bytes()[..20]);
            *cached = second;
        }
        out.extend_from_slice(text);
    });
    out.extend_from_slice(&[
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
        b'Z',
    ]);
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
            let mut buf = Vec::with_capacity(LINE_CAPACITY);
            line.write(&mut buf);
            buf.push(b'\n');
            if tx.try_send(buf).is_err() {
                self.dropped.inc();
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
        for ms in [
            0,
            1_795_430_970_123,
            1_795_430_970_999,
            1_795_430_971_007,
            951_782_400_000,
        ] {
            let mut out = Vec::new();
            write_time(&mut out, ms);
            assert_eq!(String::from_utf8(out).expect("utf-8"), rfc3339(ms).to_string());
        }
    }

    #[test]
    fn a_line_is_the_json_a_parser_reads_back() {
        let line = AccessLine {
            time_ms: 1_795_430_970_123,
            request_id: "r-1",
            route: Some("api"),
            method: "GET",
            path: "/a\"b\\c\u{1}\n\u{7f}é",
            status: 200,
            latency_ms: 0.5,
            upstream: Some("127.0.0.1:8080".parse().expect("addr")),
            consumer: None,
            limited: Some(Scope::Local),
            client_ip: Some("::1".parse().expect("ip")),
            trace: None,
        };
        let mut out = Vec::new();
        line.write(&mut out);
        let parsed: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            parsed,
            serde_json::json!({
                "time": "2026-11-23T10:49:30.123Z", "request_id": "r-1", "route": "api",
                "method": "GET", "path": "/a\"b\\c\u{1}\n\u{7f}é", "status": 200,
                "latency_ms": 0.5, "upstream": "127.0.0.1:8080", "consumer": null,
                "limited": "local", "client_ip": "::1"
            })
        );
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.starts_with(
                "{\"time\":\"2026-11-23T10:49:30.123Z\",\"request_id\":\"r-1\",\"route\":\"api\""
            ),
            "{text}"
        );
        assert!(
            text.contains("\"path\":\"/a\\\"b\\\\c\\u0001\\n\u{7f}é\""),
            "{text}"
        );
        let mut traced = Vec::new();
        AccessLine {
            trace: Some((0xabc, 0x12)),
            ..line
        }
        .write(&mut traced);
        let parsed: serde_json::Value = serde_json::from_slice(&traced).expect("json");
        assert_eq!(parsed["trace_id"], "00000000000000000000000000000abc");
        assert_eq!(parsed["span_id"], "0000000000000012");
    }
}
