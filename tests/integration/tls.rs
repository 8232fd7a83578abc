//! TLS termination and upstreams over TLS: certificates picked by SNI and by what the client
//! can use, TLS 1.2 and 1.3 only, deadlines over a stalled handshake, verified upstreams with
//! client certificates, config mistakes named, connection caps counting TLS connections, and
//! a graceful upgrade under TLS load serving a rotated certificate — with curl, openssl
//! s_client and a rustls client as the clients.

use crate::common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

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
