//! A state rebuilt from a snapshot and the journal's entries after it, at start-up
//! and by a compaction. Keys are found by id, so an entry costs a lookup, not a
//! scan of the keys. Each change sets one thing (a key, an override, the quota
//! counts), so replaying entries the snapshot already holds changes nothing; they
//! are skipped by sequence number anyway.

use crate::consumers::stored::{Change, StateDoc, StoredKey, StoredQuota};
use std::collections::{BTreeMap, HashMap};

pub struct Rebuilt {
    /// In the snapshot's order, then as added; `None` once revoked.
    keys: Vec<Option<StoredKey>>,
    by_id: HashMap<String, usize>,
    tiers: BTreeMap<String, String>,
    quotas: Vec<StoredQuota>,
    /// The last entry applied (or held by the snapshot).
    seq: u64,
}

impl Rebuilt {
    pub fn from_snapshot(doc: StateDoc) -> Rebuilt {
        let by_id = doc
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.key_id.clone(), i))
            .collect();
        Rebuilt {
            keys: doc.keys.into_iter().map(Some).collect(),
            by_id,
            tiers: doc.tiers,
            quotas: doc.quotas,
            seq: doc.seq,
        }
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Applies entry `seq`, unless the state holds it already.
    pub fn replay(&mut self, seq: u64, change: Change) {
        if seq <= self.seq {
            return;
        }
        self.seq = seq;
        match change {
            Change::AddKey(key) => match self.by_id.get(&key.key_id) {
                Some(&i) => self.keys[i] = Some(key),
                None => {
                    self.by_id.insert(key.key_id.clone(), self.keys.len());
                    self.keys.push(Some(key));
                }
            },
            Change::RevokeKey { key_id } => {
                if let Some(i) = self.by_id.remove(&key_id) {
                    self.keys[i] = None;
                }
            }
            Change::SetTier { consumer, tier } => {
                self.tiers.insert(consumer, tier);
            }
            Change::ClearTier { consumer } => {
                self.tiers.remove(&consumer);
            }
            Change::Quotas(quotas) => self.quotas = quotas,
        }
    }

    pub fn into_doc(self) -> StateDoc {
        StateDoc {
            keys: self.keys.into_iter().flatten().collect(),
            tiers: self.tiers,
            quotas: self.quotas,
            seq: self.seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> StoredKey {
        StoredKey {
            key_id: id.into(),
            consumer: "alice".into(),
            digest: "00".repeat(32),
            tier: None,
            created_at_s: 1,
            expires_at_s: None,
        }
    }

    #[test]
    fn changes_apply_in_order_and_entries_the_snapshot_holds_are_skipped() {
        let snapshot = StateDoc {
            keys: vec![key("k1"), key("k2")],
            seq: 2,
            ..StateDoc::default()
        };
        let mut rebuilt = Rebuilt::from_snapshot(snapshot);
        // Entries 1 and 2 are the snapshot's: the revocation of k1 came before it.
        rebuilt.replay(1, Change::RevokeKey { key_id: "k1".into() });
        rebuilt.replay(2, Change::AddKey(key("k2")));
        rebuilt.replay(3, Change::RevokeKey { key_id: "k2".into() });
        rebuilt.replay(4, Change::AddKey(key("k3")));
        rebuilt.replay(5, Change::AddKey(key("k3")));
        rebuilt.replay(
            6,
            Change::SetTier {
                consumer: "alice".into(),
                tier: "gold".into(),
            },
        );
        rebuilt.replay(
            7,
            Change::SetTier {
                consumer: "bob".into(),
                tier: "gold".into(),
            },
        );
        rebuilt.replay(
            8,
            Change::ClearTier {
                consumer: "bob".into(),
            },
        );
        let doc = rebuilt.into_doc();
        assert_eq!(
            doc.keys,
            vec![key("k1"), key("k3")],
            "a key added twice is held once"
        );
        assert_eq!(doc.tiers, BTreeMap::from([("alice".into(), "gold".into())]));
        assert_eq!(doc.seq, 8);
    }
}
