//! Distributed tracing: a SERVER span for every request that reaches the proxy
//! phases and a CLIENT span for each upstream attempt, propagated with W3C
//! `traceparent` and exported over OTLP by a background task.
//!
//! The request path only draws ids and, for a sampled request, notes times: the
//! spans are assembled in `logging` for sampled requests alone and handed to a
//! bounded queue that never waits (`export`). An unsampled request costs its ids
//! and one `traceparent` header.

pub mod context;
mod export;
mod metrics;
mod proto;
mod spans;

pub use export::{SpanExport, SpanQueue};
pub use metrics::TraceMetrics;
pub use spans::Finished;

use crate::config::Tracing;
use context::Remote;
use http::{HeaderMap, HeaderValue};
use std::net::SocketAddr;
use std::time::SystemTime;

/// How traces are sampled, and where recorded spans go.
pub struct Tracer {
    sample_ratio: f64,
    parent_based: bool,
    queue: SpanQueue,
}

impl Tracer {
    pub fn new(config: &Tracing, queue: SpanQueue) -> Self {
        Tracer {
            sample_ratio: config.sample_ratio,
            parent_based: config.parent_based,
            queue,
        }
    }

    /// The request's trace: the caller's continued (`parent_based`), else a new
    /// one. Sampling a new trace is a random draw, never a function of the trace
    /// id, so a caller cannot pick ids that are always recorded; and with
    /// `parent_based: false` a caller's context is only linked, never continued.
    pub fn start(&self, headers: &HeaderMap) -> RequestTrace {
        let remote = headers
            .get(context::TRACEPARENT)
            .and_then(|v| context::parse(v.as_bytes()));
        let (trace_id, parent, sampled, link) = match remote {
            Some(remote) if self.parent_based => {
                (remote.trace_id, Some(remote.span_id), remote.sampled, None)
            }
            other => (context::new_trace_id(), None, self.draw(), other),
        };
        RequestTrace {
            trace_id,
            span_id: context::new_span_id(),
            parent,
            attempt_span: None,
            recording: sampled.then(|| {
                Box::new(Recording {
                    start: SystemTime::now(),
                    link,
                    attempts: Vec::new(),
                })
            }),
        }
    }

    fn draw(&self) -> bool {
        self.sample_ratio > 0.0 && fastrand::f64() < self.sample_ratio
    }

    /// Builds and queues the request's spans if it was sampled.
    pub fn finish(&self, trace: RequestTrace, finished: &Finished<'_>) {
        if let Some(recording) = &trace.recording {
            let end = SystemTime::now();
            for span in spans::encode(&trace, recording, finished, end) {
                self.queue.push(span);
            }
        }
    }
}

/// One request's place in its trace.
pub struct RequestTrace {
    pub trace_id: u128,
    /// The SERVER span's id.
    pub span_id: u64,
    /// The caller's span, when its trace is continued.
    parent: Option<u64>,
    /// The current upstream attempt's span: the parent the upstream is told of.
    attempt_span: Option<u64>,
    /// Times and outcomes, kept for sampled requests only (so: whether it is sampled).
    recording: Option<Box<Recording>>,
}

struct Recording {
    start: SystemTime,
    /// A caller's context that was not continued (`parent_based: false`).
    link: Option<Remote>,
    attempts: Vec<AttemptRecord>,
}

struct AttemptRecord {
    span_id: u64,
    target: SocketAddr,
    start: SystemTime,
    /// When the connection was ready, and whether it was a pooled one.
    connected: Option<(SystemTime, bool)>,
    /// When the response head arrived, and its status.
    answered: Option<(SystemTime, u16)>,
    /// Why it failed, as `error.type`.
    error: Option<&'static str>,
    end: Option<SystemTime>,
}

impl RequestTrace {
    pub fn sampled(&self) -> bool {
        self.recording.is_some()
    }

    /// A new upstream attempt to `target`: its span becomes the upstream's parent.
    pub fn attempt(&mut self, target: SocketAddr) {
        let span_id = context::new_span_id();
        self.attempt_span = Some(span_id);
        if let Some(recording) = &mut self.recording {
            recording.attempts.push(AttemptRecord {
                span_id,
                target,
                start: SystemTime::now(),
                connected: None,
                answered: None,
                error: None,
                end: None,
            });
        }
    }

