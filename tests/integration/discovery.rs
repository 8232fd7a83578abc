//! Upstream discovery by DNS through the real gateway: a name's addresses are the
//! targets, looked up again every `resolve_interval_s` from a DNS server of the test's
//! own (`dns.nameservers`), never the machine's resolver.

use crate::common::*;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

const NAME: &str = "api.floodgate.test";

/// Resolve interval 1 s, lookup timeout 300 ms (2 attempts); the bound on seeing a DNS
/// change is their sum plus a health-check pass (see the README).
fn gateway(dns: &DnsServer, port: u16, extra: &str) -> Gateway {
    gateway_every(dns, port, 1, extra)
}

fn gateway_every(dns: &DnsServer, port: u16, resolve_interval_s: u64, extra: &str) -> Gateway {
    Gateway::start(&format!(
        r#"
dns: {{ nameservers: ["{}"], timeout_ms: 300 }}
upstreams:
  backend:
    targets: ["{NAME}:{port}"]
    resolve_interval_s: {resolve_interval_s}
{extra}
routes:
  - {{ name: api, path_prefix: /, upstream: backend }}
"#,
        dns.addr
    ))
}

fn ips(last: &[u8]) -> Vec<Ipv4Addr> {
    last.iter().map(|b| Ipv4Addr::new(127, 0, 0, *b)).collect()
}

