//! Applies a route's header rules to a head, request or response: remove, then
//! set (an absent variable removes the header instead), then add. On a request,
//! a header a rule sets or adds is the gateway's alone: the client's copies go
//! first, so a client can never slip a value in beside it.

use crate::vocab::header_rules::{HeaderRules, Vars};
use http::{HeaderName, HeaderValue};
use pingora_error::Result;
use pingora_http::{RequestHeader, ResponseHeader};

/// The three operations the rules need, on either kind of head.
pub trait Head {
    fn insert(&mut self, name: HeaderName, value: HeaderValue) -> Result<()>;
    fn append(&mut self, name: HeaderName, value: HeaderValue) -> Result<()>;
    fn remove(&mut self, name: &HeaderName);
}

/// Pingora's two heads have the same three methods, not a trait for them.
macro_rules! head {
    ($head:ty) => {
        impl Head for $head {
            fn insert(&mut self, name: HeaderName, value: HeaderValue) -> Result<()> {
                self.insert_header(name, value)
            }
            fn append(&mut self, name: HeaderName, value: HeaderValue) -> Result<()> {
                self.append_header(name, value).map(drop)
            }
            fn remove(&mut self, name: &HeaderName) {
                self.remove_header(name);
            }
        }
    };
}

head!(RequestHeader);
head!(ResponseHeader);

pub fn apply(head: &mut impl Head, rules: &HeaderRules, vars: &Vars<'_>, from_client: bool) -> Result<()> {
    for name in &rules.remove {
        head.remove(name);
    }
    if from_client {
        for (name, _) in &rules.add {
            head.remove(name);
        }
    }
    for (name, value) in &rules.set {
        match value.render(vars) {
            Some(v) => head.insert(name.clone(), v)?,
            None => head.remove(name),
        }
    }
    for (name, value) in &rules.add {
        if let Some(v) = value.render(vars) {
            head.append(name.clone(), v)?;
        }
    }
    Ok(())
}
