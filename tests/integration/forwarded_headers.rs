//! The headers the upstream receives: no header name with an underscore (refused in the config
//! too), no client claim about its own address or identity, every `X-Forwarded-For` line in
//! order, and a `Connection` header cannot remove the Host or the body framing.

use crate::common::*;

#[test]
fn header_names_with_underscores_never_reach_the_upstream() {
    let up = Upstream::start("u");
    let gw = guarded_gateway(&up);
    let spoofing_api: &[u8] = b"GET /api/u HTTP/1.1\r\nHost: a\r\nX-API-Key: acme-key-7f3a\r\n\
        X_Consumer_Id: admin\r\nX_Consumer_Tier: enterprise\r\nx-consumer_id: admin\r\n\
        X_API_Key: other-key\r\nX-Consumer-Id: spoofed\r\nX_Custom: 1\r\nConnection: close\r\n\r\n";
    let spoofing_legacy: &[u8] = b"GET /legacy/u HTTP/1.1\r\nHost: a\r\nX-API-Key: acme-key-7f3a\r\n\
        X_Consumer_Id: admin\r\nX_Consumer_Tier: enterprise\r\nx-consumer_id: admin\r\n\
        X_API_Key: other-key\r\nX-Consumer-Id: spoofed\r\nX_Custom: 1\r\nConnection: close\r\n\r\n";

    let r = raw_request(gw.addr, spoofing_api);
    assert_eq!(r.status, 200, "{}", r.text());
    // One value each (the echo joins repeated fields with ", "): the gateway's.
    assert_eq!(r.upstream_header("x-consumer-id").as_deref(), Some("acme"));
    assert_eq!(
        r.upstream_header("x-consumer-tier").as_deref(),
        Some("enterprise")
    );
    for gone in [
        "x_consumer_id",
        "x_consumer_tier",
        "x-consumer_id",
        "x_api_key",
        "x_custom",
        "x-api-key",
    ] {
        assert_eq!(r.upstream_header(gone), None, "{gone} reached the upstream");
    }

    // No caller at all: the upstream must not read one from an underscore spelling.
    let r = raw_request(
        gw.addr,
        b"GET /pub/u HTTP/1.1\r\nHost: a\r\nX_Consumer_Id: admin\r\nX_Consumer_Tier: enterprise\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    for gone in [
        "x-consumer-id",
        "x-consumer-tier",
        "x_consumer_id",
        "x_consumer_tier",
    ] {
        assert_eq!(r.upstream_header(gone), None, "{gone} reached the upstream");
    }

    // A route that opts in forwards them, but never an underscore spelling of a header the
    // gateway owns, and never a client's X-Consumer-Id.
    let r = raw_request(gw.addr, spoofing_legacy);
    assert_eq!(r.status, 200, "{}", r.text());
    for gone in ["x_consumer_id", "x_consumer_tier", "x-consumer_id"] {
        assert_eq!(r.upstream_header(gone), None, "{gone} reached the upstream");
    }
    assert_eq!(r.upstream_header("x_custom").as_deref(), Some("1"));
    assert_eq!(r.upstream_header("x-consumer-id").as_deref(), Some("acme"));
    assert_eq!(r.upstream_header("x-api-key"), None);
}

