//! TLS termination, HTTP/2 and h2c, the guard's deadlines over both, PROXY protocol,
//! and upstreams over TLS and HTTP/2 — with curl, openssl s_client, a rustls client
//! and the h2 crate as the clients.

use crate::common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

const ECHO: &str =
    "upstreams:\n  echo: { kind: echo }\nroutes:\n  - { name: all, path_prefix: /, upstream: echo }\n";

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A gateway running `body` with a TLS listener serving `certs` (the first the default), besides
/// the harness's plain one: the TLS listener's address and the gateway.
fn tls_gateway(pki: &Pki, body: &str, certs: &[&str]) -> (SocketAddr, Gateway) {
    let tls = loopback(free_port());
    let gw = Gateway::start_listening(body, vec![pki.listener(tls, certs, "")]);
    (tls, gw)
}

/// curl against the TLS listener as `host` (resolved to it): (HTTP version, status, body).
fn curl_tls(pki: &Pki, addr: SocketAddr, host: &str, flags: &[&str]) -> (String, String, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "--cacert", &pki.path("ca.pem")])
        .args(["--resolve", &format!("{host}:{}:127.0.0.1", addr.port())])
        .args(["-w", "\n%{http_version} %{http_code}"])
        .args(flags)
        .arg(format!("https://{host}:{}/hello", addr.port()))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, last) = text.rsplit_once('\n').unwrap_or(("", &text));
    let (version, status) = last.split_once(' ').unwrap_or(("", ""));
    (version.to_string(), status.to_string(), body.to_string())
}

/// `openssl s_client` to the listener with `args`: what it printed, and whether it connected.
fn s_client(addr: SocketAddr, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string()])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Waits until the peer closes `stream` (EOF or reset), up to `limit`: how long it took.
fn closed_within(stream: &mut impl Read, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return Some(start.elapsed()),
            Ok(_) => {}
        }
    }
    None
}

#[test]
fn tls_listener_speaks_h1_and_h2_and_picks_the_certificate_by_sni() {
    let pki = Pki::new();
    let (tls, gw) = tls_gateway(&pki, ECHO, &["api.test", "admin.test"]);

    let (version, status, body) = curl_tls(&pki, tls, "api.test", &["--http2"]);
    assert_eq!((version.as_str(), status.as_str()), ("2", "200"), "{body}");
    assert!(body.contains("\"x-forwarded-proto\":\"https\""), "{body}");
    let (version, status, _) = curl_tls(&pki, tls, "admin.test", &["--http1.1"]);
    assert_eq!((version.as_str(), status.as_str()), ("1.1", "200"));

    for (sni, subject) in [
        ("admin.test", "CN = admin.test"),
        ("api.test", "CN = api.test"),
        ("unknown.test", "CN = api.test"),
    ] {
        let (_, text) = s_client(tls, &["-servername", sni]);
        assert!(
            text.contains(&format!("subject={subject}")) || text.contains(&format!("s:{subject}")),
            "{sni}: {text}"
        );
    }
    let (_, text) = s_client(tls, &["-alpn", "h2,http/1.1"]);
    assert!(text.contains("ALPN protocol: h2"), "{text}");
    // The plain listener is untouched, and says http.
    let plain = get(gw.addr, "/x");
    assert_eq!(plain.status, 200);
    assert!(
        plain.text().contains("\"x-forwarded-proto\":\"http\""),
        "{}",
        plain.text()
    );
}

#[test]
fn only_tls_1_2_and_1_3_are_spoken() {
    let pki = Pki::new();
    let (tls, _gw) = tls_gateway(&pki, ECHO, &["api.test"]);
    for version in ["-tls1_2", "-tls1_3"] {
        let (ok, text) = s_client(tls, &[version]);
        assert!(ok && text.contains("Cipher is"), "{version}: {text}");
    }
    // SECLEVEL=0 lets the client offer TLS 1.0/1.1: any refusal is the gateway's.
    for version in ["-tls1", "-tls1_1"] {
        let (_, text) = s_client(tls, &[version, "-cipher", "DEFAULT@SECLEVEL=0"]);
        assert!(
            !text.contains("Cipher is ECDHE") && text.contains("alert"),
            "{version}: {text}"
        );
    }
}

