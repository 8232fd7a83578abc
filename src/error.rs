//! Start-up errors, each saying what to fix. Errors inside request phases use
//! `pingora_error` with an HTTP status instead (see `proxy::respond`).

use std::fmt;

/// One problem in the config file, with the key path that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot read config file {path}: {source}")]
    ReadConfig { path: String, source: std::io::Error },
    /// Every problem found, one per line, so an operator fixes them in one pass.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigProblem>),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot set up metrics: {0}")]
    Metrics(String),
    #[error("cannot bind the echo upstream on 127.0.0.1: {0}")]
    EchoBind(std::io::Error),
    #[error("cannot set up TLS on {0}")]
    Tls(std::net::SocketAddr),
    #[error("cannot write the state file: {0}")]
    StateFile(String),
}
