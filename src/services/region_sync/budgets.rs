//! The region sync's work for the budgets: the keys the region's instances named
//! since the last round (a set in the region's Redis) are read from the region's
//! Redis, sent to every other region's Redis, which merges them into its own hash
//! for the key if it has one (a key it has never seen costs it a lookup, nothing
//! stored) and answers its own state, and the answers are merged back home
//! (region.lua). Batched: one script call per 64 keys of a hash tag, each region's
//! pipelines sent together, so a round is three round trips, one across regions.

use super::peer::PeerRegion;
use super::{RegionSync, REGION_SCRIPT};
use crate::config::OnPartition;
use crate::services::redis_sync::budgets::{named_budget_key, region_due_key};
use crate::services::redis_sync::{timed_out, Backend};
use redis::{RedisResult, Value};

/// Keys per script call and the most a round takes from the set (the rest wait:
/// the instances name them again while they stay hot).
const KEYS_PER_CALL: usize = 64;
const MOST_KEYS_A_ROUND: usize = 10_000;

/// A key's state as one region sends it: epoch, spent, demand a second, and the
/// world's level less only what this region spent (region.lua).
type State = [String; 4];

/// What a region answered for a key.
enum Answer {
    State(State),
    /// It holds no budget for the key: idle there.
    None,
    /// Not reached this round.
    Cut,
}

impl RegionSync {
    pub(super) async fn budgets_round(&self, local: &Backend) -> RedisResult<()> {
        let set = region_due_key(&self.key_prefix);
        let names = self.take_named(local, &set, MOST_KEYS_A_ROUND).await?;
        if names.is_empty() {
            return Ok(());
        }
        let exchanged = self.exchange_all(local, &names).await;
        if exchanged.is_err() {
            self.name_again(local, &set, &names).await;
        }
        exchanged
    }

    async fn exchange_all(&self, local: &Backend, names: &[String]) -> RedisResult<()> {
        let timeout = self.peer_timeout();
        let local_cluster = matches!(local, Backend::Cluster(_));
        let calls = calls(&self.key_prefix, names, local_cluster);
        // 1. This region's state of each key.
        let mut read = Vec::new();
        for call in &calls {
            let mut pipe = redis::pipe();
            let cmd = pipe.cmd("EVALSHA").arg(REGION_SCRIPT.get_hash()).arg(call.len());
            for (_, key) in call {
                cmd.arg(key);
            }
            cmd.arg("read");
            read.push(pipe);
        }
        let replies = tokio::time::timeout(timeout, local.run(read))
            .await
            .map_err(|_| timed_out())?;
        let mut states: Vec<(String, State)> = Vec::new();
        for (call, reply) in calls.iter().zip(replies) {
            let fields = strings(reply?);
            for ((name, _), state) in call.iter().zip(fields.chunks(4)) {
                if let [e, c, d, w] = state {
                    if !e.is_empty() {
                        states.push((name.clone(), [e.clone(), c.clone(), d.clone(), w.clone()]));
                    }
                }
            }
        }
        if states.is_empty() {
            return Ok(());
        }
        // 2. Every other region, all at once.
        let answers =
            futures::future::join_all(self.peers.iter().map(|peer| self.exchange(peer, &states))).await;
        // 3. Their answers, merged back home.
        self.merge(local, &states, &answers).await
    }

