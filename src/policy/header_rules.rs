//! A route's header rules (`request_headers`, `response_headers`): remove, set and
//! add, with values that may name the caller (`$consumer`, `$tier`, `$request_id`,
//! `$client_ip`, `$claim.NAME`). Parsed once at load into literal and variable
//! parts; a value whose variable is absent for a request is not sent at all. On a
//! request, a header a rule sets or adds is the gateway's alone: the client's
//! copies go first, so a client can never slip a value in beside it.

use super::{Notes, RoutePolicy};
use http::{request, response, HeaderMap, HeaderName, HeaderValue};
use std::fmt::Write;
use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq)]
pub enum Var {
    Consumer,
    Tier,
    RequestId,
    ClientIp,
    /// A claim copied by `auth.jwt.claims_to_headers`, read from that header's value.
    Claim(HeaderName),
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    Var(Var),
}

/// A header value with variables.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
    /// Without variables: the value itself, built once.
    fixed: Option<HeaderValue>,
}

/// What a request's variables are.
pub struct Vars<'a> {
    pub consumer: Option<&'a str>,
    pub tier: Option<&'a str>,
    pub request_id: &'a str,
    pub client_ip: Option<IpAddr>,
    pub claims: &'a [(HeaderName, HeaderValue)],
}

impl Template {
    /// `claim` maps a claim name to the header `claims_to_headers` copies it to.
    pub fn parse(text: &str, claim: impl Fn(&str) -> Option<HeaderName>) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            if at > 0 {
                parts.push(Part::Text(text_part(&rest[..at])?));
            }
            let after = &rest[at + 1..];
            let name_len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .unwrap_or(after.len());
            let name = &after[..name_len];
            let var = match name {
                "consumer" => Var::Consumer,
                "tier" => Var::Tier,
                "request_id" => Var::RequestId,
                "client_ip" => Var::ClientIp,
                _ => match name.strip_prefix("claim.") {
                    Some(c) => Var::Claim(claim(c).ok_or_else(|| {
                        format!("${name}: the claim must be in auth.jwt.claims_to_headers")
                    })?),
                    None => {
                        return Err(format!(
                        "${name} is not a variable ($consumer, $tier, $request_id, $client_ip, $claim.NAME)"
                    ))
                    }
                },
            };
            parts.push(Part::Var(var));
            rest = &after[name_len..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(text_part(rest)?));
        }
        let fixed = match parts.as_slice() {
            [] => Some(HeaderValue::from_static("")),
            [Part::Text(t)] => {
                Some(HeaderValue::from_str(t).map_err(|_| "not a valid header value".to_string())?)
            }
            _ => None,
        };
        Ok(Template { parts, fixed })
    }

    /// The value for this request; `None` when a variable it names is absent.
    pub fn render(&self, vars: &Vars<'_>) -> Option<HeaderValue> {
        if let Some(fixed) = &self.fixed {
            return Some(fixed.clone());
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(Var::Consumer) => out.push_str(vars.consumer?),
                Part::Var(Var::Tier) => out.push_str(vars.tier?),
                Part::Var(Var::RequestId) => out.push_str(vars.request_id),
                Part::Var(Var::ClientIp) => write!(out, "{}", vars.client_ip?).ok()?,
                Part::Var(Var::Claim(header)) => {
                    let value = vars.claims.iter().find(|(h, _)| h == header)?.1.to_str().ok()?;
                    out.push_str(value);
                }
            }
        }
        HeaderValue::from_str(&out).ok()
    }
}

/// Literal text of a value, checked once: a bad one would drop the header on every request.
fn text_part(text: &str) -> Result<String, String> {
    HeaderValue::from_str(text)
        .map(|_| text.to_string())
        .map_err(|_| format!("{text:?} is not valid in a header value"))
}

/// One direction's rules, applied in this order: remove, set, add.
#[derive(Clone, Debug, Default)]
pub struct HeaderRules {
    pub remove: Vec<HeaderName>,
    pub set: Vec<(HeaderName, Template)>,
    pub add: Vec<(HeaderName, Template)>,
}

