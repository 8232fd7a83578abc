//! Kept-alive upstream connections that the upstream closes under the gateway: a GET sent on
//! a stale pooled connection is tried again on a fresh one, and a POST the upstream has seen
//! is never sent twice.

use crate::common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

/// A request on a kept-alive client connection: the gateway reads it only once the previous
/// one is finished, its upstream connection back in the pool.
fn send_on(s: &mut TcpStream, method: &str, path: &str, body: &[u8]) -> Option<Resp> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    s.write_all(&raw).ok()?;
    read_one(s, &mut Vec::new())
}

#[test]
fn a_stale_pooled_connection_is_retried_for_a_get_and_never_for_a_post() {
    let up = ClosingUpstream::start(Closing::OnTheNextRequest);
    let gw = up.gateway();
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");

    let r = send_on(&mut s, "GET", "/one", b"").expect("an answer to GET /one");
    assert_eq!(r.status, 200, "{}", r.text());

    // Sent on the pooled connection, which the upstream closes unanswered: retried on a new one.
    let r = send_on(&mut s, "GET", "/two", b"").expect("an answer to GET /two");
    assert_eq!(r.status, 200, "{}", r.text());
    let two: Vec<Seen> = up.seen().into_iter().filter(|s| s.path == "/two").collect();
    assert_eq!(two.len(), 2, "{two:?}");
    assert!(
        !two[0].answered && two[0].nth == 1,
        "GET /two went first to the pooled connection: {two:?}"
    );
    assert!(
        two[1].answered && two[1].nth == 0 && two[1].conn != two[0].conn,
        "then once more on a new connection: {two:?}"
    );

    // The same for a POST: the upstream has seen it, so it is never sent again.
    let r = send_on(&mut s, "POST", "/three", b"pay once");
    eprintln!(
        "POST on a stale pooled connection: {:?}",
        r.as_ref().map(|r| (r.status, r.text()))
    );
    assert_eq!(up.times_seen("POST", "/three"), 1, "{:?}", up.seen());
    let r = r.expect("an answer to POST /three");
    assert_eq!(r.status, 502, "{}", r.text());

    // The gateway goes on serving; the POST was still sent once only.
    assert_eq!(get(gw.addr, "/four").status, 200);
    assert_eq!(up.times_seen("POST", "/three"), 1, "{:?}", up.seen());
}

#[test]
fn an_upstream_closing_after_each_answer_never_sees_a_post_twice() {
    let up = ClosingUpstream::start(Closing::AfterEachAnswer);
    let gw = up.gateway();
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut statuses = Vec::new();
    for i in 0..20 {
        let get_path = format!("/get/{i}");
        let r =
            send_on(&mut s, "GET", &get_path, b"").unwrap_or_else(|| panic!("no answer to GET {get_path}"));
        assert_eq!(r.status, 200, "GET {get_path}: {}", r.text());

        let post_path = format!("/post/{i}");
        let Some(r) = send_on(&mut s, "POST", &post_path, b"pay once") else {
            panic!("no answer to POST {post_path}");
        };
        assert!(
            r.status == 200 || r.status == 502,
            "POST {post_path}: {} {}",
            r.status,
            r.text()
        );
        statuses.push(r.status);
        if r.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            s = TcpStream::connect(gw.addr).expect("reconnect");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
        }
    }
    eprintln!("POSTs after a closed pooled connection: {statuses:?}");
    for i in 0..20 {
        assert!(
            up.times_seen("POST", &format!("/post/{i}")) <= 1,
            "POST /post/{i} sent twice: {:?}",
            up.seen()
        );
    }
    assert_eq!(get(gw.addr, "/after").status, 200);
}
