//! Who is calling: runs in `request_filter` right after routing. Pure over the
//! request's headers and the current time; the only shared state is the JWT key
//! set (an `ArcSwap` snapshot the JWKS refresher replaces) and the verified-token
//! cache. Nothing here awaits.

pub mod api_key;
pub mod jwt;
mod strict_json;

use crate::config::Auth;
use crate::consumers::keys::RuntimeKeys;
use crate::vocab::identity::Identity;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;

/// Why credentials were refused. `reason()` goes to metrics and logs; nothing
/// here ever holds the token or key itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    Missing,
    /// Two Authorization or two API-key headers, or both kinds at once: which one
    /// counts would be a guess, so none does.
    AmbiguousCredentials,
    UnsupportedScheme,
    Malformed,
    TooLarge,
    AlgNone,
    AlgMismatch,
    CritHeader,
    UnknownKid,
    BadSignature,
    Expired,
    NotYetValid,
    /// `iat` later than now plus the leeway: a token from the future.
    IssuedInFuture,
    /// A key appears twice in the token's header or claims.
    DuplicateKey,
    MissingExp,
    WrongIssuer,
    WrongAudience,
    BadClaims,
    UnknownTier,
    UnknownApiKey,
    /// Authenticated, but the route does not admit this tier (403).
    TierForbidden,
}

impl Failure {
    /// Every failure, for the metrics' label set.
    pub const ALL: [Failure; 21] = [
        Failure::Missing,
        Failure::AmbiguousCredentials,
        Failure::UnsupportedScheme,
        Failure::Malformed,
        Failure::TooLarge,
        Failure::AlgNone,
        Failure::AlgMismatch,
        Failure::CritHeader,
        Failure::UnknownKid,
        Failure::BadSignature,
        Failure::Expired,
        Failure::NotYetValid,
        Failure::IssuedInFuture,
        Failure::DuplicateKey,
        Failure::MissingExp,
        Failure::WrongIssuer,
        Failure::WrongAudience,
        Failure::BadClaims,
        Failure::UnknownTier,
        Failure::UnknownApiKey,
        Failure::TierForbidden,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::AmbiguousCredentials => "ambiguous_credentials",
            Failure::UnsupportedScheme => "unsupported_scheme",
            Failure::Malformed => "malformed",
            Failure::TooLarge => "too_large",
            Failure::AlgNone => "alg_none",
            Failure::AlgMismatch => "alg_mismatch",
            Failure::CritHeader => "crit_header",
            Failure::UnknownKid => "unknown_kid",
            Failure::BadSignature => "bad_signature",
            Failure::Expired => "expired",
            Failure::NotYetValid => "not_yet_valid",
            Failure::IssuedInFuture => "issued_in_future",
            Failure::DuplicateKey => "duplicate_key",
            Failure::MissingExp => "missing_exp",
            Failure::WrongIssuer => "wrong_issuer",
            Failure::WrongAudience => "wrong_audience",
            Failure::BadClaims => "bad_claims",
            Failure::UnknownTier => "unknown_tier",
            Failure::UnknownApiKey => "unknown_api_key",
            Failure::TierForbidden => "tier_forbidden",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Failure::AmbiguousCredentials => 400,
            Failure::TierForbidden => 403,
            _ => 401,
        }
    }

    /// `WWW-Authenticate` per RFC 6750: `error="invalid_token"` only when a token was presented.
    pub fn www_authenticate(self) -> &'static str {
        match self {
            Failure::Missing | Failure::UnsupportedScheme => "Bearer",
            _ => "Bearer error=\"invalid_token\"",
        }
    }
}

pub struct Authenticator {
    jwt: Option<Arc<jwt::JwtVerifier>>,
    api_keys: Option<api_key::ApiKeys>,
}

impl Authenticator {
    /// Takes keys already loaded and self-tested by the config.
    pub fn new(config: Auth, tier_names: &[String], runtime: Arc<RuntimeKeys>) -> Self {
        let tier_names: Arc<[String]> = tier_names.into();
        Authenticator {
            jwt: config
                .jwt
                .map(|jwt| Arc::new(jwt::JwtVerifier::new(jwt, tier_names, config.default_tier))),
            // Runtime keys authenticate alongside the config's, under its header.
            api_keys: config
                .api_keys
                .map(|keys| api_key::ApiKeys::new(keys, runtime, config.default_tier)),
        }
    }

