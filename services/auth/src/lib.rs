//! Who may do what, and how much.
//!
//! - [`AuthConfig`] / [`Auth`]: user JWTs (`CHAT_JWT_SECRET`), server API keys
//!   (`CHAT_API_KEYS`) and dev mode, resolved into a [`Principal`].
//! - [`LimitsConfig`]: the sizes every service enforces.
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

    /// HS256 secret that signs user tokens.
    #[arg(long, env = "CHAT_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Comma-separated server API keys for trusted backends.
    #[arg(
        long,
        env = "CHAT_API_KEYS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub api_keys: Vec<String>,
}

/// Limits every service enforces.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitsConfig {
    /// Max `text` size in bytes (UTF-8).
    #[arg(long, env = "CHAT_MAX_MESSAGE_BYTES", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub max_message_bytes: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 4096,
        }
    }
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
    decoding: Option<(DecodingKey, Validation)>,
    encoding: Option<EncodingKey>,
    api_keys: Vec<Vec<u8>>,
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
        if secret.is_none() && dev_mode {
            // Dev tokens still need a key; a per-process one works for a single process.
            tracing::warn!(
                "dev mode without CHAT_JWT_SECRET: dev tokens are valid on this process only"
            );
            secret = Some(random_secret());
        }
        let Some(secret) = secret else {
            return Err(ConfigError {
                setting: "CHAT_JWT_SECRET",
                message: "set CHAT_JWT_SECRET (or CHAT_DEV_MODE=true for development): \
                          without key material no user could sign in"
                    .into(),
            });
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 30;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
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
        Ok(Auth {
            dev_mode,
            decoding: Some((
                DecodingKey::from_secret(secret.as_bytes()).map_err(key_error)?,
                validation,
            )),
            encoding: Some(EncodingKey::from_secret(secret.as_bytes()).map_err(key_error)?),
            api_keys,
        })
    }

    /// Verifies a user token: signature with the configured algorithm, `exp`, `nbf`.
    pub fn verify_token(&self, token: &str) -> Result<User, ProtocolError> {
        let Some((key, validation)) = &self.decoding else {
            return Err(ProtocolError::unauthorized("tokens are not accepted here"));
        };
        let data = jsonwebtoken::decode::<Claims>(token, key, validation)
            .map_err(|e| ProtocolError::unauthorized(format!("invalid token: {e}")))?;
        chat_protocol::names::validate_user(&data.claims.sub)
            .map_err(|_| ProtocolError::unauthorized("invalid token: bad sub"))?;
        Ok(User {
            id: data.claims.sub,
            rooms: data.claims.rooms,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(dev: bool) -> Auth {
        Auth::from_config(
            &AuthConfig {
                dev_mode: Some(dev),
                jwt_secret: Some("0123456789abcdef-secret".into()),
                api_keys: vec!["key-one".into(), " key-two ".into()],
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