/// Two certificates for one name, ECDSA and RSA: each client gets one it can use,
/// by the signature algorithms (and, on TLS 1.2, the cipher suites) it offers.
#[test]
fn an_ecdsa_and_an_rsa_certificate_for_one_name_each_serve_the_clients_that_need_them() {
    let pki = Pki::new();
    pki.rsa_leaf("api-rsa", "api.test");
    let (tls, _gw) = tls_gateway(&pki, ECHO, &["api.test", "api-rsa"]);
    let verified = [
        "-servername",
        "api.test",
        "-verify_return_error",
        "-verify_hostname",
        "api.test",
    ];
    let ca = ["-CAfile", &pki.path("ca.pem")];
    let clients: [(&[&str], &str); 4] = [
        (&[], "Server public key is 256 bit"),
        (
            &["-sigalgs", "RSA-PSS+SHA256:RSA+SHA256"],
            "Server public key is 2048 bit",
        ),
        (
            &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"],
            "Server public key is 2048 bit",
        ),
        (
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
            "Server public key is 256 bit",
        ),
    ];
    for (limits, served) in clients {
        let (ok, text) = s_client(tls, &[&verified[..], &ca, limits].concat());
        assert!(ok && text.contains(served), "{limits:?}: {text}");
        assert!(text.contains("Verify return code: 0 (ok)"), "{limits:?}: {text}");
    }
}

#[test]
fn a_stalled_handshake_and_a_slow_head_over_tls_are_cut_at_the_header_deadline() {
    let pki = Pki::new();
    let body = format!("client: {{ header_timeout_ms: 1000 }}\n{ECHO}");
    let (tls, gw) = tls_gateway(&pki, &body, &["api.test"]);

    // Half a TLS record header, then nothing: Pingora alone would wait 60 s.
    let mut stalled = TcpStream::connect(tls).expect("connect");
    stalled.write_all(&[0x16, 0x03, 0x01]).expect("write");
    stalled.set_read_timeout(Some(Duration::from_secs(1))).ok();
    let waited = closed_within(&mut stalled, Duration::from_secs(15));
    assert!(
        waited.is_some(),
        "a stalled handshake is closed by the header deadline"
    );

    // Slowloris over TLS: a byte every 300 ms never completes a head in time.
    let mut slow = tls_connect(&pki, tls, "api.test", &[b"http/1.1"]).expect("handshake");
    let head = b"GET / HTTP/1.1\r\nHost: api.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let mut answer = Vec::new();
    for b in head {
        if slow.write_all(&[*b]).and_then(|_| slow.flush()).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = slow.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );

    // Oversized and ambiguous heads over TLS get the plain listener's answers.
    let mut big = tls_connect(&pki, tls, "api.test", &[b"http/1.1"]).expect("handshake");
    let huge = "a".repeat(70 * 1024);
    let _ = big.write_all(format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\n\r\n").as_bytes());
    let mut answer = Vec::new();
    let _ = big.read_to_end(&mut answer);
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 431"));
    let mut smuggle = tls_connect(&pki, tls, "api.test", &[b"http/1.1"]).expect("handshake");
    smuggle
        .write_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        )
        .expect("write");
    let mut answer = Vec::new();
    let _ = smuggle.read_to_end(&mut answer);
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 400"));
    assert_eq!(get(gw.addr, "/").status, 200, "the gateway still serves");
}