    pub fn jwt(&self) -> Option<&Arc<jwt::JwtVerifier>> {
        self.jwt.as_ref()
    }

    pub fn api_key_header(&self) -> Option<&HeaderName> {
        self.api_keys.as_ref().map(|k| k.header())
    }

    /// Headers derived from credentials: a client must never supply them itself.
    pub fn claim_headers(&self) -> impl Iterator<Item = &HeaderName> {
        self.jwt.iter().flat_map(|j| j.claim_headers())
    }

    /// `Ok(None)` when no credentials were presented at all.
    pub fn authenticate(&self, headers: &HeaderMap, now_s: u64) -> Result<Option<Identity>, Failure> {
        let bearer = match &self.jwt {
            Some(_) => single(headers, &AUTHORIZATION)?,
            None => None,
        };
        let api_key = match &self.api_keys {
            Some(keys) => single(headers, keys.header())?,
            None => None,
        };
        match (bearer, api_key, &self.jwt, &self.api_keys) {
            (Some(_), Some(_), _, _) => Err(Failure::AmbiguousCredentials),
            (Some(value), None, Some(jwt), _) => {
                let token = bearer_token(value)?;
                jwt.verify(token, now_s).map(Some)
            }
            (None, Some(value), _, Some(keys)) => keys.verify(value.as_bytes(), now_s).map(Some),
            _ => Ok(None),
        }
    }
}

/// The one value of a header; two copies are refused rather than picking one.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a HeaderValue>, Failure> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => Ok(Some(v)),
        (Some(_), Some(_)) => Err(Failure::AmbiguousCredentials),
    }
}

fn bearer_token(value: &HeaderValue) -> Result<&str, Failure> {
    let value = value.to_str().map_err(|_| Failure::Malformed)?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Failure::UnsupportedScheme);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Failure::Malformed);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_holds_every_failure_once() {
        // A new failure stops this compiling until it has its place in `ALL`.
        for (i, f) in Failure::ALL.into_iter().enumerate() {
            let place = match f {
                Failure::Missing => 0,
                Failure::AmbiguousCredentials => 1,
                Failure::UnsupportedScheme => 2,
                Failure::Malformed => 3,
                Failure::TooLarge => 4,
                Failure::AlgNone => 5,
                Failure::AlgMismatch => 6,
                Failure::CritHeader => 7,
                Failure::UnknownKid => 8,
                Failure::BadSignature => 9,
                Failure::Expired => 10,
                Failure::NotYetValid => 11,
                Failure::IssuedInFuture => 12,
                Failure::DuplicateKey => 13,
                Failure::MissingExp => 14,
                Failure::WrongIssuer => 15,
                Failure::WrongAudience => 16,
                Failure::BadClaims => 17,
                Failure::UnknownTier => 18,
                Failure::UnknownApiKey => 19,
                Failure::TierForbidden => 20,
            };
            assert_eq!(i, place, "{f:?}");
        }
    }

    #[test]
    fn bearer_parsing() {
        let v = |s: &str| HeaderValue::from_str(s).expect("value");
        assert_eq!(bearer_token(&v("Bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(&v("bearer  abc ")), Ok("abc"));
        assert_eq!(bearer_token(&v("Bearer")), Err(Failure::Malformed));
        assert_eq!(bearer_token(&v("Bearer   ")), Err(Failure::Malformed));
        assert_eq!(
            bearer_token(&v("Basic dXNlcjpwdw==")),
            Err(Failure::UnsupportedScheme)
        );
    }

    #[test]
    fn two_copies_of_a_header_are_refused() {
        let mut headers = HeaderMap::new();
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        assert!(matches!(single(&headers, &AUTHORIZATION), Ok(Some(_))));
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert_eq!(
            single(&headers, &AUTHORIZATION),
            Err(Failure::AmbiguousCredentials)
        );
    }
}
