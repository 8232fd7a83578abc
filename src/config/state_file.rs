//! `state_file`: where a single instance (no `redis`) keeps its runtime consumers
//! (API keys by digest, tier overrides) across restarts. Read and checked at load:
//! a file that does not parse or names an unknown tier stops the start with its
//! path in the message; none yet is an empty state.

use super::model::StateFile;
use super::problems::Problems;
use crate::vocab::stored_consumers::StateDoc;
use serde_yaml::Value;
use std::path::PathBuf;

pub(super) fn state_file(
    problems: &mut Problems,
    value: Option<Value>,
    tier_names: &[String],
    with_redis: bool,
) -> Option<StateFile> {
    let path: PathBuf = problems.section("state_file", value?)?;
    if with_redis {
        problems.add(
            "state_file",
            "not used with redis: redis keeps runtime consumers for every instance",
        );
        return None;
    }
    let shown = path.display().to_string();
    let doc = match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<StateDoc>(&bytes) {
            Ok(doc) => doc,
            Err(e) => {
                problems.add("state_file", format!("{shown}: not a floodgate state file: {e}"));
                return None;
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateDoc::default(),
        Err(e) => {
            problems.add("state_file", format!("{shown}: {e}"));
            return None;
        }
    };
    let known = |tier: &str| tier_names.iter().any(|t| t == tier);
    for (i, key) in doc.keys.iter().enumerate() {
        if hex::decode(&key.digest).map_or(true, |d| d.len() != 32) {
            problems.add(
                "state_file",
                format!("{shown}: keys[{i}].digest is not a SHA-256 in hex"),
            );
        }
        if let Some(tier) = key.tier.as_deref().filter(|t| !known(t)) {
            problems.add(
                "state_file",
                format!("{shown}: keys[{i}].tier: no tier named \"{tier}\""),
            );
        }
    }
    for (consumer, tier) in doc.tiers.iter().filter(|(_, t)| !known(t)) {
        problems.add(
            "state_file",
            format!("{shown}: tiers.{consumer}: no tier named \"{tier}\""),
        );
    }
    Some(StateFile { path, doc })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(content: Option<&str>, with_redis: bool) -> (Option<StateFile>, Vec<String>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        if let Some(content) = content {
            std::fs::write(&path, content).expect("write");
        }
        let mut problems = Problems::default();
        let value = Value::String(path.display().to_string());
        let state = state_file(&mut problems, Some(value), &["free".into()], with_redis);
        let said = problems
            .0
            .iter()
            .map(|p| p.to_string().replace(&path.display().to_string(), "F"))
            .collect();
        (state, said)
    }

    #[test]
    fn a_missing_file_is_an_empty_state_and_a_corrupt_one_is_named() {
        let (state, said) = check(None, false);
        assert!(said.is_empty());
        assert_eq!(state.expect("state").doc, StateDoc::default());
        let (_, said) = check(Some("{\"keys\": [}"), false);
        assert!(
            said[0].starts_with("state_file: F: not a floodgate state file"),
            "{said:?}"
        );
        let (_, said) = check(
            Some(
                r#"{"keys":[{"key_id":"k","consumer":"c","digest":"ab","tier":"gold","created_at_s":1,"expires_at_s":null}],"tiers":{"c":"free"}}"#,
            ),
            false,
        );
        assert_eq!(
            said,
            vec![
                "state_file: F: keys[0].digest is not a SHA-256 in hex",
                "state_file: F: keys[0].tier: no tier named \"gold\"",
            ]
        );
        let (_, said) = check(None, true);
        assert_eq!(
            said,
            vec!["state_file: not used with redis: redis keeps runtime consumers for every instance"]
        );
    }
}
