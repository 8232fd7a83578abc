//! Recorded spans leave the request path through a bounded queue that never
//! waits; a background task drains it every `EXPORT_EVERY` in batches, wraps each
//! batch in one `ExportTraceServiceRequest` (the resource and scope written once)
//! and sends it: POSTed as protobuf over reqwest, or as a gRPC `Export` call over
//! tonic. The queue and the loop are ours rather than the SDK's batch processor so
//! that the request path takes no lock and wakes nobody (like the access log),
//! and so that every drop is counted by its reason.
//!
//! One export at a time: while a slow collector holds one (up to the configured
//! timeout), new spans fill the queue up to `tracing.max_queue` and the rest are
//! dropped and counted, so memory stays bounded by the queue and one batch.

use super::metrics::TraceMetrics;
use super::proto::{self, field as f, Value};
use crate::config::{OtlpProtocol, OtlpTls, Tracing};
use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the queue is drained: spans wait at most this long plus an export.
const EXPORT_EVERY: Duration = Duration::from_millis(200);
/// Once the server is stopping, what is left is sent sooner: the drain exits the
/// process shortly after its last request.
const EXPORT_EVERY_STOPPING: Duration = Duration::from_millis(20);
/// Spans per export call.
const BATCH: usize = 512;
const GRPC_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The request path's end of the queue: encoded `Span` messages.
pub struct SpanQueue {
    spans: SyncSender<Vec<u8>>,
    metrics: TraceMetrics,
}

impl SpanQueue {
    pub fn new(max_queue: usize, metrics: TraceMetrics) -> (SpanQueue, Receiver<Vec<u8>>) {
        let (spans, rx) = sync_channel(max_queue);
        (SpanQueue { spans, metrics }, rx)
    }

    /// Queues a span, or counts it dropped; never waits.
    pub fn push(&self, span: Vec<u8>) {
        match self.spans.try_send(span) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.metrics.dropped_queue_full.inc(),
            Err(TrySendError::Disconnected(_)) => self.metrics.dropped_shutdown.inc(),
        }
    }
}

/// The background service that exports the queue.
pub struct SpanExport {
    config: Tracing,
    spans: Mutex<Option<Receiver<Vec<u8>>>>,
    metrics: TraceMetrics,
}

impl SpanExport {
    pub fn new(config: Tracing, spans: Receiver<Vec<u8>>, metrics: TraceMetrics) -> Self {
        SpanExport {
            config,
            spans: Mutex::new(Some(spans)),
            metrics,
        }
    }

    async fn export(&self, sender: &mut Sender, n: u64, body: Bytes) {
        let started = Instant::now();
        // The client has the same timeout; this one also bounds a connect that hangs.
        let limit = self.config.timeout + Duration::from_secs(1);
        let result = match tokio::time::timeout(limit, sender.send(body, self.config.timeout)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {limit:?}")),
        };
        self.metrics
            .export_duration
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => self.metrics.exported.inc_by(n),
            Err(why) => {
                log::warn!(
                    "tracing: exporting {n} spans to {} failed: {why}",
                    self.config.endpoint
                );
                self.metrics.export_errors.inc();
                self.metrics.dropped_export_failed.inc_by(n);
            }
        }
    }
}

/// Up to `BATCH` queued spans; `None` once the proxy side is gone and nothing is left.
fn take_batch(spans: &Receiver<Vec<u8>>) -> Option<Vec<Vec<u8>>> {
    let mut batch = Vec::new();
    while batch.len() < BATCH {
        match spans.try_recv() {
            Ok(span) => batch.push(span),
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Disconnected) if batch.is_empty() => return None,
            Err(TryRecvError::Disconnected) => break,
        }
    }
    Some(batch)
}

#[async_trait]
impl BackgroundService for SpanExport {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(spans) = self.spans.lock().ok().and_then(|mut s| s.take()) else {
            return;
        };
        let mut sender = match Sender::new(&self.config) {
            Ok(sender) => sender,
            Err(why) => {
                // The config was checked at load: this is a TLS setup the library refused.
                log::error!(
                    "tracing: no exporter to {}: {why}; spans are dropped",
                    self.config.endpoint
                );
                return;
            }
        };
        let resource = resource(&self.config);
        // Requests still draining after the shutdown signal record spans too: the loop
        // runs on, faster, until the process exits.
        let mut every = EXPORT_EVERY;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed(), if every == EXPORT_EVERY => every = EXPORT_EVERY_STOPPING,
            }
            let round = Instant::now();
            // A full batch is followed at once by the next, within one interval's worth.
            while round.elapsed() < EXPORT_EVERY.max(self.config.timeout) {
                let Some(batch) = take_batch(&spans) else { return };
                if batch.is_empty() {
                    break;
                }
                let full = batch.len() == BATCH;
                let body = Bytes::from(request(&resource, &batch));
                self.export(&mut sender, batch.len() as u64, body).await;
                if !full {
                    break;
                }
            }
        }
    }
}

/// The `Resource` message: service name and version, and the host.
fn resource(config: &Tracing) -> Vec<u8> {
    let mut out = Vec::new();
    let attr = |o: &mut Vec<u8>, key: &str, value: &str| {
        proto::attribute(o, f::RESOURCE_ATTRIBUTES, key, Value::Str(value))
    };
    attr(&mut out, "service.name", &config.service_name);
    attr(&mut out, "service.version", env!("CARGO_PKG_VERSION"));
    if let Some(host) = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
    {
        attr(&mut out, "host.name", &host);
    }
    out
}

