//! The authenticate step: the route's auth policy applied to the request's
//! credentials. On success the caller (if any) is in `ctx.identity`, with its
//! runtime tier override applied; a refusal is a 401 (with `WWW-Authenticate`),
//! a 403 for a tier the route does not take, or a 400 for ambiguous credentials.

use super::Decider;
use crate::config::{AuthPolicy, Route};
use crate::proxy::ctx::RequestCtx;
use crate::vocab::answer::Answer;
use crate::vocab::auth_failure::Failure;
use crate::vocab::identity::Identity;
use crate::vocab::ids::TierId;
use pingora_http::RequestHeader;

pub(super) fn caller(
    decider: &Decider,
    req: &RequestHeader,
    route: &Route,
    ctx: &mut RequestCtx,
    now_ns: u64,
) -> Result<(), Answer<'static>> {
    let access = &route.access;
    let Some(auth) = decider.auth.as_ref().filter(|_| access.auth != AuthPolicy::None) else {
        return Ok(());
    };
    let identity = auth
        .authenticate(&req.headers, now_ns / 1_000_000_000)
        .map(|mut identity| {
            if let Some(id) = identity.as_mut() {
                if let Some(tier) = decider.overrides.get(&id.consumer) {
                    id.tier = tier;
                }
            }
            identity
        })
        .and_then(|identity| {
            admits(access.auth, access.tiers.as_deref(), identity.as_ref()).map(|()| identity)
        });
    match identity {
        Ok(identity) => {
            ctx.identity = identity;
            Ok(())
        }
        Err(failure) => {
            ctx.auth_failure = Some(failure);
            Err(refusal(failure, ctx.request_id.as_str()))
        }
    }
}

/// Whether the route takes this caller (after its credentials were verified).
fn admits(policy: AuthPolicy, tiers: Option<&[TierId]>, identity: Option<&Identity>) -> Result<(), Failure> {
    match (identity, policy) {
        (None, AuthPolicy::Required) => Err(Failure::Missing),
        (Some(id), _) if tiers.is_some_and(|t| !t.contains(&id.tier)) => Err(Failure::TierForbidden),
        (None, _) if tiers.is_some() => Err(Failure::Missing),
        _ => Ok(()),
    }
}

fn refusal(failure: Failure, request_id: &str) -> Answer<'static> {
    let answer = Answer::error(failure.status(), request_id);
    if failure.status() == 401 {
        answer.with_header("www-authenticate", failure.www_authenticate().to_string())
    } else {
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn caller_in(tier: TierId) -> Identity {
        Identity::new(Arc::from("alice"), tier, Arc::new([]))
    }

    #[test]
    fn required_needs_a_caller_optional_lets_anonymous_through_and_tiers_are_checked() {
        let gold = caller_in(TierId(1));
        assert!(matches!(
            admits(AuthPolicy::Required, None, None),
            Err(Failure::Missing)
        ));
        assert!(admits(AuthPolicy::Required, None, Some(&gold)).is_ok());
        assert!(admits(AuthPolicy::Optional, None, None).is_ok());
        assert!(admits(AuthPolicy::Optional, Some(&[TierId(1)]), Some(&gold)).is_ok());
        assert!(matches!(
            admits(AuthPolicy::Optional, Some(&[TierId(0)]), Some(&gold)),
            Err(Failure::TierForbidden)
        ));
        // A route open to some tiers only is not open to anonymous callers.
        assert!(matches!(
            admits(AuthPolicy::Optional, Some(&[TierId(1)]), None),
            Err(Failure::Missing)
        ));
    }

    #[test]
    fn a_401_names_its_scheme_and_a_403_does_not() {
        let missing = refusal(Failure::Missing, "r1");
        assert_eq!(missing.status, 401);
        assert_eq!(missing.headers, vec![("www-authenticate", "Bearer".to_string())]);
        let tier = refusal(Failure::TierForbidden, "r1");
        assert_eq!(tier.status, 403);
        assert!(tier.headers.is_empty());
    }
}
