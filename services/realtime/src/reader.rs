//! The read side of a connection: client frames off the socket, checked against
//! RFC 6455 §5 as they arrive, and reassembled into messages.
//!
//! Everything a header alone tells (reserved bits, opcode, mask, control frame
//! length, the size limit, a continuation with nothing to continue) is checked before
//! the payload is read, and text is checked for UTF-8 fragment by fragment: a bad
//! client is failed at the first byte that makes it bad, and never buffers more than
//! the limit.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::close::{Close, Code, client_may_send};

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// What the client sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A whole message; a text one is valid UTF-8.
    Message {
        binary: bool,
        payload: BytesMut,
    },
    /// A ping: its payload goes back in the pong.
    Ping(BytesMut),
    Pong,
    /// The client's close, with its code (1000 when it gave none).
    Close(u16),
}

/// How the client broke the protocol; each maps to the close it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    Unmasked,
    ReservedBits,
    UnknownOpcode,
    FragmentedControl,
    ControlTooLong,
    BadLength,
    NothingToContinue,
    Interleaved,
    ShortClose,
    BadCloseCode,
    CloseReasonNotUtf8,
    NotUtf8,
    TooLarge,
}

impl Violation {
    /// The close the client gets.
    pub fn close(self) -> Close {
        let code = match self {
            Violation::NotUtf8 | Violation::CloseReasonNotUtf8 => Code::InvalidData,
            Violation::TooLarge => Code::TooLarge,
            _ => Code::ProtocolError,
        };
        Close::new(code, self.reason())
    }

    /// The reason text of the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            Violation::Unmasked => "client frames must be masked",
            Violation::ReservedBits => "reserved bits set without an extension",
            Violation::UnknownOpcode => "unknown opcode",
            Violation::FragmentedControl => "fragmented control frame",
            Violation::ControlTooLong => "control frame over 125 bytes",
            Violation::BadLength => "64-bit length with the most significant bit set",
            Violation::NothingToContinue => "continuation without a start",
            Violation::Interleaved => "new message inside a fragmented one",
            Violation::ShortClose => "close frame with a 1-byte payload",
            Violation::BadCloseCode => "invalid close code",
            Violation::CloseReasonNotUtf8 => "close reason is not UTF-8",
            Violation::NotUtf8 => "text is not UTF-8",
            Violation::TooLarge => "message too large",
        }
    }
}

/// Why reading stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The client broke the protocol: close it with [`Violation::close`].
    Violation(Violation),
    /// The stream ended or failed: nobody is left to close.
    Gone,
}

impl From<Violation> for ReadError {
    fn from(v: Violation) -> Self {
        ReadError::Violation(v)
    }
}

/// A header that passed every check.
struct Header {
    fin: bool,
    opcode: u8,
    /// Bytes of the header itself.
    len: usize,
    payload_len: usize,
    mask: [u8; 4],
}

/// A fragmented message so far.
struct Partial {
    binary: bool,
    data: BytesMut,
    /// Bytes of `data` known to be UTF-8 (text only).
    checked: usize,
}

/// Bytes a read takes at most at once, unless a frame needs more.
const READ_CHUNK: usize = 4096;

/// A byte stream the reader can wait on without holding a buffer: an idle connection
/// then holds no read buffer at all (one of 8 KiB each was most of an idle
/// connection's memory; uWS holds ~100 bytes).
pub trait Source: AsyncRead + Unpin + Send {
    /// Resolves once a read would find bytes, the end or an error.
    fn readable(&self) -> impl Future<Output = ()> + Send;
}

/// Tests read from memory: always readable.
#[cfg(test)]
impl Source for &[u8] {
    async fn readable(&self) {}
}

pub struct Reader<R> {
    io: R,
    buf: BytesMut,
    /// The largest message (whole or reassembled) a client may send, in bytes.
    max_message: usize,
    partial: Option<Partial>,
}

impl<R: Source> Reader<R> {
    pub fn new(io: R, max_message: usize) -> Self {
        Self {
            io,
            // Taken when bytes arrive, given back when they are all read.
            buf: BytesMut::new(),
            max_message,
            partial: None,
        }
    }

