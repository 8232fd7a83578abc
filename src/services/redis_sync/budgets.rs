//! The sync's work for the per-caller buckets: every key touched since its last
//! report (at most `max_keys_per_sync` a round, oldest first) is settled by one
//! script call on its own Redis key: what this instance spent comes off the
//! key's cluster pool, and the pool's tokens are leased out in proportion to
//! where the key's demand lands. Idle keys cost nothing, and a key whose lease
//! covers its demand twice over for several rounds reports again only then
//! (ratelimit::report_schedule): settles follow the keys near their limit.

use super::round::{Batch, Queued, Replies};
use super::{Backend, RedisSync};
use crate::ratelimit::local::{Lease, Report};
use crate::ratelimit::report_schedule::MAX_PUT_OFF_ROUNDS;
use crate::vocab::limit_key::LimitKey;
use arc_swap::ArcSwapOption;
use redis::Script;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Keys per script call and per pipeline (in a cluster, of one hash tag's keys).
const KEYS_PER_CALL: usize = 64;
const KEYS_PER_PIPELINE: usize = 512;

/// In a Redis Cluster the budgets are spread over this many hash tags: the keys
/// of one share a slot, so one call settles many of them (a slot of its own per
/// key would cost a call and a pipeline per key), and the tags spread over the
/// masters as keys would.
const CLUSTER_GROUPS: u32 = 1024;

pub(super) const SETTLE_SOURCE: &str = include_str!("settle.lua");
static SETTLE: LazyLock<Script> = LazyLock::new(|| Script::new(SETTLE_SOURCE));

/// The Redis key of a caller's cluster budget, and in a cluster its hash tag's
/// group (0 otherwise): `<prefix>:cb:c:<consumer>`, or in a cluster
/// `{<prefix>:cb:<group>}:c:<consumer>` (the group a CRC32 of the rest, the same
/// on every instance).
pub fn budget_key(prefix: &str, key: &LimitKey, cluster: bool) -> (u32, String) {
    named_budget_key(prefix, &budget_name(key), cluster)
}

/// The part of a budget's Redis key that names the caller, the same in every region.
pub fn budget_name(key: &LimitKey) -> String {
    match key {
        LimitKey::Consumer(c) => format!("c:{c}"),
        LimitKey::Ip(_) => format!("ip:{key}"),
        LimitKey::Route(..) => format!("r:{key}"),
    }
}

/// [`budget_key`] from the caller's part of the name.
pub fn named_budget_key(prefix: &str, name: &str, cluster: bool) -> (u32, String) {
    if cluster {
        let group = crc32fast::hash(name.as_bytes()) % CLUSTER_GROUPS;
        (group, format!("{{{prefix}:cb:{group}}}:{name}"))
    } else {
        (0, format!("{prefix}:cb:{name}"))
    }
}

/// A round's reports, as they were split into pipelines, where those sit, and
/// the keys left waiting.
pub(super) struct BudgetRound {
    queued: Queued,
    /// The keys named for the region sync last round, handed over with this one.
    region_due: Option<(Queued, Vec<String>)>,
    pub(super) reports: Vec<Report>,
    /// The reports each pipeline carries, in order.
    per_pipeline: Vec<usize>,
    waiting: usize,
}

/// The keys a round reported, settled or given back, and those left waiting.
pub(super) struct BudgetsDone {
    pub(super) keys: usize,
    pub(super) waiting: usize,
}

/// Reads a caller's budget from Redis for the admin API, over the sync's connection.
#[derive(Clone)]
pub struct BudgetStore {
    backend: Arc<ArcSwapOption<Backend>>,
    key_prefix: String,
    stale_ms: u64,
    /// This region's name, with several regions.
    region: Option<String>,
}

/// A budget as Redis holds it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterBudget {
    /// Tokens no instance holds, as of `at_ms` (server time).
    pub pool: f64,
    pub at_ms: u64,
    /// Tokens admitted cluster-wide in the current and the previous minute.
    pub used_this_minute: f64,
    pub used_last_minute: f64,
    /// Live instances with a lease or demand for the key: (lease, asked).
    pub instances: HashMap<String, (f64, f64)>,
    /// With several regions: the worldwide view this region holds of the key.
    pub world: Option<WorldBudget>,
}

/// A key's budget across regions, as this region's Redis holds it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorldBudget {
    /// This region's share of the tier.
    pub share: f64,
    /// What is left of the tier worldwide as far as this region knows, now.
    pub remaining: f64,
    /// Per region (this one included): tokens spent since the key's hash began
    /// there, its demand a second, and when this region last heard of it (ms).
    pub regions: HashMap<String, (f64, f64, u64)>,
}

