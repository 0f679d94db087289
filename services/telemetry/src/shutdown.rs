//! A process's stop, as mini-redis's `Shutdown` and linkerd's drain channel do it: one
//! value, cloned into every task that must end, in two steps.
//!
//! 1. **Stopping** (SIGTERM, Ctrl-C, or a test): listeners close, readiness turns 503,
//!    the drain moves WebSocket clients away and waits for their connections (tracked
//!    here, not counted from a gauge).
//! 2. **Done** (the drain is over, in-flight requests finished): background tasks end:
//!    the presence refresh, the engine's probe and bus, the internal ops server.
//!
//! Background tasks go on while a drain runs: clients still connected keep receiving
//! messages and keep their presence until their turn to move comes.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Shutdown {
    stopping: CancellationToken,
    done: CancellationToken,
    connections: TaskTracker,
}

impl Shutdown {
    /// Stops when told to ([`Shutdown::stop`]), never by itself.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops on SIGTERM or Ctrl-C.
    pub fn on_signals() -> Self {
        let shutdown = Self::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            crate::shutdown_signal().await;
            stop.stop();
        });
        shutdown
    }

    /// Asks the process to stop: the drain begins.
    pub fn stop(&self) {
        self.stopping.cancel();
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// Resolves when the process is asked to stop.
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        self.stopping.clone().cancelled_owned()
    }

    /// The drain is over: every background task ends.
    pub fn finish(&self) {
        self.stopping.cancel();
        self.done.cancel();
    }

    /// Resolves when the process is done; for a task's own `select!`.
    pub fn done(&self) -> impl Future<Output = ()> + Send + 'static {
        self.done.clone().cancelled_owned()
    }

    /// The token behind [`Shutdown::done`], for crates that take a plain token.
    pub fn done_token(&self) -> CancellationToken {
        self.done.clone()
    }

    /// Runs a background task until the process is done.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let done = self.done.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = task => {}
                () = done.cancelled() => {}
            }
        })
    }

    /// Runs a connection's task, counted until it ends: the drain waits for these.
    pub fn track<F>(&self, connection: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.connections.spawn(connection)
    }

    /// Connections still open.
    pub fn open_connections(&self) -> usize {
        self.connections.len()
    }

    /// Waits, at most `within`, for every tracked connection to end; whether they did.
    pub async fn connections_closed(&self, within: Duration) -> bool {
        self.connections.close();
        let closed = tokio::time::timeout(within, self.connections.wait()).await;
        self.connections.reopen();
        closed.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn background_tasks_outlive_the_stop_and_end_when_done() {
        let shutdown = Shutdown::new();
        let task = shutdown.spawn(std::future::pending());
        shutdown.stop();
        assert!(shutdown.is_stopping());
        tokio::task::yield_now().await;
        assert!(!task.is_finished(), "a drain still needs it");
        shutdown.finish();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn the_drain_waits_for_tracked_connections() {
        let shutdown = Shutdown::new();
        let (close, closed) = tokio::sync::oneshot::channel::<()>();
        shutdown.track(async move {
            let _ = closed.await;
        });
        assert_eq!(shutdown.open_connections(), 1);
        assert!(!shutdown.connections_closed(Duration::from_millis(20)).await);
        close.send(()).unwrap();
        assert!(shutdown.connections_closed(Duration::from_secs(5)).await);
        assert_eq!(shutdown.open_connections(), 0);
    }
}
