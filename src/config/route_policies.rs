//! A route's policies beyond routing, auth and limits (`policy::`), validated and
//! built in the order every phase runs them: the client addresses that may call it
//! (`allow_ips`, `deny_ips`), compression, header rules and the browser origins
//! that may read it (`cors`).

use super::header_rules::{header_rules, Direction};
use super::problems::Problems;
use super::schema::{CompressSpec, CorsSpec, HeaderRulesSpec};
use crate::policy::compression::Compress;
use crate::policy::cors::{Cors, OriginPattern};
use crate::policy::header_rules::{RequestHeaderRules, ResponseHeaderRules};
use crate::policy::ip_rules::IpRules;
use crate::policy::{Policies, RoutePolicy};
use http::{HeaderName, HeaderValue, Method};
use ipnet::IpNet;

/// A route's policy keys as written.
pub(super) struct Specs {
    pub allow_ips: Option<Vec<String>>,
    pub deny_ips: Vec<String>,
    pub cors: Option<CorsSpec>,
    pub compress: Option<CompressSpec>,
    pub request_headers: Option<HeaderRulesSpec>,
    pub response_headers: Option<HeaderRulesSpec>,
}

/// Every policy the route sets, in the order each phase runs them: address rules
/// refuse before anything else; compression reads the upstream's head before a
/// rule changes it; CORS has the last word on who may read. (Validated in the
/// order the keys were always reported.)
pub(super) fn policies(
    problems: &mut Problems,
    path: &str,
    spec: Specs,
    claims: &[(String, HeaderName)],
) -> Policies {
    let ip_rules = ip_rules(problems, path, spec.allow_ips.as_deref(), &spec.deny_ips);
    let cors = cors(problems, path, spec.cors);
    let compress = compress(problems, path, spec.compress);
    let request_headers = header_rules(
        problems,
        &format!("{path}.request_headers"),
        spec.request_headers,
        Direction::Request,
        claims,
    );
    let response_headers = header_rules(
        problems,
        &format!("{path}.response_headers"),
        spec.response_headers,
        Direction::Response,
        claims,
    );
    let list: [Option<Box<dyn RoutePolicy>>; 5] = [
        ip_rules.map(|p| Box::new(p) as _),
        compress.map(|p| Box::new(p) as _),
        request_headers.map(|r| Box::new(RequestHeaderRules(r)) as _),
        response_headers.map(|r| Box::new(ResponseHeaderRules(r)) as _),
        cors.map(|p| Box::new(p) as _),
    ];
    Policies::new(list.into_iter().flatten().collect())
}

fn nets(problems: &mut Problems, path: &str, list: &[String]) -> Vec<IpNet> {
    list.iter()
        .enumerate()
        .filter_map(|(i, text)| {
            let net = text
                .parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from));
            net.map_err(|_| {
                problems.add(
                    format!("{path}[{i}]"),
                    format!("\"{text}\" is not an address or CIDR"),
                )
            })
            .ok()
        })
        .collect()
}

fn ip_rules(
    problems: &mut Problems,
    path: &str,
    allow: Option<&[String]>,
    deny: &[String],
) -> Option<IpRules> {
    if allow.is_none() && deny.is_empty() {
        return None;
    }
    let allow = allow.map(|list| nets(problems, &format!("{path}.allow_ips"), list));
    let deny = nets(problems, &format!("{path}.deny_ips"), deny);
    Some(IpRules { allow, deny })
}

fn joined(problems: &mut Problems, path: &str, items: &[String]) -> Option<HeaderValue> {
    HeaderValue::from_str(&items.join(", "))
        .map_err(|_| problems.add(path, "must be plain text"))
        .ok()
}

fn cors(problems: &mut Problems, path: &str, spec: Option<CorsSpec>) -> Option<Cors> {
    let spec = spec?;
    let path = format!("{path}.cors");
    if spec.origins.is_empty() {
        problems.add(format!("{path}.origins"), "name at least one origin");
    }
    let origins: Vec<OriginPattern> = spec
        .origins
        .iter()
        .enumerate()
        .filter_map(|(i, o)| {
            OriginPattern::parse(o)
                .map_err(|why| problems.add(format!("{path}.origins[{i}]"), why))
                .ok()
        })
        .collect();
    if spec.credentials && origins.contains(&OriginPattern::Any) {
        problems.add(
            format!("{path}.credentials"),
            "cannot go with the origin *: name the origins",
        );
    }
    for (i, m) in spec.methods.iter().enumerate() {
        if Method::from_bytes(m.as_bytes()).is_err() {
            problems.add(
                format!("{path}.methods[{i}]"),
                format!("\"{m}\" is not an HTTP method"),
            );
        }
    }
    for (i, h) in spec.headers.iter().enumerate() {
        if HeaderName::from_bytes(h.as_bytes()).is_err() {
            problems.add(
                format!("{path}.headers[{i}]"),
                format!("\"{h}\" is not a header name"),
            );
        }
    }
    let methods = joined(problems, &format!("{path}.methods"), &spec.methods)?;
    let headers = if spec.headers.is_empty() {
        None
    } else {
        Some(joined(problems, &format!("{path}.headers"), &spec.headers)?)
    };
    Some(Cors {
        origins,
        methods,
        headers,
        credentials: spec.credentials,
        max_age: spec.max_age_s.map(HeaderValue::from),
    })
}

fn compress(problems: &mut Problems, path: &str, spec: Option<CompressSpec>) -> Option<Compress> {
    let spec = spec?;
    if !(1..=9).contains(&spec.level) {
        problems.add(format!("{path}.compress.level"), "must be from 1 to 9");
    }
    if spec.types.is_empty() {
        problems.add(format!("{path}.compress.types"), "name at least one media type");
    }
    for (i, t) in spec.types.iter().enumerate() {
        if t.split_once('/')
            .is_none_or(|(a, b)| a.is_empty() || b.is_empty() || t.contains(';'))
        {
            problems.add(
                format!("{path}.compress.types[{i}]"),
                format!("\"{t}\" is not a media type"),
            );
        }
    }
    Some(Compress {
        min_bytes: spec.min_bytes,
        types: spec.types.iter().map(|t| t.to_ascii_lowercase()).collect(),
        level: spec.level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_addresses_and_origins_are_named() {
        let mut problems = Problems::default();
        let rules = ip_rules(
            &mut problems,
            "routes[0]",
            Some(&["10.0.0.0/8".into()]),
            &["nope".into()],
        );
        assert!(rules.is_some());
        let spec: CorsSpec = serde_yaml::from_str(
            "{ origins: [\"*\", \"app.example.com\"], credentials: true, methods: [\"GE T\"] }",
        )
        .expect("spec");
        cors(&mut problems, "routes[0]", Some(spec));
        let said: Vec<String> = problems.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            said,
            vec![
                "routes[0].deny_ips[0]: \"nope\" is not an address or CIDR",
                "routes[0].cors.origins[1]: an origin is scheme://host[:port], or *",
                "routes[0].cors.credentials: cannot go with the origin *: name the origins",
                "routes[0].cors.methods[0]: \"GE T\" is not an HTTP method",
            ]
        );
    }
}
