//! `state_file`: where a single instance (no `redis`) keeps its runtime consumers
//! (API keys by digest, tier overrides) and quota counts across restarts. The path
//! is the config's; the document's format is the runtime consumers', so it is read
//! by the caller's `read` at load: a file that does not parse or names an unknown
//! tier stops the start with its path in the message, with the config's problems.

use super::problems::Problems;
use serde_yaml::Value;
use std::path::{Path, PathBuf};

pub(super) fn state_file<S>(
    problems: &mut Problems,
    value: Option<Value>,
    with_redis: bool,
    read: impl FnOnce(&Path) -> Result<S, Vec<String>>,
) -> Option<(PathBuf, S)> {
    let path: PathBuf = problems.section("state_file", value?)?;
    if with_redis {
        problems.add(
            "state_file",
            "not used with redis: redis keeps runtime consumers for every instance",
        );
        return None;
    }
    match read(&path) {
        Ok(state) => Some((path, state)),
        Err(said) => {
            for message in said {
                problems.add("state_file", format!("{}: {message}", path.display()));
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(with_redis: bool, read: Result<u8, Vec<String>>) -> (Option<(PathBuf, u8)>, Vec<String>) {
        let mut problems = Problems::default();
        let value = Some(Value::String("F".into()));
        let state = state_file(&mut problems, value, with_redis, |path| {
            assert_eq!(path, Path::new("F"));
            read
        });
        (state, problems.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn what_the_reader_finds_wrong_is_named_with_the_path_and_redis_needs_none() {
        assert_eq!(check(false, Ok(7)), (Some((PathBuf::from("F"), 7)), vec![]));
        let said = vec![
            "keys[0].digest is not a SHA-256 in hex".to_string(),
            "tiers.c: no".into(),
        ];
        assert_eq!(
            check(false, Err(said)).1,
            vec![
                "state_file: F: keys[0].digest is not a SHA-256 in hex",
                "state_file: F: tiers.c: no"
            ]
        );
        assert_eq!(
            check(true, Ok(7)),
            (
                None,
                vec![
                    "state_file: not used with redis: redis keeps runtime consumers for every instance"
                        .into()
                ]
            )
        );
    }
}
