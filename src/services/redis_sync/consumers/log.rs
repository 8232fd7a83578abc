//! The runtime consumers' change log, a Redis stream: each admin write appends one
//! entry (write.lua, with the hash write, in one step) carrying the version it made
//! and the change. An instance holds its place (the last entry applied and its
//! version) and applies what follows, entry by entry, each change to one key or one
//! override. Versions in the log follow each other: an entry missing after the
//! place (trimmed by the retention) or a version that moved with no entry (a
//! republication, an older writer) means the place is lost and a full reload is due.

use super::local_writes::Held;
use crate::consumers::keys::{RuntimeKey, RuntimeKeys};
use crate::consumers::overrides::TierOverrides;
use crate::consumers::stored::StoredKey;
use crate::vocab::ids::TierId;
use redis::Value;

/// Where an instance stands in the log.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Place {
    /// The last entry applied (or seen at a reload), `None` before the log's first.
    pub(super) entry: Option<String>,
    /// The version the store holds, made by that entry or read with it.
    pub(super) version: u64,
}

impl Place {
    /// Where an `XRANGE` from here starts: this entry again (skipped), or the first.
    pub(super) fn from(&self) -> &str {
        self.entry.as_deref().unwrap_or("-")
    }
}

#[derive(Debug, PartialEq)]
pub(super) enum Change {
    /// The key's record.
    Add(StoredKey),
    /// The record the key had in Redis, if it had one.
    Revoke(Option<StoredKey>),
    SetTier {
        consumer: String,
        tier: String,
    },
    ClearTier {
        consumer: String,
    },
    /// Not one this instance reads (a newer writer's): a full reload takes it in.
    Unknown,
}

#[derive(Debug, PartialEq)]
pub(super) struct Entry {
    pub(super) id: String,
    pub(super) version: u64,
    pub(super) change: Change,
}

/// The entries of an `XRANGE` reply; an entry that cannot be read has version 0
/// and so breaks the sequence (a full reload follows).
pub(super) fn entries(reply: &Value) -> Vec<Entry> {
    let Value::Array(entries) = reply else {
        return Vec::new();
    };
    entries.iter().filter_map(entry).collect()
}

fn text(value: &Value) -> Option<String> {
    redis::from_redis_value_ref::<String>(value).ok()
}

fn entry(value: &Value) -> Option<Entry> {
    let Value::Array(parts) = value else {
        return None;
    };
    let id = text(parts.first()?)?;
    let Some(Value::Array(fields)) = parts.get(1) else {
        return None;
    };
    let field = |name: &str| {
        fields
            .chunks(2)
            .find(|pair| text(&pair[0]).as_deref() == Some(name))
            .and_then(|pair| pair.get(1))
            .and_then(text)
    };
    let version = field("v").and_then(|v| v.parse().ok()).unwrap_or(0);
    let record = || field("val").and_then(|json| serde_json::from_str::<StoredKey>(&json).ok());
    let subject = field("id").unwrap_or_default();
    let change = match field("op").as_deref() {
        Some("add") => record().map_or(Change::Unknown, Change::Add),
        Some("revoke") => Change::Revoke(record()),
        Some("tier") => Change::SetTier {
            consumer: subject,
            tier: field("val").unwrap_or_default(),
        },
        Some("untier") => Change::ClearTier { consumer: subject },
        _ => Change::Unknown,
    };
    Some(Entry { id, version, change })
}

/// How far a batch of entries took an instance.
#[derive(Debug, PartialEq)]
pub(super) enum Followed {
    /// Every entry up to the version read was applied.
    Caught,
    /// The batch was full: more may follow.
    More,
    /// An entry is missing after the place: only a full reload recovers.
    Lost,
}

/// What applying the log changes, and the writes made here that it must not undo.
pub(super) struct Store<'a> {
    pub(super) keys: &'a RuntimeKeys,
    pub(super) overrides: &'a TierOverrides,
    pub(super) tier_names: &'a [String],
}

impl Store<'_> {
    /// Applies `entries` (read as a batch of at most `batch`) after `place`, moving
    /// it; `version` is the counter read with them.
    pub(super) fn follow(
        &self,
        place: &mut Place,
        entries: Vec<Entry>,
        batch: usize,
        version: u64,
        local: &mut Held<'_>,
    ) -> Followed {
        let full = entries.len() >= batch;
        for entry in entries {
            if entry.version <= place.version && entry.version != 0 {
                place.entry = Some(entry.id); // in force already: the place itself, or before a reload's read
                continue;
            }
            if entry.version != place.version + 1 || entry.change == Change::Unknown {
                return Followed::Lost;
            }
            self.apply(entry.change, entry.version, local);
            place.entry = Some(entry.id);
            place.version = entry.version;
        }
        local.reached(place.version);
        if full {
            Followed::More
        } else if place.version < version {
            Followed::Lost
        } else {
            Followed::Caught
        }
    }

    fn apply(&self, change: Change, version: u64, local: &Held<'_>) {
        match change {
            Change::Add(stored) => {
                if let Some(key) = RuntimeKey::from_stored(&stored, self.tier_names) {
                    self.keys.adopt([key], |id| local.key_newer(id, version));
                }
            }
            Change::Revoke(Some(stored)) => {
                if !local.key_newer(&stored.key_id, version) {
                    self.keys.remove(&stored.consumer, &stored.key_id);
                }
            }
            Change::SetTier { consumer, tier } => {
                let id = self.tier_names.iter().position(|t| *t == tier);
                if let Some(id) = id.filter(|_| !local.tier_newer(&consumer, version)) {
                    self.overrides.set(&consumer, TierId(id));
                }
            }
            Change::ClearTier { consumer } => {
                if !local.tier_newer(&consumer, version) {
                    self.overrides.remove(&consumer);
                }
            }
            // A key Redis no longer had: held here only after a loss, which a full
            // reload repairs.
            Change::Revoke(None) | Change::Unknown => {}
        }
    }
}