impl HeaderRules {
    pub fn apply(&self, headers: &mut HeaderMap, vars: &Vars<'_>, from_client: bool) {
        for name in &self.remove {
            headers.remove(name);
        }
        if from_client {
            for (name, _) in &self.add {
                headers.remove(name);
            }
        }
        for (name, value) in &self.set {
            match value.render(vars) {
                Some(v) => {
                    headers.insert(name.clone(), v);
                }
                None => {
                    headers.remove(name);
                }
            }
        }
        for (name, value) in &self.add {
            if let Some(v) = value.render(vars) {
                headers.append(name.clone(), v);
            }
        }
    }
}

/// `request_headers`: applied to each upstream attempt's head, last.
#[derive(Debug)]
pub struct RequestHeaderRules(pub HeaderRules);

impl RoutePolicy for RequestHeaderRules {
    fn upstream_request(&self, head: &mut request::Parts, vars: &Vars<'_>) {
        self.0.apply(&mut head.headers, vars, true);
    }
}

/// `response_headers`: applied to a proxied response's head.
#[derive(Debug)]
pub struct ResponseHeaderRules(pub HeaderRules);

impl RoutePolicy for ResponseHeaderRules {
    fn response_head(&self, head: &mut response::Parts, vars: &Vars<'_>, _notes: &mut Notes) {
        self.0.apply(&mut head.headers, vars, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(claims: &'a [(HeaderName, HeaderValue)]) -> Vars<'a> {
        Vars {
            consumer: Some("alice"),
            tier: Some("gold"),
            request_id: "r1",
            client_ip: Some([10, 0, 0, 1].into()),
            claims,
        }
    }

    #[test]
    fn variables_render_and_an_absent_one_omits_the_header() {
        let org = HeaderName::from_static("x-org");
        let claim = |c: &str| (c == "org").then(|| org.clone());
        let t = Template::parse(
            "$consumer@$tier from $client_ip ($request_id) in $claim.org",
            claim,
        )
        .expect("t");
        let claims = [(org.clone(), HeaderValue::from_static("acme"))];
        assert_eq!(
            t.render(&vars(&claims)).expect("value"),
            "alice@gold from 10.0.0.1 (r1) in acme"
        );
        assert_eq!(t.render(&vars(&[])), None, "no org claim: no header");
        let fixed = Template::parse("no-store", claim).expect("fixed");
        assert_eq!(fixed.render(&vars(&[])).expect("value"), "no-store");
        assert!(Template::parse("$nope", claim)
            .expect_err("refused")
            .contains("is not a variable"));
        assert!(Template::parse("$claim.sub", claim)
            .expect_err("refused")
            .contains("claims_to_headers"));
    }

    #[test]
    fn a_request_rule_replaces_what_the_client_sent_and_a_response_rule_adds_beside() {
        let claim = |_: &str| None;
        let tag = HeaderName::from_static("x-tag");
        let rules = HeaderRules {
            remove: vec![HeaderName::from_static("x-drop")],
            set: vec![(
                HeaderName::from_static("x-who"),
                Template::parse("$consumer", claim).expect("t"),
            )],
            add: vec![(tag.clone(), Template::parse("gw", claim).expect("t"))],
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-drop", HeaderValue::from_static("1"));
        headers.insert(tag.clone(), HeaderValue::from_static("client"));
        rules.apply(&mut headers, &vars(&[]), true);
        assert!(!headers.contains_key("x-drop"));
        assert_eq!(headers["x-who"], "alice");
        assert_eq!(headers.get_all(&tag).iter().collect::<Vec<_>>(), ["gw"]);

        let mut response = HeaderMap::new();
        response.insert(tag.clone(), HeaderValue::from_static("upstream"));
        rules.apply(&mut response, &vars(&[]), false);
        assert_eq!(
            response.get_all(&tag).iter().collect::<Vec<_>>(),
            ["upstream", "gw"]
        );
    }
}
