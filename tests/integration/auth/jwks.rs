//! Key sets: a JWKS file refreshed on disk, a JWKS URL fetched in the background without a
//! fetch storm for unknown kids, and readiness around the first fetch when the URL answers,
//! never answers or cannot be reached.

use super::*;
use jsonwebtoken::Algorithm;
use serde_json::json;
use std::time::Duration;

#[test]
fn a_key_added_to_the_jwks_file_is_accepted_after_the_refresh() {
    let f = start(
        "jwks_file: \"{dir}/jwks.json\"\n    jwks_refresh_s: 3600\n    jwks_cooldown_s: 1",
        "info",
    );
    let k = keys();
    let rotated = {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("j2".into());
        let key = EncodingKey::from_rsa_pem(k.rsa2_private_pem.as_bytes()).expect("rsa");
        encode(&header, &claims(json!({})), &key).expect("sign")
    };
    let auth = bearer(&rotated);
    assert_eq!(
        get_with(f.gw.addr, "/api/x", &[("Authorization", &auth)]).status,
        401
    );
    let jwks = json!({"keys": [rsa_jwk("j1", &k.rsa_n, &k.rsa_e), rsa_jwk("j2", &k.rsa2_n, &k.rsa2_e)]});
    std::fs::write(f.jwks_path(), jwks.to_string()).expect("rotate");
    // The unknown kid wakes one refresh (the periodic one is an hour away).
    let accepted = eventually(Duration::from_secs(10), || {
        get_with(f.gw.addr, "/api/x", &[("Authorization", &auth)]).status == 200
    });
    assert!(accepted, "the rotated key was never picked up: {}", f.gw.log());
    let old = sign(Algorithm::RS256, Some("j1"), &claims(json!({})));
    assert_eq!(
        get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&old))]).status,
        200
    );

    // A broken file keeps the last good key set.
    std::fs::write(f.jwks_path(), "{ broken").expect("break");
    let unknown = sign(Algorithm::HS256, Some("wake-it"), &claims(json!({})));
    // Each unknown kid may wake a refresh once the cooldown has passed.
    assert!(eventually(Duration::from_secs(10), || {
        get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&unknown))]);
        f.gw.log().contains("keeping the last good key set")
    }));
    assert_eq!(
        get_with(f.gw.addr, "/api/x", &[("Authorization", &auth)]).status,
        200
    );
}

#[test]
fn jwks_url_is_fetched_in_the_background_and_unknown_kids_do_not_cause_a_fetch_storm() {
    let k = keys();
    let server = jwks_server(json!({"keys": [rsa_jwk("j1", &k.rsa_n, &k.rsa_e)]}));
    let f = start(
        &format!(
            "jwks_url: \"{}\"\n    jwks_refresh_s: 3600\n    jwks_cooldown_s: 2",
            server.url
        ),
        "info",
    );
    let token = sign(Algorithm::RS256, Some("j1"), &claims(json!({})));
    assert!(eventually(Duration::from_secs(10), || {
        get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&token))]).status == 200
    }));
    let before = *server.fetches.lock().expect("count");
    // A burst of unknown kids wakes at most one fetch per cooldown.
    let unknown = sign(Algorithm::RS256, Some("ghost"), &claims(json!({})));
    for _ in 0..50 {
        let r = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&unknown))]);
        assert_eq!(r.status, 401);
    }
    // Not a wait for something to happen: what is checked is that nothing more happens, so a
    // fetch storm (if any) is given half a second to show.
    std::thread::sleep(Duration::from_millis(500));
    let after = *server.fetches.lock().expect("count");
    assert!(
        after - before <= 1,
        "{} fetches for 50 unknown kids",
        after - before
    );

    // Rotation through the URL.
    let rotated = {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("j2".into());
        let key = EncodingKey::from_rsa_pem(k.rsa2_private_pem.as_bytes()).expect("rsa");
        encode(&header, &claims(json!({})), &key).expect("sign")
    };
    *server.doc.lock().expect("doc") =
        json!({"keys": [rsa_jwk("j1", &k.rsa_n, &k.rsa_e), rsa_jwk("j2", &k.rsa2_n, &k.rsa2_e)]}).to_string();
    assert!(eventually(Duration::from_secs(15), || {
        get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&rotated))]).status == 200
    }));
}

