//! `${VAR}` in any string value is replaced by the environment variable's value
//! before the sections are read; a missing variable is a problem at that key.

use super::problems::{join, Problems};
use serde_yaml::Value;

/// Replace `${VAR}` in every string; a missing variable is a problem at that key.
pub(super) fn interpolate(
    value: &mut Value,
    path: &str,
    env: &impl Fn(&str) -> Option<String>,
    problems: &mut Problems,
) {
    match value {
        Value::String(s) if s.contains("${") => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else {
                    problems.add(path, "unterminated ${ in value");
                    return;
                };
                let name = &after[..end];
                match env(name) {
                    Some(v) => out.push_str(&v),
                    None => problems.add(path, format!("environment variable {name} is not set")),
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{path}[{i}]"), env, problems);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = k.as_str().map_or_else(|| format!("{k:?}"), str::to_owned);
                interpolate(v, &join(path, &key), env, problems);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> (Value, Vec<String>) {
        let mut value: Value = serde_yaml::from_str(text).expect("yaml");
        let mut problems = Problems::default();
        let env = |name: &str| (name == "HOME_DIR").then(|| "/srv".to_string());
        interpolate(&mut value, "", &env, &mut problems);
        (value, problems.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn variables_are_replaced_where_they_stand() {
        let (value, problems) = run("a: ${HOME_DIR}/x\nb: [\"${HOME_DIR}\", plain]\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(value["a"].as_str(), Some("/srv/x"));
        assert_eq!(value["b"][0].as_str(), Some("/srv"));
        assert_eq!(value["b"][1].as_str(), Some("plain"));
    }

    #[test]
    fn a_missing_or_unterminated_variable_names_its_key() {
        let (_, problems) = run("a:\n  b: [ok, \"${NOPE}\"]\nc: \"${HOME_DIR\"\n");
        assert_eq!(
            problems,
            vec![
                "a.b[1]: environment variable NOPE is not set".to_string(),
                "c: unterminated ${ in value".to_string(),
            ]
        );
    }
}