    /// Sends the keys' states to one region and reads its answers, in the keys' order.
    async fn exchange(&self, peer: &PeerRegion, states: &[(String, State)]) -> Vec<Answer> {
        let cluster = peer.is_cluster();
        let names: Vec<String> = states.iter().map(|(n, _)| n.clone()).collect();
        let calls = calls(&self.key_prefix, &names, cluster);
        let by_name: std::collections::HashMap<&str, &State> =
            states.iter().map(|(n, s)| (n.as_str(), s)).collect();
        let stale_ms = self.stale().as_millis() as u64;
        let mut pipelines = Vec::new();
        let mut sent = 0;
        for call in &calls {
            let mut pipe = redis::pipe();
            let cmd = pipe.cmd("EVALSHA").arg(REGION_SCRIPT.get_hash()).arg(call.len());
            for (_, key) in call {
                cmd.arg(key);
                sent += key.len();
            }
            cmd.arg("exchange").arg(&self.name).arg(stale_ms);
            for (name, _) in call {
                for field in by_name[name.as_str()] {
                    cmd.arg(field);
                    sent += field.len();
                }
            }
            pipelines.push(pipe);
        }
        peer.bytes_sent.inc_by(sent as u64);
        let mut answers: std::collections::HashMap<String, Answer> = Default::default();
        if let Some(replies) = peer.run(pipelines, self.peer_timeout()).await {
            for (call, reply) in calls.iter().zip(replies) {
                let Ok(values) = reply else { continue };
                let fields = strings(values);
                peer.bytes_received
                    .inc_by(fields.iter().map(|f| f.len() as u64).sum());
                for ((name, _), state) in call.iter().zip(fields.chunks(4)) {
                    let answer = match state {
                        [e, ..] if e.is_empty() => Answer::None,
                        [e, c, d, w] => Answer::State([e.clone(), c.clone(), d.clone(), w.clone()]),
                        _ => continue,
                    };
                    answers.insert(name.clone(), answer);
                }
            }
            peer.keys.inc_by(answers.len() as u64);
        }
        // A key whose call failed or was not answered counts as cut off.
        names
            .iter()
            .map(|n| answers.remove(n).unwrap_or(Answer::Cut))
            .collect()
    }

    async fn merge(
        &self,
        local: &Backend,
        states: &[(String, State)],
        answers: &[Vec<Answer>],
    ) -> RedisResult<()> {
        let names: Vec<String> = states.iter().map(|(n, _)| n.clone()).collect();
        let position: std::collections::HashMap<&str, usize> =
            names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
        let calls = calls(&self.key_prefix, &names, matches!(local, Backend::Cluster(_)));
        let mode = match self.on_partition {
            OnPartition::SafeShare => "safe_share",
            OnPartition::LastShare => "last_share",
            OnPartition::Allow => "allow",
            OnPartition::Deny => "deny",
        };
        let mut pipelines = Vec::new();
        for call in &calls {
            let mut pipe = redis::pipe();
            let cmd = pipe.cmd("EVALSHA").arg(REGION_SCRIPT.get_hash()).arg(call.len());
            for (_, key) in call {
                cmd.arg(key);
            }
            cmd.arg("merge")
                .arg(mode)
                .arg(self.stale().as_millis() as u64)
                .arg(self.peers.len());
            for peer in &self.peers {
                cmd.arg(&peer.name);
            }
            for (name, _) in call {
                let i = position[name.as_str()];
                for peer_answers in answers {
                    match &peer_answers[i] {
                        Answer::State(state) => cmd.arg("ok").arg(state.as_slice()),
                        Answer::None => cmd.arg("none").arg(["", "", "", ""].as_slice()),
                        Answer::Cut => cmd.arg("cut").arg(["", "", "", ""].as_slice()),
                    };
                }
            }
            pipelines.push(pipe);
        }
        let replies = tokio::time::timeout(self.peer_timeout(), local.run(pipelines))
            .await
            .map_err(|_| timed_out())?;
        replies.into_iter().try_for_each(|r| r.map(drop))
    }
}

/// The keys grouped into script calls, each of one hash tag's keys: (name, Redis key).
fn calls(prefix: &str, names: &[String], cluster: bool) -> Vec<Vec<(String, String)>> {
    let mut keyed: Vec<(u32, String, String)> = names
        .iter()
        .map(|n| {
            let (group, key) = named_budget_key(prefix, n, cluster);
            (group, n.clone(), key)
        })
        .collect();
    keyed.sort_by_key(|(group, ..)| *group);
    keyed
        .chunk_by(|a, b| a.0 == b.0)
        .flat_map(|group| group.chunks(KEYS_PER_CALL))
        .map(|call| call.iter().map(|(_, n, k)| (n.clone(), k.clone())).collect())
        .collect()
}

/// A pipeline's replies flattened to strings (the script answers strings only).
fn strings(values: Vec<Value>) -> Vec<String> {
    values
        .iter()
        .filter_map(|v| redis::from_redis_value_ref::<Vec<String>>(v).ok())
        .flatten()
        .collect()
}
