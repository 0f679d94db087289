//! HTTP helpers and a raw WebSocket client shared by the chat tests. The servers
//! themselves come from `chat_testkit::topology`.

#![allow(dead_code)]

use std::time::Duration;

use chat_testkit::topology::API_KEY;

/// Publishes `text` to a room's messages URL as a trusted backend (the API key, `from`
/// "backend"); the status and the JSON body.
pub async fn post_text(url: &str, text: &str) -> (u16, serde_json::Value) {
    let r = http()
        .post(url)
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({"text": text, "from": "backend"}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `POST url` with a JSON body, as `auth` (a bearer token or API key) when given; the
/// status and the JSON answer (`Null` when it has none).
pub async fn post_json(
    url: &str,
    auth: Option<&str>,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut req = http().post(url).json(&body);
    if let Some(a) = auth {
        req = req.bearer_auth(a);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_default())
}

/// `GET url`, its body as JSON.
pub async fn get_json(url: &str) -> serde_json::Value {
    http().get(url).send().await.unwrap().json().await.unwrap()
}

/// `GET url` as `bearer` (a user token or an API key), its body as JSON.
pub async fn get_json_as(url: &str, bearer: &str) -> serde_json::Value {
    let r = http().get(url).bearer_auth(bearer).send().await.unwrap();
    r.json().await.unwrap()
}

/// A dev-mode user token from the server at `base` (`http://host:port`).
pub async fn dev_token(base: &str, user: &str) -> String {
    let v: serde_json::Value = http()
        .post(format!("{base}/v1/auth/dev-token"))
        .json(&serde_json::json!({ "user": user }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["token"].as_str().unwrap().to_owned()
}

/// The `/metrics` body of the server at `addr` (`host:port`).
pub async fn metrics_of(addr: impl std::fmt::Display) -> String {
    let r = http()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// The value of an unlabelled sample of a /metrics body.
pub fn sample(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

/// Polls `url` until it answers `status`.
pub async fn wait_status(url: &str, status: u16) {
    let client = http();
    for _ in 0..150 {
        if let Ok(r) = client.get(url).send().await
            && r.status().as_u16() == status
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered {status}");
}

/// A WebSocket client written by hand over raw TCP, for tests that must send what a
/// library would refuse to (unmasked frames, reserved bits, bad lengths) and see every
/// byte the server answers.
pub mod raw {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub const CONT: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
    pub const FIN: u8 = 0x80;

    /// The key of RFC 6455 §1.3 and the accept value it must produce.
    pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    pub const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    /// A client frame: `head` is the first byte (FIN, RSV bits, opcode); masked unless
    /// told otherwise (RFC 6455 §5.3).
    pub fn frame(head: u8, payload: &[u8], masked: bool) -> Vec<u8> {
        let mut out = vec![head];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(mask_bit | n as u8),
            n if n < 65536 => {
                out.push(mask_bit | 126);
                out.extend((n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend((n as u64).to_be_bytes());
            }
        }
        if masked {
            let mask = [0x37, 0xfa, 0x21, 0x3d];
            out.extend(mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        } else {
            out.extend(payload);
        }
        out
    }

    /// A `GET /ws` upgrade request to `addr` with the RFC's sample key; `extra` lines
    /// (each ending in `\r\n`) are added and `drop` names headers to leave out.
    pub fn upgrade_request(addr: SocketAddr, extra: &str, drop: &[&str]) -> String {
        let mut req = String::from("GET /ws HTTP/1.1\r\n");
        for (name, value) in [
            ("Host", addr.to_string()),
            ("Upgrade", "websocket".into()),
            ("Connection", "Upgrade".into()),
            ("Sec-WebSocket-Key", SAMPLE_KEY.into()),
            ("Sec-WebSocket-Version", "13".into()),
        ] {
            if !drop.iter().any(|d| d.eq_ignore_ascii_case(name)) {
                req.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        req.push_str(extra);
        req.push_str("\r\n");
        req
    }

    /// An HTTP answer: status, headers (names lower-cased) and body.
    #[derive(Debug)]
    pub struct Answer {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Answer {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// A raw connection: the HTTP exchange, then frames.
    pub struct RawWs {
        pub tcp: TcpStream,
    }

    impl RawWs {
        pub async fn connect(addr: SocketAddr) -> std::io::Result<RawWs> {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            Ok(RawWs { tcp })
        }

        /// Writes `bytes`, in writes of `chop` bytes when given (the server must not
        /// care how frames are cut into segments).
        pub async fn write(&mut self, bytes: &[u8], chop: Option<usize>) -> std::io::Result<()> {
            for chunk in bytes.chunks(chop.unwrap_or(bytes.len()).max(1)) {
                self.tcp.write_all(chunk).await?;
                if chop.is_some() {
                    self.tcp.flush().await?;
                    tokio::task::yield_now().await;
                }
            }
            Ok(())
        }

        /// Reads an HTTP answer head and its `Content-Length` body (none for a 101).
        pub async fn read_answer(&mut self) -> std::io::Result<Answer> {
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                self.tcp.read_exact(&mut byte).await?;
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let mut lines = head.split("\r\n");
            let status = lines
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let len = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            self.tcp.read_exact(&mut body).await?;
            Ok(Answer {
                status,
                headers,
                body,
            })
        }

        /// Connects and upgrades; `Err` says what went wrong.
        pub async fn open(addr: SocketAddr) -> Result<RawWs, String> {
            let mut ws = RawWs::connect(addr).await.map_err(|e| e.to_string())?;
            ws.write(upgrade_request(addr, "", &[]).as_bytes(), None)
                .await
                .map_err(|e| e.to_string())?;
            let answer = ws.read_answer().await.map_err(|e| e.to_string())?;
            if answer.status != 101 {
                return Err(format!("upgrade answered {}", answer.status));
            }
            Ok(ws)
        }

        /// The next server frame: its first byte and payload; `Ok(None)` at end of
        /// stream. A masked server frame is an error (RFC 6455 §5.1).
        pub async fn read_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, String> {
            let mut head = [0u8; 2];
            match self.tcp.read(&mut head[..1]).await {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
                Err(e) => return Err(e.to_string()),
            }
            let io = |e: std::io::Error| e.to_string();
            self.tcp.read_exact(&mut head[1..]).await.map_err(io)?;
            if head[1] & 0x80 != 0 {
                return Err("the server masked a frame".into());
            }
            let len = match head[1] & 0x7f {
                126 => {
                    let mut ext = [0u8; 2];
                    self.tcp.read_exact(&mut ext).await.map_err(io)?;
                    u16::from_be_bytes(ext) as usize
                }
                127 => {
                    let mut ext = [0u8; 8];
                    self.tcp.read_exact(&mut ext).await.map_err(io)?;
                    u64::from_be_bytes(ext) as usize
                }
                n => n as usize,
            };
            let mut payload = vec![0; len];
            self.tcp.read_exact(&mut payload).await.map_err(io)?;
            Ok(Some((head[0], payload)))
        }

        /// Reads a frame within `wait`.
        pub async fn next_frame(
            &mut self,
            wait: Duration,
        ) -> Result<Option<(u8, Vec<u8>)>, String> {
            tokio::time::timeout(wait, self.read_frame())
                .await
                .map_err(|_| format!("nothing within {wait:?}"))?
        }
    }
}
