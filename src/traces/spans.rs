//! A sampled request's spans, assembled once it is done: the SERVER span with the
//! stable HTTP semantic conventions and floodgate's own attributes, and one CLIENT
//! span per upstream attempt.

use super::{AttemptRecord, Ids, Recording};
use opentelemetry::trace::{
    Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::SystemTime;

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

static SCOPE: LazyLock<InstrumentationScope> = LazyLock::new(|| {
    InstrumentationScope::builder("floodgate")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
});

pub(super) fn build(ids: &Ids, recording: Recording, r: &Finished<'_>, end: SystemTime) -> Vec<SpanData> {
    let trace_id = TraceId::from_bytes(ids.trace_id.to_be_bytes());
    let mut spans = Vec::with_capacity(1 + recording.attempts.len());
    for attempt in &recording.attempts {
        spans.push(client_span(trace_id, ids.server_span, attempt, r.method, end));
    }
    let links = recording
        .link
        .map(|caller| {
            Link::with_context(SpanContext::new(
                TraceId::from_bytes(caller.trace_id.to_be_bytes()),
                SpanId::from_bytes(caller.span_id.to_be_bytes()),
                if caller.sampled {
                    TraceFlags::SAMPLED
                } else {
                    TraceFlags::NOT_SAMPLED
                },
                true,
                TraceState::NONE,
            ))
        })
        .into_iter()
        .collect();
    spans.push(SpanData {
        span_context: context(trace_id, ids.server_span),
        parent_span_id: ids
            .parent
            .map_or(SpanId::INVALID, |p| SpanId::from_bytes(p.to_be_bytes())),
        parent_span_is_remote: ids.parent.is_some(),
        span_kind: SpanKind::Server,
        name: match r.route {
            Some((_, prefix)) => Cow::Owned(format!("{} {prefix}", r.method)),
            None => Cow::Owned(r.method.to_string()),
        },
        start_time: recording.start,
        end_time: end,
        attributes: server_attributes(r),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: span_links(links),
        // A 4xx is the caller's doing: only a 5xx is the server span's error.
        status: if r.status >= 500 {
            Status::error(r.status.to_string())
        } else {
            Status::Unset
        },
        instrumentation_scope: SCOPE.clone(),
    });
    spans
}

fn context(trace_id: TraceId, span_id: u64) -> SpanContext {
    SpanContext::new(
        trace_id,
        SpanId::from_bytes(span_id.to_be_bytes()),
        TraceFlags::SAMPLED,
        false,
        TraceState::NONE,
    )
}

fn server_attributes(r: &Finished<'_>) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(16);
    a.push(KeyValue::new("http.request.method", r.method.to_string()));
    a.push(KeyValue::new("url.path", r.path.to_string()));
    a.push(KeyValue::new("url.scheme", r.scheme));
    a.push(KeyValue::new("network.protocol.version", r.protocol));
    a.push(KeyValue::new("http.response.status_code", i64::from(r.status)));
    if let Some(host) = r.host {
        a.push(KeyValue::new("server.address", host.to_string()));
    }
    if let Some(client) = r.client {
        a.push(KeyValue::new("client.address", client.to_string()));
    }
    if let Some((name, prefix)) = r.route {
        a.push(KeyValue::new("http.route", prefix.to_string()));
        a.push(KeyValue::new("floodgate.route", name.to_string()));
    }
    if let Some(agent) = r.user_agent {
        a.push(KeyValue::new("user_agent.original", agent.to_string()));
    }
    if let Some(consumer) = r.consumer {
        a.push(KeyValue::new("floodgate.consumer", consumer.to_string()));
    }
    if let Some(tier) = r.tier {
        a.push(KeyValue::new("floodgate.tier", tier.to_string()));
    }
    if let Some(scope) = r.limited {
        a.push(KeyValue::new("floodgate.ratelimit.scope", scope));
    }
    if let Some(failure) = r.auth_failure {
        a.push(KeyValue::new("floodgate.auth.failure", failure));
    }
    match r.error {
        Some(error) => a.push(KeyValue::new("error.type", error)),
        None if r.status >= 500 => a.push(KeyValue::new("error.type", r.status.to_string())),
        None => {}
    }
    a
}

fn client_span(
    trace_id: TraceId,
    server_span: u64,
    at: &AttemptRecord,
    method: &str,
    end: SystemTime,
) -> SpanData {
    let mut attributes = vec![
        KeyValue::new("http.request.method", method.to_string()),
        KeyValue::new("server.address", at.target.ip().to_string()),
        KeyValue::new("server.port", i64::from(at.target.port())),
    ];
    let mut events = Vec::with_capacity(2);
    if let Some((when, reused)) = at.connected {
        events.push(Event::new(
            "connected",
            when,
            vec![KeyValue::new("floodgate.connection.reused", reused)],
            0,
        ));
    }
    let status = at.answered.map(|(_, status)| status);
    if let Some((when, status)) = at.answered {
        events.push(Event::new("first_byte", when, Vec::new(), 0));
        attributes.push(KeyValue::new("http.response.status_code", i64::from(status)));
    }
    let error = at
        .error
        .map(Cow::Borrowed)
        .or_else(|| status.filter(|s| *s >= 500).map(|s| Cow::Owned(s.to_string())))
        // Ended with the request but never answered: the client left, or the body failed.
        .or_else(|| status.is_none().then_some(Cow::Borrowed("no_response")));
    if let Some(error) = &error {
        attributes.push(KeyValue::new("error.type", error.to_string()));
    }
    SpanData {
        span_context: context(trace_id, at.span_id),
        parent_span_id: SpanId::from_bytes(server_span.to_be_bytes()),
        parent_span_is_remote: false,
        span_kind: SpanKind::Client,
        name: Cow::Owned(method.to_string()),
        start_time: at.start,
        end_time: at.end.unwrap_or(end),
        attributes,
        dropped_attributes_count: 0,
        events: span_events(events),
        links: SpanLinks::default(),
        status: match error {
            Some(error) => Status::error(error),
            None => Status::Unset,
        },
        instrumentation_scope: SCOPE.clone(),
    }
}

// The SDK's lists are non-exhaustive: filled in place.
fn span_links(links: Vec<Link>) -> SpanLinks {
    let mut out = SpanLinks::default();
    out.links = links;
    out
}

fn span_events(events: Vec<Event>) -> SpanEvents {
    let mut out = SpanEvents::default();
    out.events = events;
    out
}
