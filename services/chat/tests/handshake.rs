//! The WebSocket handshake at the byte level: a client may send its first frame in the
//! same packet as the upgrade request, and the server must not lose it.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A masked client text frame (RFC 6455 §5.3) with a short payload.
fn masked_text(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend(mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads one unmasked server frame's payload.
async fn read_frame(tcp: &mut TcpStream) -> Vec<u8> {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await.unwrap();
    let len = match head[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            tcp.read_exact(&mut ext).await.unwrap();
            u16::from_be_bytes(ext) as usize
        }
        127 => panic!("no frame here is that large"),
        n => n as usize,
    };
    let mut payload = vec![0; len];
    tcp.read_exact(&mut payload).await.unwrap();
    payload
}

#[tokio::test]
async fn a_first_frame_sent_with_the_upgrade_request_is_not_lost() {
    let addr = chat_testkit::topology::Topology::builder()
        .chat(None)
        .await
        .addr;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut packet = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes();
    packet.extend(masked_text(br#"{"type":"connect","user":"early"}"#));
    packet.extend(masked_text(br#"{"type":"join","room":"lobby"}"#));
    tcp.write_all(&packet).await.unwrap();

    // The 101 answer, up to the blank line.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");

    let frames = tokio::time::timeout(Duration::from_secs(10), async {
        let connected: serde_json::Value =
            serde_json::from_slice(&read_frame(&mut tcp).await).unwrap();
        let joined: serde_json::Value =
            serde_json::from_slice(&read_frame(&mut tcp).await).unwrap();
        (connected, joined)
    })
    .await
    .expect("both early frames were answered");
    assert_eq!(frames.0["type"], "connected");
    assert_eq!(frames.0["user"], "early");
    assert_eq!(frames.1["type"], "joined");
    assert_eq!(frames.1["room"], "lobby");
}
