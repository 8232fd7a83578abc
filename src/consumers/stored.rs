//! Runtime consumers as they are stored, in Redis and in the state file: API keys
//! by digest (never the key), tiers by name (the config may reorder them), and the
//! one change an admin write makes (a line of the state file's journal); what a
//! state file kept, restored at start-up.

use super::keys::{RuntimeKey, RuntimeKeys};
use super::overrides::TierOverrides;
use crate::vocab::ids::TierId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Unknown fields are ignored, so an older instance keeps a record a newer one wrote.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StoredKey {
    pub key_id: String,
    pub consumer: String,
    /// SHA-256 of the key, hex.
    pub digest: String,
    /// `None`: the default tier.
    pub tier: Option<String>,
    pub created_at_s: u64,
    pub expires_at_s: Option<u64>,
}

/// The state file's whole content.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StateDoc {
    pub keys: Vec<StoredKey>,
    /// Tier overrides: consumer → tier name.
    pub tiers: BTreeMap<String, String>,
    /// Quota counts of the current periods (saved every few seconds).
    #[serde(default)]
    pub quotas: Vec<StoredQuota>,
    /// The last journal entry this snapshot holds: replay skips those at or below
    /// it, so a journal not yet reset after a compaction changes nothing.
    #[serde(default)]
    pub seq: u64,
}

/// A consumer's count against a route's quota in one period.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StoredQuota {
    pub route: String,
    pub consumer: String,
    /// `day` or `month`, and the period's index (days since 1970, or months since year 0).
    pub per: String,
    pub period: u64,
    pub used: u64,
}

/// One admin write.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    AddKey(StoredKey),
    RevokeKey {
        key_id: String,
    },
    SetTier {
        consumer: String,
        tier: String,
    },
    ClearTier {
        consumer: String,
    },
    /// The quota counts as they stand, replacing those saved before.
    Quotas(Vec<StoredQuota>),
}

impl StateDoc {
    /// What this config cannot take from the document: a digest that is not a
    /// SHA-256, a tier it does not have. Each names its place in the document.
    pub fn problems(&self, tier_names: &[String]) -> Vec<String> {
        let known = |tier: &str| tier_names.iter().any(|t| t == tier);
        let mut problems = Vec::new();
        for (i, key) in self.keys.iter().enumerate() {
            if hex::decode(&key.digest).map_or(true, |d| d.len() != 32) {
                problems.push(format!("keys[{i}].digest is not a SHA-256 in hex"));
            }
            if let Some(tier) = key.tier.as_deref().filter(|t| !known(t)) {
                problems.push(format!("keys[{i}].tier: no tier named \"{tier}\""));
            }
        }
        for (consumer, tier) in self.tiers.iter().filter(|(_, t)| !known(t)) {
            problems.push(format!("tiers.{consumer}: no tier named \"{tier}\""));
        }
        problems
    }

    /// Puts the keys and overrides the document kept back in force (quota counts
    /// go back to the limiter with the quota saver).
    pub fn restore(&self, tier_names: &[String], keys: &RuntimeKeys, overrides: &TierOverrides) {
        for stored in &self.keys {
            if let Some(key) = RuntimeKey::from_stored(stored, tier_names) {
                keys.insert(key);
            }
        }
        for (consumer, tier) in &self.tiers {
            if let Some(position) = tier_names.iter().position(|t| t == tier) {
                overrides.set(consumer, TierId(position));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restoring_puts_keys_and_overrides_back_under_the_configs_tier_ids() {
        let doc: StateDoc = serde_json::from_str(&format!(
            r#"{{"keys":[{{"key_id":"k","consumer":"c","digest":"{}","tier":"gold","created_at_s":1,"expires_at_s":null}}],"tiers":{{"c":"gold"}}}}"#,
            "ab".repeat(32)
        ))
        .expect("parse");
        let (keys, overrides) = (RuntimeKeys::default(), TierOverrides::default());
        doc.restore(&["free".into(), "gold".into()], &keys, &overrides);
        let key = keys.find(&[0xab; 32]).expect("the key");
        assert_eq!((&*key.consumer, key.tier()), ("c", Some(TierId(1))));
        assert_eq!(overrides.get("c"), Some(TierId(1)));
    }

    #[test]
    fn a_malformed_digest_and_unknown_tiers_are_named() {
        let doc: StateDoc = serde_json::from_str(
            r#"{"keys":[{"key_id":"k","consumer":"c","digest":"ab","tier":"gold","created_at_s":1,"expires_at_s":null}],"tiers":{"c":"free","d":"silver"}}"#,
        )
        .expect("parse");
        assert_eq!(
            doc.problems(&["free".into()]),
            vec![
                "keys[0].digest is not a SHA-256 in hex",
                "keys[0].tier: no tier named \"gold\"",
                "tiers.d: no tier named \"silver\"",
            ]
        );
    }
}
