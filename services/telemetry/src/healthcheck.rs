//! `BINARY healthcheck`: the container health check of every server, which needs no
//! shell or curl in a distroless image. It asks the process's own `GET /readyz` (on
//! `CHAT_INTERNAL_ADDR` when set, where the ops routes then live) and exits 0 when it
//! answers 200, 1 otherwise, with one line on stderr saying why.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// The subcommand's name: `chat healthcheck`, `chat-gateway healthcheck`, ….
pub const SUBCOMMAND: &str = "healthcheck";

/// How long the whole probe may take: below the images' HEALTHCHECK timeout (3 s).
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum Unhealthy {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no answer from {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("GET /readyz on {addr} answered {status}")]
    NotReady { addr: SocketAddr, status: u16 },
    #[error("GET /readyz on {addr}: not an HTTP answer")]
    Malformed { addr: SocketAddr },
}

/// When the process was started as `BINARY healthcheck [FLAGS…]`: the arguments
/// without the subcommand, to be parsed as the server's own configuration (the same
/// flags and `CHAT_*` variables tell it where the server listens).
pub fn requested() -> Option<Vec<OsString>> {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == SUBCOMMAND) {
        args.remove(1);
        Some(args)
    } else {
        None
    }
}

/// The address the server's `/readyz` answers on. A wildcard listen address
/// (`0.0.0.0`, `[::]`) is reached through loopback.
pub fn target(public: SocketAddr, internal: Option<SocketAddr>) -> SocketAddr {
    let mut addr = internal.unwrap_or(public);
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
        IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
        _ => {}
    }
    addr
}

/// One `GET /readyz` over HTTP/1.0 (the server closes after the answer), within `timeout`.
pub fn probe(addr: SocketAddr, timeout: Duration) -> Result<(), Unhealthy> {
    let io = |source| Unhealthy::Io { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| Unhealthy::Connect { addr, source })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    // One write: a server may answer as soon as it has the request head.
    let request = format!("GET /readyz HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    // The status line is all we need; it arrives in the first bytes.
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        match stream.read(&mut head[len..]).map_err(io)? {
            0 => break,
            n => len += n,
        }
    }
    let status = parse_status(&head[..len]).ok_or(Unhealthy::Malformed { addr })?;
    if status == 200 {
        Ok(())
    } else {
        Err(Unhealthy::NotReady { addr, status })
    }
}

/// The status code of `HTTP/1.x NNN …`.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head.get(..12)?).ok()?;
    let (version, code) = line.split_once(' ')?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    code.get(..3)?.parse().ok()
}

/// Probes and ends the process: status 0 when ready, 1 (and why, on stderr) if not.
pub fn run(public: SocketAddr, internal: Option<SocketAddr>) -> ! {
    match probe(target(public, internal), TIMEOUT) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("unhealthy: {e}");
            std::process::exit(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server on loopback that answers `reply` to the first request.
    fn answering(reply: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // The whole request head, so closing does not reset the connection.
            let mut head = Vec::new();
            let mut buf = [0u8; 512];
            while !head.ends_with(b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(reply.as_bytes());
        });
        addr
    }

    #[test]
    fn ready_only_on_200() {
        let ok = answering("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        let ready = probe(ok, TIMEOUT);
        assert!(ready.is_ok(), "{ready:?}");
        let busy = answering("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert!(matches!(
            probe(busy, TIMEOUT),
            Err(Unhealthy::NotReady { status: 503, .. })
        ));
        let garbage = answering("SSH-2.0-OpenSSH\r\n");
        assert!(matches!(
            probe(garbage, TIMEOUT),
            Err(Unhealthy::Malformed { .. })
        ));
    }

    #[test]
    fn nothing_listening_is_unhealthy_at_once() {
        // The port is held on 127.0.0.1 so no other test gets it, and nothing listens
        // on it at 127.0.0.2.
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 2], held.local_addr().unwrap().port()));
        assert!(matches!(
            probe(addr, TIMEOUT),
            Err(Unhealthy::Connect { .. })
        ));
    }

    #[test]
    fn asks_the_internal_listener_through_loopback() {
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(target(public, None), "127.0.0.1:8080".parse().unwrap());
        let internal: SocketAddr = "[::]:9090".parse().unwrap();
        assert_eq!(
            target(public, Some(internal)),
            "[::1]:9090".parse().unwrap()
        );
        let exact: SocketAddr = "10.1.2.3:9090".parse().unwrap();
        assert_eq!(target(public, Some(exact)), exact);
    }
}