/// One `ExportTraceServiceRequest` holding the batch under one resource and scope.
fn request(resource: &[u8], batch: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.iter().map(|s| s.len() + 3).sum::<usize>() + resource.len() + 64);
    proto::message(&mut out, f::REQUEST_RESOURCE_SPANS, |rs| {
        proto::bytes(rs, f::RESOURCE_SPANS_RESOURCE, resource);
        proto::message(rs, f::RESOURCE_SPANS_SCOPE_SPANS, |ss| {
            proto::message(ss, f::SCOPE_SPANS_SCOPE, |scope| {
                proto::string(scope, f::SCOPE_NAME, "floodgate");
                proto::string(scope, f::SCOPE_VERSION, env!("CARGO_PKG_VERSION"));
            });
            for span in batch {
                proto::bytes(ss, f::SCOPE_SPANS_SPANS, span);
            }
        });
    });
    out
}

/// Where a request body goes: the collector over HTTP or gRPC.
enum Sender {
    Http {
        client: reqwest::Client,
        url: String,
        headers: http::HeaderMap,
    },
    Grpc {
        grpc: tonic::client::Grpc<tonic::transport::Channel>,
        metadata: tonic::metadata::MetadataMap,
    },
}

impl Sender {
    fn new(config: &Tracing) -> Result<Sender, String> {
        let https = config.endpoint.starts_with("https://");
        Ok(match config.protocol {
            OtlpProtocol::HttpProtobuf => {
                let mut client = reqwest::Client::builder().timeout(config.timeout);
                // Preconfigured always: reqwest has no crypto provider of its own.
                client =
                    client.tls_backend_preconfigured(rustls_config(config.tls.as_ref().filter(|_| https))?);
                let mut headers = http::HeaderMap::new();
                for (name, value) in &config.headers {
                    headers.insert(
                        http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?,
                        http::HeaderValue::from_str(value).map_err(|e| e.to_string())?,
                    );
                }
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/x-protobuf"),
                );
                Sender::Http {
                    client: client.build().map_err(|e| e.to_string())?,
                    url: format!("{}/v1/traces", config.endpoint),
                    headers,
                }
            }
            OtlpProtocol::Grpc => {
                let mut endpoint = tonic::transport::Endpoint::from_shared(config.endpoint.clone())
                    .map_err(|e| e.to_string())?
                    .timeout(config.timeout)
                    .connect_timeout(config.timeout);
                if https {
                    endpoint = endpoint
                        .tls_config(tonic_tls(config.tls.as_ref()))
                        .map_err(|e| e.to_string())?;
                }
                let mut metadata = tonic::metadata::MetadataMap::new();
                for (name, value) in &config.headers {
                    let key = tonic::metadata::MetadataKey::from_bytes(name.as_bytes())
                        .map_err(|e| e.to_string())?;
                    metadata.insert(key, value.parse().map_err(|_| format!("header {name}"))?);
                }
                Sender::Grpc {
                    grpc: tonic::client::Grpc::new(endpoint.connect_lazy()),
                    metadata,
                }
            }
        })
    }

    async fn send(&mut self, body: Bytes, timeout: Duration) -> Result<(), String> {
        match self {
            Sender::Http { client, url, headers } => {
                let response = client
                    .post(url.as_str())
                    .headers(headers.clone())
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("HTTP {}", response.status()))
                }
            }
            Sender::Grpc { grpc, metadata } => {
                grpc.ready().await.map_err(|e| e.to_string())?;
                let mut request = tonic::Request::new(body);
                *request.metadata_mut() = metadata.clone();
                request.set_timeout(timeout);
                grpc.unary::<Bytes, (), RawCodec>(
                    request,
                    http::uri::PathAndQuery::from_static(GRPC_EXPORT),
                    RawCodec,
                )
                .await
                .map(|_| ())
                .map_err(|status| format!("gRPC {:?}: {}", status.code(), status.message()))
            }
        }
    }
}

/// The request is already protobuf; the answer (an `ExportTraceServiceResponse`,
/// whose partial-success details are not acted on) is read and dropped.
#[derive(Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

/// The HTTP exporter's TLS: the configured CA (else the bundled web roots) and client certificate.
fn rustls_config(tls: Option<&OtlpTls>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    match tls.and_then(|t| t.ca_pem.as_deref()) {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                roots
                    .add(cert.map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    let mut config = match tls.and_then(|t| t.client_pem.as_ref()) {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| e.to_string())?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| e.to_string())?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The gRPC exporter's TLS, the same trust as over HTTP.
fn tonic_tls(tls: Option<&OtlpTls>) -> tonic::transport::ClientTlsConfig {
    let mut config = tonic::transport::ClientTlsConfig::new();
    match tls.and_then(|t| t.ca_pem.as_deref()) {
        Some(pem) => config = config.ca_certificate(tonic::transport::Certificate::from_pem(pem)),
        None => config = config.with_webpki_roots(),
    }
    if let Some((cert, key)) = tls.and_then(|t| t.client_pem.as_ref()) {
        config = config.identity(tonic::transport::Identity::from_pem(cert, key));
    }
    config
}
