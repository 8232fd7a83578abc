//! The OTLP test collector itself, fed by the real `opentelemetry-otlp` exporter over both
//! protocols: every span field round-trips, headers arrive, a hung collector times the exporter
//! out, a stopped one refuses it and a restarted one receives again on the same endpoint.

use crate::common::*;
use opentelemetry::trace::{
    Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use opentelemetry_sdk::Resource;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const SPAN: &str = "b7ad6b7169203331";
const PARENT: &str = "00f067aa0ba902b7";
const LINKED_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const LINKED_SPAN: &str = "53995c3f42cd8ad8";

/// Generous: a loopback export on a loaded machine must not fail for slowness.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// For the hang tests, which wait this out on purpose.
const HUNG_TIMEOUT: Duration = Duration::from_millis(500);
const ARRIVAL: Duration = Duration::from_secs(5);

/// The real exporter on its own runtime (reqwest and tonic both need one).
struct Exporter {
    // Declared first: dropped while the runtime still exists.
    inner: opentelemetry_otlp::SpanExporter,
    runtime: tokio::runtime::Runtime,
}

impl Exporter {
    fn new(c: &Collector, protocol: Protocol, header: Option<(&str, &str)>, timeout: Duration) -> Exporter {
        // reqwest is built without a rustls provider (floodgate picks ring) and refuses to
        // build a client until one is installed, even for plain http.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        // tonic's lazy channel spawns its worker, so the build runs inside the runtime.
        let _in_runtime = runtime.enter();
        let builder = opentelemetry_otlp::SpanExporter::builder();
        let mut inner = match protocol {
            Protocol::Http => {
                let headers: HashMap<String, String> = header
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .into_iter()
                    .collect();
                builder
                    .with_http()
                    .with_endpoint(format!("{}/v1/traces", c.endpoint()))
                    .with_timeout(timeout)
                    .with_headers(headers)
                    .build()
            }
            Protocol::Grpc => {
                let mut metadata = tonic::metadata::MetadataMap::new();
                if let Some((k, v)) = header {
                    let key: tonic::metadata::MetadataKey<_> = k.parse().expect("metadata key");
                    metadata.insert(key, v.parse().expect("metadata value"));
                }
                builder
                    .with_tonic()
                    .with_endpoint(c.endpoint())
                    .with_timeout(timeout)
                    .with_metadata(metadata)
                    .build()
            }
        }
        .expect("exporter");
        inner.set_resource(
            &Resource::builder_empty()
                .with_attributes([
                    KeyValue::new("service.name", "floodgate"),
                    KeyValue::new("host.cores", 8i64),
                ])
                .build(),
        );
        drop(_in_runtime);
        Exporter { inner, runtime }
    }

    fn export(&self, span: SpanData) -> OTelSdkResult {
        self.runtime.block_on(self.inner.export(vec![span]))
    }
}

fn context(trace: &str, span: &str) -> SpanContext {
    SpanContext::new(
        TraceId::from_hex(trace).expect("trace id"),
        SpanId::from_hex(span).expect("span id"),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    )
}

fn at(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

const START: u64 = 1_700_000_000_123_456_789;
const END: u64 = START + 2_500_000;

/// A SERVER span with a parent, attributes of each kind, an event, a link and an error status.
fn span(name: &'static str) -> SpanData {
    let mut events = SpanEvents::default();
    events.events.push(Event::new(
        "retry",
        at(START + 1_000),
        vec![KeyValue::new("attempt", 2i64)],
        0,
    ));
    let mut links = SpanLinks::default();
    links
        .links
        .push(Link::with_context(context(LINKED_TRACE, LINKED_SPAN)));
    SpanData {
        span_context: context(TRACE, SPAN),
        parent_span_id: SpanId::from_hex(PARENT).expect("parent id"),
        parent_span_is_remote: true,
        span_kind: SpanKind::Server,
        name: name.into(),
        start_time: at(START),
        end_time: at(END),
        attributes: vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.response.status_code", 502i64),
            KeyValue::new("floodgate.cached", true),
            KeyValue::new("floodgate.ratio", 0.5),
            KeyValue::new(
                "floodgate.tags",
                opentelemetry::Value::Array(vec![1i64, 2].into()),
            ),
        ],
        dropped_attributes_count: 0,
        events,
        links,
        status: Status::error("bad gateway"),
        instrumentation_scope: InstrumentationScope::builder("floodgate-scope").build(),
    }
}

fn round_trip(protocol: Protocol) {
    let c = Collector::start(protocol);
    let exporter = Exporter::new(&c, protocol, None, EXPORT_TIMEOUT);
    exporter.export(span("GET /users")).expect("export");
    let spans = c.wait_for_spans(1, ARRIVAL);
    assert_eq!(spans.len(), 1, "{spans:?}");
    let s = &spans[0];
    assert_eq!(s.trace_id, TRACE);
    assert_eq!(s.span_id, SPAN);
    assert_eq!(s.parent_span_id, PARENT);
    assert_eq!(s.name, "GET /users");
    assert_eq!(s.kind, 2, "SERVER");
    assert_eq!(s.str_attr("http.request.method"), Some("GET"));
    assert_eq!(s.int_attr("http.response.status_code"), Some(502));
    assert_eq!(s.attr("floodgate.cached"), Some(&AttrValue::Bool(true)));
    assert_eq!(s.attr("floodgate.ratio"), Some(&AttrValue::Double(0.5)));
    assert_eq!(s.attr("floodgate.tags"), Some(&AttrValue::Other));
    assert_eq!(s.attributes.len(), 5, "{:?}", s.attributes);
    assert_eq!(s.status_code, 2, "ERROR");
    let attempt = BTreeMap::from([("attempt".to_string(), AttrValue::Int(2))]);
    assert_eq!(s.events, vec![("retry".to_string(), attempt)]);
    assert_eq!(s.links, vec![(LINKED_TRACE.to_string(), LINKED_SPAN.to_string())]);
    assert_eq!((s.start_unix_nano, s.end_unix_nano), (START, END));
    assert_eq!(
        s.resource.get("service.name").and_then(AttrValue::as_str),
        Some("floodgate")
    );
    assert_eq!(s.resource.get("host.cores").and_then(AttrValue::as_int), Some(8));
    assert_eq!(s.scope, "floodgate-scope");
    assert_eq!(c.exports(), 1);
    assert_eq!(c.decode_errors(), 0);
}

#[test]
fn http_round_trips_every_field() {
    round_trip(Protocol::Http);
}

#[test]
fn grpc_round_trips_every_field() {
    round_trip(Protocol::Grpc);
}

fn header_arrives(protocol: Protocol) {
    let c = Collector::start(protocol);
    let exporter = Exporter::new(&c, protocol, Some(("authorization", "Bearer t")), EXPORT_TIMEOUT);
    exporter.export(span("a")).expect("first export");
    exporter.export(span("b")).expect("second export");
    let headers = c.headers();
    assert_eq!(headers.len(), 2, "one entry per export call: {headers:?}");
    for call in &headers {
        let auth = call.iter().find(|(k, _)| k == "authorization");
        assert_eq!(auth.map(|(_, v)| v.as_str()), Some("Bearer t"), "{call:?}");
    }
}

#[test]
fn http_headers_arrive() {
    header_arrives(Protocol::Http);
}

#[test]
fn grpc_metadata_arrives() {
    header_arrives(Protocol::Grpc);
}

/// A hung collector holds the call: the exporter times out, the call is counted and its span
/// recorded; once the hang clears, exports are answered again. A stop releases a held call.
fn hang(protocol: Protocol) {
    let mut c = Collector::start(protocol);
    let exporter = Exporter::new(&c, protocol, None, HUNG_TIMEOUT);
    c.set_hang(true);
    assert!(exporter.export(span("held")).is_err(), "a held call times out");
    assert!(c.exports() >= 1);
    assert_eq!(c.spans()[0].name, "held", "recorded at receipt");
    c.set_hang(false);
    exporter.export(span("answered")).expect("export after the hang");

    // Stopping with a call held must not wait for it.
    c.set_hang(true);
    assert!(exporter.export(span("held again")).is_err());
    c.stop();
    c.set_hang(false);
    c.restart();
    exporter.export(span("after")).expect("export after the restart");
    assert_eq!(c.spans().last().map(|s| s.name.as_str()), Some("after"));
}

#[test]
fn http_hang_times_the_exporter_out() {
    hang(Protocol::Http);
}

#[test]
fn grpc_hang_times_the_exporter_out() {
    hang(Protocol::Grpc);
}

fn stop_and_restart(protocol: Protocol) {
    let mut c = Collector::start(protocol);
    let endpoint = c.endpoint();
    let exporter = Exporter::new(&c, protocol, None, EXPORT_TIMEOUT);
    exporter.export(span("before")).expect("export before the stop");
    c.stop();
    assert!(
        exporter.export(span("lost")).is_err(),
        "a stopped collector refuses"
    );
    c.restart();
    assert_eq!(c.endpoint(), endpoint);
    exporter.export(span("after")).expect("export after the restart");
    let names: Vec<String> = c.wait_for_spans(2, ARRIVAL).into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["before", "after"]);
}