#[test]
fn an_http2_authority_routes_like_a_host_and_is_the_forwarded_host() {
    let h2c = loopback(free_port());
    let body = "upstreams:\n  echo: { kind: echo }\nroutes:\n  \
                - { name: scoped, host: scoped.test, path_prefix: /, respond: { status: 200, body: scoped } }\n  \
                - { name: all, path_prefix: /, upstream: echo }\n";
    let _gw = Gateway::start_listening(body, vec![format!("{{ addr: \"{h2c}\", h2c: true }}")]);
    let (status, text, _) = h2c_request_to(h2c, "scoped.test:8080", "/x").expect("h2c request");
    assert_eq!(
        (status, text.as_str()),
        (200, "scoped"),
        ":authority routes like Host"
    );
    let (status, text, _) = h2c_request_to(h2c, "other.test", "/x").expect("h2c request");
    assert_eq!(status, 200, "{text}");
    let echoed: serde_json::Value = serde_json::from_str(&text).expect("echo json");
    assert_eq!(echoed["headers"]["x-forwarded-host"], "other.test", "{text}");
}

#[test]
fn h2c_listener_speaks_both_and_http2_heads_are_bounded_too() {
    let h2c = loopback(free_port());
    let body = format!("client: {{ header_timeout_ms: 1000 }}\n{ECHO}");
    let _gw = Gateway::start_listening(&body, vec![format!("{{ addr: \"{h2c}\", h2c: true }}")]);
    let (status, text, _) = h2c_request(h2c, "/over-h2c").expect("h2c request");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("/over-h2c"), "{text}");
    assert_eq!(get(h2c, "/h1-too").status, 200);

    // A HEADERS frame that never ends: the stream is cut at the header deadline.
    let mut conn = TcpStream::connect(h2c).expect("connect");
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .expect("preface");
    conn.write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]).expect("settings");
    conn.write_all(&[0, 0, 40, 0x1, 0x4, 0, 0, 0, 1, 0x82, 0x86])
        .expect("partial headers");
    conn.set_read_timeout(Some(Duration::from_secs(1))).ok();
    assert!(
        closed_within(&mut conn, Duration::from_secs(15)).is_some(),
        "a stalled h2 head is cut"
    );

    // A header list over the limit is refused, the connection stays usable for others.
    let huge = "a".repeat(70 * 1024);
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["-H", &format!("x-big: {huge}")])
        .arg(format!("http://{h2c}/big"))
        .output()
        .expect("curl runs");
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_ne!(code, "200", "an oversized h2 header list is not proxied");
    assert_eq!(h2c_request(h2c, "/after").map(|r| r.0), Ok(200));
}

/// `client.max_headers` holds on HTTP/2 as on HTTP/1.1: too many fields are a 431 and
/// never reach the upstream; Cookie crumbs (one Cookie line on HTTP/1.1) count as one.
#[test]
fn client_max_headers_holds_on_http2_too() {
    let h2c = loopback(free_port());
    let upstream = Upstream::start("u");
    let body = format!(
        "upstreams:\n  u: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ name: all, path_prefix: /, upstream: u }}\n",
        upstream.addr
    );
    let _gw = Gateway::start_listening(&body, vec![format!("{{ addr: \"{h2c}\", h2c: true }}")]);
    let fields = |n: usize| -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("x-field-{i}"), "v".to_string()))
            .collect()
    };
    let authority = h2c.to_string();
    let status = |headers: &[(String, String)]| h2c_request_with(h2c, &authority, "/x", headers).map(|r| r.0);
    assert_eq!(status(&fields(1000)), Ok(431), "1,000 fields");
    assert_eq!(status(&fields(101)), Ok(431), "one over the default 100");
    assert_eq!(upstream.hits(), 0, "nothing over the limit reached the upstream");
    // `te` is one field of the 100.
    assert_eq!(status(&fields(99)), Ok(200));
    let mut crumbs = fields(98);
    crumbs.extend((0..50).map(|i| ("cookie".to_string(), format!("c{i}=v"))));
    assert_eq!(status(&crumbs), Ok(200), "50 Cookie crumbs are one field");
}

