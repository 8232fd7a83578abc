//! `routes`: what each path prefix (with an optional host and methods) does,
//! who may call it and what it costs.

use super::model::{
    AuthPolicy, GlobalLimit, GlobalScope, ProxyAction, Route, RouteAccess, RouteAction, RouteLimits,
    RouteMatch, StaticAnswer, Tier, Upstream,
};
use super::names::is_plain_name;
use super::problems::Problems;
use super::quota::{Period, Quota};
use super::route_policies;
use super::schema::{QuotaPer, RouteSpec};
use super::tiers::{check_bucket, tier_id};
use crate::vocab::ids::{Id, UpstreamId};
use crate::vocab::path::normalize_path;
use http::Method;
use serde_yaml::Value;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// What the route validator reads from the sections before it.
pub(super) struct Known<'a> {
    pub(super) upstreams: &'a [Upstream],
    pub(super) tiers: &'a [Tier],
    pub(super) auth_configured: bool,
    /// Whether `redis.region` is set (a `world` global limit needs it).
    pub(super) region_configured: bool,
    /// `auth.jwt.claims_to_headers`: claims header rules may name.
    pub(super) claims: Vec<(String, http::HeaderName)>,
}

pub(super) fn routes(problems: &mut Problems, value: Option<Value>, known: &Known<'_>) -> Vec<Route> {
    let Some(value) = value else {
        problems.add("routes", "required: at least one route");
        return Vec::new();
    };
    let Some(items): Option<Vec<Value>> = problems.section("routes", value) else {
        return Vec::new();
    };
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("routes[{i}]");
        let Some(spec) = problems.section::<RouteSpec>(&path, item) else {
            continue;
        };
        // Names go into Redis keys (`:`-separated), metric labels and RateLimit headers.
        if !is_plain_name(&spec.name) {
            problems.add(
                format!("{path}.name"),
                "1 to 64 letters, digits, '_', '.' and '-' only",
            );
        }
        if !names.insert(spec.name.clone()) {
            problems.add(
                format!("{path}.name"),
                format!("duplicate route name \"{}\"", spec.name),
            );
        }
        if let Some(route) = route(problems, &path, spec, known) {
            out.push(route);
        }
    }
    out
}

