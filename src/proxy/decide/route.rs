//! The route step: the request's target checked and normalized, its route found
//! (a CORS preflight by the method it asks about), and a path that upstreams may
//! decode differently refused unless the route allows it.

use crate::config::Route;
use crate::proxy::ctx::RequestCtx;
use crate::proxy::host::request_host;
use crate::routing::RouteTable;
use crate::vocab::answer::Answer;
use crate::vocab::path::{is_ambiguous, normalize_path};
use http::{header, Method};
use pingora_http::RequestHeader;
use std::borrow::Cow;

/// The route, and whether the request is a CORS preflight routed by the method it asks about.
pub(super) fn find<'r>(
    routes: &'r RouteTable,
    req: &RequestHeader,
    ctx: &mut RequestCtx,
) -> Result<(&'r Route, bool), Answer<'static>> {
    // A target that is not UTF-8 would be routed and forwarded as a lossy rendering.
    let (true, Some(path), Ok(host)) = (
        req.raw_path_is_utf8(),
        normalize_path(req.uri.path()),
        request_host(req),
    ) else {
        return Err(Answer::error(400, ctx.request_id.as_str()).closing());
    };
    let preflight = preflight_method(req)
        .and_then(|asked| routes.find(host, &asked, &path))
        .filter(|(_, r)| r.policies.answers_preflight());
    let Some((id, route)) = preflight.or_else(|| routes.find(host, &req.method, &path)) else {
        return Err(Answer::error(404, ctx.request_id.as_str()));
    };
    ctx.route = Some(id);
    // What the upstream receives must be what was routed and authorised.
    if !route.access.allow_ambiguous_paths && is_ambiguous(req.uri.path()) {
        return Err(Answer::error(400, ctx.request_id.as_str()));
    }
    if let Cow::Owned(p) = path {
        ctx.normalized_path = Some(p);
    }
    Ok((route, preflight.is_some()))
}

/// The method a CORS preflight asks about.
fn preflight_method(req: &RequestHeader) -> Option<Method> {
    if req.method != Method::OPTIONS || !req.headers.contains_key(header::ORIGIN) {
        return None;
    }
    let asked = req.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
    Method::from_bytes(asked.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let config = super::super::config_with_routes(
            r#"
  - { name: api, path_prefix: /api/, upstream: backend, methods: [GET] }
  - { name: cors, path_prefix: /api/, upstream: backend, methods: [PUT], cors: { origins: ["https://a.test"] } }
  - { name: raw, path_prefix: /raw/, upstream: backend, allow_ambiguous_paths: true }
"#,
        );
        RouteTable::new(config.routes)
    }

    fn request(method: &str, path: &[u8], headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build(method, path, None).expect("request");
        req.insert_header("host", "api.test").expect("host");
        for (name, value) in headers {
            req.insert_header(name.to_string(), *value).expect("header");
        }
        req
    }

    fn routed(table: &RouteTable, req: &RequestHeader) -> Result<(String, bool), u16> {
        let mut ctx = RequestCtx::default();
        find(table, req, &mut ctx)
            .map(|(r, preflight)| (r.name.clone(), preflight))
            .map_err(|a| a.status)
    }

    #[test]
    fn a_preflight_is_routed_by_the_method_it_asks_about_to_a_route_that_answers_preflights() {
        let table = table();
        let asks = |method| {
            request(
                "OPTIONS",
                b"/api/x",
                &[
                    ("origin", "https://a.test"),
                    ("access-control-request-method", method),
                ],
            )
        };
        assert_eq!(routed(&table, &asks("PUT")), Ok(("cors".into(), true)));
        // The GET route has no CORS: not a preflight there, and OPTIONS itself has no route.
        assert_eq!(routed(&table, &asks("GET")), Err(404));
        assert_eq!(
            routed(&table, &request("PUT", b"/api/x", &[])),
            Ok(("cors".into(), false))
        );
    }

    #[test]
    fn a_bad_target_is_400_and_closes_an_unknown_path_is_404() {
        let table = table();
        let mut ctx = RequestCtx::default();
        let bad = find(&table, &request("GET", b"/api/\xff", &[]), &mut ctx).expect_err("400");
        assert_eq!((bad.status, bad.close), (400, true));
        assert_eq!(routed(&table, &request("GET", b"/other", &[])), Err(404));
    }

    #[test]
    fn an_ambiguous_path_is_refused_unless_the_route_allows_it_and_a_normalized_one_is_kept() {
        let table = table();
        assert_eq!(routed(&table, &request("GET", b"/api/a%2fb", &[])), Err(400));
        assert_eq!(
            routed(&table, &request("GET", b"/raw/a%2fb", &[])),
            Ok(("raw".into(), false))
        );
        let mut ctx = RequestCtx::default();
        find(&table, &request("GET", b"/api/./x", &[]), &mut ctx).expect("routed");
        assert_eq!(ctx.normalized_path.as_deref(), Some("/api/x"));
        assert!(ctx.route.is_some());
    }
}