#[test]
fn proxy_protocol_from_a_trusted_proxy_gives_the_client_address() {
    let pki = Pki::new();
    let plain = loopback(free_port());
    let tls = loopback(free_port());
    let body = format!("trusted_proxies: [\"127.0.0.1\"]\n{ECHO}");
    let gw = Gateway::start_listening(
        &body,
        vec![
            format!("{{ addr: \"{plain}\", proxy_protocol: true }}"),
            pki.listener(tls, &["api.test"], ", proxy_protocol: true"),
        ],
    );
    let mut v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n".to_vec();
    v1.extend_from_slice(
        b"GET /v1 HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
    );
    let resp = raw_request(plain, &v1);
    assert_eq!(resp.status, 200);
    assert!(
        resp.text().contains("\"x-real-ip\":\"203.0.113.7\""),
        "{}",
        resp.text()
    );
    // The client (not a trusted proxy) cannot claim https; a trusted proxy can.
    assert!(
        resp.text().contains("\"x-forwarded-proto\":\"http\""),
        "{}",
        resp.text()
    );
    let from_proxy = get_with(gw.addr, "/direct", &[("X-Forwarded-Proto", "https")]);
    assert!(
        from_proxy.text().contains("\"x-forwarded-proto\":\"https\""),
        "{}",
        from_proxy.text()
    );

    // v2 in front of a TLS handshake.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[
        0x21, 0x11, 0, 12, 198, 51, 100, 9, 127, 0, 0, 1, 0x15, 0xb3, 0x01, 0xbb,
    ]);
    let mut tcp = TcpStream::connect(tls).expect("connect");
    tcp.write_all(&v2).expect("v2 header");
    let mut stream = tls_over(&pki, tcp, "api.test", &[]).expect("handshake after the header");
    stream
        .write_all(b"GET /v2 HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains("\"x-real-ip\":\"198.51.100.9\""), "{answer}");

    // Garbage where the header should be ends the connection.
    let resp = raw_exchange(plain, b"PROXY TCP4 nonsense\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(resp.is_empty(), "{}", String::from_utf8_lossy(&resp));
}

/// A PROXY v2 header from `source` (IPv4) with TLVs of `tlv_bytes` in all, and the length
/// field saying `claimed` bytes follow the fixed part.
fn proxy_v2_with_tlvs(source: [u8; 4], tlv_bytes: usize, claimed: u16) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11]);
    header.extend_from_slice(&claimed.to_be_bytes());
    header.extend_from_slice(&source);
    header.extend_from_slice(&[127, 0, 0, 1, 0x15, 0xb3, 0, 80]);
    // One NOOP TLV (type 0x04) filling the rest.
    let value = tlv_bytes - 3;
    header.push(0x04);
    header.extend_from_slice(&u16::try_from(value).expect("tlv length").to_be_bytes());
    header.resize(header.len() + value, 0);
    header
}

/// HAProxy sends v2 headers of up to 64 KiB (TLVs: SSL details, unique ids, a cloud's
/// endpoint ids): a large one is taken whole and what follows is served; a header
/// whose length field goes past 64 KiB is refused and the connection closed.
#[test]
fn proxy_protocol_v2_headers_up_to_64_kib_are_taken() {
    let plain = loopback(free_port());
    let body = format!("trusted_proxies: [\"127.0.0.1\"]\n{ECHO}");
    let _gw = Gateway::start_listening(
        &body,
        vec![format!("{{ addr: \"{plain}\", proxy_protocol: true }}")],
    );
    for tlv_bytes in [8 * 1024, 64 * 1024 - 16 - 12] {
        let mut raw = proxy_v2_with_tlvs([203, 0, 113, 8], tlv_bytes, (12 + tlv_bytes) as u16);
        raw.extend_from_slice(b"GET /tlv HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = raw_exchange(plain, &raw);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.contains("\"x-real-ip\":\"203.0.113.8\""),
            "{tlv_bytes} bytes of TLVs: {answer}"
        );
    }
    // 65,535 bytes after the fixed part, 65,551 in all: refused on the fixed part, at
    // once (the header deadline is 10 s away).
    let over = proxy_v2_with_tlvs([203, 0, 113, 9], 65535 - 12, 65535);
    let mut conn = TcpStream::connect(plain).expect("connect");
    conn.write_all(&over[..64]).expect("the start of the header");
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut rest = Vec::new();
    let closed = match conn.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(closed && rest.is_empty(), "closed unanswered: {rest:?}");
}

