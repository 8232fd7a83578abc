//! Why credentials were refused: the word auth answers with, and that telemetry
//! counts and logs by its `reason()`.

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
}