#[test]
fn ready_waits_for_the_first_jwks_fetch_so_its_keys_work_once_ready() {
    let k = keys();
    // The identity provider takes a second (well within the 5 s fetch timeout): a /ready that
    // did not wait for the fetch would come before the JWKS key works.
    let server = jwks_server_after(
        json!({"keys": [rsa_jwk("j1", &k.rsa_n, &k.rsa_e)]}),
        Duration::from_secs(1),
    );
    let f = start(
        &format!("jwks_url: \"{}\"\n    jwks_refresh_s: 3600", server.url),
        "info",
    );
    // `start` returned on the first 200 from /ready: no waiting here.
    let jwks_token = sign(Algorithm::RS256, Some("j1"), &claims(json!({})));
    let r = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&jwks_token))]);
    assert_eq!(r.status, 200, "JWKS key not in force at ready: {}", r.text());
    let inline = sign(Algorithm::HS256, Some("hs"), &claims(json!({})));
    let r = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&inline))]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(*server.fetches.lock().expect("count") >= 1);
    assert!(!f.gw.log().contains("not loaded yet"), "{}", f.gw.log());
}

#[test]
fn with_a_jwks_url_that_never_answers_inline_keys_work_throughout_and_ready_comes_after_the_timeout() {
    let silent = SilentServer::start();
    let url = &silent.url;
    let f = start_with(
        &format!("jwks_url: \"{url}\"\n    jwks_refresh_s: 3600"),
        |body| Gateway::start_unready(body, "info"),
    );
    let ready = || get(f.gw.admin, "/ready").status;
    assert_eq!(ready(), 503, "ready before the JWKS fetch was over");
    let inline = sign(Algorithm::HS256, Some("hs"), &claims(json!({})));
    let inline_ok = || {
        let r = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&inline))]);
        assert_eq!(r.status, 200, "inline key refused: {}", r.text());
    };
    // The proxy listener may come up a moment after the admin one.
    assert!(eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect(f.gw.addr).is_ok()
    }));
    // The very first request, while not ready, with the JWKS fetch hanging.
    inline_ok();
    // Ready after the 5 s fetch timeout: 15 s is a liveness bound, not a speed check.
    let became_ready = eventually(Duration::from_secs(15), || {
        inline_ok();
        ready() == 200
    });
    assert!(became_ready, "never ready: {}", f.gw.log());
    inline_ok();
    assert!(
        f.gw.log().contains("not loaded yet"),
        "the log does not say the JWKS is not loaded: {}",
        f.gw.log()
    );
    assert!(
        !silent.accepted.lock().expect("held").is_empty(),
        "the JWKS URL was never tried"
    );
    // The JWKS's keys are not in force; the request is answered, not held on the fetch.
    let jwks_token = sign(Algorithm::RS256, Some("j1"), &claims(json!({})));
    let r = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&jwks_token))]);
    assert_eq!(r.status, 401);
}

#[test]
fn with_an_unreachable_jwks_url_inline_keys_work_and_the_log_says_the_jwks_is_not_loaded() {
    let nowhere = closed_port();
    let f = start(
        &format!(
            "jwks_url: \"http://{}/jwks.json\"\n    jwks_refresh_s: 3600",
            nowhere.addr
        ),
        "info",
    );
    for (alg, kid) in [
        (Algorithm::HS256, "hs"),
        (Algorithm::RS256, "rs"),
        (Algorithm::ES256, "es"),
    ] {
        let token = sign(alg, Some(kid), &claims(json!({})));
        let r = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&token))]);
        assert_eq!(r.status, 200, "{kid}: {}", r.text());
    }
    let log = f.gw.log();
    assert!(log.contains("not loaded yet"), "{log}");
    assert!(log.contains("JWKS refresh failed"), "{log}");
}
