//! `access_log`: where the JSON access log goes.

use super::model::AccessLogTarget;
use super::problems::Problems;
use serde_yaml::Value;

pub(super) fn access_log(problems: &mut Problems, value: Option<Value>) -> AccessLogTarget {
    match value
        .and_then(|v| problems.section::<String>("access_log", v))
        .as_deref()
    {
        None | Some("stdout") => AccessLogTarget::Stdout,
        Some("off") => AccessLogTarget::Off,
        Some(path) if path.starts_with('/') || path.starts_with('.') => AccessLogTarget::File(path.into()),
        Some(other) => {
            problems.add(
                "access_log",
                format!("\"{other}\": use stdout, off, or a file path starting with / or ."),
            );
            AccessLogTarget::Off
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(yaml: &str) -> (AccessLogTarget, usize) {
        let mut problems = Problems::default();
        let value = serde_yaml::from_str(yaml).expect("yaml");
        let target = access_log(&mut problems, Some(value));
        (target, problems.0.len())
    }

    #[test]
    fn targets() {
        assert_eq!(target("stdout"), (AccessLogTarget::Stdout, 0));
        assert_eq!(target("off"), (AccessLogTarget::Off, 0));
        assert_eq!(
            target("/var/log/fg.log"),
            (AccessLogTarget::File("/var/log/fg.log".into()), 0)
        );
        assert_eq!(target("relative.log").1, 1);
        assert_eq!(target("[1]").1, 1);
    }
}
