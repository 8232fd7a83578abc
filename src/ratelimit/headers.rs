//! Rate-limit response headers: `RateLimit-Policy` and `RateLimit` in
//! draft-ietf-httpapi-ratelimit-headers-11 syntax (structured-field lists, one item
//! per policy that applied), the legacy `X-RateLimit-*` trio, and `Retry-After` on 429s.

use super::{Outcome, RateLimiter};
use std::fmt::Write;

/// Policy name of a route's global window in the headers.
const GLOBAL_POLICY: &str = "global";

pub fn headers(limiter: &RateLimiter, outcome: &Outcome) -> Vec<(&'static str, String)> {
    let mut policy = String::with_capacity(64);
    let mut state = String::with_capacity(64);
    let mut legacy = None;
    for (i, bucket_outcome) in [&outcome.local, &outcome.route].into_iter().flatten().enumerate() {
        let name = limiter.policy_name(bucket_outcome.policy);
        let (bucket, d) = (bucket_outcome.bucket, bucket_outcome.decision);
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(
            policy,
            "{sep}\"{name}\";q={};w={}",
            bucket.burst as u64,
            bucket.window_s()
        );
        let _ = write!(state, "{sep}\"{name}\";r={};t={}", d.remaining, d.full_in_s);
        // The legacy trio speaks of the tightest bucket: the one that refused, or the last.
        if legacy.is_none() || outcome.refused != Some(super::Scope::Local) {
            legacy = Some((bucket.burst as u64, d.remaining, d.full_in_s));
        }
    }
    if let Some(g) = &outcome.global {
        let sep = if policy.is_empty() { "" } else { ", " };
        let _ = write!(policy, "{sep}\"{GLOBAL_POLICY}\";q={};w={}", g.limit, g.window_s);
        let _ = write!(
            state,
            "{sep}\"{GLOBAL_POLICY}\";r={};t={}",
            g.remaining, g.reset_s
        );
        if legacy.is_none() || outcome.refused == Some(super::Scope::Global) {
            legacy = Some((g.limit, g.remaining, g.reset_s));
        }
    }
    if let Some(q) = &outcome.quota {
        let sep = if policy.is_empty() { "" } else { ", " };
        let _ = write!(policy, "{sep}\"quota\";q={};w={}", q.limit, q.period_s);
        let _ = write!(state, "{sep}\"quota\";r={};t={}", q.remaining, q.reset_s);
        if legacy.is_none() || outcome.refused == Some(super::Scope::Quota) {
            legacy = Some((q.limit, q.remaining, q.reset_s));
        }
    }
    let mut out = Vec::with_capacity(6);
    if let Some((limit, remaining, reset)) = legacy {
        out.push(("ratelimit-policy", policy));
        out.push(("ratelimit", state));
        out.push(("x-ratelimit-limit", limit.to_string()));
        out.push(("x-ratelimit-remaining", remaining.to_string()));
        out.push(("x-ratelimit-reset", reset.to_string()));
    }
    if outcome.refused.is_some() {
        out.push(("retry-after", outcome.retry_after_s.max(1).to_string()));
    }
    out
}

/// The 429 body: the gateway's JSON error fields plus `scope` and `retry_after_s`.
pub fn refused_body(outcome: &Outcome, request_id: &str) -> String {
    serde_json::json!({
        "error": if outcome.refused == Some(super::Scope::Quota) { "quota_exceeded" } else { "rate_limited" },
        "message": if outcome.refused == Some(super::Scope::Quota) { "quota for this period used up" } else { "rate limit exceeded" },
        "request_id": request_id,
        "scope": outcome.refused.map_or("local", |s| s.as_str()),
        "retry_after_s": outcome.retry_after_s.max(1),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::super::global::GlobalDecision;
    use super::super::local::Decision;
    use super::super::{LocalOutcome, Policy, Scope};
    use super::*;
    use crate::config::{Bucket, Tier};

    #[test]
    fn draft_11_syntax_for_a_bucket_and_a_window() {
        let premium = Bucket {
            rate: 20.0,
            burst: 200.0,
        };
        let limiter = RateLimiter::new(
            vec![Tier {
                name: "premium".into(),
                bucket: premium,
            }],
            None,
            Vec::new(),
            None,
        );
        let outcome = Outcome {
            route: None,
            quota: None,
            refused: None,
            local: Some(LocalOutcome {
                policy: Policy::Tier(0),
                bucket: premium,
                decision: Decision {
                    allowed: true,
                    remaining: 37,
                    full_in_s: 9,
                    retry_after_s: 0,
                },
            }),
            global: Some(GlobalDecision {
                allowed: true,
                limit: 1000,
                remaining: 900,
                reset_s: 1,
                window_s: 1,
            }),
            retry_after_s: 0,
        };
        let h = headers(&limiter, &outcome);
        let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
        assert_eq!(
            get("ratelimit-policy"),
            Some("\"premium\";q=200;w=10, \"global\";q=1000;w=1")
        );
        assert_eq!(
            get("ratelimit"),
            Some("\"premium\";r=37;t=9, \"global\";r=900;t=1")
        );
        assert_eq!(get("x-ratelimit-limit"), Some("200"));
        assert_eq!(get("retry-after"), None);

        let refused = Outcome {
            refused: Some(Scope::Local),
            retry_after_s: 0,
            ..outcome
        };
        let h = headers(&limiter, &refused);
        assert!(
            h.contains(&("retry-after", "1".to_string())),
            "Retry-After is at least 1"
        );
    }
}
