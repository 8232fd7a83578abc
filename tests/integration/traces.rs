//! Tracing through the real binary: spans decoded from the OTLP wire by a loopback
//! collector (HTTP/protobuf and gRPC), the traceparent the upstream receives, the
//! sampling decision at an edge, and a collector that is down, then hangs, then
//! comes back.

use crate::common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const SECRET: &str = "traces-test-secret-0123456789abcdef";
const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const ERROR: i32 = 2;

/// A caller of tier `big` (never limited here), or of `tiny` (two requests).
fn token(sub: &str, tier: &str) -> String {
    hs256_bearer(SECRET, sub, tier)
}

struct Fixture {
    gw: Gateway,
    up: Upstream,
    access_log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// A gateway with a JWT route to a live upstream, an open route to two dead
/// targets (one retry), its access log in a file, exporting to `collector`.
fn start(collector: &Collector, protocol: &str, tracing_keys: &str) -> Fixture {
    let up = Upstream::start("ok");
    let dir = tempfile::tempdir().expect("tempdir");
    let access_log = dir.path().join("access.log");
    let body = format!(
        r#"
auth:
  jwt:
    keys: [{{ alg: HS256, secret: "{SECRET}" }}]
  default_tier: tiny
tiers:
  tiny: {{ rate: 0.01, burst: 2 }}
  big: {{ rate: 100000, burst: 100000 }}
upstreams:
  ok: {{ targets: ["{ok}"] }}
  dead: {{ targets: ["{dead1}", "{dead2}"], retries: 1 }}
routes:
  - {{ name: api, path_prefix: /api, upstream: ok }}
  - {{ name: gone, path_prefix: /gone, upstream: dead, auth: none }}
access_log: "{log}"
tracing:
  otlp:
    endpoint: "{endpoint}"
    protocol: {protocol}
    headers: {{ authorization: "Bearer collector-t0ken" }}
    timeout_ms: 1000
  service_name: fg-under-test
{tracing_keys}
"#,
        ok = up.addr,
        dead1 = loopback(free_port()),
        dead2 = loopback(free_port()),
        log = access_log.display(),
        endpoint = collector.endpoint(),
    );
    Fixture {
        gw: Gateway::start(&body),
        up,
        access_log,
        _dir: dir,
    }
}

fn server_spans(spans: &[ReceivedSpan]) -> Vec<&ReceivedSpan> {
    spans.iter().filter(|s| s.kind == SERVER).collect()
}

fn children<'a>(spans: &'a [ReceivedSpan], parent: &ReceivedSpan) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.kind == CLIENT && s.trace_id == parent.trace_id && s.parent_span_id == parent.span_id)
        .collect()
}

fn by_status(spans: &[ReceivedSpan], status: i64) -> Vec<&ReceivedSpan> {
    server_spans(spans)
        .into_iter()
        .filter(|s| s.int_attr("http.response.status_code") == Some(status))
        .collect()
}

