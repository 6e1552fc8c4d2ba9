//! The agent's HTTP listener, guarded against slow and flooding clients.
//!
//! Every connection must send its request headers within [`Limits::header_timeout`] and its
//! whole request within [`Limits::request_timeout`], or it is closed; no connection is kept
//! alive between requests; at most [`Limits::connections`] are open at once and further ones
//! are closed at once. A client that trickles bytes or opens connections and says nothing
//! therefore holds a slot for seconds, not forever, and `/healthz` and webhooks keep answering.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Bounds on what one client can hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once.
    pub connections: usize,
    /// Time for a connection to send its request line and headers.
    pub header_timeout: Duration,
    /// Time for a connection to send its whole request and get its answer.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { connections: 256, header_timeout: Duration::from_secs(5), request_timeout: Duration::from_secs(15) }
    }
}

/// Serve `app` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.connections));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("connection limit reached: closing a new connection");
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            if tokio::time::timeout(limits.request_timeout, conn).await.is_err() {
                tracing::debug!("closing a connection that did not finish its request in time");
            }
            drop(slot);
        });
    }
}
