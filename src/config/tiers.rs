//! `tiers` (named token buckets that consumers belong to) and `anonymous` (the
//! bucket of callers without credentials, per client address).

use super::model::{Bucket, Tier};
use super::names::is_plain_name;
use super::problems::Problems;
use crate::vocab::ids::TierId;
use serde_yaml::Value;
use std::collections::BTreeMap;

/// The seed tiers, used when the config names none.
const SEED_TIERS: [(&str, f64, f64); 4] = [
    ("free", 1.0, 10.0),
    ("basic", 5.0, 50.0),
    ("premium", 20.0, 200.0),
    ("enterprise", 100.0, 1000.0),
];

pub(super) fn tiers(problems: &mut Problems, value: Option<Value>) -> Vec<Tier> {
    let Some(value) = value else {
        return SEED_TIERS
            .iter()
            .map(|(name, rate, burst)| Tier {
                name: name.to_string(),
                bucket: Bucket {
                    rate: *rate,
                    burst: *burst,
                },
            })
            .collect();
    };
    let Some(map): Option<BTreeMap<String, Bucket>> = problems.section("tiers", value) else {
        return Vec::new();
    };
    if map.is_empty() {
        problems.add(
            "tiers",
            "needs at least one tier (or leave it out for the seed tiers)",
        );
    }
    for (name, bucket) in &map {
        // Names go into headers (X-Consumer-Tier, RateLimit-Policy), metric labels and keys.
        if !is_plain_name(name) {
            problems.add(
                format!("tiers.{name}"),
                "a tier name is 1 to 64 letters, digits, '_', '.' and '-'",
            );
        }
        check_bucket(problems, &format!("tiers.{name}"), bucket);
    }
    map.into_iter()
        .map(|(name, bucket)| Tier { name, bucket })
        .collect()
}

pub(super) fn anonymous(problems: &mut Problems, value: Option<Value>) -> Option<Bucket> {
    let bucket = problems.section::<Bucket>("anonymous", value?)?;
    check_bucket(problems, "anonymous", &bucket);
    Some(bucket)
}

pub(super) fn check_bucket(problems: &mut Problems, path: &str, bucket: &Bucket) {
    if !(bucket.rate > 0.0 && bucket.rate.is_finite()) {
        problems.add(format!("{path}.rate"), "must be a number greater than 0");
    }
    if !(bucket.burst >= 1.0 && bucket.burst.is_finite()) {
        problems.add(format!("{path}.burst"), "must be at least 1");
    }
}

/// The id of the tier named `name`, or a problem at `path` listing the tiers.
pub(super) fn tier_id(problems: &mut Problems, tiers: &[Tier], path: &str, name: &str) -> Option<TierId> {
    let id = tiers.iter().position(|t| t.name == name).map(TierId);
    if id.is_none() {
        let known: Vec<&str> = tiers.iter().map(|t| t.name.as_str()).collect();
        problems.add(
            path,
            format!("no tier named \"{name}\" (tiers: {})", known.join(", ")),
        );
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> (Vec<Tier>, Vec<String>) {
        let mut problems = Problems::default();
        let tiers = tiers(&mut problems, Some(serde_yaml::from_str(yaml).expect("yaml")));
        (tiers, problems.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn seed_tiers_when_absent_and_buckets_checked() {
        let mut problems = Problems::default();
        assert_eq!(tiers(&mut problems, None).len(), 4);
        let (parsed, none) = parse("gold: { rate: 2, burst: 20 }");
        assert!(none.is_empty());
        assert_eq!(parsed[0].bucket.window_s(), 10);
        let (_, problems) = parse("bad: { rate: 0, burst: 0.5 }");
        assert_eq!(
            problems,
            vec![
                "tiers.bad.rate: must be a number greater than 0",
                "tiers.bad.burst: must be at least 1"
            ]
        );
        assert_eq!(
            parse("{}").1,
            vec!["tiers: needs at least one tier (or leave it out for the seed tiers)"]
        );
    }

    #[test]
    fn tier_names_are_safe_in_headers_and_keys() {
        let long = "t".repeat(65);
        for bad in ["\"gold tier\"", "gold:x", long.as_str()] {
            let (_, problems) = parse(&format!("{bad}: {{ rate: 1, burst: 1 }}"));
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert!(problems[0].ends_with("a tier name is 1 to 64 letters, digits, '_', '.' and '-'"));
        }
        assert!(parse("gold-2.v_1: { rate: 1, burst: 1 }").1.is_empty());
    }

    #[test]
    fn unknown_tier_names_the_known_ones() {
        let (parsed, _) = parse("a: { rate: 1, burst: 1 }\nb: { rate: 1, burst: 1 }");
        let mut problems = Problems::default();
        assert_eq!(tier_id(&mut problems, &parsed, "x", "b"), Some(TierId(1)));
        assert_eq!(tier_id(&mut problems, &parsed, "x", "c"), None);
        assert_eq!(problems.0[0].to_string(), "x: no tier named \"c\" (tiers: a, b)");
    }
}
