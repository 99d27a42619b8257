//! The listener: [`serve`] runs the accept loop over HTTP/1.1 connections (header deadline, the
//! client address for admission) and the graceful drain.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;

use crate::error::Result;
use crate::router::app;
use crate::state::AppState;

/// Serve `state` on `listener` until `shutdown` resolves, then drain: readiness turns false and
/// new requests get 503 at once; after `drain_grace_s` the listener closes; in-flight requests
/// finish (at most `drain_timeout_s`); the audit log is flushed. HTTP/1.1 with keep-alive; a
/// client that does not send its request headers within `limits.header_timeout_ms` is dropped
/// (slow-header attacks), and `limits.body_timeout_ms` bounds the body.
pub async fn serve<F>(listener: tokio::net::TcpListener, state: AppState, shutdown: F) -> Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let addr = listener.local_addr().ok();
    let sd = state.config().shutdown.clone();
    let header_timeout = Duration::from_millis(state.config().limits.header_timeout_ms);
    let router = app(state.clone());
    let graceful = GracefulShutdown::new();
    let spawn_conn = |stream: tokio::net::TcpStream, peer: SocketAddr| {
        let svc = tower::ServiceExt::map_request(
            router.clone(),
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            },
        );
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
    };
    tracing::info!(addr = ?addr, "serving");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => spawn_conn(stream, peer),
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    tracing::info!("shutdown requested: draining");
    state.start_drain();
    // Readiness is false and new requests get 503; keep accepting for the grace period so that
    // load balancers see it, then close the listener.
    let grace = tokio::time::sleep(Duration::from_secs(sd.drain_grace_s));
    tokio::pin!(grace);
    loop {
        tokio::select! {
            () = &mut grace => break,
            accepted = listener.accept() => {
                if let Ok((stream, peer)) = accepted {
                    spawn_conn(stream, peer);
                }
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(sd.drain_timeout_s), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout: closing with requests still in flight");
    }
    if let Some(log) = state.audit() {
        log.flush()?;
    }
    tracing::info!("stopped");
    Ok(())
}
