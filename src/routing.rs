//! The compiled route table: pure functions over plain values, run first in
//! `request_filter`, always on the normalized path (`vocab::path`).

use crate::config::Route;
use crate::vocab::ids::{ById, RouteId};
use http::Method;

pub struct RouteTable {
    /// By id: the order of the config.
    routes: ById<RouteId, Route>,
    /// The order routes are tried in: longest prefix first; among equal prefixes,
    /// routes with a host or methods first.
    match_order: Vec<RouteId>,
}

impl RouteTable {
    /// `routes` in the config's order, which gives each its id.
    pub fn new(routes: Vec<Route>) -> Self {
        let routes: ById<RouteId, Route> = routes.into();
        let mut match_order: Vec<RouteId> = routes.iter_enumerated().map(|(id, _)| id).collect();
        match_order.sort_by_key(|id| {
            let m = &routes[*id].matching;
            (
                std::cmp::Reverse(m.path_prefix.len()),
                m.host.is_none(),
                m.methods.is_none(),
            )
        });
        RouteTable { routes, match_order }
    }

    /// `host` is without port, in any case (route hosts are stored lower-case).
    /// The matching route and its id.
    pub fn find(&self, host: Option<&str>, method: &Method, path: &str) -> Option<(RouteId, &Route)> {
        self.match_order
            .iter()
            .map(|id| (*id, &self.routes[*id]))
            .find(|(_, r)| {
                let m = &r.matching;
                path.starts_with(m.path_prefix.as_str())
                    && m.host
                        .as_deref()
                        .is_none_or(|h| host.is_some_and(|host| h.eq_ignore_ascii_case(host)))
                    && m.methods.as_ref().is_none_or(|ms| ms.contains(method))
            })
    }

    pub fn routes(&self) -> &ById<RouteId, Route> {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthPolicy, RouteAccess, RouteAction, RouteLimits, RouteMatch, StaticAnswer};

    fn route(name: &str, prefix: &str, host: Option<&str>, methods: Option<Vec<Method>>) -> Route {
        Route {
            name: name.into(),
            matching: RouteMatch {
                path_prefix: prefix.into(),
                host: host.map(Into::into),
                methods,
            },
            action: RouteAction::Respond(StaticAnswer {
                status: 200,
                body: String::new(),
                content_type: String::new(),
            }),
            access: RouteAccess {
                auth: AuthPolicy::None,
                tiers: None,
                allow_ambiguous_paths: false,
                allow_underscore_headers: false,
            },
            limits: RouteLimits {
                cost: 1,
                global_limit: None,
                tier_limits: None,
                quota: None,
            },
            policies: Default::default(),
        }
    }

    #[test]
    fn longest_prefix_then_host_then_methods() {
        let table = RouteTable::new(vec![
            route("root", "/", None, None),
            route("api", "/api/", None, None),
            route("reports", "/api/reports", None, None),
            route("api-example", "/api/", Some("example.test"), None),
            route("api-post", "/api/", None, Some(vec![Method::POST])),
        ]);
        let find = |host, method, path| table.find(host, &method, path).map(|(_, r)| r.name.as_str());
        assert_eq!(find(None, Method::GET, "/api/reports/1"), Some("reports"));
        assert_eq!(find(None, Method::GET, "/api/users"), Some("api"));
        assert_eq!(find(None, Method::POST, "/api/users"), Some("api-post"));
        assert_eq!(
            find(Some("example.test"), Method::POST, "/api/x"),
            Some("api-example")
        );
        assert_eq!(find(None, Method::GET, "/other"), Some("root"));
        let no_root = RouteTable::new(vec![route("api", "/api/", None, None)]);
        assert!(no_root.find(None, &Method::GET, "/apix").is_none());
    }

    #[test]
    fn a_routes_id_is_its_place_in_the_config_whatever_the_match_order() {
        let table = RouteTable::new(vec![
            route("root", "/", None, None),
            route("api", "/api/", None, None),
        ]);
        let (id, route) = table.find(None, &Method::GET, "/api/x").expect("api");
        assert_eq!((id, route.name.as_str()), (RouteId(1), "api"));
        assert_eq!(table.routes()[RouteId(0)].name, "root");
    }
}
