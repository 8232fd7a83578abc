//! A loopback OTLP trace collector that decodes the real wire format: OTLP/HTTP (protobuf
//! bodies POSTed to `/v1/traces`) or OTLP/gRPC (tonic's `TraceService`). It records every
//! span and the headers of every export call, can hold calls unanswered (a stuck collector),
//! and can die and come back on the same port (a restarted collector).
//!
//! A held call's spans are recorded when the call arrives, not when it is answered: a test
//! sees what the gateway sent even if the gateway gave up waiting.

use super::ports;
use super::request::read_request;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use prost::Message;
use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Protocol {
    Http,
    Grpc,
}

#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Bool(bool),
    Double(f64),
    /// Arrays, maps and bytes: no test looks inside them.
    Other,
}

impl AttrValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            AttrValue::Int(i) => Some(*i),
            _ => None,
        }
    }
}

/// One span as the collector decoded it; ids in lower-case hex.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    /// "" for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// OTLP SpanKind: 2 = SERVER, 3 = CLIENT.
    pub kind: i32,
    pub attributes: BTreeMap<String, AttrValue>,
    /// 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    pub events: Vec<(String, BTreeMap<String, AttrValue>)>,
    /// (trace id, span id) of each link.
    pub links: Vec<(String, String)>,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// The attributes of the resource the span was exported under.
    pub resource: BTreeMap<String, AttrValue>,
    /// The instrumentation scope's name.
    pub scope: String,
}

impl ReceivedSpan {
    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attributes.get(key)
    }

    pub fn str_attr(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(AttrValue::as_str)
    }

    pub fn int_attr(&self, key: &str) -> Option<i64> {
        self.attr(key).and_then(AttrValue::as_int)
    }
}

/// What both protocols record into; outlives stops and restarts.
struct Shared {
    spans: Mutex<Vec<ReceivedSpan>>,
    headers: Mutex<Vec<Vec<(String, String)>>>,
    exports: AtomicUsize,
    decode_errors: AtomicUsize,
    /// A watch rather than a flag, so held calls wake the moment it clears.
    hang: watch::Sender<bool>,
}

impl Shared {
    /// Counts an export call and keeps its headers (sorted by name, for stable comparisons).
    fn arrived(&self, mut headers: Vec<(String, String)>) {
        headers.sort();
        self.headers.lock().expect("headers").push(headers);
        self.exports.fetch_add(1, Ordering::SeqCst);
    }

    fn record(&self, request: ExportTraceServiceRequest) {
        let mut spans = self.spans.lock().expect("spans");
        for rs in request.resource_spans {
            let resource = attributes(rs.resource.map(|r| r.attributes).unwrap_or_default());
            for ss in rs.scope_spans {
                let scope = ss.scope.map(|s| s.name).unwrap_or_default();
                for s in ss.spans {
                    spans.push(ReceivedSpan {
                        trace_id: hex::encode(&s.trace_id),
                        span_id: hex::encode(&s.span_id),
                        parent_span_id: hex::encode(&s.parent_span_id),
                        name: s.name,
                        kind: s.kind,
                        attributes: attributes(s.attributes),
                        status_code: s.status.map_or(0, |st| st.code),
                        events: s
                            .events
                            .into_iter()
                            .map(|e| (e.name, attributes(e.attributes)))
                            .collect(),
                        links: s
                            .links
                            .into_iter()
                            .map(|l| (hex::encode(l.trace_id), hex::encode(l.span_id)))
                            .collect(),
                        start_unix_nano: s.start_time_unix_nano,
                        end_unix_nano: s.end_time_unix_nano,
                        resource: resource.clone(),
                        scope: scope.clone(),
                    });
                }
            }
        }
    }

    /// Resolves once hang is off; a call held here is released by that or by the stop.
    async fn unhung(&self) {
        let mut hang = self.hang.subscribe();
        let _ = hang.wait_for(|h| !*h).await;
    }
}

fn attributes(kvs: Vec<KeyValue>) -> BTreeMap<String, AttrValue> {
    kvs.into_iter()
        .map(|kv| {
            let value = match kv.value.and_then(|v| v.value) {
                Some(any_value::Value::StringValue(s)) => AttrValue::Str(s),
                Some(any_value::Value::IntValue(i)) => AttrValue::Int(i),
                Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(b),
                Some(any_value::Value::DoubleValue(d)) => AttrValue::Double(d),
                _ => AttrValue::Other,
            };
            (kv.key, value)
        })
        .collect()
}

/// One listening period, between a start (or restart) and a stop.
struct Run {
    /// Set to true to stop: held calls and the server wake on it.
    stop: watch::Sender<bool>,
    /// The accept loop (HTTP) or the server's runtime (gRPC).
    server: thread::JoinHandle<()>,
    /// HTTP only: every accepted connection, to close them at the stop.
    conns: Arc<Conns>,
}

/// Each open HTTP connection (a clone, to shut it down) and the thread serving it.
type Conns = Mutex<Vec<(TcpStream, thread::JoinHandle<()>)>>;

pub struct Collector {
    protocol: Protocol,
    addr: SocketAddr,
    shared: Arc<Shared>,
    run: Option<Run>,
}

impl Collector {
    /// Binds 127.0.0.1 on a free port and answers every export with success.
    pub fn start(protocol: Protocol) -> Collector {
        let listener = ports::listener();
        let addr = listener.local_addr().expect("collector addr");
        let mut c = Collector {
            protocol,
            addr,
            shared: Arc::new(Shared {
                spans: Mutex::new(Vec::new()),
                headers: Mutex::new(Vec::new()),
                exports: AtomicUsize::new(0),
                decode_errors: AtomicUsize::new(0),
                hang: watch::Sender::new(false),
            }),
            run: None,
        };
        c.serve(listener);
        c
    }