#[test]
fn proxy_protocol_is_ignored_from_untrusted_peers() {
    let plain = loopback(free_port());
    let body = format!("trusted_proxies: [\"10.9.9.9\"]\n{ECHO}");
    let _gw = Gateway::start_listening(
        &body,
        vec![format!("{{ addr: \"{plain}\", proxy_protocol: true }}")],
    );
    let resp = raw_request(
        plain,
        b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(resp.status, 400, "an untrusted peer cannot pick its address");
    assert_eq!(
        get(plain, "/direct").status,
        200,
        "and is served as a direct client"
    );
}

#[test]
fn upstreams_over_tls_are_verified_and_can_present_a_client_certificate() {
    let pki = Pki::new();
    let good = HttpsUpstream::start(&pki, "upstream.test", None);
    let stranger = HttpsUpstream::start(&pki, "stranger.test", None);
    let mtls = HttpsUpstream::start(&pki, "upstream.test", Some("ca.pem"));
    let ca = pki.path("ca.pem");
    let body = format!(
        "upstreams:\n\
         \x20 good: {{ targets: [\"{}\"], tls: {{ sni: upstream.test, ca_file: {ca} }}, health_check: {{ kind: http, path: /, interval_ms: 200 }} }}\n\
         \x20 stranger: {{ targets: [\"{}\"], tls: {{ sni: stranger.test, ca_file: {ca} }} }}\n\
         \x20 mtls: {{ targets: [\"{}\"], tls: {{ sni: upstream.test, ca_file: {ca}, cert_file: {}, key_file: {} }} }}\n\
         routes:\n\
         \x20 - {{ name: good, path_prefix: /good, upstream: good }}\n\
         \x20 - {{ name: stranger, path_prefix: /stranger, upstream: stranger }}\n\
         \x20 - {{ name: mtls, path_prefix: /mtls, upstream: mtls }}\n",
        good.addr,
        stranger.addr,
        mtls.addr,
        pki.path("client.test.pem"),
        pki.path("client.test.key"),
    );
    let gw = Gateway::start(&body);
    let resp = get(gw.addr, "/good");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.text().contains("tls upstream; client -"), "{}", resp.text());
    let resp = get(gw.addr, "/stranger");
    assert_eq!(
        resp.status, 502,
        "a certificate from an untrusted CA is never accepted"
    );
    assert!(
        eventually(Duration::from_secs(5), || gw
            .log()
            .to_lowercase()
            .contains("certificate")),
        "the failure is logged as a certificate problem: {}",
        gw.log()
    );
    let resp = get(gw.addr, "/mtls");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.text().contains("client client.test"), "{}", resp.text());
}

#[test]
fn grpc_style_trailers_pass_through_to_an_h2_upstream() {
    let upstream = start_h2_upstream();
    let h2c = loopback(free_port());
    let body = format!(
        "upstreams:\n  grpc: {{ targets: [\"{upstream}\"], http2: true }}\nroutes:\n  - {{ name: grpc, path_prefix: /, upstream: grpc }}\n"
    );
    let _gw = Gateway::start_listening(&body, vec![format!("{{ addr: \"{h2c}\", h2c: true }}")]);
    let (status, text, trailers) = h2c_request(h2c, "/pkg.Service/Call").expect("h2 request");
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, "h2 upstream /pkg.Service/Call");
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..]),
        "{trailers:?}"
    );
    assert_eq!(
        trailers.get("grpc-message").map(|v| v.as_bytes()),
        Some(&b"all good"[..])
    );
}

