//! JWT verification with `jsonwebtoken` behind a verified-token cache.
//!
//! jsonwebtoken's defaults are lax in ways that matter at a gateway; each is closed
//! here: `nbf` is validated, `iss`/`aud` are required when configured, the
//! algorithm comes from the key (never the token), tokens naming `crit` extensions
//! are refused, oversized tokens are refused before any decoding, and claims of
//! the wrong JSON type are a 401 rather than a default.

use super::strict_json::has_duplicate_keys;
use crate::config::verify_key::VerifyKey;
use crate::config::{JwksSource, Jwt};
use crate::vocab::auth_failure::Failure;
use crate::vocab::consumer_id;
use crate::vocab::identity::Identity;
use crate::vocab::ids::TierId;
use arc_swap::ArcSwap;
use base64::Engine;
use http::{HeaderName, HeaderValue};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Longer tokens are refused unread: verifying them costs CPU an attacker chooses.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Tokens without a `kid` are tried against at most this many keys of their algorithm.
const MAX_KEYS_TRIED: usize = 4;

struct Key {
    verify: VerifyKey,
    validation: Validation,
}

/// The keys in force: the config's own plus the latest good JWKS.
struct KeySet {
    generation: u64,
    by_kid: HashMap<String, Arc<Key>>,
    all: Vec<Arc<Key>>,
}

/// A verified token's outcome, valid until `exp` and while the key set is unchanged.
struct Cached {
    identity: Identity,
    exp: u64,
    generation: u64,
}

/// What the background refresher needs: where the JWKS lives, how often to read it,
/// and a wake-up for unknown `kid`s that is single-flight and rate-limited.
pub struct JwksRefresh {
    pub source: JwksSource,
    pub interval: Duration,
    cooldown_s: u64,
    last_wake_s: AtomicU64,
    pub wake: tokio::sync::Notify,
    /// Whether a JWKS has been installed since start-up (a file's is, at once).
    loaded: AtomicBool,
    /// Sent once the first read of the source has been tried, good or bad: `/ready`
    /// waits for it (bounded), so a fresh instance does not refuse the JWKS's tokens.
    first_attempt: tokio::sync::watch::Sender<bool>,
}

impl JwksRefresh {
    fn new(source: JwksSource, interval: Duration, cooldown_s: u64, loaded: bool) -> Self {
        JwksRefresh {
            source,
            interval,
            cooldown_s,
            last_wake_s: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
            loaded: AtomicBool::new(loaded),
            first_attempt: tokio::sync::watch::Sender::new(loaded),
        }
    }

    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// The refresher reports its first attempt, whatever came of it.
    pub fn first_attempt_done(&self) {
        self.first_attempt.send_replace(true);
    }

    /// Waits until the first attempt is done; at once when it already is.
    pub async fn first_attempt(&self) {
        let mut rx = self.first_attempt.subscribe();
        // The sender lives in `self`, so the wait can only end by the value turning true.
        let _ = rx.wait_for(|done| *done).await;
    }

    /// Called on the request path: at most one wake per cooldown, whatever the traffic.
    fn request(&self, now_s: u64) {
        let last = self.last_wake_s.load(Ordering::Relaxed);
        if now_s.saturating_sub(last) >= self.cooldown_s
            && self
                .last_wake_s
                .compare_exchange(last, now_s, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // A stored permit: a refresh already pending absorbs this one.
            self.wake.notify_one();
        }
    }
}

pub struct JwtVerifier {
    keys: ArcSwap<KeySet>,
    config_keys: Vec<Arc<Key>>,
    leeway_s: u64,
    issuer: Option<String>,
    audience: Option<String>,
    consumer_claim: String,
    tier_claim: String,
    tier_names: Arc<[String]>,
    default_tier: TierId,
    claim_headers: Vec<(String, HeaderName)>,
    forward_token: bool,
    cache: quick_cache::sync::Cache<Box<str>, Arc<Cached>>,
    refresh: Option<Arc<JwksRefresh>>,
}

#[derive(serde::Deserialize)]
struct TokenHeader {
    alg: String,
    kid: Option<String>,
}

