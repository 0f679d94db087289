//! Token verification against every way a token can be wrong.

use std::time::{SystemTime, UNIX_EPOCH};

use chat_auth::{Auth, AuthConfig};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

const SECRET: &str = "a-test-secret-of-enough-bytes";
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn key(name: &str) -> Vec<u8> {
    std::fs::read(format!("{KEYS}/{name}")).unwrap()
}

fn auth(public_key: Option<&str>, secret: bool) -> Auth {
    Auth::from_config(
        &AuthConfig {
            dev_mode: Some(false),
            jwt_secret: secret.then(|| SECRET.into()),
            jwt_public_key_file: public_key.map(|k| format!("{KEYS}/{k}").into()),
            ..AuthConfig::default()
        },
        false,
    )
    .unwrap()
}

fn hs256(claims: serde_json::Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn valid_claims() -> serde_json::Value {
    json!({"sub": "alice", "exp": now() + 600})
}

#[test]
fn good_tokens_of_each_configured_algorithm_verify() {
    let a = auth(Some("rsa-public.pem"), true);
    assert_eq!(a.verify_token(&hs256(valid_claims())).unwrap().id, "alice");
    let rs = encode(
        &Header::new(Algorithm::RS256),
        &valid_claims(),
        &EncodingKey::from_rsa_pem(&key("rsa-private.pem")).unwrap(),
    )
    .unwrap();
    assert_eq!(a.verify_token(&rs).unwrap().id, "alice");
    let es_auth = auth(Some("ec-public.pem"), false);
    let es = encode(
        &Header::new(Algorithm::ES256),
        &valid_claims(),
        &EncodingKey::from_ec_pem(&key("ec-private.pem")).unwrap(),
    )
    .unwrap();
    assert_eq!(es_auth.verify_token(&es).unwrap().id, "alice");
    assert!(
        es_auth.verify_token(&rs).is_err(),
        "RS256 is not configured there"
    );
    assert!(
        es_auth.verify_token(&hs256(valid_claims())).is_err(),
        "no HS256 secret there"
    );
}

#[test]
fn expired_not_yet_valid_and_claimless_tokens_are_refused() {
    let a = auth(None, true);
    assert!(
        a.verify_token(&hs256(json!({"sub": "alice", "exp": now() - 60})))
            .is_err(),
        "expired"
    );
    assert!(
        a.verify_token(&hs256(
            json!({"sub": "alice", "exp": now() + 600, "nbf": now() + 120})
        ))
        .is_err(),
        "nbf in the future"
    );
    assert!(
        a.verify_token(&hs256(json!({"sub": "alice"}))).is_err(),
        "exp is required"
    );
    assert!(
        a.verify_token(&hs256(json!({"exp": now() + 600}))).is_err(),
        "sub is required"
    );
    assert!(
        a.verify_token(&hs256(json!({"sub": "bad user", "exp": now() + 600})))
            .is_err()
    );
    // Within the small leeway, a just-expired token still passes.
    assert!(
        a.verify_token(&hs256(json!({"sub": "alice", "exp": now() - 2})))
            .is_ok()
    );
}

#[test]
fn a_refused_token_says_what_is_wrong_in_words_not_library_names() {
    let a = auth(None, true);
    let other_key = encode(
        &Header::new(Algorithm::HS256),
        &valid_claims(),
        &EncodingKey::from_secret(b"another-secret-of-enough-bytes").unwrap(),
    )
    .unwrap();
    for (token, says) in [
        (hs256(json!({"sub": "alice", "exp": now() - 60})), "expired"),
        (other_key, "signed with another key"),
        (hs256(json!({"sub": "alice"})), "no exp claim"),
        (
            hs256(json!({"sub": "bad user", "exp": now() + 600})),
            "not a valid user id",
        ),
        ("garbage".to_owned(), "not a JWT"),
    ] {
        let message = a.verify_token(&token).unwrap_err().message;
        assert!(message.contains(says), "{message:?} should say {says:?}");
        assert!(
            !message.contains("Signature") && !message.contains("Error"),
            "{message:?} reads like code"
        );
    }
}

#[test]
fn alg_none_and_algorithm_confusion_are_refused() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let a = auth(Some("rsa-public.pem"), false);
    let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = b64.encode(valid_claims().to_string().as_bytes());
    assert!(
        a.verify_token(&format!("{header}.{claims}.")).is_err(),
        "alg none"
    );
    // HS256 "signed" with the server's own RSA public key as the HMAC secret.
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &valid_claims(),
        &EncodingKey::from_secret(&key("rsa-public.pem")).unwrap(),
    )
    .unwrap();
    assert!(a.verify_token(&confused).is_err(), "algorithm confusion");
    assert!(a.verify_token("garbage").is_err());
}

#[test]
fn a_missing_or_foreign_public_key_file_stops_the_start() {
    for file in ["missing.pem", "rsa-private.pem"] {
        let err = Auth::from_config(
            &AuthConfig {
                jwt_public_key_file: Some(format!("{KEYS}/{file}").into()),
                ..AuthConfig::default()
            },
            false,
        )
        .err()
        .unwrap();
        assert_eq!(err.setting, "CHAT_JWT_PUBLIC_KEY_FILE");
    }
}

#[test]
fn origins_are_checked_only_for_browsers() {
    let a = Auth::from_config(
        &AuthConfig {
            jwt_secret: Some(SECRET.into()),
            allowed_origins: Some(vec![
                "https://chat.example".into(),
                "http://localhost:5173/".into(),
            ]),
            ..AuthConfig::default()
        },
        false,
    )
    .unwrap();
    assert!(a.origin_allowed(None));
    assert!(a.origin_allowed(Some("https://chat.example")));
    assert!(a.origin_allowed(Some("http://localhost:5173")));
    assert!(!a.origin_allowed(Some("https://evil.example")));
    let production = auth(None, true);
    assert!(
        !production.origin_allowed(Some("https://chat.example")),
        "none by default"
    );
    let dev = Auth::from_config(&AuthConfig::default(), true).unwrap();
    assert!(
        dev.origin_allowed(Some("https://anything.example")),
        "any in dev mode"
    );
}
