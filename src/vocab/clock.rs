//! Wall-clock time since the Unix epoch: what windows shared between instances,
//! token expiry and log timestamps are measured in. Decisions take it as a value,
//! so tests pass their own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, as time since the Unix epoch (zero if the clock is before it).
pub fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}
