//! A sampled request's spans, written as OTLP `Span` messages once it is done: the
//! SERVER span with the stable HTTP semantic conventions and floodgate's own
//! attributes, and one CLIENT span per upstream attempt.

use super::proto::{self, field as f, Value};
use super::{AttemptRecord, Recording, RequestTrace};
use crate::vocab::client_addr;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// The request as `logging` saw it.
pub struct Finished<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub scheme: &'static str,
    /// The Host (or HTTP/2 authority) without its port.
    pub host: Option<&'a str>,
    pub client: Option<IpAddr>,
    /// The matched route's name and `path_prefix`.
    pub route: Option<(&'a str, &'a str)>,
    pub status: u16,
    /// `1.0`, `1.1` or `2`.
    pub protocol: &'static str,
    pub user_agent: Option<&'a str>,
    pub consumer: Option<&'a str>,
    pub tier: Option<&'a str>,
    /// The scope that refused a 429.
    pub limited: Option<&'static str>,
    /// Why credentials were refused (a 401 or 403).
    pub auth_failure: Option<&'static str>,
    /// What went wrong when the gateway could not proxy, as `error.type`.
    pub error: Option<&'static str>,
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Each span as one encoded `Span` message (the export batches them).
pub(super) fn encode(
    ids: &RequestTrace,
    recording: &Recording,
    r: &Finished<'_>,
    end: SystemTime,
) -> Vec<Vec<u8>> {
    let mut spans = Vec::with_capacity(1 + recording.attempts.len());
    for attempt in &recording.attempts {
        spans.push(client_span(ids, attempt, r.method, end));
    }
    spans.push(server_span(ids, recording, r, end));
    spans
}

fn server_span(ids: &RequestTrace, recording: &Recording, r: &Finished<'_>, end: SystemTime) -> Vec<u8> {
    let mut out = Vec::with_capacity(640);
    let o = &mut out;
    proto::bytes(o, f::SPAN_TRACE_ID, &ids.trace_id.to_be_bytes());
    proto::bytes(o, f::SPAN_SPAN_ID, &ids.span_id.to_be_bytes());
    if let Some(parent) = ids.parent {
        proto::bytes(o, f::SPAN_PARENT_SPAN_ID, &parent.to_be_bytes());
    }
    let remote = ids.parent.is_some();
    proto::fixed32(
        o,
        f::SPAN_FLAGS,
        if remote {
            proto::FLAGS_SAMPLED_REMOTE_PARENT
        } else {
            proto::FLAGS_SAMPLED_LOCAL_PARENT
        },
    );
    match r.route {
        Some((_, prefix)) => {
            let mut name = String::with_capacity(r.method.len() + 1 + prefix.len());
            name.push_str(r.method);
            name.push(' ');
            name.push_str(prefix);
            proto::string(o, f::SPAN_NAME, &name);
        }
        None => proto::string(o, f::SPAN_NAME, r.method),
    }
    proto::uint(o, f::SPAN_KIND, proto::KIND_SERVER);
    proto::fixed64(o, f::SPAN_START, nanos(recording.start));
    proto::fixed64(o, f::SPAN_END, nanos(end));
    let attr =
        |o: &mut Vec<u8>, key: &str, value: Value<'_>| proto::attribute(o, f::SPAN_ATTRIBUTES, key, value);
    attr(o, "http.request.method", Value::Str(r.method));
    attr(o, "url.path", Value::Str(r.path));
    attr(o, "url.scheme", Value::Str(r.scheme));
    attr(o, "network.protocol.version", Value::Str(r.protocol));
    attr(o, "http.response.status_code", Value::Int(i64::from(r.status)));
    if let Some(host) = r.host {
        attr(o, "server.address", Value::Str(host));
    }
    if let Some(client) = r.client {
        // The client's text is formatted once per run of its requests (X-Forwarded-For's).
        let text = client_addr::text(client);
        attr(o, "client.address", Value::Str(text.to_str().unwrap_or_default()));
    }
    if let Some((name, prefix)) = r.route {
        attr(o, "http.route", Value::Str(prefix));
        attr(o, "floodgate.route", Value::Str(name));
    }
    if let Some(agent) = r.user_agent {
        attr(o, "user_agent.original", Value::Str(agent));
    }
    if let Some(consumer) = r.consumer {
        attr(o, "floodgate.consumer", Value::Str(consumer));
    }
    if let Some(tier) = r.tier {
        attr(o, "floodgate.tier", Value::Str(tier));
    }
    if let Some(scope) = r.limited {
        attr(o, "floodgate.ratelimit.scope", Value::Str(scope));
    }
    if let Some(failure) = r.auth_failure {
        attr(o, "floodgate.auth.failure", Value::Str(failure));
    }
    // A 4xx is the caller's doing: only a 5xx is the server span's error.
    let status_text = (r.status >= 500).then(|| r.status.to_string());
    let error = r.error.or(status_text.as_deref());
    if let Some(error) = error {
        attr(o, "error.type", Value::Str(error));
    }
    if let Some(caller) = &recording.link {
        proto::message(o, f::SPAN_LINKS, |link| {
            proto::bytes(link, f::LINK_TRACE_ID, &caller.trace_id.to_be_bytes());
            proto::bytes(link, f::LINK_SPAN_ID, &caller.span_id.to_be_bytes());
            proto::fixed32(link, f::LINK_FLAGS, 0x300 | u32::from(caller.sampled));
        });
    }
    if let Some(error) = error.filter(|_| r.status >= 500) {
        status_error(o, error);
    }
    out
}

