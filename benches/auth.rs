//! JWT verification cost: each algorithm without the cache (a first sight of a
//! token) and a cache hit (every later request with it).

use criterion::{criterion_group, criterion_main, Criterion};
use floodgate::auth::jwt::JwtVerifier;
use floodgate::config::verify_key;
use floodgate::config::Jwt;
use floodgate::vocab::ids::TierId;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use std::hint::black_box;
use std::sync::Arc;

const SECRET: &str = "bench-secret-bench-secret-bench-secret-0123";

fn bench_verify(c: &mut Criterion) {
    let mut rng = rand::thread_rng();
    let rsa = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("rsa");
    let ec = p256::SecretKey::random(&mut rng);
    let rsa_public = rsa
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("pem");
    let ec_public = ec.public_key().to_public_key_pem(LineEnding::LF).expect("pem");
    let config = Jwt {
        issuer: Some("https://auth.bench".into()),
        audience: Some("floodgate".into()),
        leeway_s: 30,
        consumer_claim: "sub".into(),
        tier_claim: "tier".into(),
        keys: vec![
            verify_key::from_secret(Some("hs".into()), Algorithm::HS256, SECRET).expect("hs"),
            verify_key::from_pem(Some("rs".into()), Algorithm::RS256, rsa_public.as_bytes()).expect("rs"),
            verify_key::from_pem(Some("es".into()), Algorithm::ES256, ec_public.as_bytes()).expect("es"),
        ],
        jwks: None,
        claims_to_headers: Vec::new(),
        forward_token: true,
        cache_entries: 10_000,
    };
    let verifier = JwtVerifier::new(
        config,
        Arc::from(vec!["free".to_string(), "premium".to_string()]),
        TierId(0),
    );
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({"sub": "consumer-42", "tier": "premium", "iss": "https://auth.bench",
                                    "aud": "floodgate", "exp": now + 3600});
    let rsa_pem = rsa.to_pkcs8_pem(LineEnding::LF).expect("pem");
    let ec_pem = ec.to_pkcs8_pem(LineEnding::LF).expect("pem");
    let tokens = [
        (
            "HS256",
            Algorithm::HS256,
            "hs",
            EncodingKey::from_secret(SECRET.as_bytes()),
        ),
        (
            "RS256",
            Algorithm::RS256,
            "rs",
            EncodingKey::from_rsa_pem(rsa_pem.as_bytes()).expect("rsa"),
        ),
        (
            "ES256",
            Algorithm::ES256,
            "es",
            EncodingKey::from_ec_pem(ec_pem.as_bytes()).expect("ec"),
        ),
    ]
    .map(|(name, alg, kid, key)| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        (name, encode(&header, &claims, &key).expect("sign"))
    });

    let mut group = c.benchmark_group("jwt_verify");
    for (name, token) in &tokens {
        group.bench_function(format!("{name}_uncached"), |b| {
            b.iter(|| verifier.verify_uncached(black_box(token), now).expect("valid"))
        });
    }
    for (name, token) in &tokens {
        verifier.verify(token, now).expect("valid");
        group.bench_function(format!("{name}_cache_hit"), |b| {
            b.iter(|| verifier.verify(black_box(token), now).expect("valid"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
