//! `dns`: the resolver that upstream names are looked up with.

use super::model::Dns;
use super::problems::Problems;
use super::schema::DnsSpec;
use serde_yaml::Value;
use std::net::SocketAddr;
use std::time::Duration;

pub(super) fn dns(problems: &mut Problems, value: Option<Value>) -> Dns {
    let spec = match value {
        Some(value) => match problems.section::<DnsSpec>("dns", value) {
            Some(spec) => spec,
            None => return Dns::default(),
        },
        None => DnsSpec::default(),
    };
    if spec.timeout_ms == 0 {
        problems.add("dns.timeout_ms", "must be greater than 0");
    }
    let nameservers = spec
        .nameservers
        .iter()
        .enumerate()
        .filter_map(|(i, text)| match text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                problems.add(
                    format!("dns.nameservers[{i}]"),
                    format!("\"{text}\" is not an ip:port address"),
                );
                None
            }
        })
        .collect();
    Dns {
        nameservers,
        timeout: Duration::from_millis(spec.timeout_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: Option<&str>) -> (Dns, Vec<String>) {
        let mut problems = Problems::default();
        let dns = dns(
            &mut problems,
            yaml.map(|y| serde_yaml::from_str(y).expect("yaml")),
        );
        (dns, problems.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn absent_means_the_system_resolver() {
        let (dns, problems) = parse(None);
        assert!(problems.is_empty());
        assert!(dns.nameservers.is_empty());
        assert_eq!(dns.timeout, Duration::from_secs(2));
    }

    #[test]
    fn nameservers_are_addresses_with_ports() {
        let (dns, problems) = parse(Some(
            "{ nameservers: [\"127.0.0.1:5353\", \"[::1]:53\"], timeout_ms: 300 }",
        ));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(dns.nameservers.len(), 2);
        assert_eq!(dns.timeout, Duration::from_millis(300));
        let (_, problems) = parse(Some("{ nameservers: [\"10.0.0.1\"], timeout_ms: 0 }"));
        assert_eq!(
            problems,
            vec![
                "dns.timeout_ms: must be greater than 0",
                "dns.nameservers[0]: \"10.0.0.1\" is not an ip:port address",
            ]
        );
        let (_, problems) = parse(Some("{ tries: 3 }"));
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("dns.tries: unknown field"),
            "{problems:?}"
        );
    }
}