fn route(problems: &mut Problems, path: &str, mut spec: RouteSpec, known: &Known<'_>) -> Option<Route> {
    if !spec.path_prefix.starts_with('/') {
        problems.add(format!("{path}.path_prefix"), "must start with /");
    } else if normalize_path(&spec.path_prefix).as_deref() != Some(spec.path_prefix.as_str()) {
        problems.add(
            format!("{path}.path_prefix"),
            "must be in normalized form (no //, /./, /../ or percent-encoded unreserved characters)",
        );
    }
    let methods = spec.methods.as_ref().map(|list| {
        list.iter()
            .enumerate()
            .filter_map(
                |(j, m)| match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                    Ok(m) => Some(m),
                    Err(_) => {
                        problems.add(
                            format!("{path}.methods[{j}]"),
                            format!("\"{m}\" is not an HTTP method"),
                        );
                        None
                    }
                },
            )
            .collect()
    });
    let mut action = action(problems, path, &spec, known.upstreams)?;
    let auth = spec.auth.unwrap_or(if known.auth_configured {
        AuthPolicy::Required
    } else {
        AuthPolicy::None
    });
    if auth != AuthPolicy::None && !known.auth_configured {
        problems.add(format!("{path}.auth"), "needs a top-level auth section");
    }
    let tiers = spec.tiers.as_ref().map(|names| {
        if auth == AuthPolicy::None {
            problems.add(format!("{path}.tiers"), "needs auth: required or optional");
        }
        names
            .iter()
            .enumerate()
            .filter_map(|(j, name)| tier_id(problems, known.tiers, &format!("{path}.tiers[{j}]"), name))
            .collect()
    });
    if spec.cost == 0 {
        problems.add(format!("{path}.cost"), "must be at least 1");
    }
    let global_limit = spec.global_limit.map(|g| {
        if g.rate == 0 || g.per_s == 0 {
            problems.add(
                format!("{path}.global_limit"),
                "rate and per_s must be at least 1",
            );
        }
        if g.scope == GlobalScope::World && !known.region_configured {
            problems.add(format!("{path}.global_limit.scope"), "world needs redis.region");
        }
        GlobalLimit {
            rate: g.rate,
            per: Duration::from_secs(g.per_s),
            scope: g.scope,
        }
    });
    let per_consumer = PerConsumer { path, auth, known };
    let tier_limits = spec
        .limits
        .map(|limits| per_consumer.by_tier(problems, "limits", "limits", "limits", limits, check_bucket));
    let quota = spec.quota.map(|q| {
        let by_tier = per_consumer.by_tier(
            problems,
            "quota",
            "quotas",
            "quota.requests",
            q.requests,
            |problems, key, n| {
                if *n == 0 {
                    problems.add(key, "must be at least 1");
                }
            },
        );
        let per = match q.per {
            QuotaPer::Day => Period::Day,
            QuotaPer::Month => Period::Month,
        };
        Quota { per, by_tier }
    });
    let websocket_idle = spec.websocket.map(|ws| {
        if ws.idle_timeout_s == 0 {
            problems.add(format!("{path}.websocket.idle_timeout_s"), "must be at least 1");
        }
        if matches!(action, RouteAction::Respond(_)) {
            problems.add(
                format!("{path}.websocket"),
                "needs an upstream to carry the WebSocket",
            );
        }
        Duration::from_secs(ws.idle_timeout_s)
    });
    if spec.response_timeout_ms == Some(0) {
        problems.add(
            format!("{path}.response_timeout_ms"),
            "must be greater than 0 (or left out)",
        );
    }
    let policies = route_policies::policies(
        problems,
        path,
        route_policies::Specs {
            allow_ips: spec.allow_ips.take(),
            deny_ips: std::mem::take(&mut spec.deny_ips),
            cors: spec.cors.take(),
            compress: spec.compress.take(),
            request_headers: spec.request_headers.take(),
            response_headers: spec.response_headers.take(),
        },
        &known.claims,
    );
    // Body size, idle WebSocket and response deadline only ever act on proxied requests.
    if let RouteAction::Proxy(proxy) = &mut action {
        proxy.max_body_bytes = spec.max_body_bytes;
        proxy.websocket_idle = websocket_idle;
        proxy.response_timeout = spec.response_timeout_ms.map(Duration::from_millis);
    }
    Some(Route {
        name: spec.name,
        matching: RouteMatch {
            path_prefix: spec.path_prefix,
            host: spec.host.map(|h| h.to_ascii_lowercase()),
            methods,
        },
        action,
        access: RouteAccess {
            auth,
            tiers,
            allow_ambiguous_paths: spec.allow_ambiguous_paths,
            allow_underscore_headers: spec.allow_underscore_headers,
        },
        limits: RouteLimits {
            cost: spec.cost,
            global_limit,
            tier_limits,
            quota,
        },
        policies,
    })
}

/// A route policy counted per consumer and sized per tier (`limits`, `quota`).
struct PerConsumer<'a> {
    path: &'a str,
    auth: AuthPolicy,
    known: &'a Known<'a>,
}

impl PerConsumer<'_> {
    /// `{tier: value}` as a value per tier id, each checked; the policy needs auth.
    fn by_tier<T: Clone>(
        &self,
        problems: &mut Problems,
        policy: &str,
        plural: &str,
        map_key: &str,
        map: BTreeMap<String, T>,
        check: impl Fn(&mut Problems, &str, &T),
    ) -> Vec<Option<T>> {
        let path = self.path;
        if self.auth == AuthPolicy::None {
            problems.add(
                format!("{path}.{policy}"),
                format!("needs auth: required or optional ({plural} are per consumer)"),
            );
        }
        let mut by_tier = vec![None; self.known.tiers.len()];
        for (name, value) in map {
            let key = format!("{path}.{map_key}.{name}");
            check(problems, &key, &value);
            if let Some(id) = tier_id(problems, self.known.tiers, &key, &name) {
                by_tier[id.position()] = Some(value);
            }
        }
        by_tier
    }
}

