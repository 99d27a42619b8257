//! The listener: [`serve`] runs the accept loop over HTTP/1.1 connections, plain or TLS (header
//! deadline, the client address and a verified client certificate for admission) and the
//! graceful drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use axum::extract::ConnectInfo;

use crate::error::Result;
use crate::router::app;
use crate::state::AppState;
use crate::tls::PeerCert;

/// Serve `state` on `listener` until `shutdown` resolves, then drain: readiness turns false and
/// new requests get 503 at once; after `drain_grace_s` the listener closes; in-flight requests
/// finish (at most `drain_timeout_s`); the audit log is flushed. HTTP/1.1 with keep-alive; a
/// client that does not send its request headers within `limits.header_timeout_ms` is dropped
/// (slow-header attacks), and `limits.body_timeout_ms` bounds the body. At most
/// `limits.max_connections` connections are open (more get a 503 and are closed) and a
/// connection serves at most `limits.max_requests_per_connection` requests.
pub async fn serve<F>(listener: tokio::net::TcpListener, state: AppState, shutdown: F) -> Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let addr = listener.local_addr().ok();
    let sd = state.config().shutdown.clone();
    let limits = state.config().limits.clone();
    let header_timeout = Duration::from_millis(limits.header_timeout_ms);
    let per_conn = limits.max_requests_per_connection;
    let conns = Arc::new(Semaphore::new(limits.max_connections));
    let router = app(state.clone());
    let graceful = GracefulShutdown::new();
    // TLS on or off is fixed for the life of the listener (a reload cannot change it); the
    // certificate in force is read per connection, so a reload's new one serves new handshakes.
    let tls_on = state.live().tls.is_some();
    let spawn_conn = |stream: tokio::net::TcpStream, peer: SocketAddr| {
        // The open-connection cap: past it, a short 503 and close (never a silent hang).
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            state
                .metrics()
                .inc("pno_connections_refused_total", String::new(), 1.0);
            tokio::spawn(refuse_connection(stream));
            return;
        };
        // Small writes (TLS handshake flights, short answers) go out at once rather than wait
        // for the client's delayed ACK.
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let watcher = graceful.watcher();
        let st = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (io, cert): (Box<dyn Io>, Option<PeerCert>) = if tls_on {
                let Some(setup) = st.live().tls.clone() else {
                    return;
                };
                match crate::tls::accept(setup, st.metrics(), stream).await {
                    Ok((tls, cert)) => (Box::new(tls), cert),
                    Err(_) => return,
                }
            } else {
                (Box::new(stream), None)
            };
            // Requests on this connection: the last one allowed is answered with
            // `Connection: close`, and hyper closes the connection after it.
            let served = Arc::new(AtomicUsize::new(0));
            let svc = tower::ServiceExt::map_request(
                router,
                move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    if let Some(c) = &cert {
                        req.extensions_mut().insert(c.clone());
                    }
                    req
                },
            );
            let svc =
                tower::ServiceExt::map_response(svc, move |mut resp: axum::response::Response| {
                    if served.fetch_add(1, Ordering::SeqCst) + 1 >= per_conn {
                        resp.headers_mut().insert(
                            axum::http::header::CONNECTION,
                            axum::http::HeaderValue::from_static("close"),
                        );
                    }
                    resp
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(io), TowerToHyperService::new(svc));
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
    };
    // Signed checkpoints of the audit log, periodically (and once more at shutdown).
    let every = Duration::from_secs(state.config().audit.checkpoint_every_s);
    let cp_state = state.clone();
    let checkpoints = tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let st = cp_state.clone();
            match tokio::task::spawn_blocking(move || st.write_checkpoint()).await {
                Ok(Err(e)) => {
                    tracing::error!(error = %e, class = "transient", "audit checkpoint failed");
                }
                Ok(Ok(Some(cp))) => cp_state.deliver_checkpoint(&cp.note).await,
                _ => {}
            }
        }
    });
    // Scheduled dependency checks (a round at once, then every health.interval_s).
    let health = tokio::spawn(crate::checks::run(state.clone()));
    // The in-process monitor: series, anomaly detectors, alerts, receivers (every second).
    let monitor = tokio::spawn(crate::monitor::run(state.clone()));
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
    if let Err(e) = state.keys().flush_usage() {
        tracing::warn!(class = "transient", error = %e, "writing key usage times failed");
    }
    checkpoints.abort();
    health.abort();
    monitor.abort();
    if let Some(log) = state.audit() {
        log.flush()?;
    }
    if let Some(cp) = state.write_checkpoint()? {
        state.deliver_checkpoint(&cp.note).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// A connection's byte stream: plain TCP or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Answer a connection over the cap with a 503 and close it.
async fn refuse_connection(stream: tokio::net::TcpStream) {
    crate::tls::answer_and_close(
        stream,
        "503 Service Unavailable",
        "retry-after: 1\r\n",
        r#"{"error":"too many open connections","class":"transient"}"#,
    )
    .await;
}
