//! When the keys whose reports were put off are due again: a wheel of one slot per
//! sync round, so that a round costs the keys due in it, never a scan of every
//! key put off.

use crate::vocab::limit_key::LimitKey;

/// Sync rounds a key's report may be put off at most; settle.lua is told the same.
pub const MAX_PUT_OFF_ROUNDS: u32 = 64;

/// One slot more than the longest put-off: a slot then only ever holds keys due
/// in the round that drains it.
const SLOTS: usize = MAX_PUT_OFF_ROUNDS as usize + 1;

#[derive(Default)]
pub struct ReportSchedule {
    /// Per slot, (due round, key); a key rescheduled since leaves a stale entry,
    /// which its due round no longer matches.
    slots: Vec<Vec<(u32, LimitKey)>>,
}

impl ReportSchedule {
    /// `due` must come after the round drained last and at most
    /// `MAX_PUT_OFF_ROUNDS` after it.
    pub fn put(&mut self, due: u32, key: LimitKey) {
        if self.slots.is_empty() {
            self.slots.resize_with(SLOTS, Vec::new);
        }
        self.slots[due as usize % SLOTS].push((due, key));
    }

    /// The entries due in `round`, to be called once per round.
    pub fn take_due(&mut self, round: u32) -> Vec<(u32, LimitKey)> {
        match self.slots.get_mut(round as usize % SLOTS) {
            Some(slot) => std::mem::take(slot),
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn each_key_comes_back_in_its_own_round_only() {
        let mut schedule = ReportSchedule::default();
        let a = LimitKey::Consumer(Arc::from("a"));
        let b = LimitKey::Consumer(Arc::from("b"));
        schedule.put(3, a.clone());
        schedule.put(1 + MAX_PUT_OFF_ROUNDS, b.clone());
        let mut seen = Vec::new();
        for round in 1..=2 * MAX_PUT_OFF_ROUNDS {
            seen.extend(
                schedule
                    .take_due(round)
                    .into_iter()
                    .map(|(due, key)| (round, due, key)),
            );
        }
        assert_eq!(seen, vec![(3, 3, a), (65, 65, b)]);
    }
}