#[test]
fn tls_config_mistakes_name_their_key_and_expiring_certificates_are_warned_about() {
    let pki = Pki::new();
    let head = "admin: { listen: \"127.0.0.1:9\" }\n";
    let (api_pem, api_key) = (pki.path("api.test.pem"), pki.path("api.test.key"));
    let listener = |cert: &str, key: &str| {
        format!("listen:\n  - \"127.0.0.1:1\"\n  - {{ addr: \"127.0.0.1:2\", tls: {{ certs: [{{ cert_file: {cert}, key_file: {key} }}] }} }}\n")
    };

    let (ok, out) = check_config(
        &format!("{}{head}{ECHO}", listener(&api_pem, &pki.path("admin.test.key"))),
        &[],
    );
    assert!(
        !ok && out.contains("listen[1].tls.certs[0]") && out.contains("is not the key of"),
        "{out}"
    );
    let (ok, out) = check_config(
        &format!("{}{head}{ECHO}", listener("/nonexistent.pem", &api_key)),
        &[],
    );
    assert!(
        !ok && out.contains("listen[1].tls.certs[0]: /nonexistent.pem"),
        "{out}"
    );
    let (ok, out) = check_config(
        &format!("listen: [{{ adr: \"127.0.0.1:2\" }}]\n{head}{ECHO}"),
        &[],
    );
    assert!(!ok && out.contains("listen[0]") && out.contains("adr"), "{out}");
    let (ok, out) = check_config(
        &format!("listen: [{{ addr: \"127.0.0.1:2\", proxy_protocol: true }}]\n{head}{ECHO}"),
        &[],
    );
    assert!(
        !ok && out.contains("listen[0].proxy_protocol: needs trusted_proxies"),
        "{out}"
    );

    let (soon_pem, soon_key) = (pki.path("soon.test.pem"), pki.path("soon.test.key"));
    let (ok, out) = check_config(&format!("{}{head}{ECHO}", listener(&soon_pem, &soon_key)), &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("warning: {soon_pem} expires in 2 days")),
        "{out}"
    );

    let by_addr = "upstreams:\n  u: { targets: [\"127.0.0.1:1\"], tls: {} }\nroutes:\n  - { name: r, path_prefix: /, upstream: u }\n";
    let (ok, out) = check_config(&format!("listen: [\"127.0.0.1:1\"]\n{head}{by_addr}"), &[]);
    assert!(!ok && out.contains("upstreams.u.tls.sni: required"), "{out}");
    let two_names = "upstreams:\n  u: { targets: [\"a.invalid:443\", \"b.invalid:443\"], tls: {} }\nroutes:\n  - { name: r, path_prefix: /, upstream: u }\n";
    let (ok, out) = check_config(&format!("listen: [\"127.0.0.1:1\"]\n{head}{two_names}"), &[]);
    assert!(
        !ok && out.contains("upstreams.u.tls.sni: required when the targets have different names"),
        "{out}"
    );
}

