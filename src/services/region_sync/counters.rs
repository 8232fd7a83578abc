//! The region sync's work for what counts rather than refills: quotas (always
//! worldwide) and the windows of routes whose `global_limit` has `scope: world`.
//! Instances name the counter keys they push (a set in the region's Redis); each
//! round the leaseholder reads this region's count of each and its lifetime, writes
//! it into every other region's `<key>:w` hash under this region's name, reads
//! that region's own count back, and writes it into the local `<key>:w` (and this
//! region's count, once every region has it). Instances add the other regions'
//! counts to the region's total. A count only grows within its
//! window or period, so a late or repeated write is at worst a round behind.

use super::RegionSync;
use crate::services::redis_sync::{timed_out, Backend};
use redis::{RedisResult, Value};

/// The most keys a round takes from the set; the rest wait (named again while pushed).
const MOST_KEYS_A_ROUND: usize = 10_000;

/// Where the instances name the counter keys for the region sync.
pub fn region_counters_key(prefix: &str) -> String {
    format!("{{{prefix}:rg}}:counters")
}

/// The hash of the other regions' counts of a counter key, by region (same hash
/// tag as the key when it has one).
pub fn world_key(key: &str) -> String {
    format!("{key}:w")
}

/// An `HGETALL` of a `<key>:w` hash: the other regions' counts, summed, and the
/// count of this region (`me`) they had all been sent by the last round that
/// reached every one.
pub fn world_counts(reply: Option<&Value>, me: &str) -> (u64, u64) {
    let counts = reply
        .and_then(|v| redis::from_redis_value_ref::<Vec<(String, u64)>>(v).ok())
        .unwrap_or_default();
    counts.iter().fold((0, 0), |(others, seen), (region, count)| {
        if region == me {
            (others, *count)
        } else {
            (others + count, seen)
        }
    })
}

impl RegionSync {
    pub(super) async fn counters_round(&self, local: &Backend) -> RedisResult<()> {
        let set = region_counters_key(&self.key_prefix);
        let keys = self.take_named(local, &set, MOST_KEYS_A_ROUND).await?;
        if keys.is_empty() {
            return Ok(());
        }
        let exchanged = self.exchange_counts(local, &keys).await;
        if exchanged.is_err() {
            self.name_again(local, &set, &keys).await;
        }
        exchanged
    }

    async fn exchange_counts(&self, local: &Backend, keys: &[String]) -> RedisResult<()> {
        let timeout = self.peer_timeout();
        // This region's count and what is left of the key's life, one key a
        // pipeline (a key's own slot in a cluster).
        let reads = keys
            .iter()
            .map(|k| {
                let mut pipe = redis::pipe();
                pipe.get(k).pttl(k);
                pipe
            })
            .collect();
        let read = tokio::time::timeout(timeout, local.run(reads))
            .await
            .map_err(|_| timed_out())?;
        let mut counts: Vec<(String, u64, i64)> = Vec::new();
        for (key, r) in keys.iter().cloned().zip(read) {
            let r = r?;
            let count = r
                .first()
                .and_then(|v| redis::from_redis_value_ref::<Option<u64>>(v).ok().flatten());
            let ttl = r
                .get(1)
                .and_then(|v| redis::from_redis_value_ref::<i64>(v).ok())
                .unwrap_or(-2);
            if let (Some(count), true) = (count, ttl > 0) {
                counts.push((key, count, ttl));
            }
        }
        let answers = futures::future::join_all(self.peers.iter().map(|peer| async {
            let mut pipelines = Vec::new();
            let mut sent = 0;
            for (key, count, ttl) in &counts {
                let mut write = redis::pipe();
                write
                    .hset(world_key(key), &self.name, *count)
                    .ignore()
                    .pexpire(world_key(key), *ttl)
                    .ignore();
                let mut read = redis::pipe();
                read.get(key);
                pipelines.extend([write, read]);
                sent += key.len() * 3 + 20;
            }
            peer.bytes_sent.inc_by(sent as u64);
            // Per key: whether that region took this one's count, and its own.
            let mut replies = peer.run(pipelines, timeout).await?.into_iter();
            let mut heard = Vec::new();
            while let (Some(written), Some(read)) = (replies.next(), replies.next()) {
                let theirs = read
                    .ok()
                    .and_then(|mut v| v.pop())
                    .and_then(|v| redis::from_redis_value::<Option<u64>>(v).ok().flatten());
                heard.push((written.is_ok(), theirs));
            }
            Some(heard)
        }))
        .await;
        let mut writes = Vec::new();
        for (i, (key, count, ttl)) in counts.iter().enumerate() {
            let mut pipe = redis::pipe();
            for (peer, answer) in self.peers.iter().zip(&answers) {
                if let Some((_, Some(theirs))) = answer.as_ref().and_then(|a| a.get(i)) {
                    pipe.hset(world_key(key), &peer.name, *theirs).ignore();
                    peer.bytes_received.inc_by(8);
                }
            }
            // What every other region now knows of this one's count.
            if answers.iter().all(|a| {
                a.as_ref()
                    .is_some_and(|a| a.get(i).is_some_and(|(took, _)| *took))
            }) {
                pipe.hset(world_key(key), &self.name, *count).ignore();
            }
            pipe.pexpire(world_key(key), *ttl).ignore();
            writes.push(pipe);
        }
        let written = tokio::time::timeout(timeout, local.run(writes))
            .await
            .map_err(|_| timed_out())?;
        written.into_iter().try_for_each(|r| r.map(drop))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_other_regions_counts_are_summed_and_this_ones_is_what_they_heard() {
        let reply = Value::Array(
            ["sg", "7", "ny", "5", "fra", "3"]
                .iter()
                .map(|s| Value::BulkString(s.as_bytes().to_vec()))
                .collect(),
        );
        assert_eq!(world_counts(Some(&reply), "ny"), (10, 5));
        assert_eq!(world_counts(Some(&reply), "tokyo"), (15, 0));
        assert_eq!(world_counts(None, "ny"), (0, 0));
        assert_eq!(world_key("{floodgate:gl:api}:7"), "{floodgate:gl:api}:7:w");
    }
}
