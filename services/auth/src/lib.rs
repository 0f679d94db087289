//! Who may do what.
//!
//! - [`AuthConfig`] / [`Auth`]: user JWTs (`CHAT_JWT_SECRET`), server API keys
//!   (`CHAT_API_KEYS`) and dev mode, resolved into a [`Principal`].
//!
//! Channel rules live here too, so the WebSocket and HTTP sides cannot disagree: a user
//! reads only their own `@user` channel and every room not named `private-*` unless the
//! token's `rooms` claim says otherwise.

use std::time::{SystemTime, UNIX_EPOCH};

use chat_protocol::{Channel, ProtocolError};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// Authentication settings.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthConfig {
    /// `true` enables `POST /v1/auth/dev-token`, `connect` by bare user name and
    /// unauthenticated `/chat/send`. Default: false (true for the all-in-one `chat`).
    #[arg(long, env = "CHAT_DEV_MODE")]
    pub dev_mode: Option<bool>,

    /// HS256 secret that signs user tokens (16 bytes or more).
    #[arg(long, env = "CHAT_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM public key (RSA for RS256, EC P-256 for ES256) that verifies user tokens.
    #[arg(long, env = "CHAT_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<std::path::PathBuf>,

    /// Comma-separated `Origin`s allowed to open browser WebSockets; `*` = any.
    /// Default: `*` in dev mode, else none (clients that send no Origin are allowed).
    #[arg(long, env = "CHAT_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,

    /// Comma-separated server API keys for trusted backends.
    #[arg(
        long,
        env = "CHAT_API_KEYS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub api_keys: Vec<String>,
}

/// A configuration that cannot work: names the setting, says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: &'static str,
    pub message: String,
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A user, from a verified token or (dev mode) by name.
    User(User),
    /// A trusted backend holding a server API key: may act as any user.
    Server,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    /// The token's `rooms` claim: names and `prefix*` patterns; `None` = every room
    /// not named `private-*`.
    pub rooms: Option<Vec<String>>,
}

impl User {
    pub fn named(id: impl Into<String>) -> User {
        User {
            id: id.into(),
            rooms: None,
        }
    }

    /// May this user join / read / publish on `channel`?
    pub fn may_access(&self, channel: &Channel) -> bool {
        match channel {
            Channel::User(owner) => owner == &self.id,
            Channel::Room(room) => match &self.rooms {
                None => !room.starts_with("private-"),
                Some(patterns) => patterns.iter().any(|p| match p.strip_suffix('*') {
                    Some(prefix) => room.starts_with(prefix),
                    None => p == room,
                }),
            },
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rooms: Option<Vec<String>>,
}

/// Resolved authentication: verifies tokens and keys.
pub struct Auth {
    pub dev_mode: bool,
    /// One verifier per configured key; the token's `alg` picks one, and each pins its
    /// own algorithm, so a token cannot choose how it is checked.
    verifiers: Vec<(Algorithm, DecodingKey, Validation)>,
    encoding: Option<EncodingKey>,
    api_keys: Vec<Vec<u8>>,
    origins: Origins,
}

enum Origins {
    Any,
    Only(Vec<String>),
}

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 5;

fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = LEEWAY_SECS;
    v.validate_nbf = true;
    v.set_required_spec_claims(&["exp", "sub"]);
    v
}

/// How long dev tokens live.
const DEV_TOKEN_SECS: u64 = 24 * 3600;

impl Auth {
    /// `dev_default` is the binary's default for dev mode.
    pub fn from_config(config: &AuthConfig, dev_default: bool) -> Result<Auth, ConfigError> {
        let dev_mode = config.dev_mode.unwrap_or(dev_default);
        let mut secret = config.jwt_secret.clone().filter(|s| !s.is_empty());
        if secret.as_ref().is_some_and(|s| s.len() < 16) {
            return Err(ConfigError {
                setting: "CHAT_JWT_SECRET",
                message: "must be at least 16 bytes".into(),
            });
        }
        let public_key = match &config.jwt_public_key_file {
            Some(path) => Some(public_key(path)?),
            None => None,
        };
        if secret.is_none() && dev_mode {
            // Dev tokens still need a key; a per-process one works for a single process.
            tracing::warn!(
                "dev mode without CHAT_JWT_SECRET: dev tokens are valid on this process only"
            );
            secret = Some(random_secret());
        }
        if secret.is_none() && public_key.is_none() {
            return Err(ConfigError {
                setting: "CHAT_JWT_SECRET",
                message: "set CHAT_JWT_SECRET (or CHAT_DEV_MODE=true for development): \
                          without key material no user could sign in"
                    .into(),
            });
        }
        let api_keys = config
            .api_keys
            .iter()
            .map(|k| k.trim())
            .filter(|k| !k.is_empty())
            .map(|k| k.as_bytes().to_vec())
            .collect();
        let key_error = |e: jsonwebtoken::errors::Error| ConfigError {
            setting: "CHAT_JWT_SECRET",
            message: e.to_string(),
        };
        let mut verifiers = Vec::new();
        let mut encoding = None;
        if let Some(secret) = &secret {
            let key = DecodingKey::from_secret(secret.as_bytes()).map_err(key_error)?;
            verifiers.push((Algorithm::HS256, key, validation(Algorithm::HS256)));
            encoding = Some(EncodingKey::from_secret(secret.as_bytes()).map_err(key_error)?);
        }
        if let Some((alg, key)) = public_key {
            verifiers.push((alg, key, validation(alg)));
        }
        let origins = match &config.allowed_origins {
            Some(list) if list.iter().any(|o| o.trim() == "*") => Origins::Any,
            Some(list) => Origins::Only(
                list.iter()
                    .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                    .filter(|o| !o.is_empty())
                    .collect(),
            ),
            None if dev_mode => Origins::Any,
            None => Origins::Only(Vec::new()),
        };
        Ok(Auth {
            dev_mode,
            verifiers,
            encoding,
            api_keys,
            origins,
        })
    }

