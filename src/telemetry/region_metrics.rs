//! Series of the region sync (services/region_sync), written by it as it runs;
//! their `peer` labels are the configured regions, so bounded by the config.

use super::metrics::registered;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct RegionMetrics {
    pub rounds: IntCounterVec,
    pub duration: Histogram,
    pub bytes: IntCounterVec,
    pub keys: IntCounterVec,
    pub peer_up: IntGaugeVec,
    pub partitions: IntCounterVec,
    pub leaseholder: IntGauge,
    pub consumer_changes: IntCounterVec,
}

impl RegionMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            registered(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
        };
        Ok(RegionMetrics {
            rounds: counter(
                "floodgate_region_sync_rounds_total",
                "Region sync rounds this instance ran as its region's leaseholder, by result (ok, partial: some region not reached, failed: its own Redis)",
                &["result"],
            )?,
            duration: registered(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "floodgate_region_sync_duration_seconds",
                        "Time of one region sync round, peers' round trips included",
                    )
                    .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
                )?,
            )?,
            bytes: counter(
                "floodgate_region_sync_bytes_total",
                "Bytes of script arguments sent to and replies received from each peer region's Redis",
                &["peer", "direction"],
            )?,
            keys: counter(
                "floodgate_region_sync_keys_total",
                "Budget keys exchanged with each peer region",
                &["peer"],
            )?,
            peer_up: registered(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "floodgate_region_peer_up",
                        "1 when the last round reached the peer region's Redis (set on the leaseholder)",
                    ),
                    &["peer"],
                )?,
            )?,
            partitions: counter(
                "floodgate_region_partitions_total",
                "Times a peer region went from reachable to unreachable",
                &["peer"],
            )?,
            leaseholder: registered(
                registry,
                IntGauge::new(
                    "floodgate_region_leaseholder",
                    "1 while this instance holds its region's lease to talk to the other regions",
                )?,
            )?,
            consumer_changes: counter(
                "floodgate_region_consumer_changes_total",
                "Runtime consumer changes made in a peer region and applied in this one",
                &["peer"],
            )?,
        })
    }
}