#[test]
fn header_names_with_underscores_are_refused_in_the_config() {
    let config = |auth: &str| {
        format!(
            "version: 1\nlisten: [\"127.0.0.1:1\"]\nadmin: {{ listen: \"127.0.0.1:2\" }}\n\
             upstreams:\n  demo: {{ kind: echo }}\n\
             routes:\n  - {{ name: a, path_prefix: /, upstream: demo }}\n{auth}"
        )
    };
    let api_keys = |header: &str| {
        config(&format!(
            "auth:\n  api_keys:\n    header: {header}\n    keys:\n      - {{ consumer: a, key: \"{}\" }}\n",
            floodgate::auth::api_key::hash_key(GUARDED_API_KEY)
        ))
    };
    let claims = |header: &str| {
        config(&format!(
            "auth:\n  jwt:\n    keys:\n      - {{ alg: HS256, secret: \"0123456789abcdef0123456789abcdef\" }}\n    \
             claims_to_headers: {{ email: {header} }}\n"
        ))
    };
    let (ok, out) = check_config(&api_keys("X-API-Key"), &[]);
    assert!(ok, "{out}");
    let (ok, out) = check_config(&claims("X-User-Email"), &[]);
    assert!(ok, "{out}");

    let (ok, out) = check_config(&api_keys("X_API_Key"), &[]);
    assert!(!ok, "accepted api_keys.header X_API_Key");
    assert!(
        out.contains("auth.api_keys.header:") && out.contains('_'),
        "{out}"
    );
    let (ok, out) = check_config(&claims("X_User_Email"), &[]);
    assert!(!ok, "accepted claims_to_headers X_User_Email");
    assert!(
        out.contains("auth.jwt.claims_to_headers.email:") && out.contains('_'),
        "{out}"
    );
}

#[test]
fn an_underscore_spelling_of_a_gateway_header_never_passes_even_where_underscores_do() {
    let up = Upstream::start("u");
    let gw = host_scoped_gateway(&up);
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
fn client_claims_about_its_address_are_replaced_by_what_the_gateway_resolved() {
    let up = Upstream::start("u");
    let gw = guarded_gateway(&up);
    let r = raw_request(
        gw.addr,
        b"GET /pub/f HTTP/1.1\r\nHost: a\r\nForwarded: for=6.6.6.6;proto=https\r\nX-Real-IP: 6.6.6.6\r\n\
          X-Forwarded-For: 203.0.113.7\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("forwarded"), None);
    assert_eq!(r.upstream_header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        r.upstream_header("x-forwarded-for").as_deref(),
        Some("203.0.113.7, 127.0.0.1")
    );
    let r = get(gw.addr, "/pub/plain");
    assert_eq!(r.upstream_header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(r.upstream_header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
}

#[test]
fn every_forwarded_for_line_reaches_the_upstream_in_order() {
    let up = Upstream::start("u");
    let gw = host_scoped_gateway(&up);
    let r = raw_request(
        gw.addr,
        b"GET /x HTTP/1.1\r\nHost: www.test\r\nX-Forwarded-For: 9.9.9.9\r\nX-Forwarded-For: 7.7.7.7\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = r.json()["headers"]["x-forwarded-for"].as_str().map(str::to_owned);
    assert_eq!(seen.as_deref(), Some("9.9.9.9, 7.7.7.7, 127.0.0.1"));
}

#[test]
fn a_connection_header_cannot_remove_the_host_or_the_body_framing() {
    let up = Upstream::start("u");
    let gw = guarded_gateway(&up);
    let hello_sum: u64 = b"hello".iter().map(|&b| b as u64).sum();
    for raw in [
        &b"POST /pub/c HTTP/1.1\r\nHost: keep.test\r\nConnection: Host, Content-Length, X-Hop\r\nX-Hop: 1\r\nContent-Length: 5\r\n\r\nhello"[..],
        b"POST /pub/c HTTP/1.1\r\nHost: keep.test\r\nConnection: Transfer-Encoding, X-Hop\r\nX-Hop: 1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ] {
        let (r, _conn) = answer_on_new_connection(gw.addr, raw);
        assert_eq!(r.status, 200, "{}: {}", show(raw), r.text());
        assert_eq!(r.upstream_header("host").as_deref(), Some("keep.test"));
        assert_eq!(r.json()["body_len"], 5, "{}", show(raw));
        assert_eq!(r.json()["body_sum"], hello_sum, "{}", show(raw));
        // Other headers a Connection header names are still dropped.
        assert_eq!(r.upstream_header("x-hop"), None);
    }
}
