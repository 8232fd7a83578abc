//! Series of the span export: what reached the collector, what was dropped and
//! why, and how exports went. Registered only where tracing is configured.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

/// Why spans never reached the collector; the label's whole set.
const DROP_REASONS: [&str; 3] = ["queue_full", "export_failed", "shutdown"];

#[derive(Clone)]
pub struct TraceMetrics {
    pub exported: IntCounter,
    dropped: IntCounterVec,
    /// `dropped`'s series, resolved once: a full queue is counted with no label lookup.
    pub dropped_queue_full: IntCounter,
    pub dropped_export_failed: IntCounter,
    pub dropped_shutdown: IntCounter,
    pub export_errors: IntCounter,
    pub export_duration: Histogram,
}

impl TraceMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self::unregistered();
        registry.register(Box::new(metrics.exported.clone()))?;
        registry.register(Box::new(metrics.dropped.clone()))?;
        registry.register(Box::new(metrics.export_errors.clone()))?;
        registry.register(Box::new(metrics.export_duration.clone()))?;
        Ok(metrics)
    }

    /// The series, not on any registry (for tests, and as `new` builds them).
    pub fn unregistered() -> Self {
        let dropped = IntCounterVec::new(
            Opts::new(
                "floodgate_tracing_spans_dropped_total",
                "Recorded spans that never reached the collector, by reason (queue_full: more waiting than tracing.max_queue; export_failed: the collector refused, failed or timed out; shutdown)",
            ),
            &["reason"],
        )
        .expect("valid name");
        let [queue_full, export_failed, shutdown] = DROP_REASONS.map(|r| dropped.with_label_values(&[r]));
        TraceMetrics {
            dropped,
            dropped_queue_full: queue_full,
            dropped_export_failed: export_failed,
            dropped_shutdown: shutdown,
            exported: IntCounter::new(
                "floodgate_tracing_spans_exported_total",
                "Spans the collector accepted",
            )
            .expect("valid name"),
            export_errors: IntCounter::new(
                "floodgate_tracing_export_errors_total",
                "Export calls that failed or timed out",
            )
            .expect("valid name"),
            export_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "floodgate_tracing_export_duration_seconds",
                    "Time of one export call to the collector, failed ones included",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            )
            .expect("valid name"),
        }
    }
}