/// A masked text frame, as a client sends it.
fn client_frame(text: &str) -> Vec<u8> {
    let mask = [7u8, 1, 9, 3];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

fn read_text_frame(conn: &mut TcpStream) -> String {
    let mut header = [0u8; 2];
    conn.read_exact(&mut header).expect("frame header");
    let mut payload = vec![0u8; usize::from(header[1] & 0x7f)];
    conn.read_exact(&mut payload).expect("frame payload");
    String::from_utf8_lossy(&payload).into_owned()
}

/// A WebSocket session through the gateway at `addr`, upgraded.
fn open_websocket(addr: SocketAddr) -> TcpStream {
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
    conn.write_all(
        b"GET /ws/room HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .expect("upgrade request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).expect("101 head");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    conn
}

fn websocket_route(upstream: SocketAddr) -> String {
    format!(
        "upstreams:\n  chat: {{ targets: [\"{upstream}\"], timeouts: {{ read_ms: 300 }} }}\n\
         routes:\n  - {{ name: ws, path_prefix: /ws/, upstream: chat, websocket: {{ idle_timeout_s: 5 }} }}\n"
    )
}

/// SIGTERM with a WebSocket open and a drain window of 3 s: the session keeps
/// working into the window, then gets a close frame (1001) and ends, and the
/// process exits.
#[test]
fn a_websocket_gets_the_drain_window_then_a_close_frame() {
    let upstream = start_websocket_echo();
    let mut setup = Setup::new(
        &websocket_route(upstream),
        Options {
            drain: 3,
            ..Options::default()
        },
    );
    let mut gw = setup.start();
    let mut conn = open_websocket(setup.addr);
    signal(gw.pid(), "TERM");
    std::thread::sleep(Duration::from_millis(500));
    conn.write_all(&client_frame("draining"))
        .expect("frame during the drain");
    assert_eq!(
        read_text_frame(&mut conn),
        "draining",
        "the session works during the drain"
    );
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    assert_eq!(
        rest,
        [0x88, 0x02, 0x03, 0xE9],
        "a close frame, going away, then the end"
    );
    let status = gw.wait_exit(Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", setup.log());
}

#[test]
fn a_websocket_idles_past_read_ms_and_is_counted_in_its_own_metrics() {
    let upstream = start_websocket_echo();
    let gw = Gateway::start(&websocket_route(upstream));
    let mut conn = open_websocket(gw.addr);
    conn.write_all(&client_frame("hello")).expect("frame");
    assert_eq!(read_text_frame(&mut conn), "hello");
    // Idle for longer than read_ms: the session's own idle timeout holds it open.
    std::thread::sleep(Duration::from_millis(1200));
    conn.write_all(&client_frame("still there"))
        .expect("frame after idling");
    assert_eq!(read_text_frame(&mut conn), "still there");
    let metrics = get(gw.admin, "/metrics").text();
    assert!(
        metrics.contains("floodgate_websocket_sessions_open 1"),
        "{metrics}"
    );
    drop(conn);

    let ended = eventually(Duration::from_secs(5), || {
        get(gw.admin, "/metrics")
            .text()
            .contains("floodgate_websocket_sessions_total{route=\"ws\"} 1")
    });
    let metrics = get(gw.admin, "/metrics").text();
    assert!(ended, "{metrics}");
    assert!(
        metrics.contains("floodgate_websocket_sessions_open 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("floodgate_websocket_session_duration_seconds_count{route=\"ws\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("floodgate_request_duration_seconds_count{route=\"ws\"} 0")
            || !metrics.contains("floodgate_request_duration_seconds_count{route=\"ws\"}"),
        "a session is not a request in the latency histogram: {metrics}"
    );
}

/// `max_body_bytes` bounds a request's body: after the 101 a WebSocket session's frames
/// are not a body, and the session outlives the limit.
#[test]
fn a_websocket_on_a_route_with_max_body_bytes_is_not_cut_by_it() {
    let upstream = start_websocket_echo();
    let body = format!(
        "upstreams:\n  chat: {{ targets: [\"{upstream}\"] }}\n\
         routes:\n  - {{ name: ws, path_prefix: /ws/, upstream: chat, max_body_bytes: 64, websocket: {{ idle_timeout_s: 5 }} }}\n"
    );
    let gw = Gateway::start(&body);
    assert_eq!(
        request(gw.addr, "POST", "/ws/upload", &[], &[b'a'; 100]).status,
        413,
        "a body over the limit is still refused"
    );
    let mut conn = open_websocket(gw.addr);
    // 10 frames of 35 bytes: 350 bytes, over five times the limit.
    for i in 0..10 {
        let text = format!("frame {i} of ten, 29 bytes long");
        conn.write_all(&client_frame(&text)).expect("frame");
        assert_eq!(read_text_frame(&mut conn), text, "frame {i}");
    }
}

/// The DER of the first certificate in a PEM file.
fn first_cert_der(path: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .expect("pem")
        .next()
        .expect("a certificate")
        .expect("parses")
        .to_vec()
}

/// The certificate the TLS listener serves now.
fn served_cert(pki: &Pki, addr: SocketAddr) -> Vec<u8> {
    let conn = tls_connect(pki, addr, "api.test", &[]).expect("handshake");
    conn.conn.peer_certificates().expect("a certificate")[0].to_vec()
}

/// Graceful upgrades under TLS load (a fresh TLS connection per request, two clients):
/// no request fails, and a certificate rotated on disk is served after the upgrade.
#[test]
fn a_graceful_upgrade_under_tls_load_fails_nothing_and_serves_a_rotated_certificate() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let pki = Pki::new();
    let live = |ext: &str| pki.path(&format!("live.{ext}"));
    let install = |name: &str| {
        for ext in ["pem", "key"] {
            std::fs::copy(pki.path(&format!("{name}.{ext}")), live(ext)).expect("install certificate");
        }
    };
    install("api.test");
    let tls = loopback(free_port());
    let entry = format!(
        "{{ addr: \"{tls}\", tls: {{ certs: [{{ cert_file: {}, key_file: {} }}] }} }}",
        live("pem"),
        live("key")
    );
    let options = Options {
        threads: 2,
        grace: 1,
        more_listen: vec![entry],
        ..Options::default()
    };
    // A real upstream beside the gateway, as deployments have: the in-process echo
    // would be upgraded (and stopped) with the process whose requests it serves.
    let upstream = Upstream::start("u");
    let body = format!(
        "upstreams:\n  app: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ name: all, path_prefix: /, upstream: app }}\n",
        upstream.addr
    );
    let mut setup = Setup::new(&body, options);
    let mut current = setup.start();
    assert_eq!(served_cert(&pki, tls), first_cert_der(&live("pem")));

    let stop = AtomicBool::new(false);
    let ok = AtomicUsize::new(0);
    let failures: Vec<String> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut failures = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        match tls_get(&pki, tls) {
                            Ok(()) => {
                                ok.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e) => failures.push(e),
                        }
                    }
                    failures
                })
            })
            .collect();
        let started = eventually(Duration::from_secs(10), || ok.load(Ordering::SeqCst) > 50);
        // Rotate: a new key and certificate for the same name, in place on disk.
        pki.leaf("api.test", "ca", 365, "serverAuth");
        install("api.test");
        for round in 1..=2 {
            let before = ok.load(Ordering::SeqCst);
            let mut next = setup.spawn(&["-u"]);
            setup.wait_for_upgrade_socket(&mut next);
            signal(current.pid(), "QUIT");
            let limit = CLOSE_TIMEOUT + Duration::from_secs(setup.opts.grace + setup.opts.drain + 15);
            let exited = current.wait_exit(limit).is_some_and(|s| s.success());
            let went_on = eventually(Duration::from_secs(10), || {
                ok.load(Ordering::SeqCst) > before + 50
            });
            current = next;
            if !(started && exited && went_on) {
                stop.store(true, Ordering::SeqCst);
                panic!(
                    "round {round}: started {started}, old exited {exited}, load went on {went_on}: {}",
                    setup.log()
                );
            }
        }
        stop.store(true, Ordering::SeqCst);
        clients
            .into_iter()
            .flat_map(|c| c.join().expect("client"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} failed TLS requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(
        served_cert(&pki, tls),
        first_cert_der(&live("pem")),
        "the rotated certificate is served"
    );
}

/// One request on a fresh TLS connection.
fn tls_get(pki: &Pki, addr: SocketAddr) -> Result<(), String> {
    let mut stream = tls_connect(pki, addr, "api.test", &[])?;
    stream
        .write_all(b"GET /load HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    if answer.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!(
            "answer: {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(80)])
        ))
    }
}

/// The connection cap counts a TLS connection from its accept: two that stall before
/// their handshake fill a cap of two, and a third is closed unread until one goes.
#[test]
fn connection_caps_count_tls_connections_from_their_accept() {
    let pki = Pki::new();
    let body = format!("client: {{ max_connections: 2 }}\n{ECHO}");
    let (tls, _gw) = tls_gateway(&pki, &body, &["api.test"]);
    let first = TcpStream::connect(tls).expect("first");
    let _second = TcpStream::connect(tls).expect("second");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        tls_connect(&pki, tls, "api.test", &[]).is_err(),
        "a third connection over the cap"
    );
    drop(first);
    assert!(
        eventually(Duration::from_secs(5), || tls_get(&pki, tls).is_ok()),
        "admitted again once one closed"
    );
}