impl JwtVerifier {
    /// The config's keys are in force from the first request; a JWKS file's keys
    /// too, a JWKS URL's from its first good fetch.
    pub fn new(config: Jwt, tier_names: Arc<[String]>, default_tier: TierId) -> Self {
        let mut verifier = JwtVerifier {
            keys: ArcSwap::from_pointee(KeySet {
                generation: 0,
                by_kid: HashMap::new(),
                all: Vec::new(),
            }),
            config_keys: Vec::new(),
            leeway_s: config.leeway_s,
            issuer: config.issuer,
            audience: config.audience,
            consumer_claim: config.consumer_claim,
            tier_claim: config.tier_claim,
            tier_names,
            default_tier,
            claim_headers: config.claims_to_headers,
            forward_token: config.forward_token,
            cache: quick_cache::sync::Cache::new(config.cache_entries),
            refresh: None,
        };
        verifier.config_keys = config
            .keys
            .into_iter()
            .map(|key| Arc::new(verifier.with_validation(key)))
            .collect();
        let initial = match config.jwks {
            Some(jwks) => {
                let loaded = matches!(jwks.source, JwksSource::File(_));
                verifier.refresh = Some(Arc::new(JwksRefresh::new(
                    jwks.source,
                    jwks.refresh,
                    jwks.cooldown.as_secs(),
                    loaded,
                )));
                jwks.initial
            }
            None => Vec::new(),
        };
        verifier.set_keys(initial);
        verifier
    }

    fn with_validation(&self, verify: VerifyKey) -> Key {
        let mut validation = Validation::new(verify.alg);
        validation.leeway = self.leeway_s;
        validation.validate_nbf = true;
        validation.validate_exp = true;
        let mut required = vec!["exp"];
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Key { verify, validation }
    }

    /// Replaces the JWKS part of the key set with a freshly read JWKS.
    pub fn install(&self, jwks: Vec<VerifyKey>) {
        self.set_keys(jwks);
        if let Some(refresh) = &self.refresh {
            refresh.loaded.store(true, Ordering::Release);
        }
    }

    /// The config's keys plus `jwks`. Cached tokens are verified again after any
    /// change, so a removed key stops working at once.
    fn set_keys(&self, jwks: Vec<VerifyKey>) {
        let generation = self.keys.load().generation + 1;
        let mut all: Vec<Arc<Key>> = self.config_keys.clone();
        all.extend(jwks.into_iter().map(|k| Arc::new(self.with_validation(k))));
        let mut by_kid = HashMap::new();
        for key in &all {
            if let Some(kid) = &key.verify.kid {
                // The config's keys come first and win a kid clash.
                by_kid.entry(kid.clone()).or_insert_with(|| key.clone());
            }
        }
        self.keys.store(Arc::new(KeySet {
            generation,
            by_kid,
            all,
        }));
    }

    pub fn refresh(&self) -> Option<&Arc<JwksRefresh>> {
        self.refresh.as_ref()
    }

    pub fn claim_headers(&self) -> impl Iterator<Item = &HeaderName> {
        self.claim_headers.iter().map(|(_, h)| h)
    }

    /// Whether the upstream receives the `Authorization` header of a verified token.
    pub fn forwards_token(&self) -> bool {
        self.forward_token
    }

    pub fn key_count(&self) -> usize {
        self.keys.load().all.len()
    }

