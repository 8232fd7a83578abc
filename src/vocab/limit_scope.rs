//! Which limit refused a request: the word the rate limiter answers with, and
//! that telemetry counts and logs by its `as_str()`.

/// The caller's bucket, the route's own bucket, the route's global window, or its quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Local,
    Route,
    Global,
    Quota,
}

impl Scope {
    /// Every scope, for the metrics' label set.
    pub const ALL: [Scope; 4] = [Scope::Local, Scope::Route, Scope::Global, Scope::Quota];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Local => "local",
            Scope::Route => "route",
            Scope::Global => "global",
            Scope::Quota => "quota",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_holds_every_scope_once() {
        // A new scope stops this compiling until it has its place in `ALL`.
        for (i, s) in Scope::ALL.into_iter().enumerate() {
            let place = match s {
                Scope::Local => 0,
                Scope::Route => 1,
                Scope::Global => 2,
                Scope::Quota => 3,
            };
            assert_eq!(i, place, "{s:?}");
        }
    }
}
