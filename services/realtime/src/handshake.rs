//! The opening handshake (RFC 6455 §4.2.1): what a valid upgrade request is, and why
//! one is refused. Checked before the upgrade, so every refusal gets the contract's
//! JSON error body.

use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};

/// Why an upgrade request is refused (each a `bad_request` of its own status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotGet,
    NotWebSocket,
    NoConnectionUpgrade,
    Version,
    NoKey,
    BadKey,
    NotUpgradable,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::NotGet => StatusCode::METHOD_NOT_ALLOWED,
            // RFC 9110 §15.5.22: the client must switch protocols to use this resource.
            Refusal::NotWebSocket => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::NotGet => "a WebSocket handshake is a GET",
            Refusal::NotWebSocket => "this is a WebSocket endpoint: send Upgrade: websocket",
            Refusal::NoConnectionUpgrade => "the Connection header must include upgrade",
            Refusal::Version => "Sec-WebSocket-Version must be 13",
            Refusal::NoKey => "Sec-WebSocket-Key is missing",
            Refusal::BadKey => "Sec-WebSocket-Key must be 16 bytes in base64",
            Refusal::NotUpgradable => "this connection cannot be upgraded (HTTP/1.1 is needed)",
        }
    }

    /// Headers the refusal must carry: the version this server speaks (§4.4), the
    /// protocol to upgrade to, the method allowed.
    pub fn headers(self) -> &'static [(HeaderName, &'static str)] {
        const VERSION: &[(HeaderName, &str)] = &[(header::SEC_WEBSOCKET_VERSION, "13")];
        const UPGRADE: &[(HeaderName, &str)] = &[
            (header::UPGRADE, "websocket"),
            (header::CONNECTION, "Upgrade"),
        ];
        const ALLOW: &[(HeaderName, &str)] = &[(header::ALLOW, "GET")];
        match self {
            Refusal::Version => VERSION,
            Refusal::NotWebSocket => UPGRADE,
            Refusal::NotGet => ALLOW,
            _ => &[],
        }
    }
}

/// Checks an upgrade request against RFC 6455 §4.2.1.
pub fn check(method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
    if method != Method::GET {
        return Err(Refusal::NotGet);
    }
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Err(Refusal::NotWebSocket);
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(Refusal::NoConnectionUpgrade);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err(Refusal::Version);
    }
    match headers.get(header::SEC_WEBSOCKET_KEY) {
        None => Err(Refusal::NoKey),
        Some(key) if is_sixteen_bytes_base64(key.as_bytes()) => Ok(()),
        Some(_) => Err(Refusal::BadKey),
    }
}

/// Whether any of the `name` headers lists `token` (comma-separated, any case).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Canonical base64 of 16 bytes: 22 characters and `==`, the last character carrying
/// 2 bits of data and 4 zero bits.
fn is_sixteen_bytes_base64(key: &[u8]) -> bool {
    fn value(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let [data @ .., b'=', b'='] = key else {
        return false;
    };
    data.len() == 22
        && data.iter().all(|&c| value(c).is_some())
        && value(data[21]).is_some_and(|v| v & 0x0f == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_sixteen_bytes_of_base64() {
        assert!(is_sixteen_bytes_base64(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(is_sixteen_bytes_base64(b"AAAAAAAAAAAAAAAAAAAAAA=="));
        for bad in [
            &b"dGhlIHNhbXBsZQ=="[..],    // 10 bytes
            b"AAAAAAAAAAAAAAAAAAAAAAA=", // 17 bytes
            b"AAAAAAAAAAAAAAAAAAAAAB==", // stray bits in the last character
            b"AAAAAAAAAAAAAAAAAAAA!A==", // not base64
            b"",
        ] {
            assert!(
                !is_sixteen_bytes_base64(bad),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn tokens_are_found_in_lists_in_any_case() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        assert!(has_token(&h, header::CONNECTION, "upgrade"));
        assert!(!has_token(&h, header::UPGRADE, "websocket"));
    }
}