    /// Verifies a user token: signature with the configured algorithm, `exp`, `nbf`.
    pub fn verify_token(&self, token: &str) -> Result<User, ProtocolError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| token_error(&e))?;
        let Some((_, key, validation)) = self.verifiers.iter().find(|(a, ..)| *a == header.alg)
        else {
            return Err(ProtocolError::unauthorized(format!(
                "invalid token: algorithm {:?} is not accepted here",
                header.alg
            )));
        };
        let data =
            jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| token_error(&e))?;
        chat_protocol::names::validate_user(&data.claims.sub).map_err(|_| {
            ProtocolError::unauthorized(
                "invalid token: its sub is not a valid user id (1-64 of A-Z a-z 0-9 _ . -)",
            )
        })?;
        Ok(User {
            id: data.claims.sub,
            rooms: data.claims.rooms,
        })
    }

    /// Browsers send `Origin`; other clients do not and are allowed.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match (origin, &self.origins) {
            (None, _) | (_, Origins::Any) => true,
            (Some(o), Origins::Only(list)) => {
                let o = o.trim().trim_end_matches('/').to_ascii_lowercase();
                list.contains(&o)
            }
        }
    }

    /// Compares against every configured key in constant time.
    pub fn is_api_key(&self, candidate: &str) -> bool {
        let c = candidate.as_bytes();
        let mut found = subtle::Choice::from(0);
        for key in &self.api_keys {
            found |= key.as_slice().ct_eq(c);
        }
        bool::from(found)
    }

    /// Resolves `Authorization: Bearer …` (API key or user token).
    pub fn principal(&self, authorization: Option<&str>) -> Result<Principal, ProtocolError> {
        let Some(header) = authorization else {
            return Err(ProtocolError::unauthorized(
                "missing Authorization: Bearer <token or API key>",
            ));
        };
        let Some(bearer) = header.strip_prefix("Bearer ").map(str::trim) else {
            return Err(ProtocolError::unauthorized("Authorization must be Bearer"));
        };
        if self.is_api_key(bearer) {
            return Ok(Principal::Server);
        }
        self.verify_token(bearer).map(Principal::User)
    }

    /// A token for `user`, valid for a day (dev mode only; the caller checks).
    pub fn issue_token(&self, user: &str) -> Result<String, ProtocolError> {
        let key = self.encoding.as_ref().ok_or_else(|| {
            ProtocolError::new(chat_protocol::ErrorCode::NotFound, "no signing key")
        })?;
        let claims = Claims {
            sub: user.to_owned(),
            exp: now_secs() + DEV_TOKEN_SECS,
            nbf: None,
            rooms: None,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
            .map_err(|e| ProtocolError::new(chat_protocol::ErrorCode::Internal, e.to_string()))
    }
}

