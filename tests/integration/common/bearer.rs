//! A bearer token as a caller sends it: an HS256 JWT for a consumer of a tier, valid
//! for ten minutes.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

pub fn hs256_bearer(secret: &str, sub: &str, tier: &str) -> String {
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    let claims = json!({"sub": sub, "tier": tier, "exp": exp});
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign");
    format!("Bearer {token}")
}
