//! A connection's TCP socket, split into its reader's and its writer's halves without
//! the lock `tokio::io::split` takes on every read and write, and written with a
//! plain `try_write` first: no timer unless the kernel does not take a batch at once.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The write side: only the connection's writer writes.
pub struct Socket(OwnedWriteHalf);

/// The TCP stream under an upgraded connection, split, with the bytes hyper read past
/// the handshake (a client may send its first frame right behind the upgrade request).
/// `None` if the connection is not a plain TCP stream served by `axum::serve`.
pub fn from_upgraded(upgraded: TokioIo<Upgraded>) -> Option<(ReadHalf, Socket)> {
    let parts = hyper_util::server::conn::auto::upgrade::downcast::<TokioIo<TcpStream>>(
        upgraded.into_inner(),
    )
    .ok()?;
    let (read, write) = parts.io.into_inner().into_split();
    Some((
        ReadHalf {
            // A copy: the slice would keep hyper's whole read buffer alive for as long
            // as the connection lives.
            buffered: Bytes::copy_from_slice(&parts.read_buf),
            tcp: read,
        },
        Socket(write),
    ))
}

impl Socket {
    /// Writes all of `buf`, giving up after `limit`. Most writes fit the socket buffer
    /// at once: only a rest the kernel does not take arms the timer.
    pub async fn write_all_within(
        &self,
        buf: &[u8],
        limit: Duration,
    ) -> Result<io::Result<()>, tokio::time::error::Elapsed> {
        let rest = match self.0.try_write(buf) {
            Ok(n) => &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => buf,
            Err(e) => return Ok(Err(e)),
        };
        if rest.is_empty() {
            return Ok(Ok(()));
        }
        // Boxed: rare, and inline its timer would sit in every connection's task.
        Box::pin(tokio::time::timeout(limit, self.write_all(rest))).await
    }

    async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.0.try_write(buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.0.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends FIN after the last frame (the close frame); reading goes on.
    pub fn shutdown_write(&self) {
        let tcp: &TcpStream = self.0.as_ref();
        let _ = socket2::SockRef::from(tcp).shutdown(std::net::Shutdown::Write);
    }
}

/// The read side: first what hyper had buffered, then the socket
/// (read into uninitialised memory: a connection's idle read buffer stays untouched).
pub struct ReadHalf {
    buffered: Bytes,
    tcp: OwnedReadHalf,
}

impl crate::reader::Source for ReadHalf {
    async fn readable(&self) {
        if !self.buffered.has_remaining() {
            // An error is the next read's to report.
            let _ = self.tcp.readable().await;
        }
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.buffered.has_remaining() {
            let n = self.buffered.len().min(buf.remaining());
            buf.put_slice(&self.buffered[..n]);
            self.buffered.advance(n);
            if !self.buffered.has_remaining() {
                self.buffered = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}
