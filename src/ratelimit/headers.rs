//! Rate-limit response headers: `RateLimit-Policy` and `RateLimit` in
//! draft-ietf-httpapi-ratelimit-headers-11 syntax (structured-field lists, one item
//! per policy that applied), the legacy `X-RateLimit-*` trio, and `Retry-After` on 429s.

use super::{Outcome, RateLimiter};
use crate::config::Bucket;
use crate::vocab::limit_scope::Scope;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// Policy name of a route's global window in the headers.
const GLOBAL_POLICY: &str = "global";
/// The longest policy list the headers carry: four items, each a name (tier and
/// route names are at most 64 bytes, checked at load) and two numbers of at most
/// 20 digits with their separators (50 bytes).
const LIST_CAPACITY: usize = 4 * (64 + 50);

/// The headers, in the order they are sent.
const NAMES: [&str; 6] = [
    "ratelimit-policy",
    "ratelimit",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "retry-after",
];
const HEADER_NAMES: [HeaderName; 6] = [
    HeaderName::from_static(NAMES[0]),
    HeaderName::from_static(NAMES[1]),
    HeaderName::from_static(NAMES[2]),
    HeaderName::from_static(NAMES[3]),
    HeaderName::from_static(NAMES[4]),
    HeaderName::from_static(NAMES[5]),
];

/// A structured-field list written on the stack, then copied once into its value.
struct List {
    buf: [u8; LIST_CAPACITY],
    len: usize,
}

impl List {
    fn new() -> Self {
        List {
            buf: [0; LIST_CAPACITY],
            len: 0,
        }
    }

    fn item(&mut self, name: &str, first: (u8, u64), second: (u8, u64)) {
        let mut first_num = itoa::Buffer::new();
        let mut second_num = itoa::Buffer::new();
        let sep: &[u8] = if self.len == 0 { b"" } else { b", " };
        let parts: [&[u8]; 9] = [
            sep,
            b"\"",
            name.as_bytes(),
            b"\";",
            &[first.0, b'='],
            first_num.format(first.1).as_bytes(),
            b";",
            &[second.0, b'='],
            second_num.format(second.1).as_bytes(),
        ];
        for part in parts {
            // A full buffer truncates the list; the names are bounded so that it never is.
            let n = part.len().min(LIST_CAPACITY - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&part[..n]);
            self.len += n;
        }
    }

    fn value(&self) -> Option<HeaderValue> {
        HeaderValue::from_bytes(&self.buf[..self.len]).ok()
    }

    fn leaked(&self) -> Option<HeaderValue> {
        leaked(&self.buf[..self.len])
    }
}

/// A value that lives as long as the process: cloning it touches no reference
/// count, so workers share nothing when they send it. Only built at load (limits
/// change with a new process, through a graceful upgrade), so what is leaked is
/// bounded.
fn leaked(text: &[u8]) -> Option<HeaderValue> {
    let text: &'static [u8] = Box::leak(text.into());
    HeaderValue::from_maybe_shared(Bytes::from_static(text)).ok()
}

/// Numbers below `SMALL` as values built at load: remaining requests and seconds
/// to wait are mostly small.
pub(super) struct Numbers(Vec<HeaderValue>);

impl Numbers {
    const SMALL: u64 = 1024;

    pub(super) fn new() -> Self {
        let digits = |n: u64| leaked(itoa::Buffer::new().format(n).as_bytes()).expect("digits are a value");
        Numbers((0..Self::SMALL).map(digits).collect())
    }

    fn get(&self, n: u64) -> HeaderValue {
        match self.0.get(n as usize) {
            Some(v) => v.clone(),
            None => HeaderValue::from(n),
        }
    }
}

/// A bucket policy's `RateLimit-Policy` item and its limit, built once at load:
/// a response under that policy alone (the common case) sends them as they are.
pub(super) struct PolicyValues {
    policy: HeaderValue,
    limit: HeaderValue,
}

impl PolicyValues {
    pub(super) fn new(name: &str, bucket: Bucket) -> Option<Self> {
        let mut list = List::new();
        list.item(name, (b'q', bucket.burst as u64), (b'w', bucket.window_s()));
        Some(PolicyValues {
            policy: list.leaked()?,
            limit: leaked(itoa::Buffer::new().format(bucket.burst as u64).as_bytes())?,
        })
    }
}

