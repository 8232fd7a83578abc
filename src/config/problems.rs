//! The problems found in a config file, each with the key path that holds it,
//! collected so that an operator fixes them all in one pass.

use crate::error::ConfigProblem;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<ConfigProblem>);

impl Problems {
    pub(super) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            path: path.into(),
            message: message.into(),
        });
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Deserialize one section; on error record it under `path` and return None.
    pub(super) fn section<T: DeserializeOwned>(&mut self, path: &str, value: Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                // The path inside the section, so the message names the exact key.
                let inner = e.path().to_string();
                let full = if inner == "." {
                    path.to_string()
                } else {
                    join(path, &inner)
                };
                self.add(full, e.into_inner().to_string());
                None
            }
        }
    }
}

/// `path.key`, or `key` at the top level.
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}