    /// The next thing the client sent. Cancel-safe: bytes stay buffered until a whole
    /// frame is there.
    pub async fn next(&mut self) -> Result<Inbound, ReadError> {
        loop {
            let (header, mut payload) = self.frame().await?;
            unmask(&mut payload, header.mask);
            match header.opcode {
                PING => return Ok(Inbound::Ping(payload)),
                PONG => return Ok(Inbound::Pong),
                CLOSE => return close_code(&payload).map(Inbound::Close).map_err(Into::into),
                TEXT | BINARY => {
                    let mut p = Partial {
                        binary: header.opcode == BINARY,
                        data: payload,
                        checked: 0,
                    };
                    p.check_utf8(header.fin)?;
                    if header.fin {
                        return Ok(p.into_message());
                    }
                    self.partial = Some(p);
                }
                _ => {
                    // A continuation: `header` made sure there is a start.
                    let p = self.partial.as_mut().expect("checked by header");
                    p.data.extend_from_slice(&payload);
                    p.check_utf8(header.fin)?;
                    if header.fin {
                        let p = self.partial.take().expect("just used");
                        return Ok(p.into_message());
                    }
                }
            }
        }
    }

    /// Reads and discards until the client ends the stream, up to `limit` bytes: once
    /// the server sent its close, a client that was still writing a few frames must
    /// not turn the end into a reset that could destroy the close frame before the
    /// client reads it; one that floods on is cut off.
    pub async fn discard(&mut self, limit: usize) {
        let mut left = limit;
        while left > 0 {
            // Into the read buffer: a sink array would sit in every connection's task,
            // idle or not (a future is as large as its largest state).
            self.buf.clear();
            self.buf.reserve(READ_CHUNK);
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    }

    /// The next frame's header and (still masked) payload.
    async fn frame(&mut self) -> Result<(Header, BytesMut), ReadError> {
        let header = loop {
            if let Some(h) = self.header()? {
                break h;
            }
            self.fill().await?;
        };
        let whole = header.len + header.payload_len;
        if self.buf.len() < whole {
            self.buf.reserve(whole - self.buf.len());
        }
        while self.buf.len() < whole {
            self.fill().await?;
        }
        self.buf.advance(header.len);
        let payload = self.buf.split_to(header.payload_len);
        Ok((header, payload))
    }

    async fn fill(&mut self) -> Result<(), ReadError> {
        if self.buf.is_empty() {
            // Nothing half-read: wait without a buffer (what earlier frames left is
            // freed with the last payload split off it), and take one for what came.
            self.buf = BytesMut::new();
            self.io.readable().await;
            self.buf.reserve(READ_CHUNK);
        }
        match self.io.read_buf(&mut self.buf).await {
            Ok(0) | Err(_) => Err(ReadError::Gone),
            Ok(_) => Ok(()),
        }
    }

    /// Parses and checks the header at the start of the buffer; `None` until enough of
    /// it is there. Fails as soon as the bytes so far break a rule.
    fn header(&self) -> Result<Option<Header>, Violation> {
        let b = &self.buf[..];
        let (Some(&b0), Some(&b1)) = (b.first(), b.get(1)) else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        if b0 & 0x70 != 0 {
            return Err(Violation::ReservedBits);
        }
        let control = match opcode {
            CONTINUATION | TEXT | BINARY => false,
            CLOSE | PING | PONG => true,
            _ => return Err(Violation::UnknownOpcode),
        };
        if b1 & 0x80 == 0 {
            return Err(Violation::Unmasked);
        }
        let code = (b1 & 0x7f) as usize;
        if control && !fin {
            return Err(Violation::FragmentedControl);
        }
        if control && code > 125 {
            return Err(Violation::ControlTooLong);
        }
        match (opcode, &self.partial) {
            (CONTINUATION, None) => return Err(Violation::NothingToContinue),
            (TEXT | BINARY, Some(_)) => return Err(Violation::Interleaved),
            _ => {}
        }
        let extra = match code {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        if b.len() < 2 + extra {
            return Ok(None);
        }
        let payload_len = match extra {
            0 => code as u64,
            2 => u16::from_be_bytes([b[2], b[3]]) as u64,
            _ => u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")),
        };
        if payload_len >> 63 != 0 {
            return Err(Violation::BadLength);
        }
        // One rule for whole and fragmented messages: the message may reach the limit,
        // not pass it. Checked before a byte of the payload is buffered.
        let so_far = self.partial.as_ref().map_or(0, |p| p.data.len()) as u64;
        if !control && so_far + payload_len > self.max_message as u64 {
            return Err(Violation::TooLarge);
        }
        let len = 2 + extra + 4;
        if b.len() < len {
            return Ok(None);
        }
        Ok(Some(Header {
            fin,
            opcode,
            len,
            payload_len: payload_len as usize,
            mask: b[2 + extra..len].try_into().expect("4 bytes"),
        }))
    }
}

impl Partial {
    /// Checks the text received since the last check; a code point cut at the end of a
    /// fragment waits for the next one, unless this was the last.
    fn check_utf8(&mut self, fin: bool) -> Result<(), Violation> {
        if self.binary {
            return Ok(());
        }
        match std::str::from_utf8(&self.data[self.checked..]) {
            Ok(_) => {
                self.checked = self.data.len();
                Ok(())
            }
            // `error_len` is `None` when the bytes so far begin a valid code point.
            Err(e) if e.error_len().is_none() && !fin => {
                self.checked += e.valid_up_to();
                Ok(())
            }
            Err(_) => Err(Violation::NotUtf8),
        }
    }

    fn into_message(self) -> Inbound {
        Inbound::Message {
            binary: self.binary,
            payload: self.data,
        }
    }
}

/// XORs the payload with its mask (RFC 6455 §5.3), 8 bytes at a time: byte by byte it
/// took three times as long as reading a 4 KB frame otherwise does.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let m = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes((&*c).try_into().expect("8 bytes")) ^ m;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    // The rest starts at a multiple of 8, so the mask lines up again.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// The code of a close frame's payload (RFC 6455 §5.5.1, §7.4).
fn close_code(payload: &[u8]) -> Result<u16, Violation> {
    match payload {
        [] => Ok(1000),
        [_] => Err(Violation::ShortClose),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !client_may_send(code) {
                return Err(Violation::BadCloseCode);
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(Violation::CloseReasonNotUtf8);
            }
            Ok(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    /// A client that sent `bytes` and then went quiet, without closing.
    struct ThenQuiet(Vec<u8>);

    impl AsyncRead for ThenQuiet {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.0.is_empty() {
                return std::task::Poll::Pending;
            }
            let n = self.0.len().min(buf.remaining());
            buf.put_slice(&self.0[..n]);
            self.0.drain(..n);
            std::task::Poll::Ready(Ok(()))
        }
    }

    impl Source for ThenQuiet {
        async fn readable(&self) {
            if self.0.is_empty() {
                std::future::pending::<()>().await;
            }
        }
    }

    #[test]
    fn a_quiet_connection_holds_no_read_buffer() {
        let mut frames = masked(0x81, b"hello");
        frames.extend(masked(0x81, b"again"));
        let mut r = Reader::new(ThenQuiet(frames), 1 << 16);
        assert!(r.buf.capacity() == 0, "nothing held before the first byte");
        for want in [b"hello", b"again"] {
            let got = r.next().now_or_never().expect("a whole frame is there");
            assert_eq!(got, text(want));
        }
        // Waiting for more: the buffer went back with the last frame read.
        assert!(r.next().now_or_never().is_none());
        assert_eq!(r.buf.capacity(), 0);
    }

    fn masked(head: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        let mask = [1, 2, 3, 4];
        let mut f = vec![head, 0x80 | payload.len() as u8];
        f.extend(mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    async fn read_all(bytes: Vec<u8>, max: usize) -> Vec<Result<Inbound, ReadError>> {
        let mut r = Reader::new(&bytes[..], max);
        let mut out = Vec::new();
        loop {
            let next = r.next().await;
            let end = next.is_err();
            out.push(next);
            if end {
                return out;
            }
        }
    }

    fn text(s: &[u8]) -> Result<Inbound, ReadError> {
        Ok(Inbound::Message {
            binary: false,
            payload: BytesMut::from(s),
        })
    }

    #[tokio::test]
    async fn fragments_reassemble_with_control_frames_between() {
        let bytes = [
            masked(TEXT, b"he"),
            masked(0x80 | PING, b"p"),
            masked(0x80 | CONTINUATION, b"llo"),
        ]
        .concat();
        let got = read_all(bytes, 100).await;
        assert_eq!(
            got,
            vec![
                Ok(Inbound::Ping(BytesMut::from(&b"p"[..]))),
                text(b"hello"),
                Err(ReadError::Gone)
            ]
        );
    }

    #[tokio::test]
    async fn invalid_utf8_fails_at_the_fragment_that_carries_it() {
        // No final fragment follows: the error cannot wait for it.
        let bytes = [masked(TEXT, b"ok"), masked(CONTINUATION, b"\xed\xa0\x80")].concat();
        assert_eq!(
            read_all(bytes, 100).await,
            vec![Err(Violation::NotUtf8.into())]
        );
        // A code point cut between fragments is fine.
        let euro = "€".as_bytes();
        let bytes = [
            masked(TEXT, &euro[..1]),
            masked(0x80 | CONTINUATION, &euro[1..]),
        ]
        .concat();
        assert_eq!(read_all(bytes, 100).await[0], text(euro));
    }

    #[tokio::test]
    async fn the_limit_is_the_same_whole_or_in_fragments() {
        let whole = masked(0x80 | BINARY, &[0; 10]);
        assert!(matches!(
            read_all(whole, 10).await[0],
            Ok(Inbound::Message { .. })
        ));
        let split = [
            masked(BINARY, &[0; 5]),
            masked(0x80 | CONTINUATION, &[0; 5]),
        ]
        .concat();
        assert!(matches!(
            read_all(split, 10).await[0],
            Ok(Inbound::Message { .. })
        ));
        let over = masked(0x80 | BINARY, &[0; 11]);
        assert_eq!(read_all(over, 10).await[0], Err(Violation::TooLarge.into()));
        let over = [
            masked(BINARY, &[0; 5]),
            masked(0x80 | CONTINUATION, &[0; 6]),
        ]
        .concat();
        assert_eq!(read_all(over, 10).await[0], Err(Violation::TooLarge.into()));
    }

    #[tokio::test]
    async fn header_rules_fail_before_the_payload_arrives() {
        // Only two bytes: the rule is broken already.
        for (head, b1, v) in [
            (0x80 | TEXT, 5, Violation::Unmasked),
            (0xC0 | TEXT, 0x85, Violation::ReservedBits),
            (0x83, 0x85, Violation::UnknownOpcode),
            (PING, 0x85, Violation::FragmentedControl),
            (0x80 | CLOSE, 0x80 | 126, Violation::ControlTooLong),
            (0x80 | CONTINUATION, 0x85, Violation::NothingToContinue),
        ] {
            assert_eq!(read_all(vec![head, b1], 100).await, vec![Err(v.into())]);
        }
    }

    #[test]
    fn unmasking_by_words_is_unmasking_by_bytes() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut fast = data.clone();
            unmask(&mut fast, mask);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(fast, slow, "{len}");
        }
    }

    #[test]
    fn close_payloads() {
        assert_eq!(close_code(b""), Ok(1000));
        assert_eq!(close_code(b"\x03"), Err(Violation::ShortClose));
        assert_eq!(close_code(b"\x0f\xa0bye"), Ok(4000));
        assert_eq!(close_code(b"\x03\xed"), Err(Violation::BadCloseCode));
        assert_eq!(
            close_code(b"\x03\xe8\xff"),
            Err(Violation::CloseReasonNotUtf8)
        );
        assert_eq!(
            Violation::CloseReasonNotUtf8.close().code,
            Code::InvalidData
        );
        assert_eq!(Violation::Unmasked.close().code, Code::ProtocolError);
    }
}