/// The values of a decision's headers, by their place in `NAMES`.
fn values(limiter: &RateLimiter, outcome: &Outcome) -> [Option<HeaderValue>; 6] {
    let alone = outcome.route.is_none() && outcome.global.is_none() && outcome.quota.is_none();
    let prebuilt = outcome
        .local
        .filter(|_| alone)
        .and_then(|l| limiter.policy_values(l.policy));
    let mut policy = List::new();
    let mut state = List::new();
    let mut legacy = None;
    for bucket_outcome in [&outcome.local, &outcome.route].into_iter().flatten() {
        let name = limiter.policy_name(bucket_outcome.policy);
        let (bucket, d) = (bucket_outcome.bucket, bucket_outcome.decision);
        if prebuilt.is_none() {
            policy.item(name, (b'q', bucket.burst as u64), (b'w', bucket.window_s()));
        }
        state.item(name, (b'r', d.remaining), (b't', d.full_in_s));
        // The legacy trio speaks of the tightest bucket: the one that refused, or the last.
        if legacy.is_none() || outcome.refused != Some(Scope::Local) {
            legacy = Some((bucket.burst as u64, d.remaining, d.full_in_s));
        }
    }
    if let Some(g) = &outcome.global {
        policy.item(GLOBAL_POLICY, (b'q', g.limit), (b'w', g.window_s));
        state.item(GLOBAL_POLICY, (b'r', g.remaining), (b't', g.reset_s));
        if legacy.is_none() || outcome.refused == Some(Scope::Global) {
            legacy = Some((g.limit, g.remaining, g.reset_s));
        }
    }
    if let Some(q) = &outcome.quota {
        policy.item("quota", (b'q', q.limit), (b'w', q.period_s));
        state.item("quota", (b'r', q.remaining), (b't', q.reset_s));
        if legacy.is_none() || outcome.refused == Some(Scope::Quota) {
            legacy = Some((q.limit, q.remaining, q.reset_s));
        }
    }
    let numbers = &limiter.numbers;
    let mut out: [Option<HeaderValue>; 6] = Default::default();
    if let Some((limit, remaining, reset)) = legacy {
        (out[0], out[2]) = match prebuilt {
            Some(p) => (Some(p.policy.clone()), Some(p.limit.clone())),
            None => (policy.value(), Some(numbers.get(limit))),
        };
        out[1] = state.value();
        out[3] = Some(numbers.get(remaining));
        out[4] = Some(numbers.get(reset));
    }
    out[5] = outcome.refused.map(|_| numbers.get(outcome.retry_after_s.max(1)));
    out
}

/// Adds a proxied response's rate-limit headers.
pub fn insert(headers: &mut HeaderMap, limiter: &RateLimiter, outcome: &Outcome) {
    for (name, value) in HEADER_NAMES.into_iter().zip(values(limiter, outcome)) {
        if let Some(value) = value {
            headers.insert(name, value);
        }
    }
}

/// The same headers, for an answer the gateway makes itself.
pub fn headers(limiter: &RateLimiter, outcome: &Outcome) -> Vec<(&'static str, String)> {
    NAMES
        .into_iter()
        .zip(values(limiter, outcome))
        .filter_map(|(name, value)| Some((name, value?.to_str().ok()?.to_string())))
        .collect()
}

/// The 429 body: the gateway's JSON error fields plus `scope` and `retry_after_s`.
pub fn refused_body(outcome: &Outcome, request_id: &str) -> String {
    serde_json::json!({
        "error": if outcome.refused == Some(Scope::Quota) { "quota_exceeded" } else { "rate_limited" },
        "message": if outcome.refused == Some(Scope::Quota) { "quota for this period used up" } else { "rate limit exceeded" },
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
    use super::super::{LocalOutcome, Policy};
    use super::*;
    use crate::config::{Bucket, Tier};
    use crate::vocab::ids::{ById, TierId};

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
            ById::default(),
            None,
        );
        let outcome = Outcome {
            route: None,
            quota: None,
            refused: None,
            limited_key: None,
            local: Some(LocalOutcome {
                policy: Policy::Tier(TierId(0)),
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
                window: 0,
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
