//! `allow_ips` and `deny_ips`: which client addresses may call a route. Refused
//! with 403 before authentication, so a denied address learns nothing of the
//! credentials it holds.

use super::{Notes, RequestHead, RoutePolicy};
use crate::vocab::answer::Answer;
use ipnet::IpNet;
use std::net::IpAddr;

/// A denied address is refused even if allowed.
#[derive(Clone, Debug, Default)]
pub struct IpRules {
    /// `None`: every address not denied.
    pub allow: Option<Vec<IpNet>>,
    pub deny: Vec<IpNet>,
}

impl IpRules {
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        !self.deny.iter().any(|n| n.contains(&ip))
            && self
                .allow
                .as_ref()
                .is_none_or(|a| a.iter().any(|n| n.contains(&ip)))
    }
}

impl RoutePolicy for IpRules {
    fn request_head(&self, req: &RequestHead<'_>, _notes: &mut Notes) -> Option<Answer<'static>> {
        (!self.permits(req.client_ip)).then(|| {
            Answer::coded(
                403,
                "forbidden_address",
                "this client address may not use this route",
                req.request_id,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_http::RequestHeader;

    fn rules() -> IpRules {
        IpRules {
            allow: Some(vec![
                "10.0.0.0/8".parse().expect("net"),
                "2001:db8::/32".parse().expect("net"),
            ]),
            deny: vec!["10.6.6.0/24".parse().expect("net")],
        }
    }

    #[test]
    fn denied_beats_allowed_and_mapped_ipv4_is_ipv4() {
        let rules = rules();
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(rules.permits(ip("10.1.2.3")));
        assert!(rules.permits(ip("::ffff:10.1.2.3")));
        assert!(rules.permits(ip("2001:db8::1")));
        assert!(!rules.permits(ip("10.6.6.7")));
        assert!(!rules.permits(ip("192.0.2.1")));
        assert!(IpRules::default().permits(ip("192.0.2.1")));
    }

    #[test]
    fn a_refused_address_gets_403_forbidden_address_and_an_allowed_one_goes_on() {
        let head = RequestHeader::build("GET", b"/", None).expect("head");
        let ask = |ip: [u8; 4]| {
            let req = RequestHead {
                head: &head,
                client_ip: ip.into(),
                request_id: "r1",
                preflight: false,
            };
            rules().request_head(&req, &mut Notes::default())
        };
        let refused = ask([192, 0, 2, 1]).expect("refused");
        assert_eq!(refused.status, 403);
        assert!(String::from_utf8_lossy(&refused.body).contains("forbidden_address"));
        assert!(ask([10, 1, 2, 3]).is_none());
    }
}
