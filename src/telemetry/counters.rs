//! The per-request counters' children, resolved ahead of the request that needs
//! them, so recording takes no registry lock and hashes no labels: by route and a
//! label from a fixed set (at start), and by route, method and status (on first use).

use prometheus::core::Collector;
use prometheus::{IntCounter, IntCounterVec};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Method labels; anything else is counted as `OTHER`, so the label stays bounded.
const METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE", "OTHER",
];
/// Statuses 100..=599 get a slot in a route's counter table.
const STATUSES: usize = 500;

pub(super) fn method_index(method: &http::Method) -> usize {
    METHODS[..METHODS.len() - 1]
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(METHODS.len() - 1)
}

/// A counter by route and one more label from a fixed set, every child resolved
/// at start (so each shows from the first scrape, at 0). A value outside the set
/// is still counted, through the vector.
pub(super) struct FixedLabelCounters {
    vec: IntCounterVec,
    values: Vec<&'static str>,
    /// (route slot × values + value) → counter.
    children: Box<[IntCounter]>,
}

impl FixedLabelCounters {
    /// `routes`: the route labels by slot.
    pub(super) fn new(vec: IntCounterVec, values: Vec<&'static str>, routes: &[&str]) -> Self {
        let children = routes
            .iter()
            .flat_map(|r| values.iter().map(move |v| [*r, *v]))
            .map(|labels| vec.with_label_values(&labels))
            .collect();
        FixedLabelCounters {
            vec,
            values,
            children,
        }
    }

    pub(super) fn inc(&self, route_slot: usize, route: &str, value: &str) {
        let child = self
            .values
            .iter()
            .position(|v| *v == value)
            .and_then(|i| self.children.get(route_slot * self.values.len() + i));
        match child {
            Some(c) => c.inc(),
            None => self.vec.with_label_values(&[route, value]).inc(),
        }
    }
}

/// One route × method's counters, indexed by status − 100.
type StatusTable = Box<[OnceLock<IntCounter>]>;

/// `floodgate_requests_total`'s children, each resolved through the vector (a
/// lock and a hash of the labels) the first time it is seen and read lock-free after.
/// A route × method table of statuses is allocated on first use.
pub(super) struct RequestCounters {
    vec: IntCounterVec,
    /// (route slot × METHODS + method) → status − 100 → counter.
    tables: Box<[OnceLock<StatusTable>]>,
}

impl RequestCounters {
    pub(super) fn new(vec: IntCounterVec, route_slots: usize) -> Self {
        RequestCounters {
            vec,
            tables: (0..route_slots * METHODS.len())
                .map(|_| OnceLock::new())
                .collect(),
        }
    }

    pub(super) fn inc(&self, route_slot: usize, route: &str, method: usize, status: u16) {
        let code = http::StatusCode::from_u16(status).ok();
        let label = code.as_ref().map_or("000", http::StatusCode::as_str);
        let resolve = || self.vec.with_label_values(&[route, METHODS[method], label]);
        let slot = usize::from(status).checked_sub(100).filter(|s| *s < STATUSES);
        let table = self.tables.get(route_slot * METHODS.len() + method);
        match (table, slot) {
            (Some(table), Some(slot)) => {
                let table = table.get_or_init(|| (0..STATUSES).map(|_| OnceLock::new()).collect());
                table[slot].get_or_init(resolve).inc();
            }
            _ => resolve().inc(),
        }
    }

    /// Totals by route label, as a scrape would sum them: a `000` status (one
    /// `http` cannot represent) counts as a request but as neither error class.
    pub(super) fn totals(&self) -> HashMap<String, RequestTotals> {
        let mut by_route: HashMap<String, RequestTotals> = HashMap::new();
        for family in self.vec.collect() {
            for m in family.get_metric() {
                let label = |name: &str| m.get_label().iter().find(|l| l.name() == name).map(|l| l.value());
                let Some(route) = label("route") else { continue };
                let n = m.get_counter().get_value() as u64;
                let totals = by_route.entry(route.to_owned()).or_default();
                totals.all += n;
                match label("status").and_then(|s| s.parse::<u16>().ok()) {
                    Some(s) if s >= 500 => totals.errors_5xx += n,
                    Some(s) if s >= 400 => totals.errors_4xx += n,
                    _ => {}
                }
            }
        }
        by_route
    }
}

/// Requests answered since start, summed over methods and statuses.
#[derive(Clone, Copy, Default)]
pub struct RequestTotals {
    pub all: u64,
    pub errors_4xx: u64,
    pub errors_5xx: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Opts;

    #[test]
    fn status_labels() {
        let vec = IntCounterVec::new(Opts::new("t", "t"), &["route", "method", "status"]).expect("vec");
        let counters = RequestCounters::new(vec.clone(), 1);
        counters.inc(0, "r", 0, 429);
        counters.inc(0, "r", 0, 429);
        counters.inc(0, "r", 1, 200);
        counters.inc(0, "r", 0, 42);
        assert_eq!(vec.with_label_values(&["r", "GET", "429"]).get(), 2);
        assert_eq!(vec.with_label_values(&["r", "POST", "200"]).get(), 1);
        assert_eq!(vec.with_label_values(&["r", "GET", "000"]).get(), 1);
        let totals = counters.totals()["r"];
        assert_eq!((totals.all, totals.errors_4xx, totals.errors_5xx), (4, 2, 0));
        assert_eq!(
            method_index(&http::Method::from_bytes(b"BREW").expect("method")),
            9
        );
    }

    #[test]
    fn fixed_labels_are_resolved_per_route_and_others_still_counted() {
        let vec = IntCounterVec::new(Opts::new("t", "t"), &["route", "scope"]).expect("vec");
        let scopes = vec!["local", "route", "global", "quota"];
        let counters = FixedLabelCounters::new(vec.clone(), scopes, &["a", "b", "none"]);
        assert_eq!(
            vec.with_label_values(&["none", "quota"]).get(),
            0,
            "resolved at start"
        );
        counters.inc(1, "b", "global");
        counters.inc(2, "none", "local");
        counters.inc(0, "a", "unheard_of");
        counters.inc(7, "none", "route");
        assert_eq!(vec.with_label_values(&["b", "global"]).get(), 1);
        assert_eq!(vec.with_label_values(&["a", "global"]).get(), 0);
        assert_eq!(vec.with_label_values(&["none", "local"]).get(), 1);
        assert_eq!(vec.with_label_values(&["a", "unheard_of"]).get(), 1);
        assert_eq!(vec.with_label_values(&["none", "route"]).get(), 1);
    }
}