    fn current(&mut self) -> Option<&mut AttemptRecord> {
        self.recording.as_mut()?.attempts.last_mut()
    }

    pub fn connected(&mut self, reused: bool) {
        if let Some(attempt) = self.current() {
            attempt.connected = Some((SystemTime::now(), reused));
        }
    }

    pub fn answered(&mut self, status: u16) {
        if let Some(attempt) = self.current() {
            attempt.answered = Some((SystemTime::now(), status));
        }
    }

    /// The current attempt failed (with `error.type`, unless its status names it), and ends now.
    pub fn failed(&mut self, error: Option<&'static str>) {
        if let Some(attempt) = self.current().filter(|a| a.end.is_none()) {
            attempt.error = error;
            attempt.end = Some(SystemTime::now());
        }
    }

    /// The `traceparent` the upstream receives: this trace, the attempt's span as parent.
    pub fn traceparent(&self) -> HeaderValue {
        context::traceparent(
            self.trace_id,
            self.attempt_span.unwrap_or(self.span_id),
            self.sampled(),
        )
    }

    /// A caller's `tracestate` travels only with the caller's own trace.
    pub fn keeps_tracestate(&self) -> bool {
        self.parent.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::metrics::TraceMetrics;
    use super::*;

    fn tracer(sample_ratio: f64, parent_based: bool) -> Tracer {
        let (queue, _rx) = SpanQueue::new(16, TraceMetrics::unregistered());
        Tracer {
            sample_ratio,
            parent_based,
            queue,
        }
    }

    fn with_parent(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(context::TRACEPARENT, HeaderValue::from_str(value).expect("value"));
        headers
    }

    const LOW_SAMPLED: &str = "00-00000000000000000000000000000001-0000000000000001-01";

    #[test]
    fn a_parent_is_followed_only_when_parent_based() {
        let followed = tracer(0.0, true).start(&with_parent(LOW_SAMPLED));
        assert_eq!(
            (followed.trace_id, followed.parent, followed.sampled()),
            (1, Some(1), true)
        );
        assert!(followed.keeps_tracestate());
        let unsampled = tracer(1.0, true).start(&with_parent(
            "00-00000000000000000000000000000001-0000000000000001-00",
        ));
        assert!(!unsampled.sampled() && unsampled.recording.is_none());
        let edge = tracer(0.0, false).start(&with_parent(LOW_SAMPLED));
        assert!(!edge.sampled(), "a caller's flag decided at an edge");
        assert_ne!(edge.trace_id, 1);
        assert!(edge.parent.is_none() && !edge.keeps_tracestate());
    }

    #[test]
    fn crafted_low_trace_ids_are_sampled_at_the_ratio_not_always() {
        let tracer = tracer(0.25, false);
        let sampled = (0..4000)
            .filter(|_| tracer.start(&with_parent(LOW_SAMPLED)).sampled())
            .count();
        assert!((700..1300).contains(&sampled), "{sampled} of 4000 at 0.25");
        let link = tracer
            .start(&with_parent(LOW_SAMPLED))
            .recording
            .or_else(|| {
                Tracer {
                    sample_ratio: 1.0,
                    ..tracer
                }
                .start(&with_parent(LOW_SAMPLED))
                .recording
            })
            .and_then(|r| r.link);
        assert_eq!(link.map(|l| (l.trace_id, l.span_id)), Some((1, 1)));
    }

    #[test]
    fn the_upstream_is_told_of_the_attempt_span() {
        let mut trace = tracer(1.0, true).start(&HeaderMap::new());
        trace.attempt("127.0.0.1:1".parse().expect("addr"));
        let attempt = trace.attempt_span.expect("attempt");
        let value = trace.traceparent();
        let remote = context::parse(value.as_bytes()).expect("valid");
        assert_eq!(
            (remote.trace_id, remote.span_id, remote.sampled),
            (trace.trace_id, attempt, true)
        );
        assert_eq!(trace.recording.as_ref().map(|r| r.attempts.len()), Some(1));
    }
}
