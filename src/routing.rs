//! The compiled route table: pure functions over plain values, run first in
//! `request_filter`, always on the normalized path (`vocab::path`).

use crate::config::Route;
use http::Method;

pub struct RouteTable {
    /// Longest prefix first; among equal prefixes, routes with a host or methods first.
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(mut routes: Vec<Route>) -> Self {
        routes.sort_by_key(|r| {
            (
                std::cmp::Reverse(r.path_prefix.len()),
                r.host.is_none(),
                r.methods.is_none(),
            )
        });
        RouteTable { routes }
    }

    /// `host` is without port, in any case (route hosts are stored lower-case).
    /// The matching route and its index in `routes()`.
    pub fn find(&self, host: Option<&str>, method: &Method, path: &str) -> Option<(usize, &Route)> {
        self.routes.iter().enumerate().find(|(_, r)| {
            path.starts_with(r.path_prefix.as_str())
                && r.host
                    .as_deref()
                    .is_none_or(|h| host.is_some_and(|host| h.eq_ignore_ascii_case(host)))
                && r.methods.as_ref().is_none_or(|ms| ms.contains(method))
        })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthPolicy, RouteAction};

    fn route(name: &str, prefix: &str, host: Option<&str>, methods: Option<Vec<Method>>) -> Route {
        Route {
            name: name.into(),
            path_prefix: prefix.into(),
            host: host.map(Into::into),
            methods,
            action: RouteAction::Respond {
                status: 200,
                body: String::new(),
                content_type: String::new(),
            },
            max_body_bytes: None,
            allow_ambiguous_paths: false,
            allow_underscore_headers: false,
            auth: AuthPolicy::None,
            tiers: None,
            cost: 1,
            global_limit: None,
            policies: Default::default(),
            tier_limits: None,
            quota: None,
            websocket_idle: None,
            response_timeout: None,
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
}