    pub fn verify(&self, token: &str, now_s: u64) -> Result<Identity, Failure> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Failure::TooLarge);
        }
        let keys = self.keys.load();
        if let Some(hit) = self.cache.get(token) {
            if hit.generation == keys.generation && now_s < hit.exp {
                return Ok(hit.identity.clone());
            }
        }
        let (identity, exp) = self.verify_with(token, &keys, now_s)?;
        self.cache.insert(
            token.into(),
            Arc::new(Cached {
                identity: identity.clone(),
                exp,
                generation: keys.generation,
            }),
        );
        Ok(identity)
    }

    /// Full verification bypassing the cache (what a cache miss costs).
    pub fn verify_uncached(&self, token: &str, now_s: u64) -> Result<Identity, Failure> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Failure::TooLarge);
        }
        self.verify_with(token, &self.keys.load(), now_s)
            .map(|(identity, _)| identity)
    }

    fn verify_with(&self, token: &str, keys: &KeySet, now_s: u64) -> Result<(Identity, u64), Failure> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Failure::Malformed);
        };
        if header.is_empty() || payload.is_empty() || signature.is_empty() {
            return Err(Failure::Malformed);
        }
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.decode(header).map_err(|_| Failure::Malformed)?;
        let payload = b64.decode(payload).map_err(|_| Failure::Malformed)?;
        if has_duplicate_keys(&header) || has_duplicate_keys(&payload) {
            return Err(Failure::DuplicateKey);
        }
        let fields: Map<String, Value> = serde_json::from_slice(&header).map_err(|_| Failure::Malformed)?;
        // RFC 7515 4.1.11: extensions we do not understand must make the token invalid.
        if fields.contains_key("crit") {
            return Err(Failure::CritHeader);
        }
        let TokenHeader { alg, kid } =
            serde_json::from_value(Value::Object(fields)).map_err(|_| Failure::Malformed)?;
        if alg.eq_ignore_ascii_case("none") {
            return Err(Failure::AlgNone);
        }
        let alg = Algorithm::from_str(&alg).map_err(|_| Failure::AlgMismatch)?;

        let candidates: Vec<&Arc<Key>> = match &kid {
            Some(kid) => match keys.by_kid.get(kid) {
                Some(key) if key.verify.alg == alg => vec![key],
                Some(_) => return Err(Failure::AlgMismatch),
                None => {
                    if let Some(refresh) = &self.refresh {
                        refresh.request(now_s);
                    }
                    return Err(Failure::UnknownKid);
                }
            },
            None => keys
                .all
                .iter()
                .filter(|k| k.verify.alg == alg)
                .take(MAX_KEYS_TRIED)
                .collect(),
        };
        if candidates.is_empty() {
            return Err(Failure::AlgMismatch);
        }
        let mut failure = Failure::BadSignature;
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.verify.key, &key.validation) {
                Ok(data) => return self.identity(&data.claims, now_s),
                Err(e) => {
                    failure = map_error(e.kind());
                    // Only a bad signature means another key might fit.
                    if failure != Failure::BadSignature {
                        break;
                    }
                }
            }
        }
        Err(failure)
    }

    fn identity(&self, claims: &Map<String, Value>, now_s: u64) -> Result<(Identity, u64), Failure> {
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(Failure::MissingExp)?;
        match claims.get("iat") {
            None => {}
            Some(iat) => match iat.as_f64() {
                Some(iat) if iat <= (now_s + self.leeway_s) as f64 => {}
                Some(_) => return Err(Failure::IssuedInFuture),
                None => return Err(Failure::BadClaims),
            },
        }
        // jsonwebtoken also accepts an array holding the issuer; RFC 7519 says a string.
        if self.issuer.is_some() && !matches!(claims.get("iss"), Some(Value::String(_))) {
            return Err(Failure::WrongIssuer);
        }
        let consumer = match claims.get(&self.consumer_claim) {
            // The same rule as the admin API's: a consumer it cannot name would be out of reach.
            Some(Value::String(s)) if consumer_id::check(s).is_ok() => s.as_str(),
            _ => return Err(Failure::BadClaims),
        };
        let tier = match claims.get(&self.tier_claim) {
            None | Some(Value::Null) => self.default_tier,
            Some(Value::String(name)) => self
                .tier_names
                .iter()
                .position(|t| t == name)
                .map(TierId)
                .ok_or(Failure::UnknownTier)?,
            Some(_) => return Err(Failure::BadClaims),
        };
        let mut headers = Vec::with_capacity(self.claim_headers.len());
        for (claim, header) in &self.claim_headers {
            let text = match claims.get(claim) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => s.clone(),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
                Some(_) => return Err(Failure::BadClaims),
            };
            let value = HeaderValue::from_str(&text).map_err(|_| Failure::BadClaims)?;
            headers.push((header.clone(), value));
        }
        Ok((Identity::new(Arc::from(consumer), tier, Arc::from(headers)), exp))
    }
}

