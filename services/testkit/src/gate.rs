//! [`Gate`]: a TCP proxy in front of one server, so a test can cut one client process
//! off it (every connection through the gate dropped, new ones refused) while others
//! keep their own connections, and let it through again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Gate {
    addr: SocketAddr,
    inner: Arc<Inner>,
    accept: AbortHandle,
}

struct Inner {
    upstream: SocketAddr,
    open: AtomicBool,
    piped: std::sync::Mutex<Vec<AbortHandle>>,
}

impl Gate {
    /// Starts forwarding connections to `upstream`, open.
    pub async fn start(upstream: SocketAddr) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            upstream,
            open: AtomicBool::new(true),
            piped: std::sync::Mutex::new(Vec::new()),
        });
        let accept = tokio::spawn(accept_loop(listener, inner.clone())).abort_handle();
        Gate {
            addr,
            inner,
            accept,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A `redis://` URL that goes through the gate.
    pub fn redis_url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// Drops every connection through the gate and refuses new ones until
    /// [`Gate::open`].
    pub fn cut(&self) {
        self.inner.open.store(false, Ordering::SeqCst);
        for pipe in self.inner.piped.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }

    /// Lets new connections through again.
    pub fn open(&self) {
        self.inner.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    while let Ok((mut client, _)) = listener.accept().await {
        if !inner.open.load(Ordering::SeqCst) {
            continue; // dropped: the client sees the connection closed at once
        }
        let upstream = inner.upstream;
        let pipe = tokio::spawn(async move {
            if let Ok(mut server) = TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
        let mut piped = inner.piped.lock().unwrap();
        piped.retain(|p| !p.is_finished());
        piped.push(pipe.abort_handle());
    }
}