    /// `http://127.0.0.1:PORT`: HTTP exports go to `<endpoint>/v1/traces`, gRPC to the
    /// TraceService here.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span decoded so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.shared.spans.lock().expect("spans").clone()
    }

    /// Polls until at least `n` spans arrived or `timeout` passes; what arrived either way.
    pub fn wait_for_spans(&self, n: usize, timeout: Duration) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if spans.len() >= n || Instant::now() >= deadline {
                return spans;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Export calls received so far, answered or not (bodies that failed to decode included).
    pub fn exports(&self) -> usize {
        self.shared.exports.load(Ordering::SeqCst)
    }

    /// HTTP bodies that were not an `ExportTraceServiceRequest` (answered 400, nothing recorded).
    pub fn decode_errors(&self) -> usize {
        self.shared.decode_errors.load(Ordering::SeqCst)
    }

    /// The headers (HTTP) or metadata (gRPC) of each export call in order; within a call
    /// sorted by name, names lower-case, a repeated HTTP header's values joined with ", ".
    pub fn headers(&self) -> Vec<Vec<(String, String)>> {
        self.shared.headers.lock().expect("headers").clone()
    }

    /// While true, export calls are read, counted and recorded but not answered: each is held
    /// open until hang clears (then answered with success) or the collector stops.
    pub fn set_hang(&self, hang: bool) {
        self.shared.hang.send_replace(hang);
    }

    /// Dies: closes the listener and every connection, held ones too; connecting is refused.
    pub fn stop(&mut self) {
        let Some(run) = self.run.take() else { return };
        run.stop.send_replace(true);
        if self.protocol == Protocol::Http {
            // Wakes the accept loop, which sees the stop and drops the listener.
            let _ = TcpStream::connect(self.addr);
        }
        let _ = run.server.join();
        // The accept loop has ended, so no connection is added after this.
        for (conn, handler) in run.conns.lock().expect("conns").drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
            let _ = handler.join();
        }
    }

    /// Listens again on the same port (the gateway under test is configured with it).
    pub fn restart(&mut self) {
        self.stop();
        let addr = self.addr;
        // std sets SO_REUSEADDR on Unix, so the old connections' TIME_WAIT does not block this.
        let listener = ports::on_the_same_port("OTLP collector", || {
            TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))
        });
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        let (stop, _) = watch::channel(false);
        let conns = Arc::new(Mutex::new(Vec::new()));
        let server = match self.protocol {
            Protocol::Http => {
                let (shared, stop, conns) = (self.shared.clone(), stop.clone(), conns.clone());
                thread::spawn(move || accept_http(listener, &shared, &stop, &conns))
            }
            Protocol::Grpc => {
                let (shared, stop) = (self.shared.clone(), stop.subscribe());
                thread::spawn(move || serve_grpc(listener, shared, stop))
            }
        };
        self.run = Some(Run { stop, server, conns });
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_http(listener: TcpListener, shared: &Arc<Shared>, stop: &watch::Sender<bool>, conns: &Conns) {
    for stream in listener.incoming() {
        if *stop.borrow() {
            return;
        }
        let Ok(stream) = stream else { continue };
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        let (shared, stop) = (shared.clone(), stop.subscribe());
        let handler = thread::spawn(move || serve_http(stream, &shared, stop));
        conns.lock().expect("conns").push((clone, handler));
    }
}

/// One keep-alive connection: requests until the client closes or the collector stops.
fn serve_http(stream: TcpStream, shared: &Shared, mut stop: watch::Receiver<bool>) {
    let Ok(read) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read);
    let mut writer = stream;
    while let Some(request) = read_request(&mut reader) {
        let traces = request.target == "/v1/traces" && request.method == "POST";
        let (status, body) = if traces {
            shared.arrived(request.headers.into_iter().collect());
            match ExportTraceServiceRequest::decode(request.body.as_slice()) {
                Ok(export) => {
                    shared.record(export);
                    let held = futures::executor::block_on(async {
                        tokio::select! {
                            biased;
                            _ = shared.unhung() => false,
                            _ = stop.wait_for(|s| *s) => true,
                        }
                    });
                    if held {
                        return;
                    }
                    ("200 OK", ExportTraceServiceResponse::default().encode_to_vec())
                }
                Err(_) => {
                    shared.decode_errors.fetch_add(1, Ordering::SeqCst);
                    ("400 Bad Request", Vec::new())
                }
            }
        } else {
            ("404 Not Found", Vec::new())
        };
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&body).is_err() {
            return;
        }
    }
}

/// The gRPC server on its own runtime until the stop; dropping the runtime then closes the
/// listener and every connection at once, as a dying collector would, held calls included.
fn serve_grpc(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("collector runtime");
    runtime.block_on(async move {
        listener.set_nonblocking(true).expect("nonblocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Grpc { shared }))
            .serve_with_incoming(incoming);
        tokio::select! {
            _ = server => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    });
    // Dropping the runtime drops every connection task, closing their sockets.
    drop(runtime);
}

struct Grpc {
    shared: Arc<Shared>,
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let metadata = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_string(), v)
            })
            .collect();
        self.shared.arrived(metadata);
        self.shared.record(request.into_inner());
        self.shared.unhung().await;
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}