fn metric(gw: &Gateway, series: &str) -> f64 {
    get(gw.admin, "/metrics")
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn access_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// 200, 401, 429 and a 502 after a retry, with every attribute the issue names.
fn spans_for_each_answer(protocol: Protocol, name: &str) {
    let collector = Collector::start(protocol);
    let f = start(&collector, name, "  sample_ratio: 1");
    let alice = token("alice", "big");
    let ok = get_with(
        f.gw.addr,
        "/api/items?x=1",
        &[("Authorization", &alice), ("User-Agent", "trace-test/1.0")],
    );
    assert_eq!(ok.status, 200);
    assert_eq!(get(f.gw.addr, "/api/items").status, 401);
    let bob = token("bob", "tiny");
    let statuses: Vec<u16> = (0..3)
        .map(|_| get_with(f.gw.addr, "/api/b", &[("Authorization", &bob)]).status)
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(get(f.gw.addr, "/gone/x").status, 502);

    // 200: server + client; 401: server; bob: 2 × 2 + 1; 502: server + two attempts.
    let spans = collector.wait_for_spans(11, Duration::from_secs(10));
    assert_eq!(spans.len(), 11, "{spans:#?}");

    let server = by_status(&spans, 200)
        .into_iter()
        .find(|s| s.str_attr("floodgate.consumer") == Some("alice"))
        .expect("alice's server span");
    assert_eq!(server.name, "GET /api");
    assert_eq!(server.parent_span_id, "");
    for (key, value) in [
        ("http.request.method", "GET"),
        ("url.path", "/api/items"),
        ("url.scheme", "http"),
        ("server.address", "localhost"),
        ("client.address", "127.0.0.1"),
        ("http.route", "/api"),
        ("network.protocol.version", "1.1"),
        ("user_agent.original", "trace-test/1.0"),
        ("floodgate.route", "api"),
        ("floodgate.consumer", "alice"),
        ("floodgate.tier", "big"),
    ] {
        assert_eq!(server.str_attr(key), Some(value), "{key} in {server:#?}");
    }
    assert_ne!(server.status_code, ERROR);
    assert!(server.end_unix_nano >= server.start_unix_nano && server.start_unix_nano > 0);
    assert_eq!(server.resource["service.name"].as_str(), Some("fg-under-test"));
    assert!(server.resource.contains_key("service.version") && server.resource.contains_key("host.name"));
    assert_eq!(server.scope, "floodgate");

    let attempts = children(&spans, server);
    assert_eq!(attempts.len(), 1);
    let attempt = attempts[0];
    assert_eq!(attempt.str_attr("server.address"), Some("127.0.0.1"));
    assert_eq!(attempt.int_attr("server.port"), Some(i64::from(f.up.addr.port())));
    assert_eq!(attempt.int_attr("http.response.status_code"), Some(200));
    let events: BTreeSet<&str> = attempt.events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(events, BTreeSet::from(["connected", "first_byte"]));
    // The upstream was told of the attempt's span, in the request's trace.
    assert_eq!(
        ok.upstream_header("traceparent"),
        Some(format!("00-{}-{}-01", attempt.trace_id, attempt.span_id))
    );

    let refused = by_status(&spans, 401);
    assert_eq!(refused.len(), 1);
    assert!(refused[0]
        .str_attr("floodgate.auth.failure")
        .is_some_and(|f| !f.is_empty()));
    assert!(children(&spans, refused[0]).is_empty());
    assert_ne!(refused[0].status_code, ERROR, "a 4xx is not the server's error");

    let limited = by_status(&spans, 429);
    assert_eq!(limited.len(), 1);
    assert!(limited[0]
        .str_attr("floodgate.ratelimit.scope")
        .is_some_and(|s| !s.is_empty()));
    assert_eq!(limited[0].str_attr("floodgate.consumer"), Some("bob"));

    let failed = by_status(&spans, 502);
    assert_eq!(failed.len(), 1);
    let failed = failed[0];
    assert_eq!(failed.name, "GET /gone");
    assert_eq!(failed.status_code, ERROR);
    assert!(failed.str_attr("error.type").is_some());
    let tries = children(&spans, failed);
    assert_eq!(tries.len(), 2, "one CLIENT span per attempt: {tries:#?}");
    let ports: BTreeSet<i64> = tries.iter().filter_map(|t| t.int_attr("server.port")).collect();
    assert_eq!(ports.len(), 2, "the retry went to the other target");
    for t in tries {
        assert_eq!(t.status_code, ERROR);
        assert_eq!(t.str_attr("error.type"), Some("connection_refused"));
    }

    // The collector's token went with every export.
    assert!(collector.headers().iter().all(|h| h
        .iter()
        .any(|(k, v)| k == "authorization" && v == "Bearer collector-t0ken")));
    // The access log names the same trace and server span.
    let lines = access_lines(&f.access_log);
    let logged = lines
        .iter()
        .find(|l| l["consumer"] == "alice")
        .expect("alice's line");
    assert_eq!(logged["trace_id"], server.trace_id.as_str());
    assert_eq!(logged["span_id"], server.span_id.as_str());
    assert!(eventually(Duration::from_secs(5), || {
        metric(&f.gw, "floodgate_tracing_spans_exported_total") == 11.0
    }));
}

#[test]
fn each_answer_gets_its_spans_over_http_protobuf() {
    spans_for_each_answer(Protocol::Http, "http/protobuf");
}

#[test]
fn each_answer_gets_its_spans_over_grpc() {
    spans_for_each_answer(Protocol::Grpc, "grpc");
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[test]
fn a_sampled_caller_is_continued_when_parent_based_and_its_flag_decides() {
    let collector = Collector::start(Protocol::Http);
    let f = start(&collector, "http/protobuf", "  sample_ratio: 0");
    let alice = token("alice", "big");
    let sampled = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let r = get_with(
        f.gw.addr,
        "/api/continued",
        &[
            ("Authorization", &alice),
            ("traceparent", &sampled),
            ("tracestate", "vendor=1"),
        ],
    );
    assert_eq!(r.status, 200);
    let spans = collector.wait_for_spans(2, Duration::from_secs(10));
    let server = server_spans(&spans)[0];
    assert_eq!(server.trace_id, CALLER_TRACE);
    assert_eq!(server.parent_span_id, CALLER_SPAN);
    let attempt = children(&spans, server)[0];
    assert_eq!(
        r.upstream_header("traceparent"),
        Some(format!("00-{CALLER_TRACE}-{}-01", attempt.span_id))
    );
    assert_eq!(r.upstream_header("tracestate").as_deref(), Some("vendor=1"));
}

#[test]
fn an_unsampled_caller_is_not_recorded_even_at_ratio_one_and_its_flag_is_passed_on() {
    let collector = Collector::start(Protocol::Http);
    let f = start(&collector, "http/protobuf", "  sample_ratio: 1");
    let alice = token("alice", "big");
    let unsampled = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-00");
    let r = get_with(
        f.gw.addr,
        "/api/unsampled",
        &[("Authorization", &alice), ("traceparent", &unsampled)],
    );
    assert_eq!(r.status, 200);
    let upstream = r.upstream_header("traceparent").expect("traceparent");
    assert!(
        upstream.starts_with(&format!("00-{CALLER_TRACE}-")) && upstream.ends_with("-00"),
        "{upstream}"
    );
    // A request without a parent, recorded at ratio 1, shows the export works here.
    assert_eq!(
        get_with(f.gw.addr, "/api/fresh", &[("Authorization", &alice)]).status,
        200
    );
    let spans = collector.wait_for_spans(2, Duration::from_secs(10));
    assert!(spans.iter().all(|s| s.trace_id != CALLER_TRACE), "{spans:#?}");
    assert_eq!(server_spans(&spans).len(), 1);
}

#[test]
fn at_an_edge_a_callers_trace_id_and_flag_decide_nothing() {
    let collector = Collector::start(Protocol::Http);
    let f = start(
        &collector,
        "http/protobuf",
        "  sample_ratio: 0.5\n  parent_based: false",
    );
    let alice = token("alice", "big");
    let sent = 200;
    // Crafted low trace ids, all flagged sampled: a ratio sampler reading the trace
    // id would record every one of them.
    for i in 1..=sent {
        let crafted = format!("00-{i:032x}-{CALLER_SPAN}-01");
        let r = get_with(
            f.gw.addr,
            "/api/edge",
            &[
                ("Authorization", &alice),
                ("traceparent", &crafted),
                ("tracestate", "vendor=1"),
            ],
        );
        assert_eq!(r.status, 200);
        let upstream = r.upstream_header("traceparent").unwrap_or_default();
        assert!(
            !upstream.starts_with(&format!("00-{i:032x}")),
            "the caller's trace continued: {upstream}"
        );
        assert_eq!(
            r.upstream_header("tracestate"),
            None,
            "tracestate of a trace not continued"
        );
    }
    std::thread::sleep(Duration::from_millis(1200));
    let spans = collector.spans();
    let recorded = server_spans(&spans);
    assert!(
        (60..=140).contains(&recorded.len()),
        "{} of {sent} recorded at 0.5",
        recorded.len()
    );
    for s in &recorded {
        assert!(u128::from_str_radix(&s.trace_id, 16).expect("hex") > u128::from(sent as u32));
        assert_eq!(s.parent_span_id, "");
        assert_eq!(s.links.len(), 1, "the caller's context is linked");
        assert_eq!(s.links[0].1, CALLER_SPAN);
    }
}

#[test]
fn sample_ratio_zero_exports_nothing_yet_propagates_and_logs_ids() {
    let collector = Collector::start(Protocol::Http);
    let f = start(&collector, "http/protobuf", "  sample_ratio: 0");
    let alice = token("alice", "big");
    let mut traces = BTreeSet::new();
    for _ in 0..2 {
        let r = get_with(f.gw.addr, "/api/quiet", &[("Authorization", &alice)]);
        assert_eq!(r.status, 200);
        let tp = r
            .upstream_header("traceparent")
            .expect("a traceparent is started");
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!((parts.len(), parts[0], parts[3]), (4, "00", "00"), "{tp}");
        traces.insert(parts[1].to_string());
    }
    assert_eq!(traces.len(), 2, "each request starts its own trace");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(collector.exports(), 0);
    let logged: BTreeSet<String> = access_lines(&f.access_log)
        .iter()
        .filter_map(|l| l["trace_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(logged, traces);
}

#[test]
fn a_collector_down_then_hanging_then_back_never_delays_a_request() {
    let mut collector = Collector::start(Protocol::Http);
    let f = start(&collector, "http/protobuf", "  sample_ratio: 1\n  max_queue: 64");
    let alice = token("alice", "big");
    let timeout = Duration::from_millis(1000);
    let run = |n: usize, path: &str| {
        let mut slowest = Duration::ZERO;
        for i in 0..n {
            let started = Instant::now();
            let r = get_with(f.gw.addr, &format!("{path}{i}"), &[("Authorization", &alice)]);
            slowest = slowest.max(started.elapsed());
            assert_eq!(r.status, 200);
        }
        slowest
    };
    collector.stop();
    let slowest = run(40, "/api/down-");
    assert!(
        slowest < timeout / 2,
        "a request took {slowest:?} with the collector down"
    );
    assert!(eventually(Duration::from_secs(5), || {
        metric(&f.gw, "floodgate_tracing_export_errors_total") >= 1.0
            && metric(
                &f.gw,
                "floodgate_tracing_spans_dropped_total{reason=\"export_failed\"}",
            ) > 0.0
    }));

    collector.restart();
    collector.set_hang(true);
    let before = collector.exports();
    let slowest = run(300, "/api/hung-");
    assert!(
        slowest < timeout / 2,
        "a request took {slowest:?} with the collector hanging"
    );
    assert!(
        eventually(Duration::from_secs(5), || collector.exports() > before),
        "exports were tried while it hung"
    );
    assert!(eventually(Duration::from_secs(5), || {
        metric(
            &f.gw,
            "floodgate_tracing_spans_dropped_total{reason=\"queue_full\"}",
        ) > 0.0
    }));

    collector.set_hang(false);
    // The held export is answered now (or times out); a connection cut by the collector's
    // restart may fail one more call. Then every span arrives again.
    let arrived = |prefix: &str| {
        server_spans(&collector.spans())
            .iter()
            .filter(|s| s.str_attr("url.path").is_some_and(|p| p.starts_with(prefix)))
            .count()
    };
    assert!(eventually(Duration::from_secs(15), || {
        run(1, "/api/warm-");
        std::thread::sleep(Duration::from_millis(300));
        arrived("/api/warm-") > 0
    }));
    run(20, "/api/back-");
    assert!(eventually(Duration::from_secs(10), || arrived("/api/back-") == 20));
    assert!(metric(&f.gw, "floodgate_tracing_spans_exported_total") >= 40.0);
}

#[test]
fn a_bad_tracing_section_is_named_by_its_key() {
    let (ok, out) = check_config(
        "listen: [\"127.0.0.1:1\"]\nadmin: { listen: \"127.0.0.1:2\" }\n\
         tracing:\n  otlp: { endpoint: \"collector:4318\", protocol: thrift }\n  sample_ratio: 2\n",
        &[],
    );
    assert!(!ok, "{out}");
    for key in [
        "tracing.otlp.endpoint",
        "tracing.otlp.protocol",
        "tracing.sample_ratio",
    ] {
        assert!(out.contains(key), "{key} not named: {out}");
    }
}

#[test]
fn an_open_breakers_503_gets_its_server_span_and_no_attempt() {
    let collector = Collector::start(Protocol::Http);
    let up = Upstream::start("failing");
    up.set_mode(Mode::Status(500));
    let gw = Gateway::start(&format!(
        "upstreams:\n  backend: {{ targets: [\"{}\"], breaker: {{ failures: 2, window_s: 60, open_s: 30 }} }}\n\
         routes:\n  - {{ name: all, path_prefix: /, upstream: backend }}\n\
         tracing:\n  otlp: {{ endpoint: \"{}\" }}\n  sample_ratio: 1\n",
        up.addr,
        collector.endpoint()
    ));
    let statuses: Vec<u16> = (0..3).map(|_| get(gw.addr, "/x").status).collect();
    assert_eq!(statuses, [500, 500, 503]);
    // Two answered attempts (server + client each) and the refusal's server span.
    let spans = collector.wait_for_spans(5, Duration::from_secs(10));
    assert_eq!(spans.len(), 5, "{spans:#?}");
    for failed in by_status(&spans, 500) {
        let attempt = children(&spans, failed);
        assert_eq!(attempt.len(), 1);
        assert_eq!(attempt[0].int_attr("http.response.status_code"), Some(500));
        assert_eq!(attempt[0].status_code, ERROR);
    }
    let refused = by_status(&spans, 503);
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].status_code, ERROR);
    assert_eq!(refused[0].str_attr("error.type"), Some("503"));
    assert!(
        children(&spans, refused[0]).is_empty(),
        "the breaker let an attempt through"
    );
}