fn action(
    problems: &mut Problems,
    path: &str,
    spec: &RouteSpec,
    upstreams: &[Upstream],
) -> Option<RouteAction> {
    match (&spec.upstream, &spec.respond) {
        (Some(_), Some(_)) => {
            problems.add(path, "has both upstream and respond; choose one");
            None
        }
        (None, None) => {
            problems.add(path, "needs an upstream or a respond");
            None
        }
        (Some(name), None) => match upstreams.iter().position(|u| &u.name == name) {
            Some(position) => Some(RouteAction::Proxy(ProxyAction {
                upstream: UpstreamId(position),
                strip_prefix: spec.strip_prefix,
                max_body_bytes: None,
                websocket_idle: None,
                response_timeout: None,
            })),
            None => {
                problems.add(
                    format!("{path}.upstream"),
                    format!("no upstream named \"{name}\""),
                );
                None
            }
        },
        (None, Some(r)) => {
            if !(100..=599).contains(&r.status) {
                problems.add(
                    format!("{path}.respond.status"),
                    "must be an HTTP status from 100 to 599",
                );
            }
            Some(RouteAction::Respond(StaticAnswer {
                status: r.status,
                body: r.body.clone(),
                content_type: r
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "text/plain; charset=utf-8".into()),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::problems_of;

    const HEAD: &str = "listen: [\"127.0.0.1:8080\"]\nadmin: { listen: \"127.0.0.1:9091\" }\n\
                        upstreams: { b: { targets: [\"127.0.0.1:9000\"] } }\n";

    #[test]
    fn every_route_problem_names_its_key() {
        let problems = problems_of(&format!(
            "{HEAD}routes:\n\
             - {{ name: a, path_prefix: api, upstream: nope }}\n\
             - {{ name: a, path_prefix: /x//y, respond: {{ status: 99 }}, methods: [GET, \"B@D\"] }}\n\
             - {{ name: c, path_prefix: /c, upstream: b, respond: {{ status: 200 }} }}\n\
             - {{ name: d, path_prefix: /d, upstream: b, tiers: [gold], cost: 0, global_limit: {{ rate: 0 }}, response_timeout_ms: 0 }}\n\
             - {{ name: e, path_prefix: /e, upstream: b, auth: required }}\n"
        ));
        assert_eq!(
            problems,
            vec![
                "routes[0].path_prefix: must start with /",
                "routes[0].upstream: no upstream named \"nope\"",
                "routes[1].name: duplicate route name \"a\"",
                "routes[1].path_prefix: must be in normalized form (no //, /./, /../ or percent-encoded unreserved characters)",
                "routes[1].methods[1]: \"B@D\" is not an HTTP method",
                "routes[1].respond.status: must be an HTTP status from 100 to 599",
                "routes[2]: has both upstream and respond; choose one",
                "routes[3].tiers: needs auth: required or optional",
                "routes[3].tiers[0]: no tier named \"gold\" (tiers: free, basic, premium, enterprise)",
                "routes[3].cost: must be at least 1",
                "routes[3].global_limit: rate and per_s must be at least 1",
                "routes[3].response_timeout_ms: must be greater than 0 (or left out)",
                "routes[4].auth: needs a top-level auth section",
            ]
        );
    }

    #[test]
    fn a_world_global_limit_needs_redis_region() {
        let route =
            "routes: [{ name: w, path_prefix: /w, upstream: b, global_limit: { rate: 10, scope: world } }]\n";
        assert_eq!(
            problems_of(&format!("{HEAD}{route}")),
            vec!["routes[0].global_limit.scope: world needs redis.region"]
        );
        assert_eq!(
            problems_of(&format!("{HEAD}redis: {{ url: \"redis://h\" }}\n{route}")),
            vec!["routes[0].global_limit.scope: world needs redis.region"]
        );
        let region = "redis: { url: \"redis://h\", region: { name: ny, peers: { sg: \"redis://sg\" } } }\n";
        assert!(problems_of(&format!("{HEAD}{region}{route}")).is_empty());
        // A region with problems of its own is reported once, not again for each route.
        assert_eq!(
            problems_of(&format!(
                "{HEAD}{}{route}",
                region.replace("name: ny", "name: NY")
            )),
            vec!["redis.region.name: must be 1 to 32 characters of a-z, 0-9, _ and -"]
        );
        let region_scope = route.replace("scope: world", "scope: region");
        assert!(problems_of(&format!("{HEAD}{region_scope}")).is_empty());
        assert_eq!(
            problems_of(&format!(
                "{HEAD}{}",
                route.replace("scope: world", "scope: planet")
            )),
            vec!["routes[0].global_limit.scope: unknown variant `planet`, expected `region` or `world`"]
        );
    }

    #[test]
    fn routes_are_required() {
        assert_eq!(problems_of(HEAD), vec!["routes: required: at least one route"]);
    }
}
