//! The rule for the names tiers and routes are given: they go into headers, metric
//! labels and Redis keys.

/// A name safe in headers, metric labels and Redis keys, short enough for a
/// rate-limit header's list of policies.
pub(super) fn is_plain_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A region's name (`redis.region`): it goes into Redis keys of every region.
pub(super) fn is_region_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}
