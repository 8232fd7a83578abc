//! A second adversarial probe's findings: a route scoped to one host cannot be
//! missed by another spelling of that host, a host with an empty label is refused,
//! HTTP/1.0 connections close as the client asked, every `X-Forwarded-For` line is
//! kept, an underscore spelling of a header the gateway owns never passes, and the
//! admin token's scheme is case-insensitive while invisible formatting characters
//! are refused in ids.

use crate::common::*;
use std::time::Duration;

const API_KEY: &str = "host-key-5d1e";
const ADMIN_TOKEN: &str = "admin-token-0123456789";

/// `admin.internal` needs a key; every other host reaches the open route.
fn gateway(up: &Upstream) -> Gateway {
    Gateway::start_admin(
        &format!(
            r#"
upstreams:
  backend: {{ targets: ["{addr}"] }}
auth:
  api_keys:
    keys:
      - {{ consumer: acme, key: "{digest}", tier: enterprise }}
routes:
  - {{ name: admin, path_prefix: /, host: admin.internal, upstream: backend, auth: required }}
  - {{ name: legacy, path_prefix: /legacy/, upstream: backend, auth: none, allow_underscore_headers: true }}
  - {{ name: open, path_prefix: /, upstream: backend, auth: none }}
"#,
            addr = up.addr,
            digest = floodgate::auth::api_key::hash_key(API_KEY),
        ),
        &format!("token: \"{ADMIN_TOKEN}\""),
    )
}

#[test]
fn another_spelling_of_a_scoped_host_cannot_miss_its_route() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    let cases: [(&[u8], u16); 6] = [
        (
            b"GET /secret HTTP/1.1\r\nHost: admin.internal\r\nConnection: close\r\n\r\n",
            401,
        ),
        // HTTP/1.0 with an absolute-form target and no Host: the target names the host.
        (b"GET http://admin.internal/secret HTTP/1.0\r\n\r\n", 401),
        (
            b"GET /secret HTTP/1.1\r\nHost: admin.internal.\r\nConnection: close\r\n\r\n",
            401,
        ),
        (
            b"GET /secret HTTP/1.1\r\nHost: admin.internal.:80\r\nConnection: close\r\n\r\n",
            401,
        ),
        (
            b"GET /secret HTTP/1.1\r\nHost: admin%2einternal\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET http://admin.internal/secret HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
            400,
        ),
    ];
    for (raw, status) in cases {
        let r = raw_request(gw.addr, raw);
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(raw));
    }
    for raw in [
        &b"GET /x HTTP/1.1\r\nHost: [::1]evil.example\r\nConnection: close\r\n\r\n"[..],
        b"GET /x HTTP/1.1\r\nHost: [::1]/../x\r\nConnection: close\r\n\r\n",
    ] {
        assert_eq!(
            raw_request(gw.addr, raw).status,
            400,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(up.hits(), 0, "nothing reached the upstream");
    let open = raw_request(
        gw.addr,
        b"GET /x HTTP/1.1\r\nHost: www.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(open.status, 200);
}

#[test]
fn a_host_with_an_empty_label_is_refused_and_one_trailing_dot_is_not() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    for host in ["b.example..", ".b.example", "a..b", "a..b:80", "admin.internal.."] {
        let raw = format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let r = raw_request(gw.addr, raw.as_bytes());
        assert_eq!(r.status, 400, "Host: {host}");
        assert_eq!(r.json()["error"], "bad_request", "Host: {host}");
    }
    assert_eq!(up.hits(), 0, "a host with an empty label was forwarded");
    let fqdn = raw_request(
        gw.addr,
        b"GET /x HTTP/1.1\r\nHost: b.example.\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(fqdn.status, 200, "{}", fqdn.text());
}

#[test]
fn an_http_1_0_request_without_keep_alive_closes_its_connection() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    for raw in [
        &b"GET /x HTTP/1.0\r\n\r\n"[..],
        b"GET /nowhere HTTP/1.0\r\nHost: www.test\r\n\r\n",
    ] {
        let (resp, mut stream) = answer_on_new_connection(gw.addr, raw);
        assert!(
            closed_by_server(&mut stream, Duration::from_secs(5)),
            "the connection stayed open after an HTTP/1.0 answer"
        );
        assert_ne!(resp.header("connection"), Some("keep-alive"));
    }
}

#[test]
fn every_forwarded_for_line_reaches_the_upstream_in_order() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    let r = raw_request(
        gw.addr,
        b"GET /x HTTP/1.1\r\nHost: www.test\r\nX-Forwarded-For: 9.9.9.9\r\nX-Forwarded-For: 7.7.7.7\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = r.json()["headers"]["x-forwarded-for"].as_str().map(str::to_owned);
    assert_eq!(seen.as_deref(), Some("9.9.9.9, 7.7.7.7, 127.0.0.1"));
}

#[test]
fn an_underscore_spelling_of_a_gateway_header_never_passes_even_where_underscores_do() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    let r = raw_request(
        gw.addr,
        b"GET /legacy/x HTTP/1.1\r\nHost: www.test\r\nX_Consumer_Id: admin\r\nX_Real_IP: 6.6.6.6\r\n\
          X_Forwarded_For: 6.6.6.6\r\nX_Request_Id: forged\r\nX_Custom: kept\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let headers = &r.json()["headers"];
    assert_eq!(headers["x_custom"], "kept", "{headers}");
    for gone in ["x_consumer_id", "x_real_ip", "x_forwarded_for", "x_request_id"] {
        assert!(
            headers.get(gone).is_none(),
            "{gone} reached the upstream: {headers}"
        );
    }
}

#[test]
fn the_admin_token_scheme_is_case_insensitive_and_ids_hide_no_formatting() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    let lower = format!("bearer {ADMIN_TOKEN}");
    let stats = request(gw.admin, "GET", "/admin/stats", &[("Authorization", &lower)], b"");
    assert_eq!(stats.status, 200, "{}", stats.text());
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let auth = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let body = br#"{"tier": "free"}"#;
    let plain = request(gw.admin, "PUT", "/admin/consumers/ab/tier", &auth, body);
    assert_eq!(plain.status, 200, "{}", plain.text());
    // A right-to-left override would make one id read as another in a log line.
    let hidden = request(gw.admin, "PUT", "/admin/consumers/a%E2%80%AEb/tier", &auth, body);
    assert_eq!(hidden.status, 400, "{}", hidden.text());
}
