//! `routes[].request_headers` and `response_headers`: header names checked, values
//! parsed into templates, and the headers the gateway itself sets refused (a rule
//! may never forge an identity, a request id or a rate-limit answer).

use super::problems::Problems;
use super::schema::HeaderRulesSpec;
use crate::policy::header_rules::{HeaderRules, Template};
use http::HeaderName;

/// Headers a request rule may not touch: identity, forwarding and framing.
const REQUEST_OWNED: &[&str] = &[
    "x-consumer-id",
    "x-consumer-tier",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-real-ip",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
];

/// Headers a response rule may not touch: the gateway's answers and framing.
const RESPONSE_OWNED: &[&str] = &[
    "x-request-id",
    "ratelimit",
    "ratelimit-policy",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "retry-after",
    "content-length",
    "transfer-encoding",
    "connection",
];

pub(super) enum Direction {
    Request,
    Response,
}

pub(super) fn header_rules(
    problems: &mut Problems,
    path: &str,
    spec: Option<HeaderRulesSpec>,
    direction: Direction,
    claims: &[(String, HeaderName)],
) -> Option<HeaderRules> {
    let spec = spec?;
    let owned = |name: &HeaderName| match direction {
        Direction::Request => REQUEST_OWNED.contains(&name.as_str()) || claims.iter().any(|(_, h)| h == name),
        Direction::Response => RESPONSE_OWNED.contains(&name.as_str()),
    };
    let name = |problems: &mut Problems, key: String, text: &str| -> Option<HeaderName> {
        match HeaderName::from_bytes(text.as_bytes()) {
            Ok(n) if owned(&n) => {
                problems.add(key, format!("{n} is set by the gateway itself"));
                None
            }
            Ok(n) => Some(n),
            Err(_) => {
                problems.add(key, format!("\"{text}\" is not a header name"));
                None
            }
        }
    };
    let claim = |c: &str| {
        claims
            .iter()
            .find(|(claim, _)| claim == c)
            .map(|(_, h)| h.clone())
    };
    let templates = |problems: &mut Problems, what: &str, map: Vec<(String, String)>| {
        map.into_iter()
            .filter_map(|(header, value)| {
                let key = format!("{path}.{what}.{header}");
                let header = name(problems, key.clone(), &header)?;
                match Template::parse(&value, claim) {
                    Ok(t) => Some((header, t)),
                    Err(why) => {
                        problems.add(key, why);
                        None
                    }
                }
            })
            .collect::<Vec<_>>()
    };
    let set = templates(problems, "set", spec.set.into_iter().collect());
    let add = templates(problems, "add", spec.add.into_iter().collect());
    let remove = spec
        .remove
        .iter()
        .enumerate()
        .filter_map(|(i, h)| name(problems, format!("{path}.remove[{i}]"), h))
        .collect();
    Some(HeaderRules { remove, set, add })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_headers_bad_names_and_unknown_variables_are_refused() {
        let mut problems = Problems::default();
        let spec: HeaderRulesSpec = serde_yaml::from_str(
            "{ set: { X-Consumer-Id: evil, X-Tier: \"$tier\", X-Who: \"$whoever\" }, remove: [\"bad header\", X-Org] }",
        )
        .expect("spec");
        let claims = [("org".to_string(), HeaderName::from_static("x-org"))];
        let rules = header_rules(
            &mut problems,
            "routes[0].request_headers",
            Some(spec),
            Direction::Request,
            &claims,
        )
        .expect("rules");
        assert_eq!(rules.set.len(), 1);
        let said: Vec<String> = problems.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            said,
            vec![
                "routes[0].request_headers.set.X-Consumer-Id: x-consumer-id is set by the gateway itself",
                "routes[0].request_headers.set.X-Who: $whoever is not a variable ($consumer, $tier, $request_id, $client_ip, $claim.NAME)",
                "routes[0].request_headers.remove[0]: \"bad header\" is not a header name",
                "routes[0].request_headers.remove[1]: x-org is set by the gateway itself",
            ]
        );
    }
}
