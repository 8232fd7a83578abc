//! Recorded spans leave the request path through a bounded queue that never
//! waits; a background task drains it every `EXPORT_EVERY` in batches and hands
//! them to OpenTelemetry's OTLP exporter (HTTP/protobuf over reqwest, or gRPC over
//! tonic). The queue and the loop are ours rather than the SDK's batch processor
//! so that the request path takes no lock and wakes nobody (like the access log),
//! and so that every drop is counted by its reason.
//!
//! One export at a time: while a slow collector holds one (up to the configured
//! timeout), new spans fill the queue up to `tracing.max_queue` and the rest are
//! dropped and counted, so memory stays bounded by the queue and one batch.

use super::metrics::TraceMetrics;
use crate::config::{OtlpProtocol, OtlpTls, Tracing};
use async_trait::async_trait;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the queue is drained: spans wait at most this long plus an export.
const EXPORT_EVERY: Duration = Duration::from_millis(200);
/// Spans per export call.
const BATCH: usize = 512;
/// What an export still in flight may take at shutdown.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// The request path's end of the queue.
pub struct SpanQueue {
    spans: SyncSender<SpanData>,
    metrics: TraceMetrics,
}

impl SpanQueue {
    pub fn new(max_queue: usize, metrics: TraceMetrics) -> (SpanQueue, Receiver<SpanData>) {
        let (spans, rx) = sync_channel(max_queue);
        (SpanQueue { spans, metrics }, rx)
    }

    /// Queues a span, or counts it dropped; never waits.
    pub fn push(&self, span: SpanData) {
        let reason = match self.spans.try_send(span) {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => "queue_full",
            Err(TrySendError::Disconnected(_)) => "shutdown",
        };
        self.metrics.dropped.with_label_values(&[reason]).inc();
    }
}

/// The background service that exports the queue.
pub struct SpanExport {
    config: Tracing,
    spans: Mutex<Option<Receiver<SpanData>>>,
    metrics: TraceMetrics,
}

impl SpanExport {
    pub fn new(config: Tracing, spans: Receiver<SpanData>, metrics: TraceMetrics) -> Self {
        SpanExport {
            config,
            spans: Mutex::new(Some(spans)),
            metrics,
        }
    }

    async fn export(
        &self,
        exporter: &opentelemetry_otlp::SpanExporter,
        batch: Vec<SpanData>,
        limit: Duration,
    ) {
        let n = batch.len() as u64;
        let started = Instant::now();
        // The exporter has its own timeout; this one also bounds a connect that hangs.
        let result = tokio::time::timeout(limit, exporter.export(batch)).await;
        self.metrics
            .export_duration
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(Ok(())) => self.metrics.exported.inc_by(n),
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {limit:?}"),
                };
                log::warn!(
                    "tracing: exporting {n} spans to {} failed: {why}",
                    self.config.endpoint
                );
                self.metrics.export_errors.inc();
                self.metrics
                    .dropped
                    .with_label_values(&["export_failed"])
                    .inc_by(n);
            }
        }
    }
}

/// Up to `BATCH` queued spans; `None` once the proxy side is gone and nothing is left.
fn take_batch(spans: &Receiver<SpanData>) -> Option<Vec<SpanData>> {
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
        let exporter = match build_exporter(&self.config) {
            Ok(exporter) => exporter,
            Err(why) => {
                // The config was checked at load: this is a TLS setup the library refused.
                log::error!(
                    "tracing: no exporter to {}: {why}; spans are dropped",
                    self.config.endpoint
                );
                return;
            }
        };
        let limit = self.config.timeout + Duration::from_secs(1);
        loop {
            let stopping = tokio::select! {
                _ = tokio::time::sleep(EXPORT_EVERY) => false,
                _ = shutdown.changed() => true,
            };
            loop {
                let Some(batch) = take_batch(&spans) else { return };
                if batch.is_empty() {
                    break;
                }
                let full = batch.len() == BATCH;
                self.export(&exporter, batch, if stopping { SHUTDOWN_FLUSH } else { limit })
                    .await;
                if !full {
                    break;
                }
            }
            if stopping {
                let left = std::iter::from_fn(|| spans.try_recv().ok()).count() as u64;
                self.metrics.dropped.with_label_values(&["shutdown"]).inc_by(left);
                return;
            }
        }
    }
}

fn resource(config: &Tracing) -> Resource {
    let mut attributes = vec![
        KeyValue::new("service.name", config.service_name.clone()),
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
    ];
    if let Some(host) = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
    {
        attributes.push(KeyValue::new("host.name", host));
    }
    Resource::builder_empty().with_attributes(attributes).build()
}

fn build_exporter(config: &Tracing) -> Result<opentelemetry_otlp::SpanExporter, String> {
    // reqwest is built without a crypto provider of its own and wants the process's
    // default even for plain http:// (Pingora may have installed it already).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let headers = config.headers.iter().cloned();
    let mut exporter = match config.protocol {
        OtlpProtocol::HttpProtobuf => {
            let mut client = reqwest::Client::builder().timeout(config.timeout);
            if config.endpoint.starts_with("https://") {
                client = client.tls_backend_preconfigured(rustls_config(config.tls.as_ref())?);
            }
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(format!("{}/v1/traces", config.endpoint))
                .with_timeout(config.timeout)
                .with_headers(headers.collect())
                .with_http_client(client.build().map_err(|e| e.to_string())?)
                .build()
        }
        OtlpProtocol::Grpc => {
            let mut metadata = tonic::metadata::MetadataMap::new();
            for (name, value) in headers {
                let key =
                    tonic::metadata::MetadataKey::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
                metadata.insert(key, value.parse().map_err(|_| format!("header {name}"))?);
            }
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(config.endpoint.clone())
                .with_timeout(config.timeout)
                .with_metadata(metadata);
            if config.endpoint.starts_with("https://") {
                builder = builder.with_tls_config(tonic_tls(config.tls.as_ref()));
            }
            builder.build()
        }
    }
    .map_err(|e| e.to_string())?;
    exporter.set_resource(&resource(config));
    Ok(exporter)
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
