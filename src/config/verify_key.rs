//! JWT verification keys, from a secret, a PEM public key or a JWKS document.
//! Every key carries the one algorithm it verifies: the algorithm comes from the
//! config or the JWK, never from a token, so an RSA public key can never be used
//! as an HMAC secret and an `oct` key never verifies an asymmetric token. Every
//! key is self-tested once, when it is made.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use std::str::FromStr;

/// JWT algorithms floodgate verifies.
pub const ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
    "EdDSA",
];

pub struct VerifyKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// The algorithm named `name`, if floodgate verifies it.
pub fn algorithm(name: &str) -> Option<Algorithm> {
    ALGORITHMS
        .contains(&name)
        .then(|| Algorithm::from_str(name).ok())
        .flatten()
}

/// An HMAC key from its shared secret.
pub fn from_secret(kid: Option<String>, alg: Algorithm, secret: &str) -> Result<VerifyKey, String> {
    let key = VerifyKey {
        kid,
        alg,
        key: DecodingKey::from_secret(secret.as_bytes()),
    };
    self_test(&key, Some(secret))?;
    Ok(key)
}

/// A public key in PEM form, for an RSA, EC or EdDSA algorithm.
pub fn from_pem(kid: Option<String>, alg: Algorithm, pem: &[u8]) -> Result<VerifyKey, String> {
    let parsed = match alg {
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
        _ => DecodingKey::from_rsa_pem(pem),
    };
    let key = VerifyKey {
        kid,
        alg,
        key: parsed.map_err(|e| format!("not a {alg:?} public key in PEM form: {e}"))?,
    };
    self_test(&key, None)?;
    Ok(key)
}

/// The usable keys of a JWKS document. Keys floodgate cannot use safely (encryption
/// keys, unknown curves, `oct` keys without an explicit HMAC `alg`, an `alg` of the
/// wrong family for the key type) are skipped and named in the second list.
pub fn from_jwks(text: &[u8]) -> Result<(Vec<VerifyKey>, Vec<String>), String> {
    let set: JwkSet = serde_json::from_slice(text).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for jwk in &set.keys {
        let kid = jwk.common.key_id.clone();
        let name = kid.clone().unwrap_or_else(|| "(no kid)".into());
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            skipped.push(format!("{name}: an encryption key"));
            continue;
        }
        // KeyAlgorithm's Debug names are the JWA names for every signing algorithm.
        let declared = jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::from_str(&format!("{a:?}")).ok());
        let inferred = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => Some(Algorithm::ES256),
                EllipticCurve::P384 => Some(Algorithm::ES384),
                _ => None,
            },
            AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
            // A shared secret's hash is not guessable from the key: it must be stated.
            _ => None,
        };
        let Some(alg) = declared.or(inferred) else {
            skipped.push(format!("{name}: no usable alg"));
            continue;
        };
        let key = match DecodingKey::from_jwk(jwk) {
            Ok(key) if key.family() == alg.family() => key,
            Ok(_) => {
                skipped.push(format!("{name}: alg {alg:?} does not fit its key type"));
                continue;
            }
            Err(e) => {
                skipped.push(format!("{name}: {e}"));
                continue;
            }
        };
        let key = VerifyKey { kid, alg, key };
        match self_test(&key, None) {
            Ok(()) => keys.push(key),
            Err(e) => skipped.push(format!("{name}: {e}")),
        }
    }
    Ok((keys, skipped))
}

/// Exercises the crypto backend once per key at load. With no backend (or two)
/// jsonwebtoken panics on the first decode; that must stop start-up, not a request.
/// An HMAC key signs and verifies a token; a public key must reject a forged one cleanly.
fn self_test(key: &VerifyKey, secret: Option<&str>) -> Result<(), String> {
    let outcome = std::panic::catch_unwind(|| {
        let mut validation = jsonwebtoken::Validation::new(key.alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let claims = serde_json::json!({"self_test": true});
        match secret {
            Some(secret) => {
                let token = jsonwebtoken::encode(
                    &Header::new(key.alg),
                    &claims,
                    &EncodingKey::from_secret(secret.as_bytes()),
                )
                .map_err(|e| format!("self-test could not sign: {e}"))?;
                jsonwebtoken::decode::<serde_json::Value>(&token, &key.key, &validation)
                    .map(|_| ())
                    .map_err(|e| format!("self-test token did not verify: {e}"))
            }
            None => {
                use base64::Engine;
                let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                let header = b64.encode(format!(r#"{{"alg":"{:?}","typ":"JWT"}}"#, key.alg));
                let token = format!(
                    "{header}.{}.{}",
                    b64.encode(claims.to_string()),
                    b64.encode([7u8; 64])
                );
                match jsonwebtoken::decode::<serde_json::Value>(&token, &key.key, &validation) {
                    Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => Ok(()),
                    Err(e) => Err(format!("self-test expected a bad signature, got: {e}")),
                    Ok(_) => Err("self-test: a forged token verified".to_string()),
                }
            }
        }
    });
    outcome.unwrap_or_else(|_| Err(format!("the crypto backend cannot verify {:?}", key.alg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_keys_take_their_alg_from_the_jwk_and_unsafe_ones_are_skipped() {
        let doc = serde_json::json!({"keys": [
            // An HMAC key must state its alg.
            {"kty": "oct", "kid": "hs", "alg": "HS256", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"},
            {"kty": "oct", "kid": "hs-no-alg", "k": "c2VjcmV0"},
            // An RSA key claiming an HMAC alg: the classic confusion, refused.
            {"kty": "RSA", "kid": "confused", "alg": "HS256",
             "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
             "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc",
             "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
             "e": "AQAB"},
            {"kty": "RSA", "kid": "rs",
             "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
             "e": "AQAB"},
        ]});
        let (keys, skipped) = from_jwks(doc.to_string().as_bytes()).expect("parses");
        let loaded: Vec<_> = keys
            .iter()
            .map(|k| (k.kid.clone().unwrap_or_default(), k.alg))
            .collect();
        assert_eq!(
            loaded,
            vec![
                ("hs".to_string(), Algorithm::HS256),
                ("rs".to_string(), Algorithm::RS256)
            ]
        );
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(from_jwks(b"{not json").is_err());
    }
}