fn map_error(kind: &ErrorKind) -> Failure {
    match kind {
        ErrorKind::InvalidSignature => Failure::BadSignature,
        ErrorKind::ExpiredSignature => Failure::Expired,
        ErrorKind::ImmatureSignature => Failure::NotYetValid,
        ErrorKind::InvalidIssuer => Failure::WrongIssuer,
        ErrorKind::InvalidAudience => Failure::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => Failure::MissingExp,
            "iss" => Failure::WrongIssuer,
            "aud" => Failure::WrongAudience,
            _ => Failure::BadClaims,
        },
        ErrorKind::InvalidClaimFormat(_) | ErrorKind::Json(_) => Failure::BadClaims,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => Failure::AlgMismatch,
        ErrorKind::Base64(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => Failure::Malformed,
        _ => Failure::BadSignature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::verify_key;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "unit-test-secret-0123456789abcdef-xyz";

    fn config(jwks: Option<crate::config::Jwks>) -> Jwt {
        Jwt {
            issuer: None,
            audience: None,
            leeway_s: 0,
            consumer_claim: "sub".into(),
            tier_claim: "tier".into(),
            keys: vec![verify_key::from_secret(Some("hs".into()), Algorithm::HS256, SECRET).expect("key")],
            jwks,
            claims_to_headers: Vec::new(),
            forward_token: true,
            cache_entries: 100,
        }
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(
            config(None),
            Arc::from(vec!["free".to_string(), "gold".to_string()]),
            TierId(0),
        )
    }

    fn token(kid: &str, secret: &str, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.into());
        encode(&header, &claims, &EncodingKey::from_secret(secret.as_bytes())).expect("sign")
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn a_cached_token_never_outlives_its_exp() {
        let v = verifier();
        let t = token("hs", SECRET, json!({"sub": "a", "exp": now() + 2}));
        assert!(v.verify(&t, now()).is_ok());
        // jsonwebtoken reads the system clock for `exp`: real time has to pass.
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(v.verify(&t, now()).err(), Some(Failure::Expired));
    }

    #[test]
    fn a_key_removed_from_the_jwks_stops_cached_tokens_at_once() {
        let v = verifier();
        let jwk_secret = "jwks-secret-jwks-secret-jwks-secret-0123";
        let jwks = json!({"keys": [{"kty": "oct", "kid": "j", "alg": "HS256",
            "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jwk_secret)}]});
        let (keys, _) = verify_key::from_jwks(jwks.to_string().as_bytes()).expect("jwks");
        v.install(keys);
        let t = token("j", jwk_secret, json!({"sub": "a", "exp": now() + 600}));
        assert!(v.verify(&t, now()).is_ok());
        v.install(Vec::new());
        assert_eq!(v.verify(&t, now()).err(), Some(Failure::UnknownKid));
    }

    #[test]
    fn claims_are_typed_and_tiers_known() {
        let v = verifier();
        let ok = v.verify(
            &token(
                "hs",
                SECRET,
                json!({"sub": "a", "tier": "gold", "exp": now() + 60}),
            ),
            now(),
        );
        assert_eq!(ok.map(|i| i.tier), Ok(TierId(1)));
        for (claims, failure) in [
            (
                json!({"sub": "a", "tier": "platinum", "exp": now() + 60}),
                Failure::UnknownTier,
            ),
            (
                json!({"sub": "a", "tier": 3, "exp": now() + 60}),
                Failure::BadClaims,
            ),
            (json!({"sub": ["a"], "exp": now() + 60}), Failure::BadClaims),
            (json!({"sub": "a"}), Failure::MissingExp),
            (
                json!({"sub": "a", "exp": now() + 60, "nbf": now() + 60}),
                Failure::NotYetValid,
            ),
        ] {
            assert_eq!(
                v.verify(&token("hs", SECRET, claims.clone()), now()).err(),
                Some(failure),
                "{claims}"
            );
        }
    }

    /// A token signed over exactly these JSON texts (duplicate keys included).
    fn raw_token(header: &str, claims: &str) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let message = format!("{}.{}", b64.encode(header), b64.encode(claims));
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).expect("sign");
        format!("{message}.{signature}")
    }

    #[test]
    fn lenient_tokens_are_refused() {
        let v = verifier();
        let exp = now() + 60;
        let header = r#"{"alg":"HS256","kid":"hs"}"#;
        let ok = raw_token(header, &format!(r#"{{"sub":"a","exp":{exp}}}"#));
        assert!(v.verify(&ok, now()).is_ok());
        for (token, failure) in [
            (
                raw_token(
                    header,
                    &format!(r#"{{"sub":"a","tier":"free","tier":"gold","exp":{exp}}}"#),
                ),
                Failure::DuplicateKey,
            ),
            (
                raw_token(
                    r#"{"alg":"HS256","kid":"hs","kid":"hs"}"#,
                    &format!(r#"{{"sub":"a","exp":{exp}}}"#),
                ),
                Failure::DuplicateKey,
            ),
            (
                raw_token(
                    header,
                    &format!(r#"{{"sub":"a","exp":{exp},"iat":{}}}"#, now() + 3600),
                ),
                Failure::IssuedInFuture,
            ),
            (
                raw_token(
                    header,
                    &format!(r#"{{"sub":"a\r\nx-consumer-id: admin","exp":{exp}}}"#),
                ),
                Failure::BadClaims,
            ),
            (
                raw_token(header, &format!(r#"{{"sub":"a\u0000","exp":{exp}}}"#)),
                Failure::BadClaims,
            ),
            (
                raw_token(header, &format!(r#"{{"sub":"a\u202eb","exp":{exp}}}"#)),
                Failure::BadClaims,
            ),
            (
                raw_token(header, &format!(r#"{{"sub":"a\u2028b","exp":{exp}}}"#)),
                Failure::BadClaims,
            ),
            (
                raw_token(header, &format!(r#"{{"sub":"a\u00a0b","exp":{exp}}}"#)),
                Failure::BadClaims,
            ),
        ] {
            assert_eq!(v.verify(&token, now()).err(), Some(failure), "{token}");
        }
    }

    #[test]
    fn an_issuer_must_be_a_string() {
        let mut config = config(None);
        config.issuer = Some("https://idp".into());
        let v = JwtVerifier::new(config, Arc::from(vec!["free".to_string()]), TierId(0));
        let exp = now() + 60;
        let as_string = token(
            "hs",
            SECRET,
            json!({"sub": "a", "exp": exp, "iss": "https://idp"}),
        );
        assert!(v.verify(&as_string, now()).is_ok());
        let as_array = token(
            "hs",
            SECRET,
            json!({"sub": "a", "exp": exp, "iss": ["https://idp"]}),
        );
        assert_eq!(v.verify(&as_array, now()).err(), Some(Failure::WrongIssuer));
    }

    #[test]
    fn inline_keys_work_before_the_first_jwks_fetch() {
        let jwks = crate::config::Jwks {
            source: JwksSource::Url("http://127.0.0.1:1/jwks".into()),
            initial: Vec::new(),
            refresh: Duration::from_secs(300),
            cooldown: Duration::from_secs(30),
        };
        let v = JwtVerifier::new(config(Some(jwks)), Arc::from(vec!["free".to_string()]), TierId(0));
        let t = token("hs", SECRET, json!({"sub": "a", "exp": now() + 60}));
        assert!(v.verify(&t, now()).is_ok());
        let refresh = v.refresh().expect("refresh");
        assert!(!refresh.loaded());
        v.install(Vec::new());
        assert!(refresh.loaded());
        assert!(
            v.verify(&t, now()).is_ok(),
            "the inline key stays after a JWKS is installed"
        );
    }

    #[test]
    fn unknown_kids_wake_the_refresher_once_per_cooldown() {
        let refresh = JwksRefresh::new(
            JwksSource::Url("http://127.0.0.1:1/".into()),
            Duration::from_secs(300),
            30,
            false,
        );
        let woke = |r: &JwksRefresh| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("rt");
            rt.block_on(async {
                tokio::time::timeout(Duration::from_millis(10), r.wake.notified())
                    .await
                    .is_ok()
            })
        };
        for _ in 0..100 {
            refresh.request(1_000);
        }
        assert!(woke(&refresh));
        assert!(!woke(&refresh), "a second wake within the cooldown");
        refresh.request(1_010);
        assert!(!woke(&refresh));
        refresh.request(1_031);
        assert!(woke(&refresh));
    }
}
