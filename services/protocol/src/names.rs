//! User ids, room names, and the channels they make.
//!
//! A channel is a room (`general`) or a user's personal channel (`@alice`); the
//! alphabets of the two never overlap, so the string form is unambiguous.

use crate::ProtocolError;

const MAX_NAME: usize = 64;

/// `^[A-Za-z0-9_.-]{1,64}$`
pub fn validate_user(user: &str) -> Result<(), ProtocolError> {
    if valid(user, |c| {
        c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-')
    }) {
        Ok(())
    } else {
        Err(ProtocolError::bad_request(format!(
            "invalid user id {:?}: 1 to 64 of A-Z a-z 0-9 _ . -",
            truncate(user)
        )))
    }
}

/// `^[A-Za-z0-9_.:-]{1,64}$`
pub fn validate_room(room: &str) -> Result<(), ProtocolError> {
    if valid(room, |c| {
        c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-')
    }) {
        Ok(())
    } else {
        Err(ProtocolError::bad_request(format!(
            "invalid room name {:?}: 1 to 64 of A-Z a-z 0-9 _ . : -",
            truncate(room)
        )))
    }
}

fn valid(s: &str, allowed: impl Fn(u8) -> bool) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME && s.bytes().all(allowed)
}

/// Names in error messages are user input: keep them short.
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(MAX_NAME) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A room or a user's personal channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Room(String),
    User(String),
}

impl Channel {
    /// Parses `general` or `@alice`, validating the name.
    pub fn parse(s: &str) -> Result<Channel, ProtocolError> {
        match s.strip_prefix('@') {
            Some(user) => {
                validate_user(user)?;
                Ok(Channel::User(user.to_owned()))
            }
            None => {
                validate_room(s)?;
                Ok(Channel::Room(s.to_owned()))
            }
        }
    }

    pub fn room(room: &str) -> Result<Channel, ProtocolError> {
        validate_room(room)?;
        Ok(Channel::Room(room.to_owned()))
    }

    pub fn user(user: &str) -> Result<Channel, ProtocolError> {
        validate_user(user)?;
        Ok(Channel::User(user.to_owned()))
    }

    /// The user whose personal channel this is.
    pub fn owner(&self) -> Option<&str> {
        match self {
            Channel::User(u) => Some(u),
            Channel::Room(_) => None,
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Channel::Room(r) => f.write_str(r),
            Channel::User(u) => write!(f, "@{u}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_contracts_alphabets() {
        assert!(validate_user("alice_01.x-y").is_ok());
        assert!(validate_room("team:eng.backend-1").is_ok());
        assert!(validate_user(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn rejects_empty_long_and_foreign_names() {
        for bad in ["", "a b", "ali/ce", "@alice", "é", "a:b"] {
            assert!(validate_user(bad).is_err(), "{bad:?} accepted as user");
        }
        for bad in ["", "room one", "r{1}", "@room", "x*"] {
            assert!(validate_room(bad).is_err(), "{bad:?} accepted as room");
        }
        assert!(validate_user(&"a".repeat(65)).is_err());
        assert!(validate_room(&"r".repeat(65)).is_err());
    }

    #[test]
    fn channels_round_trip_through_their_string_form() {
        for s in ["general", "@alice", "a:b"] {
            assert_eq!(Channel::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Channel::parse("@bob").unwrap().owner(), Some("bob"));
        assert!(Channel::parse("@").is_err());
        assert!(Channel::parse("@a:b").is_err());
    }

    #[test]
    fn error_messages_do_not_echo_huge_input() {
        let err = validate_room(&"x".repeat(10_000)).unwrap_err();
        assert!(err.message.len() < 200);
    }
}
