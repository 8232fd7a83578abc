//! Admin writes made through this instance, each by what it wrote (a key id, or a
//! consumer's override) with the version Redis gave it, until the sync's place in
//! the log passes it. The write is already in force here; what the sync applies
//! from an older entry, or from a full reload read before it, must not undo it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) enum Target {
    Key(String),
    Tier(String),
}

#[derive(Default)]
pub(crate) struct LocalWrites(Mutex<HashMap<Target, u64>>);

/// The record held while the sync applies: a write noted meanwhile waits, so it is
/// either seen by the sync's check or put in force after what the sync applied.
pub(super) struct Held<'a>(MutexGuard<'a, HashMap<Target, u64>>);

impl LocalWrites {
    /// Noted before the write is put in force here.
    pub(super) fn note(&self, target: Target, version: u64) {
        let mut writes = self.hold().0;
        let at = writes.entry(target).or_default();
        *at = (*at).max(version);
    }

    pub(super) fn hold(&self) -> Held<'_> {
        Held(self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Held<'_> {
    /// Whether this instance wrote `target` after version `version`.
    pub(super) fn newer(&self, target: &Target, version: u64) -> bool {
        self.0.get(target).is_some_and(|&at| at > version)
    }

    pub(super) fn key_newer(&self, key_id: &str, version: u64) -> bool {
        !self.0.is_empty() && self.newer(&Target::Key(key_id.to_string()), version)
    }

    pub(super) fn tier_newer(&self, consumer: &str, version: u64) -> bool {
        !self.0.is_empty() && self.newer(&Target::Tier(consumer.to_string()), version)
    }

    /// The log reached `version`: what was written up to it is the log's now.
    pub(super) fn reached(&mut self, version: u64) {
        self.0.retain(|_, at| *at > version);
    }

    /// Redis lost data: what was written here is published again with what this
    /// instance holds, under versions that start over, which these would outrank.
    pub(super) fn forget(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_outranks_older_versions_until_the_log_reaches_it() {
        let writes = LocalWrites::default();
        writes.note(Target::Key("k1".into()), 7);
        writes.note(Target::Tier("alice".into()), 9);
        let mut held = writes.hold();
        assert!(held.key_newer("k1", 6) && !held.key_newer("k1", 7));
        assert!(!held.key_newer("k2", 0) && held.tier_newer("alice", 8));
        held.reached(8);
        assert!(!held.key_newer("k1", 6), "the log has it now");
        assert!(held.tier_newer("alice", 8));
    }
}
