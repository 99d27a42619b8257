//! Webhook delivery: a body is POSTed over HTTP/1.1 to an `http://` or `https://` URL (rustls,
//! the Mozilla roots or a configured CA file), retried with jittered backoff on connection
//! errors, 408, 429 and 5xx. Callers decide what a failed delivery means; none blocks serving.
//! [`Webhook::call`] is one authenticated request with its answer, for the CLI's repository
//! commands against a running server.
//! Used for signed audit checkpoints (`audit.checkpoint_webhook`: the note on disk stays the
//! record, the webhook is a copy for an outside witness), alert notifications
//! (`[[alerting.receivers]]`) and training anomaly events (`pno train --anomaly-webhook`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::error::{Result, ServeError};

/// Where a webhook goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    https: bool,
    host: String,
    port: u16,
    path: String,
}

impl Target {
    /// Parse an `http://` or `https://` URL with a host.
    pub(crate) fn parse(url: &str) -> std::result::Result<Self, String> {
        let uri: axum::http::Uri = url.parse().map_err(|e| format!("`{url}`: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(s) => return Err(format!("`{url}`: scheme `{s}`")),
            None => return Err(format!("`{url}`: no scheme")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("`{url}`: no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri
            .path_and_query()
            .map_or("/".to_string(), |p| p.as_str().to_string());
        Ok(Self {
            https,
            host,
            port,
            path,
        })
    }
}

/// A configured webhook.
#[derive(Debug, Clone)]
pub struct Webhook {
    target: Target,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Retries of one delivery.
    pub backoff: pno_core::retry::Backoff,
    /// One attempt's deadline (connect, send, answer).
    pub timeout: Duration,
}

impl Webhook {
    /// A webhook to `url`, trusting the CA certificates in the PEM file `ca` (default: the
    /// Mozilla roots) for `https://`. Errors name `url_key` or `ca_key`, the config keys (or
    /// flags) the values came from.
    pub fn new(url: &str, ca: Option<&Path>, url_key: &str, ca_key: &str) -> Result<Self> {
        let bad = |key: &str, expected: &str, got: String| ServeError::Config {
            key: key.into(),
            expected: expected.into(),
            got,
        };
        let target =
            Target::parse(url).map_err(|why| bad(url_key, "an http:// or https:// URL", why))?;
        let tls = if target.https {
            let mut roots = rustls::RootCertStore::empty();
            match ca {
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
                Some(p) => {
                    let what = "a PEM file of CA certificates";
                    let certs: Vec<_> = CertificateDer::pem_file_iter(p)
                        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
                        .map_err(|e| bad(ca_key, what, format!("{}: {e}", p.display())))?;
                    if certs.is_empty() {
                        return Err(bad(
                            ca_key,
                            what,
                            format!("{}: no certificate in it", p.display()),
                        ));
                    }
                    for c in certs {
                        roots
                            .add(c)
                            .map_err(|e| bad(ca_key, what, format!("{}: {e}", p.display())))?;
                    }
                }
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| bad(url_key, "a usable TLS setup", e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(Arc::new(cfg))
        } else {
            None
        };
        Ok(Self {
            target,
            tls,
            backoff: pno_core::retry::Backoff {
                base: Duration::from_millis(200),
                max: Duration::from_secs(5),
                attempts: 4,
                max_elapsed: Duration::from_secs(30),
            },
            timeout: Duration::from_secs(10),
        })
    }

    /// One POST; the answer's status and body.
    async fn post_once(
        &self,
        body: &str,
        content_type: &str,
        bearer: Option<&str>,
    ) -> std::result::Result<(u16, String), String> {
        let t = &self.target;
        let tcp = tokio::net::TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|e| format!("connect {}:{}: {e}", t.host, t.port))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => {
                self.exchange(TokioIo::new(tcp), body, content_type, bearer)
                    .await
            }
            Some(cfg) => {
                let name = ServerName::try_from(t.host.clone())
                    .map_err(|e| format!("server name `{}`: {e}", t.host))?;
                let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS to {}: {e}", t.host))?;
                self.exchange(TokioIo::new(tls), body, content_type, bearer)
                    .await
            }
        }
    }

    async fn exchange<I>(
        &self,
        io: I,
        body: &str,
        content_type: &str,
        bearer: Option<&str>,
    ) -> std::result::Result<(u16, String), String>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        let driver = tokio::spawn(conn);
        let t = &self.target;
        let default_port = if t.https { 443 } else { 80 };
        let host = if t.port == default_port {
            t.host.clone()
        } else {
            format!("{}:{}", t.host, t.port)
        };
        let mut req = hyper::Request::post(t.path.as_str())
            .header(hyper::header::HOST, host)
            .header(hyper::header::CONTENT_TYPE, content_type)
            .header(hyper::header::USER_AGENT, "pno webhook");
        if let Some(key) = bearer {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("POST: {e}"))?;
        let status = resp.status().as_u16();
        let answer = resp
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        driver.abort();
        Ok((status, answer))
    }

    /// One POST of `body` (JSON) with `Authorization: Bearer key` when given, within
    /// [`Webhook::timeout`], not retried: the answer's status and body, whatever the status.
    pub async fn call(
        &self,
        body: &str,
        bearer: Option<&str>,
    ) -> std::result::Result<(u16, String), String> {
        match tokio::time::timeout(
            self.timeout,
            self.post_once(body, "application/json", bearer),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }

    /// Deliver `body` (of MIME type `content_type`): retried on connection errors, 408, 429 and
    /// 5xx; any other status is final. `Err` names the last failure.
    pub async fn deliver(
        &self,
        body: &str,
        content_type: &str,
    ) -> std::result::Result<u16, String> {
        let started = std::time::Instant::now();
        let attempts = self.backoff.attempts.max(1);
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                let delay = self.backoff.delay(attempt - 1, &mut rand::rng());
                if started.elapsed() + delay > self.backoff.max_elapsed {
                    break;
                }
                tokio::time::sleep(delay).await;
            }
            let once = self.post_once(body, content_type, None);
            match tokio::time::timeout(self.timeout, once).await {
                Ok(Ok((s, _))) if (200..300).contains(&s) => return Ok(s),
                Ok(Ok((s, _))) if s == 408 || s == 429 || s >= 500 => last = format!("HTTP {s}"),
                Ok(Ok((s, _))) => return Err(format!("HTTP {s}")),
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("no answer within {} ms", self.timeout.as_millis()),
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_default_ports_and_paths() {
        let t = Target::parse("https://witness.example/cp?x=1").unwrap();
        assert_eq!(
            (t.https, t.host.as_str(), t.port, t.path.as_str()),
            (true, "witness.example", 443, "/cp?x=1")
        );
        let t = Target::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!((t.https, t.port, t.path.as_str()), (false, 9000, "/"));
        let t = Target::parse("http://[::1]:81/a").unwrap();
        assert_eq!(t.host, "::1");
        for bad in ["ftp://x/", "/just/a/path", "http://", "not a url"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
