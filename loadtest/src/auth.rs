//! Credentials: HS256 user tokens minted from the servers' secret (the same claims
//! `chat-auth` verifies: `sub`, `exp`), so a run needs no dev mode.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
}

/// A token for `user`, valid for a day.
pub fn mint(secret: &str, user: &str) -> Result<String, String> {
    let key = EncodingKey::from_secret(secret.as_bytes()).map_err(|e| e.to_string())?;
    let claims = Claims {
        sub: user,
        exp: crate::stamp::now_us() / 1_000_000 + 24 * 3600,
    };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_are_three_part_jwts_naming_the_user() {
        let t = mint("a-test-secret-of-enough-bytes", "alice").unwrap();
        assert_eq!(t.split('.').count(), 3);
        let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
        v.set_required_spec_claims(&["exp", "sub"]);
        #[derive(serde::Deserialize)]
        struct C {
            sub: String,
        }
        let key = jsonwebtoken::DecodingKey::from_secret(b"a-test-secret-of-enough-bytes").unwrap();
        let data = jsonwebtoken::decode::<C>(&t, &key, &v).unwrap();
        assert_eq!(data.claims.sub, "alice");
    }
}
