//! Applies a route's header rules to a head's headers, request or response:
//! remove, then set (an absent variable removes the header instead), then add. On
//! a request, a header a rule sets or adds is the gateway's alone: the client's
//! copies go first, so a client can never slip a value in beside it.

use crate::vocab::header_rules::{HeaderRules, Vars};
use http::HeaderMap;

pub fn apply(headers: &mut HeaderMap, rules: &HeaderRules, vars: &Vars<'_>, from_client: bool) {
    for name in &rules.remove {
        headers.remove(name);
    }
    if from_client {
        for (name, _) in &rules.add {
            headers.remove(name);
        }
    }
    for (name, value) in &rules.set {
        match value.render(vars) {
            Some(v) => {
                headers.insert(name.clone(), v);
            }
            None => {
                headers.remove(name);
            }
        }
    }
    for (name, value) in &rules.add {
        if let Some(v) = value.render(vars) {
            headers.append(name.clone(), v);
        }
    }
}
