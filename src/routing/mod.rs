//! The compiled route table: pure functions over plain values, run first in
//! `request_filter`, always on the normalized path (`vocab::path`). A route is found
//! in steps bounded by the path's length, not by the number of routes: one radix tree
//! over prefixes per route host and one for routes without a host (`tree`).

mod tree;

use crate::config::Route;
use crate::vocab::ids::{ById, RouteId};
use hashbrown::{Equivalent, HashMap};
use http::Method;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use tree::{Forest, NodeId};

pub struct RouteTable {
    /// By id: the order of the config.
    routes: ById<RouteId, Route>,
    forest: Forest,
    /// The tree of the routes without a host.
    any_host: NodeId,
    /// The tree of each route host (lower-case).
    hosts: HashMap<Host, NodeId, foldhash::fast::RandomState>,
}

impl RouteTable {
    /// `routes` in the config's order, which gives each its id.
    pub fn new(routes: Vec<Route>) -> Self {
        let routes: ById<RouteId, Route> = routes.into();
        // Routes are tried longest prefix first; among equal prefixes, routes with a
        // host first, then routes with methods, then in the config's order.
        let mut by_host: BTreeMap<Option<String>, Vec<Place<'_>>> = BTreeMap::new();
        for (id, route) in routes.iter_enumerated() {
            let m = &route.matching;
            by_host
                .entry(m.host.as_deref().map(str::to_ascii_lowercase))
                .or_default()
                .push((m.path_prefix.as_bytes(), m.methods.is_none(), id));
        }
        let mut forest = Forest::default();
        let mut any_host = None;
        let mut hosts = HashMap::with_hasher(foldhash::fast::RandomState::default());
        for (host, mut list) in by_host {
            list.sort();
            let mut items: Vec<(&[u8], Vec<RouteId>)> = Vec::new();
            for (prefix, _, id) in list {
                match items.last_mut() {
                    Some((p, ids)) if *p == prefix => ids.push(id),
                    _ => items.push((prefix, vec![id])),
                }
            }
            let root = forest.plant(&items);
            match host {
                None => any_host = Some(root),
                Some(h) => {
                    hosts.insert(Host(h.into_boxed_str()), root);
                }
            }
        }
        let any_host = any_host.unwrap_or_else(|| forest.plant(&[]));
        RouteTable {
            routes,
            forest,
            any_host,
            hosts,
        }
    }

    /// `host` is without port, in any case.
    /// The matching route and its id.
    pub fn find(&self, host: Option<&str>, method: &Method, path: &str) -> Option<(RouteId, &Route)> {
        let path = path.as_bytes();
        let host_root = match host {
            Some(h) if !self.hosts.is_empty() => self.hosts.get(&Caseless(h)).copied(),
            _ => None,
        };
        let mut with_host = host_root.and_then(|root| self.forest.deepest(root, path));
        let mut any_host = self.forest.deepest(self.any_host, path);
        // The deeper match first; at equal depth, the host's routes first.
        loop {
            let node = match (with_host, any_host) {
                (Some(h), Some(a)) if self.forest.depth(h) >= self.forest.depth(a) => {
                    with_host = self.forest.up(h);
                    h
                }
                (_, Some(a)) => {
                    any_host = self.forest.up(a);
                    a
                }
                (Some(h), None) => {
                    with_host = self.forest.up(h);
                    h
                }
                (None, None) => return None,
            };
            let found = self.forest.routes(node).iter().find_map(|id| {
                let route = &self.routes[*id];
                let accepts = route
                    .matching
                    .methods
                    .as_ref()
                    .is_none_or(|ms| ms.contains(method));
                accepts.then_some((*id, route))
            });
            if found.is_some() {
                return found;
            }
        }
    }

    pub fn routes(&self) -> &ById<RouteId, Route> {
        &self.routes
    }
}

/// A route's place among the routes of its host, in sort order: its prefix, then
/// whether it takes every method (those come last), then its id.
type Place<'a> = (&'a [u8], bool, RouteId);

/// A route host, lower-case, hashed as `Caseless` hashes a request's host.
#[derive(PartialEq, Eq)]
struct Host(Box<str>);

impl Hash for Host {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Caseless(&self.0).hash(state);
    }
}

/// A request's host in any case: looked up without a lower-case copy.
struct Caseless<'a>(&'a str);

impl Hash for Caseless<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut lower = [0u8; 32];
        for chunk in self.0.as_bytes().chunks(lower.len()) {
            let lower = &mut lower[..chunk.len()];
            lower.copy_from_slice(chunk);
            lower.make_ascii_lowercase();
            state.write(lower);
        }
        state.write_usize(self.0.len());
    }
}

impl Equivalent<Host> for Caseless<'_> {
    fn equivalent(&self, key: &Host) -> bool {
        self.0.eq_ignore_ascii_case(&key.0)
    }
}

#[cfg(test)]
mod tests;
