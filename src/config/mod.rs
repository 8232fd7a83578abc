//! Config pipeline: YAML text → `${VAR}` interpolation → `schema` (serde, per
//! section) → `validate` (references, addresses) → [`Config`]. Imports no runtime module.

pub mod schema;
pub mod validate;

pub use validate::{load, parse, AccessLogTarget, Config, Route, RouteAction, Upstream};