/// Reads `CHAT_JWT_PUBLIC_KEY_FILE`: an RSA key means RS256, an EC key ES256.
fn public_key(path: &std::path::Path) -> Result<(Algorithm, DecodingKey), ConfigError> {
    let err = |message: String| ConfigError {
        setting: "CHAT_JWT_PUBLIC_KEY_FILE",
        message,
    };
    let pem = std::fs::read(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    if pem.windows(11).any(|w| w == b"PRIVATE KEY") {
        // Verifiers need only the public half; a private key here is a leak waiting.
        return Err(err(format!(
            "{}: holds a private key; give the public key",
            path.display()
        )));
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((Algorithm::RS256, key));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        return Ok((Algorithm::ES256, key));
    }
    Err(err(format!(
        "{}: not a PEM RSA or EC public key",
        path.display()
    )))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random_secret() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// What a person reads when a token is refused: what is wrong with it and what to do,
/// not the JWT library's variant names.
fn token_error(e: &jsonwebtoken::errors::Error) -> ProtocolError {
    use jsonwebtoken::errors::ErrorKind as K;
    if let K::Json(json) = e.kind() {
        let text = json.to_string();
        if let Some(field) = text
            .strip_prefix("missing field `")
            .and_then(|t| t.split('`').next())
        {
            let why = match field {
                "exp" => "it has no exp claim (tokens must expire)".to_owned(),
                f => format!("it has no {f} claim"),
            };
            return ProtocolError::unauthorized(format!("invalid token: {why}"));
        }
    }
    let why = match e.kind() {
        K::ExpiredSignature => "it has expired: get a new one",
        K::ImmatureSignature => "it is not valid yet (nbf is in the future)",
        K::InvalidSignature => "its signature does not match: it was signed with another key",
        K::InvalidAlgorithm | K::InvalidAlgorithmName => "its algorithm is not accepted here",
        K::MissingRequiredClaim(c) if c == "exp" => "it has no exp claim (tokens must expire)",
        K::MissingRequiredClaim(_) | K::Json(_) => {
            "its claims are not what this server expects (sub, exp, optional rooms)"
        }
        K::InvalidToken | K::Base64(_) | K::Utf8(_) => {
            "it is not a JWT (three base64url parts separated by dots)"
        }
        _ => "it cannot be verified",
    };
    ProtocolError::unauthorized(format!("invalid token: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(dev: bool) -> Auth {
        Auth::from_config(
            &AuthConfig {
                dev_mode: Some(dev),
                jwt_secret: Some("0123456789abcdef-secret".into()),
                api_keys: vec!["key-one".into(), " key-two ".into()],
                ..AuthConfig::default()
            },
            false,
        )
        .unwrap()
    }

    #[test]
    fn refuses_to_start_without_key_material_outside_dev_mode() {
        let err = Auth::from_config(&AuthConfig::default(), false)
            .err()
            .unwrap();
        assert_eq!(err.setting, "CHAT_JWT_SECRET");
        assert!(Auth::from_config(&AuthConfig::default(), true).is_ok());
    }

    #[test]
    fn issued_tokens_verify_and_tampered_ones_do_not() {
        let a = auth(true);
        let t = a.issue_token("alice").unwrap();
        assert_eq!(a.verify_token(&t).unwrap().id, "alice");
        let mut bad = t.clone();
        bad.pop();
        assert!(a.verify_token(&bad).is_err());
        assert!(a.verify_token("garbage").is_err());
        // Signed with another secret.
        let other = Auth::from_config(&AuthConfig::default(), true).unwrap();
        assert!(
            a.verify_token(&other.issue_token("alice").unwrap())
                .is_err()
        );
    }

    #[test]
    fn api_keys_and_bearer_parsing() {
        let a = auth(false);
        assert_eq!(
            a.principal(Some("Bearer key-two")).unwrap(),
            Principal::Server
        );
        assert!(a.principal(Some("Bearer key-three")).is_err());
        assert!(a.principal(Some("Basic key-one")).is_err());
        assert!(a.principal(None).is_err());
        assert!(!a.is_api_key(""));
    }

    #[test]
    fn channel_rules() {
        let alice = User::named("alice");
        assert!(alice.may_access(&Channel::Room("general".into())));
        assert!(!alice.may_access(&Channel::Room("private-x".into())));
        assert!(alice.may_access(&Channel::User("alice".into())));
        assert!(!alice.may_access(&Channel::User("bob".into())));
        let scoped = User {
            id: "bob".into(),
            rooms: Some(vec!["team-*".into(), "private-b".into()]),
        };
        assert!(scoped.may_access(&Channel::Room("team-1".into())));
        assert!(scoped.may_access(&Channel::Room("private-b".into())));
        assert!(!scoped.may_access(&Channel::Room("general".into())));
    }
}
