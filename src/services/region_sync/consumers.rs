//! Runtime consumers across regions: the leaseholder follows every other region's
//! change log (the stream each admin write appends to, redis_sync/consumers/) from
//! its place, kept in this region's Redis, and makes each change made there here
//! too, through the same write script, which appends it to this region's log
//! marked with its origin (so the region's instances follow it as any write, and no
//! region passes it on again). At first contact, or when the place was trimmed
//! away or the region's log went back, it copies the region's consumers whole
//! (revocations first; a key revoked here is never added back).

use super::peer::PeerRegion;
use super::RegionSync;
use crate::services::redis_sync::consumers::{consumers_key, WRITE, WRITE_KEYS};
use crate::services::redis_sync::{timed_out, Backend};
use redis::{RedisResult, Script, Value};
use std::collections::HashMap;
use std::sync::LazyLock;

/// Entries read from a region's log a round; more wait for the next.
const ENTRIES_A_ROUND: usize = 1_000;
/// Fields a scan step asks for when a region's consumers are copied whole.
const SCAN_COUNT: usize = 1_000;

static WRITE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(WRITE));

/// One change, as a region's log entry carries it.
struct Change {
    op: String,
    id: String,
    value: String,
    /// When it was made there: its entry's time, or when copied whole that
    /// region's stamp for it (0 without one, which yields to any change made here).
    made_ms: u64,
}

/// Where this region stands in another's log: the last entry applied and its version.
struct Place {
    entry: String,
    version: u64,
}

impl RegionSync {
    pub(super) async fn consumers_round(&self, local: &Backend) -> RedisResult<()> {
        tokio::time::timeout(self.peer_timeout(), local.load_script(WRITE))
            .await
            .map_err(|_| timed_out())??;
        let followed =
            futures::future::join_all(self.peers.iter().map(|peer| self.follow(local, peer))).await;
        // A region not reached is retried next round; this region's Redis failing fails the round.
        followed
            .into_iter()
            .filter_map(|r| r.err())
            .next()
            .map_or(Ok(()), Err)
    }

    fn place_key(&self, peer: &PeerRegion) -> String {
        format!("{{{}:rg}}:consumers:{}", self.key_prefix, peer.name)
    }

    /// Follows one region's log a step. Errors are this region's Redis failing; a
    /// peer not reached leaves the place where it was.
    async fn follow(&self, local: &Backend, peer: &PeerRegion) -> RedisResult<()> {
        let timeout = self.peer_timeout();
        let mut get = redis::pipe();
        get.get(self.place_key(peer));
        let place: Option<String> = one(local.run(vec![get]), timeout)
            .await?
            .and_then(|v| redis::from_redis_value(v).ok());
        let place = place.and_then(|p| {
            let (entry, version) = p.split_once(' ')?;
            Some(Place {
                entry: entry.to_string(),
                version: version.parse().ok()?,
            })
        });
        let log = consumers_key(&self.key_prefix, "log");
        let Some(place) = place else {
            return self.copy_whole(local, peer).await;
        };
        // From the place's entry again (to see it is still there), or from the start
        // of a log that did not exist at the last look.
        let from = if place.version == 0 {
            "-"
        } else {
            place.entry.as_str()
        };
        let mut read = redis::pipe();
        read.cmd("XRANGE")
            .arg(&log)
            .arg(from)
            .arg("+")
            .arg("COUNT")
            .arg(ENTRIES_A_ROUND + 1);
        let Some(mut replies) = peer.run(vec![read], timeout).await else {
            return Ok(());
        };
        let Some(Ok(mut values)) = replies.pop() else {
            return Ok(());
        };
        let entries = values.pop().map(entries).unwrap_or_default();
        // The place's own entry comes first; if it is gone, the log was trimmed past
        // it or the region lost its data: only a whole copy is sure to miss nothing.
        let mut rest = entries.into_iter().peekable();
        if place.version != 0 {
            match rest.next() {
                Some((id, version, _)) if id == place.entry && version == place.version => {}
                _ => return self.copy_whole(local, peer).await,
            }
        }
        if rest.peek().is_none() {
            return Ok(());
        }
        let mut last = place;
        let mut changes = Vec::new();
        for (id, version, change) in rest {
            if version != last.version + 1 {
                return self.copy_whole(local, peer).await;
            }
            last = Place { entry: id, version };
            changes.extend(change);
        }
        self.apply(local, peer, &changes).await?;
        self.set_place(local, peer, &last).await
    }

