//! The per-request series' children, each resolved through its vector (a lock and
//! a hash of the labels) the first time a request produces it and read lock-free
//! after, from a slot per route: a route that saw no traffic has no series, and
//! costs one empty slot (16 to 24 bytes) in each table.

use prometheus::core::Collector;
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};
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

/// Children filled on first use.
type Slots<T> = Box<[OnceLock<T>]>;

/// `n` empty slots.
fn slots<T>(n: usize) -> Slots<T> {
    (0..n).map(|_| OnceLock::new()).collect()
}

/// A vector of series with one label.
pub(super) trait OneLabel {
    type Child;
    fn child(&self, label: &str) -> Self::Child;
}

impl OneLabel for HistogramVec {
    type Child = Histogram;
    fn child(&self, label: &str) -> Histogram {
        self.with_label_values(&[label])
    }
}

impl OneLabel for IntCounterVec {
    type Child = IntCounter;
    fn child(&self, label: &str) -> IntCounter {
        self.with_label_values(&[label])
    }
}

/// A series with one label (a route, an upstream), one child per slot.
pub(super) struct PerSlot<V: OneLabel> {
    vec: V,
    children: Slots<V::Child>,
}

impl<V: OneLabel> PerSlot<V> {
    pub(super) fn new(vec: V, slots_n: usize) -> Self {
        PerSlot {
            vec,
            children: slots(slots_n),
        }
    }

    /// The slot's child, created on first use; a slot past the table is looked
    /// up through the vector.
    pub(super) fn with(&self, slot: usize, label: &str, f: impl FnOnce(&V::Child)) {
        let resolve = || self.vec.child(label);
        match self.children.get(slot) {
            Some(child) => f(child.get_or_init(resolve)),
            None => f(&resolve()),
        }
    }

    /// The slot's child, if a request created it.
    pub(super) fn get(&self, slot: usize) -> Option<&V::Child> {
        self.children.get(slot)?.get()
    }
}

/// A counter by route and one more label from a fixed set, each child created by
/// the first request that counts in it. A value outside the set is still
/// counted, through the vector.
pub(super) struct FixedLabelCounters {
    vec: IntCounterVec,
    values: Vec<&'static str>,
    /// route slot → value → counter; a route's table is allocated on its first count.
    children: Slots<Slots<IntCounter>>,
}

impl FixedLabelCounters {
    pub(super) fn new(vec: IntCounterVec, values: Vec<&'static str>, route_slots: usize) -> Self {
        FixedLabelCounters {
            vec,
            values,
            children: slots(route_slots),
        }
    }

    pub(super) fn inc(&self, route_slot: usize, route: &str, value: &str) {
        let resolve = || self.vec.with_label_values(&[route, value]);
        let index = self.values.iter().position(|v| *v == value);
        match (self.children.get(route_slot), index) {
            (Some(table), Some(i)) => {
                let table = table.get_or_init(|| slots(self.values.len()));
                table[i].get_or_init(resolve).inc();
            }
            _ => resolve().inc(),
        }
    }
}

/// One route × method's counters, indexed by status − 100.
type StatusTable = Slots<IntCounter>;

/// `floodgate_requests_total`'s children. A route's table of methods, and a
/// method's table of statuses, are allocated on first use.
pub(super) struct RequestCounters {
    vec: IntCounterVec,
    /// route slot → method → status − 100 → counter.
    tables: Slots<Slots<StatusTable>>,
}

impl RequestCounters {
    pub(super) fn new(vec: IntCounterVec, route_slots: usize) -> Self {
        RequestCounters {
            vec,
            tables: slots(route_slots),
        }
    }

    pub(super) fn inc(&self, route_slot: usize, route: &str, method: usize, status: u16) {
        let code = http::StatusCode::from_u16(status).ok();
        let label = code.as_ref().map_or("000", http::StatusCode::as_str);
        let resolve = || self.vec.with_label_values(&[route, METHODS[method], label]);
        let slot = usize::from(status).checked_sub(100).filter(|s| *s < STATUSES);
        let table = self
            .tables
            .get(route_slot)
            .map(|t| &t.get_or_init(|| slots(METHODS.len()))[method]);
        match (table, slot) {
            (Some(table), Some(slot)) => {
                let table = table.get_or_init(|| slots(STATUSES));
                table[slot].get_or_init(resolve).inc();
            }
            _ => resolve().inc(),
        }
    }

    /// Totals by route label, as a scrape would sum them: a `000` status (one
    /// `http` cannot represent) counts as a request but as neither error class.
    /// Only routes that saw traffic have series, so this costs what is active.
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
    fn fixed_labels_appear_on_first_count_and_others_are_still_counted() {
        let vec = IntCounterVec::new(Opts::new("t", "t"), &["route", "scope"]).expect("vec");
        let scopes = vec!["local", "route", "global", "quota"];
        let counters = FixedLabelCounters::new(vec.clone(), scopes, 3);
        assert!(vec.collect()[0].get_metric().is_empty(), "nothing before a count");
        counters.inc(1, "b", "global");
        counters.inc(2, "none", "local");
        counters.inc(0, "a", "unheard_of");
        counters.inc(7, "none", "route");
        assert_eq!(vec.collect()[0].get_metric().len(), 4, "only what was counted");
        assert_eq!(vec.with_label_values(&["b", "global"]).get(), 1);
        assert_eq!(vec.with_label_values(&["none", "local"]).get(), 1);
        assert_eq!(vec.with_label_values(&["a", "unheard_of"]).get(), 1);
        assert_eq!(vec.with_label_values(&["none", "route"]).get(), 1);
    }

    #[test]
    fn a_route_series_is_created_by_its_first_use_and_kept() {
        let vec = IntCounterVec::new(Opts::new("t", "t"), &["route"]).expect("vec");
        let by_route = PerSlot::new(vec.clone(), 2);
        assert!(by_route.get(1).is_none());
        by_route.with(1, "b", |c| c.inc());
        by_route.with(1, "b", |c| c.inc());
        by_route.with(5, "past", |c| c.inc());
        assert_eq!(by_route.get(1).map(IntCounter::get), Some(2));
        assert!(by_route.get(0).is_none());
        assert_eq!(vec.collect()[0].get_metric().len(), 2);
        assert_eq!(vec.with_label_values(&["past"]).get(), 1);
    }
}