impl BudgetStore {
    /// `Ok(None)`: Redis holds no budget for the key (idle long enough to be full).
    pub async fn read(&self, key: &LimitKey) -> Result<Option<ClusterBudget>, String> {
        let backend = self.backend.load_full().ok_or("not connected to redis")?;
        let cluster = matches!(*backend, Backend::Cluster(_));
        let mut pipe = redis::pipe();
        pipe.hgetall(budget_key(&self.key_prefix, key, cluster).1);
        let replies = tokio::time::timeout(Duration::from_secs(1), backend.run(vec![pipe]))
            .await
            .map_err(|_| "redis did not answer in time".to_string())?
            .pop()
            .unwrap_or(Ok(Vec::new()))
            .map_err(|e| e.to_string())?;
        let fields: HashMap<String, String> = replies
            .into_iter()
            .next()
            .map(redis::from_redis_value)
            .transpose()
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        if fields.is_empty() {
            return Ok(None);
        }
        let number = |f: &str| fields.get(f).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let at_ms = number("at") as u64;
        let minute_now = crate::vocab::clock::unix_now().as_millis() as u64 / 60_000;
        let (this, last) = match minute_now.saturating_sub(number("win") as u64) {
            0 => (number("wu"), number("pu")),
            1 => (0.0, number("wu")),
            _ => (0.0, 0.0),
        };
        let instances: HashMap<String, (f64, f64)> = fields
            .iter()
            .filter_map(|(f, v)| {
                let id = f.strip_prefix("i:")?;
                let mut parts = v.split(' ').map(|p| p.parse::<f64>().ok());
                let (lease, asked, seen) = (parts.next()??, parts.next()??, parts.next()?? as u64);
                (seen + self.stale_ms >= at_ms).then(|| (id.to_string(), (lease, asked)))
            })
            .collect();
        let world = self
            .region
            .as_ref()
            .filter(|_| fields.contains_key("w"))
            .map(|me| {
                let now_ms = crate::vocab::clock::unix_now().as_millis() as u64;
                let refill = number("r") * now_ms.saturating_sub(number("wat") as u64) as f64 / 1000.0;
                let demand: f64 =
                    instances.values().map(|(_, asked)| asked).sum::<f64>() * 1000.0 / number("li").max(1.0);
                let mut regions: HashMap<String, (f64, f64, u64)> = fields
                    .iter()
                    .filter_map(|(f, v)| {
                        let name = f.strip_prefix("p:")?;
                        let mut parts = v.split(' ').skip(1).map(|p| p.parse::<f64>().ok());
                        let (spent, demand, seen) = (parts.next()??, parts.next()??, parts.next()?? as u64);
                        Some((name.to_string(), (spent, demand, seen)))
                    })
                    .collect();
                regions.insert(me.clone(), (number("c"), demand, at_ms));
                WorldBudget {
                    share: fields.get("rs").and_then(|v| v.parse().ok()).unwrap_or(1.0),
                    remaining: (number("w") + refill).min(number("b")),
                    regions,
                }
            });
        Ok(Some(ClusterBudget {
            pool: number("pool"),
            at_ms,
            used_this_minute: this,
            used_last_minute: last,
            instances,
            world,
        }))
    }
}

impl RedisSync {
    pub fn budget_store(&self) -> BudgetStore {
        BudgetStore {
            backend: self.backend.clone(),
            key_prefix: self.key_prefix.clone(),
            stale_ms: self.stale_ms(),
            region: self.region.as_ref().map(|r| r.name.clone()),
        }
    }

    /// A silent instance's lease and demand stop counting after this long: three
    /// periods, a period being the interval plus a round that runs to its deadline.
    fn stale_ms(&self) -> u64 {
        (self.interval + self.timeout(self.max_keys_per_sync)).as_millis() as u64 * 3
    }