#[test]
fn http_stop_refuses_and_restart_receives() {
    stop_and_restart(Protocol::Http);
}

#[test]
fn grpc_stop_refuses_and_restart_receives() {
    stop_and_restart(Protocol::Grpc);
}

fn raw(c: &Collector, request: &[u8]) -> String {
    let addr = c.endpoint().trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(request).expect("send");
    let mut answer = [0; 256];
    let n = s.read(&mut answer).expect("answer");
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[test]
fn http_rejects_what_is_not_an_export() {
    let c = Collector::start(Protocol::Http);
    // Field 1 announced as 16 bytes with 1 present: not a protobuf message.
    let answer = raw(
        &c,
        b"POST /v1/traces HTTP/1.1\r\nContent-Length: 3\r\n\r\n\x0a\x10\x00",
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let answer = raw(&c, b"GET /v1/logs HTTP/1.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert_eq!((c.exports(), c.decode_errors()), (1, 1));
    assert!(c.wait_for_spans(1, Duration::from_millis(50)).is_empty());
}

#[test]
fn http_reads_a_chunked_export() {
    let c = Collector::start(Protocol::Http);
    use prost::Message;
    let body = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
        resource_spans: vec![opentelemetry_proto::tonic::trace::v1::ResourceSpans {
            scope_spans: vec![opentelemetry_proto::tonic::trace::v1::ScopeSpans {
                spans: vec![opentelemetry_proto::tonic::trace::v1::Span {
                    name: "chunked".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    let mut request = b"POST /v1/traces HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let (a, b) = body.split_at(body.len() / 2);
    for chunk in [a, b] {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer = raw(&c, &request);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let spans = c.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        (spans[0].name.as_str(), spans[0].parent_span_id.as_str()),
        ("chunked", "")
    );
}
