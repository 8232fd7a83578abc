//! The PROXY protocol: from a trusted proxy it gives the client's address (v1 and v2, v2
//! headers up to 64 KiB), from any other peer it is not read.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

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