    /// The round's pipelines, queued, and what they carry: in a cluster, one
    /// hash tag's keys to a pipeline.
    pub(super) fn budgets_round(&self, cluster: bool, batch: &mut Batch) -> BudgetRound {
        let reports = self.limiter.local.take_reports(self.max_keys_per_sync);
        let waiting = self.limiter.local.waiting();
        let mut named: Vec<(u32, String, Report)> = reports
            .into_iter()
            .map(|r| {
                let (group, name) = budget_key(&self.key_prefix, &r.key, cluster);
                (group, name, r)
            })
            .collect();
        named.sort_by_key(|(group, ..)| *group);
        let stale_ms = self.stale_ms();
        let (regions, region_interval_ms) = self
            .region
            .as_ref()
            .map_or((0, 0), |r| (r.regions, r.interval.as_millis() as u64));
        let mut pipes = Vec::new();
        let mut per_pipeline = Vec::new();
        for group in named.chunk_by(|a, b| a.0 == b.0) {
            for chunk in group.chunks(KEYS_PER_PIPELINE) {
                let mut pipe = redis::pipe();
                for call in chunk.chunks(KEYS_PER_CALL) {
                    let cmd = pipe.cmd("EVALSHA").arg(SETTLE.get_hash()).arg(call.len());
                    for (_, name, _) in call {
                        cmd.arg(name);
                    }
                    cmd.arg(&self.instance_id)
                        .arg(stale_ms)
                        .arg(self.interval.as_millis() as u64)
                        .arg(MAX_PUT_OFF_ROUNDS)
                        .arg(regions)
                        .arg(region_interval_ms);
                    for (.., r) in call {
                        cmd.arg(r.bucket.rate)
                            .arg(r.bucket.burst)
                            .arg(r.used)
                            .arg(r.asked_per_round())
                            .arg(r.need);
                    }
                }
                pipes.push(pipe);
                per_pipeline.push(chunk.len());
            }
        }
        let region_due = self.region.as_ref().and_then(|region| {
            let names = std::mem::take(&mut *region.due.lock().unwrap_or_else(|e| e.into_inner()));
            if names.is_empty() {
                return None;
            }
            let mut pipe = redis::pipe();
            pipe.sadd(region_due_key(&self.key_prefix), &names).ignore();
            Some((batch.queue([pipe]), names))
        });
        BudgetRound {
            queued: batch.queue(pipes),
            region_due,
            reports: named.into_iter().map(|(.., r)| r).collect(),
            per_pipeline,
            waiting,
        }
    }

    /// Settles the keys of each pipeline that ran; those of a failed one go back.
    pub(super) fn budgets_install(
        &self,
        replies: &mut Replies,
        round: BudgetRound,
        now_ns: u64,
    ) -> BudgetsDone {
        let done = BudgetsDone {
            keys: round.reports.len(),
            waiting: round.waiting,
        };
        if let Some((queued, names)) = round.region_due {
            if !replies.take(queued).all(|r| r.is_ok()) {
                self.region_due_again(names);
            }
        }
        let mut due = Vec::new();
        let mut results = replies.take(round.queued);
        let mut reports = round.reports.into_iter();
        for size in round.per_pipeline {
            let chunk: Vec<Report> = reports.by_ref().take(size).collect();
            match results.next() {
                Some(Ok(values)) => {
                    let fields: Vec<String> = values
                        .iter()
                        .filter_map(|v| redis::from_redis_value_ref::<Vec<String>>(v).ok())
                        .flatten()
                        .collect();
                    let mut leases = fields.chunks(5).map(|f| Some((parse(f)?, f.get(4)? == "1")));
                    for report in chunk {
                        match leases.next().flatten() {
                            Some((mut lease, region_due)) => {
                                if region_due {
                                    due.push(budget_name(&report.key));
                                }
                                // Redis counts the lease for twice its rounds' interval
                                // (and 3 periods more): past that it lapses here, however
                                // slowly the rounds run.
                                let counted = self.interval * 2 * lease.rounds.saturating_sub(1);
                                let lapse_at_ns = now_ns + counted.as_nanos() as u64;
                                // Reporting early is always safe; keys settled in one
                                // round (a restart, a wave of new callers) then come due
                                // over several instead of all in the same one.
                                lease.rounds -= fastrand::u32(0..=lease.rounds / 2);
                                let asked = report.asked_per_round();
                                let local = &self.limiter.local;
                                local.settle(&report.key, lease, asked, now_ns, lapse_at_ns)
                            }
                            None => self.limiter.local.restore(report),
                        }
                    }
                }
                _ => chunk.into_iter().for_each(|r| self.limiter.local.restore(r)),
            }
        }
        self.region_due_again(due);
        done
    }

    /// Keys the region sync is to hear of with the next round.
    fn region_due_again(&self, names: Vec<String>) {
        if let (Some(region), false) = (&self.region, names.is_empty()) {
            region.due.lock().unwrap_or_else(|e| e.into_inner()).extend(names);
        }
    }

    pub(super) fn budgets_give_back(&self, round: BudgetRound) {
        if let Some((_, names)) = round.region_due {
            self.region_due_again(names);
        }
        for report in round.reports {
            self.limiter.local.restore(report);
        }
    }
}

/// The set the instances name keys in for the region sync (region_sync/budgets.rs).
pub fn region_due_key(prefix: &str) -> String {
    format!("{{{prefix}:rg}}:due")
}

/// The script's answer for one key: lease, share, pool, rounds (and whether the
/// region sync is to hear of it).
fn parse(fields: &[String]) -> Option<Lease> {
    let n = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    Some(Lease {
        tokens: n(0)?,
        share: n(1)?,
        pool: n(2)?,
        rounds: n(3)? as u32,
    })
}
