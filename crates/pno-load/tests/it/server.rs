//! A tiny real HTTP/1.1 server on 127.0.0.1:0 whose answers a test scripts per request.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the server does with the n-th request it reads (from 0).
pub(crate) type Script = dyn Fn(usize) -> Option<String> + Send + Sync;

/// A running server: its address and when each request arrived.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Server {
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v2/models/pno/infer", self.addr.port())
    }
}

/// A full response with a JSON body and extra header lines (each ending in "\r\n").
pub(crate) fn reply(status: &str, extra: &str, body: &str) -> Option<String> {
    Some(format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{body}",
        body.len()
    ))
}

/// The same, chunked in two pieces.
pub(crate) fn reply_chunked(status: &str, body: &str) -> Option<String> {
    let (a, b) = body.split_at(body.len() / 2);
    Some(format!(
        "HTTP/1.1 {status}\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x};ext=1\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    ))
}

/// Serves `script` until the test ends; `None` from the script leaves that connection hanging.
pub(crate) async fn start(
    script: impl Fn(usize) -> Option<String> + Send + Sync + 'static,
) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let script: Arc<Script> = Arc::new(script);
    let seen = Arc::clone(&arrivals);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (script, seen) = (Arc::clone(&script), Arc::clone(&seen));
            tokio::spawn(async move {
                let mut conn = BufReader::new(stream);
                loop {
                    let mut length = 0;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if conn.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    conn.read_exact(&mut body).await.unwrap();
                    let n = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(Instant::now());
                        seen.len() - 1
                    };
                    match script(n) {
                        // `x-close` closes the connection silently (no `Connection: close`).
                        Some(resp) if resp.contains("\r\nx-close: 1\r\n") => {
                            conn.get_mut().write_all(resp.as_bytes()).await.unwrap();
                            return;
                        }
                        Some(resp) => conn.get_mut().write_all(resp.as_bytes()).await.unwrap(),
                        None => std::future::pending::<()>().await,
                    }
                }
            });
        }
    });
    Server { addr, arrivals }
}