    /// Copies a region's consumers whole, then follows its log from where it was
    /// before the copy began (changes made meanwhile come again; applying one twice
    /// changes nothing).
    async fn copy_whole(&self, local: &Backend, peer: &PeerRegion) -> RedisResult<()> {
        let timeout = self.peer_timeout();
        let mut last = redis::pipe();
        last.cmd("XREVRANGE")
            .arg(consumers_key(&self.key_prefix, "log"))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1);
        let Some(mut replies) = peer.run(vec![last], timeout).await else {
            return Ok(());
        };
        let Some(Ok(mut values)) = replies.pop() else {
            return Ok(());
        };
        let Some((entry, version, _)) = values.pop().map(entries).and_then(|e| e.into_iter().next()) else {
            // No log there: nothing was ever written in that region.
            return self
                .set_place(
                    local,
                    peer,
                    &Place {
                        entry: "0-0".into(),
                        version: 0,
                    },
                )
                .await;
        };
        for (what, op) in [
            ("revoked", "revoke"),
            ("keys", "add"),
            ("tiers", "tier"),
            ("cleared", "untier"),
        ] {
            let hash = consumers_key(&self.key_prefix, what);
            let mut cursor = 0u64;
            loop {
                let mut scan = redis::pipe();
                scan.cmd("HSCAN")
                    .arg(&hash)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(SCAN_COUNT);
                let Some(mut replies) = peer.run(vec![scan], timeout).await else {
                    return Ok(());
                };
                let Some(Ok(mut values)) = replies.pop() else {
                    return Ok(());
                };
                let (next, fields): (u64, Vec<String>) = values
                    .pop()
                    .map(redis::from_redis_value)
                    .transpose()?
                    .unwrap_or_default();
                let mut changes: Vec<Change> = fields
                    .chunks(2)
                    .filter_map(|pair| match pair {
                        [id, value] => Some(Change {
                            op: op.to_string(),
                            id: id.clone(),
                            value: if op == "add" || op == "tier" {
                                value.clone()
                            } else {
                                String::new()
                            },
                            made_ms: 0,
                        }),
                        _ => None,
                    })
                    .collect();
                // A tier carries when that region last changed it, so that the
                // latest change made anywhere still wins.
                if (op == "tier" || op == "untier") && !changes.is_empty() {
                    let mut stamps = redis::pipe();
                    stamps
                        .cmd("HMGET")
                        .arg(consumers_key(&self.key_prefix, "stamps"))
                        .arg(changes.iter().map(|c| c.id.as_str()).collect::<Vec<_>>());
                    let Some(Some(Ok(mut values))) =
                        peer.run(vec![stamps], timeout).await.map(|mut r| r.pop())
                    else {
                        return Ok(());
                    };
                    let made: Vec<Option<u64>> = values
                        .pop()
                        .map(redis::from_redis_value)
                        .transpose()?
                        .unwrap_or_default();
                    for (change, made) in changes.iter_mut().zip(made) {
                        change.made_ms = made.unwrap_or(0);
                    }
                }
                self.apply(local, peer, &changes).await?;
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        log::info!("region {}: runtime consumers copied whole", peer.name);
        self.set_place(local, peer, &Place { entry, version }).await
    }

    async fn apply(&self, local: &Backend, peer: &PeerRegion, changes: &[Change]) -> RedisResult<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for change in changes {
            let call = pipe
                .cmd("EVALSHA")
                .arg(WRITE_SCRIPT.get_hash())
                .arg(WRITE_KEYS.len());
            for what in WRITE_KEYS {
                call.arg(consumers_key(&self.key_prefix, what));
            }
            call.arg(&change.op)
                .arg(&change.id)
                .arg(&change.value)
                .arg(self.consumers_log_entries)
                .arg(&peer.name)
                .arg(change.made_ms);
        }
        let replies = one_pipeline(local.run(vec![pipe]), self.peer_timeout()).await?;
        let made = replies
            .iter()
            .filter(|v| redis::from_redis_value_ref::<u64>(v).is_ok_and(|v| v != 0))
            .count();
        peer.consumer_changes.inc_by(made as u64);
        Ok(())
    }

    async fn set_place(&self, local: &Backend, peer: &PeerRegion, place: &Place) -> RedisResult<()> {
        let mut set = redis::pipe();
        set.set(self.place_key(peer), format!("{} {}", place.entry, place.version));
        one_pipeline(local.run(vec![set]), self.peer_timeout())
            .await
            .map(drop)
    }
}

/// An `XRANGE` reply as (entry id, version, the change unless it came from
/// elsewhere: a region applies only changes made where it reads them).
fn entries(reply: Value) -> Vec<(String, u64, Option<Change>)> {
    let Value::Array(entries) = reply else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|entry| {
            let (id, fields): (String, HashMap<String, String>) = redis::from_redis_value(entry).ok()?;
            let version = fields.get("v")?.parse().ok()?;
            let change = match (fields.get("from"), fields.get("op"), fields.get("id")) {
                (None, Some(op), Some(subject)) => Some(Change {
                    op: op.clone(),
                    id: subject.clone(),
                    value: fields.get("val").cloned().unwrap_or_default(),
                    made_ms: id.split('-').next().and_then(|ms| ms.parse().ok()).unwrap_or(0),
                }),
                _ => None,
            };
            Some((id, version, change))
        })
        .collect()
}

async fn one_pipeline(
    run: impl std::future::Future<Output = Vec<RedisResult<Vec<Value>>>>,
    timeout: std::time::Duration,
) -> RedisResult<Vec<Value>> {
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| timed_out())?
        .pop()
        .unwrap_or(Ok(Vec::new()))
}

async fn one(
    run: impl std::future::Future<Output = Vec<RedisResult<Vec<Value>>>>,
    timeout: std::time::Duration,
) -> RedisResult<Option<Value>> {
    Ok(one_pipeline(run, timeout).await?.pop())
}
