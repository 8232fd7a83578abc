//! Who is calling: runs in `request_filter` right after routing. Pure over the
//! request's headers and the current time; the only shared state is the JWT key
//! set (an `ArcSwap` snapshot the JWKS refresher replaces) and the verified-token
//! cache. Nothing here awaits.

pub mod api_key;
pub mod jwt;
mod strict_json;

use crate::config::Auth;
use crate::consumers::keys::RuntimeKeys;
use crate::vocab::auth_failure::Failure;
use crate::vocab::identity::Identity;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;

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