fn status_error(o: &mut Vec<u8>, message: &str) {
    proto::message(o, f::SPAN_STATUS, |status| {
        proto::string(status, f::STATUS_MESSAGE, message);
        proto::uint(status, f::STATUS_CODE, proto::STATUS_ERROR);
    });
}

fn client_span(ids: &RequestTrace, at: &AttemptRecord, method: &str, end: SystemTime) -> Vec<u8> {
    let mut out = Vec::with_capacity(320);
    let o = &mut out;
    proto::bytes(o, f::SPAN_TRACE_ID, &ids.trace_id.to_be_bytes());
    proto::bytes(o, f::SPAN_SPAN_ID, &at.span_id.to_be_bytes());
    proto::bytes(o, f::SPAN_PARENT_SPAN_ID, &ids.span_id.to_be_bytes());
    proto::fixed32(o, f::SPAN_FLAGS, proto::FLAGS_SAMPLED_LOCAL_PARENT);
    proto::string(o, f::SPAN_NAME, method);
    proto::uint(o, f::SPAN_KIND, proto::KIND_CLIENT);
    proto::fixed64(o, f::SPAN_START, nanos(at.start));
    proto::fixed64(o, f::SPAN_END, nanos(at.end.unwrap_or(end)));
    let attr =
        |o: &mut Vec<u8>, key: &str, value: Value<'_>| proto::attribute(o, f::SPAN_ATTRIBUTES, key, value);
    attr(o, "http.request.method", Value::Str(method));
    attr(o, "server.address", Value::Str(&address(at.target.ip())));
    attr(o, "server.port", Value::Int(i64::from(at.target.port())));
    let status = at.answered.map(|(_, status)| status);
    if let Some(status) = status {
        attr(o, "http.response.status_code", Value::Int(i64::from(status)));
    }
    let status_text = status.filter(|s| *s >= 500).map(|s| s.to_string());
    let error = at
        .error
        .or(status_text.as_deref())
        // Ended with the request but never answered: the client left first.
        .or(status.is_none().then_some("no_response"));
    if let Some(error) = error {
        attr(o, "error.type", Value::Str(error));
    }
    if let Some((when, reused)) = at.connected {
        event(
            o,
            "connected",
            when,
            Some(("floodgate.connection.reused", reused)),
        );
    }
    if let Some((when, _)) = at.answered {
        event(o, "first_byte", when, None);
    }
    if let Some(error) = error {
        status_error(o, error);
    }
    out
}

fn event(o: &mut Vec<u8>, name: &str, when: SystemTime, flag: Option<(&str, bool)>) {
    proto::message(o, f::SPAN_EVENTS, |e| {
        proto::fixed64(e, f::EVENT_TIME, nanos(when));
        proto::string(e, f::EVENT_NAME, name);
        if let Some((key, value)) = flag {
            proto::attribute(e, f::EVENT_ATTRIBUTES, key, Value::Bool(value));
        }
    });
}

/// A target's address as text; IPv4 without `fmt` (`Display` costs ~1.3k instructions).
fn address(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut text = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                text.push_str(itoa::Buffer::new().format(octet));
            }
            text
        }
        IpAddr::V6(v6) => v6.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_display_writes_them() {
        for ip in [
            "127.0.0.1",
            "10.200.3.45",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(address(ip), ip.to_string());
        }
    }
}
