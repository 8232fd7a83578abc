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
    /// An entry after the place carries a version already passed: Redis went back
    /// (a failover to a replica that was behind, an AOF that lost its last writes)
    /// and numbered new writes again; what it lost must be published again.
    WentBack,
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
                // Only the place's own entry comes again (a reload's place is the
                // log's last entry as it read the version): any other is a reused number.
                if place.entry.as_ref().is_some_and(|at| *at != entry.id) {
                    return Followed::WentBack;
                }
                place.entry = Some(entry.id);
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

#[cfg(test)]
mod tests {
    use super::super::local_writes::{LocalWrites, Target};
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn record(id: &str, digest: u8) -> String {
        format!(
            r#"{{"key_id":"{id}","consumer":"c-{id}","digest":"{}","tier":null,"created_at_s":1,"expires_at_s":null}}"#,
            hex::encode([digest; 32])
        )
    }

    /// An `XRANGE` reply of (id, version, op, subject, value) entries.
    fn reply(entries: &[(&str, u64, &str, &str, &str)]) -> Value {
        Value::Array(
            entries
                .iter()
                .map(|(id, v, op, subject, value)| {
                    let fields = [
                        ("v", v.to_string()),
                        ("op", op.to_string()),
                        ("id", subject.to_string()),
                        ("val", value.to_string()),
                    ];
                    Value::Array(vec![
                        bulk(id),
                        Value::Array(fields.iter().flat_map(|(f, v)| [bulk(f), bulk(v)]).collect()),
                    ])
                })
                .collect(),
        )
    }

    struct Fixture {
        keys: RuntimeKeys,
        overrides: TierOverrides,
        tiers: Vec<String>,
        local: LocalWrites,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                keys: RuntimeKeys::default(),
                overrides: TierOverrides::default(),
                tiers: vec!["free".into(), "gold".into()],
                local: LocalWrites::default(),
            }
        }

        fn follow(&self, place: &mut Place, entries: Value, batch: usize, version: u64) -> Followed {
            let store = Store {
                keys: &self.keys,
                overrides: &self.overrides,
                tier_names: &self.tiers,
            };
            store.follow(
                place,
                super::entries(&entries),
                batch,
                version,
                &mut self.local.hold(),
            )
        }
    }

    #[test]
    fn each_entry_changes_its_one_key_or_override_in_order() {
        let f = Fixture::new();
        let mut place = Place {
            entry: Some("1-0".into()),
            version: 1,
        };
        let (r2, r3) = (record("k2", 2), record("k3", 3));
        let entries = reply(&[
            ("1-0", 1, "add", "k1", "in force already"),
            ("2-0", 2, "add", "k2", &r2),
            ("3-0", 3, "add", "k3", &r3),
            ("4-0", 4, "revoke", "k2", &r2),
            ("5-0", 5, "tier", "c-k3", "gold"),
            ("6-0", 6, "tier", "zed", "gold"),
            ("7-0", 7, "untier", "zed", ""),
        ]);
        assert_eq!(f.follow(&mut place, entries, 100, 7), Followed::Caught);
        assert_eq!(
            place,
            Place {
                entry: Some("7-0".into()),
                version: 7
            }
        );
        assert!(f.keys.find(&[2; 32]).is_none() && f.keys.find(&[3; 32]).is_some());
        assert_eq!(f.keys.revoked(), vec!["k2"]);
        assert_eq!(
            (f.overrides.get("c-k3"), f.overrides.get("zed")),
            (Some(TierId(1)), None)
        );
    }

    #[test]
    fn a_missing_entry_a_version_with_none_or_an_unknown_change_loses_the_place() {
        let f = Fixture::new();
        let at = |version| Place {
            entry: Some(format!("{version}-0")),
            version,
        };
        let trimmed = reply(&[("5-0", 5, "untier", "a", "")]);
        assert_eq!(f.follow(&mut at(3), trimmed, 100, 5), Followed::Lost);
        assert_eq!(
            f.follow(&mut at(3), reply(&[]), 100, 4),
            Followed::Lost,
            "a bump with no entry"
        );
        let newer = reply(&[("4-0", 4, "rename", "a", "b")]);
        assert_eq!(f.follow(&mut at(3), newer, 100, 4), Followed::Lost);
        let full = reply(&[("3-0", 3, "untier", "a", ""), ("4-0", 4, "untier", "a", "")]);
        let mut place = at(3);
        assert_eq!(f.follow(&mut place, full, 2, 9), Followed::More);
        assert_eq!(place, at(4));
    }

    #[test]
    fn an_entry_after_the_place_with_a_version_already_passed_is_redis_gone_back() {
        let f = Fixture::new();
        // The place is 100 (entry 100-0); a failover lost it, and a new write took
        // version 100 again under a later id.
        let mut place = Place {
            entry: Some("100-0".into()),
            version: 100,
        };
        let reused = reply(&[("101-5", 100, "untier", "j", "")]);
        assert_eq!(f.follow(&mut place, reused, 100, 100), Followed::WentBack);
        let again = reply(&[
            ("100-0", 100, "untier", "j", ""),
            ("101-0", 101, "untier", "j", ""),
        ]);
        assert_eq!(
            f.follow(&mut place, again, 100, 101),
            Followed::Caught,
            "the place's own entry comes again"
        );
    }

    #[test]
    fn an_older_entry_never_undoes_a_write_made_here_since() {
        let f = Fixture::new();
        let r1 = record("k1", 1);
        // Revoked here as version 3, after the add (version 2) the sync reads now.
        f.local.note(Target::Key("k1".into()), 3);
        f.local.note(Target::Tier("c".into()), 3);
        let mut place = Place {
            entry: None,
            version: 1,
        };
        let entries = reply(&[("2-0", 2, "add", "k1", &r1), ("3-0", 3, "tier", "c", "gold")]);
        assert_eq!(f.follow(&mut place, entries, 100, 3), Followed::Caught);
        assert!(f.keys.find(&[1; 32]).is_none(), "the revocation stands");
        assert_eq!(f.overrides.get("c"), Some(TierId(1)), "its own entry applies");
        assert!(
            !f.local.hold().newer(&Target::Key("k1".into()), 0),
            "the log reached it"
        );
    }
}