/// Who served `n` requests (the test upstreams are named by their address).
fn served_by_set(gw: &Gateway, n: usize) -> BTreeSet<String> {
    served_by(gw, n).into_iter().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The targets `/metrics` has health series for: what the pool holds now.
fn targets_in_metrics(gw: &Gateway) -> BTreeSet<String> {
    get(gw.admin, "/metrics")
        .text()
        .lines()
        .filter(|l| l.starts_with("floodgate_upstream_healthy{"))
        .filter_map(|l| l.split("target=\"").nth(1)?.split(':').next().map(String::from))
        .collect()
}

fn resolve_errors(gw: &Gateway) -> u64 {
    get(gw.admin, "/metrics")
        .text()
        .lines()
        .find(|l| l.starts_with("floodgate_upstream_resolve_errors_total{upstream=\"backend\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn every_address_is_a_target_and_the_set_follows_dns_while_removed_ones_drain() {
    let dns = DnsServer::start();
    let ups = Upstream::on_one_port(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    dns.set(NAME, DnsAnswer::Addrs(ips(&[2, 3])));
    let gw = gateway(&dns, ups[0].addr.port(), "");
    assert_eq!(served_by_set(&gw, 20), set(&["127.0.0.2", "127.0.0.3"]));
    assert_eq!(targets_in_metrics(&gw), set(&["127.0.0.2", "127.0.0.3"]));

    // A request in flight on .2 when .2 leaves the answer finishes there.
    ups[0].set_mode(Mode::Slow(Duration::from_millis(1500)));
    let reached = ups[0].hits();
    let in_flight = {
        let addr = gw.addr;
        thread::spawn(move || {
            (0..4)
                .map(|_| get(addr, "/slow"))
                .find(|r| r.json()["upstream"] == "127.0.0.2")
        })
    };
    assert!(eventually(Duration::from_secs(5), || ups[0].hits() > reached));
    let changed = Instant::now();
    dns.set(NAME, DnsAnswer::Addrs(ips(&[3, 4])));
    assert!(
        eventually(Duration::from_secs(5), || targets_in_metrics(&gw)
            == set(&["127.0.0.3", "127.0.0.4"])),
        "the pool follows the answer, and the series of the removed target go: {:?}",
        targets_in_metrics(&gw)
    );
    eprintln!("DNS change seen by the pool after {:?}", changed.elapsed());
    let drained = in_flight.join().expect("in-flight thread");
    let drained = drained.expect("a request reached 127.0.0.2");
    assert_eq!(
        drained.status, 200,
        "the in-flight request finished on its target"
    );

    let before = ups[0].hits();
    assert_eq!(served_by_set(&gw, 20), set(&["127.0.0.3", "127.0.0.4"]));
    assert_eq!(ups[0].hits(), before, "a removed target got new requests");
}

#[test]
fn a_new_address_joins_only_after_its_first_passing_health_check() {
    let dns = DnsServer::start();
    let ups = Upstream::on_one_port(&["127.0.0.2", "127.0.0.3"]);
    dns.set(NAME, DnsAnswer::Addrs(ips(&[2])));
    // Checks every 3 s: without the join rule, a new target would take requests for
    // up to 3 s before its first check.
    let gw = gateway(
        &dns,
        ups[0].addr.port(),
        "    health_check: { kind: http, path: /health, interval_ms: 3000 }",
    );
    assert_eq!(served_by_set(&gw, 5), set(&["127.0.0.2"]));

    ups[1].healthy.store(false, Ordering::SeqCst);
    // .3 fails its checks (it serves requests fine); .9 has nothing listening.
    dns.set(NAME, DnsAnswer::Addrs(ips(&[2, 3, 9])));
    assert!(eventually(Duration::from_secs(5), || targets_in_metrics(&gw)
        .len()
        == 3));
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        assert_eq!(served_by_set(&gw, 5), set(&["127.0.0.2"]));
    }
    assert_eq!(
        ups[1].hits(),
        0,
        "a target that never passed a check got requests"
    );

    ups[1].healthy.store(true, Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(10), || served_by_set(&gw, 4)
            .contains("127.0.0.3")),
        "it joins once a check passes"
    );
}

#[test]
fn a_failing_lookup_keeps_the_last_good_targets() {
    let dns = DnsServer::start();
    let ups = Upstream::on_one_port(&["127.0.0.2", "127.0.0.3"]);
    dns.set(NAME, DnsAnswer::Addrs(ips(&[2, 3])));
    // AAAA records are used only when there is no A record, never because the A
    // question failed: nothing listens on ::1 here.
    dns.set_aaaa(NAME, vec![std::net::Ipv6Addr::LOCALHOST]);
    let gw = gateway(&dns, ups[0].addr.port(), "");
    assert_eq!(served_by_set(&gw, 10), set(&["127.0.0.2", "127.0.0.3"]));

    for failure in [
        DnsAnswer::ServFail,
        DnsAnswer::NxDomain,
        DnsAnswer::Silent,
        DnsAnswer::Addrs(vec![]),
    ] {
        if failure == DnsAnswer::Addrs(vec![]) {
            // No A record: the AAAA records would be the answer, so none either.
            dns.set_aaaa(NAME, vec![]);
        }
        let errors = resolve_errors(&gw);
        dns.set(NAME, failure.clone());
        assert!(
            eventually(Duration::from_secs(6), || resolve_errors(&gw) > errors),
            "{failure:?} is counted"
        );
        assert_eq!(
            served_by_set(&gw, 10),
            set(&["127.0.0.2", "127.0.0.3"]),
            "{failure:?} keeps the last good set"
        );
    }
    assert!(gw.log().contains("cannot resolve"), "logged: {}", gw.log());

    dns.set(NAME, DnsAnswer::Addrs(ips(&[3])));
    assert!(eventually(Duration::from_secs(5), || served_by_set(&gw, 4)
        == set(&["127.0.0.3"])));
}

#[test]
fn a_name_that_does_not_resolve_at_start_is_a_warning_and_is_looked_up_again() {
    let dns = DnsServer::start();
    let ups = Upstream::on_one_port(&["127.0.0.2"]);
    let port = ups[0].addr.port();
    let config = format!(
        "listen: [\"127.0.0.1:1\"]\nadmin: {{ listen: \"127.0.0.1:2\" }}\ndns: {{ nameservers: [\"{}\"], timeout_ms: 300 }}\n\
         upstreams: {{ b: {{ targets: [\"{NAME}:{port}\"] }} }}\n\
         routes: [{{ name: r, path_prefix: /, upstream: b }}]\n",
        dns.addr
    );
    let (ok, out) = check_config(&config, &[]);
    assert!(
        ok,
        "a name that does not resolve yet is not a config error: {out}"
    );
    assert!(
        out.contains(&format!(
            "warning: upstreams.b.targets[0]: cannot resolve {NAME}:{port} now"
        )),
        "{out}"
    );

    let gw = gateway(&dns, port, "");
    let r = get(gw.addr, "/x");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    dns.set(NAME, DnsAnswer::Addrs(ips(&[2])));
    assert!(eventually(Duration::from_secs(5), || get(gw.addr, "/x").status == 200));
}

#[test]
fn requests_never_ask_the_nameserver() {
    let dns = DnsServer::start();
    let ups = Upstream::on_one_port(&["127.0.0.2"]);
    dns.set(NAME, DnsAnswer::Addrs(ips(&[2])));
    let gw = gateway_every(&dns, ups[0].addr.port(), 3600, "");
    // One lookup builds the pool, one more starts the background service's rounds.
    assert!(eventually(Duration::from_secs(5), || dns.queries() >= 2));
    let asked = dns.queries();
    assert_eq!(served_by_set(&gw, 200), set(&["127.0.0.2"]));
    assert_eq!(dns.queries(), asked, "a request looked a name up");
}

/// A GET from `local` (a loopback address), so a consistent-hash pool sees another client.
fn get_from(local: std::net::IpAddr, gw: &Gateway, path: &str) -> Resp {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.bind(&std::net::SocketAddr::new(local, 0).into())
        .expect("bind");
    sock.connect(&gw.addr.into()).expect("connect");
    let mut stream: std::net::TcpStream = sock.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    std::io::Write::write_all(&mut stream, head.as_bytes()).expect("write");
    let mut raw = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut raw);
    parse_response(&raw)
        .map(|(r, _)| r)
        .unwrap_or_else(|| panic!("no response: {:?}", String::from_utf8_lossy(&raw)))
}

/// Targets `/metrics` shows healthy, per upstream.
fn healthy_targets(gw: &Gateway, upstream: &str) -> usize {
    let label = format!("upstream=\"{upstream}\"");
    get(gw.admin, "/metrics")
        .text()
        .lines()
        .filter(|l| l.starts_with("floodgate_upstream_healthy{") && l.contains(&label) && l.ends_with(" 1"))
        .count()
}

#[test]
fn one_live_target_among_400_answers_every_request_whatever_the_balance() {
    let dns = DnsServer::start();
    let ups = Upstream::on_one_port(&["127.0.0.2"]);
    // 127.0.0.2 and 399 loopback addresses nothing listens on at that port: too many
    // records for a UDP answer, so the lookup goes over TCP.
    let answer: Vec<Ipv4Addr> = std::iter::once(Ipv4Addr::new(127, 0, 0, 2))
        .chain((0..399u16).map(|i| Ipv4Addr::new(127, 0, 1 + (i / 200) as u8, 1 + (i % 200) as u8)))
        .collect();
    dns.set(NAME, DnsAnswer::Addrs(answer));
    let port = ups[0].addr.port();
    let balances = ["round_robin", "random", "consistent_hash"];
    let upstreams: String = balances
        .iter()
        .map(|b| {
            format!(
                "  {b}:\n    targets: [\"{NAME}:{port}\"]\n    balance: {b}\n    \
                 health_check: {{ kind: tcp, interval_ms: 300 }}\n"
            )
        })
        .collect();
    let routes: String = balances
        .iter()
        .map(|b| format!("  - {{ name: {b}, path_prefix: /{b}, upstream: {b} }}\n"))
        .collect();
    let gw = Gateway::start(&format!(
        "dns: {{ nameservers: [\"{}\"], timeout_ms: 300 }}\nupstreams:\n{upstreams}routes:\n{routes}",
        dns.addr
    ));
    for balance in balances {
        assert!(
            eventually(Duration::from_secs(10), || healthy_targets(&gw, balance) == 1),
            "{balance}: the health check leaves one healthy target of 400: {}",
            healthy_targets(&gw, balance)
        );
    }
    let failed: Vec<String> = balances
        .iter()
        .filter_map(|balance| {
            let answers: Vec<Resp> = (0..40u8)
                .map(|i| {
                    // Consistent hashing keys by client address: 8 clients.
                    let client = std::net::IpAddr::from([127, 0, 3, 1 + i % 8]);
                    get_from(client, &gw, &format!("/{balance}/{i}"))
                })
                .collect();
            let bad: Vec<&Resp> = answers
                .iter()
                .filter(|r| r.status != 200 || r.json()["upstream"] != "127.0.0.2")
                .collect();
            let first = bad.first()?;
            Some(format!(
                "{balance}: {} of 40 failed, e.g. {} {}",
                bad.len(),
                first.status,
                first.text()
            ))
        })
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn refuse_private_answers_drops_loopback_answers_and_says_so_and_is_off_by_default() {
    let dns = DnsServer::start();
    let ups = Upstream::on_one_port(&["127.0.0.2"]);
    dns.set(NAME, DnsAnswer::Addrs(ips(&[2])));
    let port = ups[0].addr.port();
    let gw = Gateway::start(&format!(
        r#"
dns: {{ nameservers: ["{}"], timeout_ms: 300 }}
upstreams:
  refusing: {{ targets: ["{NAME}:{port}"], resolve_interval_s: 1, refuse_private_answers: true }}
  keeping: {{ targets: ["{NAME}:{port}"], resolve_interval_s: 1 }}
routes:
  - {{ name: refusing, path_prefix: /refusing, upstream: refusing }}
  - {{ name: keeping, path_prefix: /keeping, upstream: keeping }}
"#,
        dns.addr
    ));
    let kept = get(gw.addr, "/keeping");
    assert_eq!(kept.status, 200, "{}", kept.text());
    assert_eq!(kept.json()["upstream"], "127.0.0.2");

    let refused = get(gw.addr, "/refusing");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(refused.header("retry-after").is_some());
    assert_eq!(
        ups[0].hits(),
        1,
        "only the request of the upstream that keeps loopback answers"
    );
    let log = gw.log();
    assert!(
        log.contains(&format!(
            "upstreams.refusing.targets[0]: {NAME}:{port} answered 127.0.0.2:{port}, refused by refuse_private_answers"
        )),
        "{log}"
    );
    let refused_total = |upstream: &str| -> u64 {
        let series = format!("floodgate_upstream_refused_answers_total{{upstream=\"{upstream}\"}} ");
        get(gw.admin, "/metrics")
            .text()
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str())?.parse().ok())
            .unwrap_or(0)
    };
    assert!(refused_total("refusing") >= 1);
    assert_eq!(refused_total("keeping"), 0);
}
