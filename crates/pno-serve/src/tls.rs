//! Native TLS: [`load`] reads `[tls]`'s files into a rustls server configuration (refusing
//! files that do not parse, a key that does not match its certificate, a client CA without
//! certificates), and [`accept`] runs one connection's handshake under a deadline, answering a
//! plain-HTTP request on the TLS port with a 400 that says so instead of hanging or resetting.
//! A verified client certificate travels with every request of its connection as [`PeerCert`].

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{ClientAuth, TlsConfig, TlsVersion};
use crate::error::{Result, ServeError};
use crate::metrics::Metrics;

/// The TLS setup in force: rebuilt by every reload (the files are read again).
#[derive(Debug)]
pub(crate) struct TlsSetup {
    /// The rustls server configuration.
    pub(crate) server: Arc<rustls::ServerConfig>,
    /// SHA-256 over the certificate, key and client CA files (a reload with changed files
    /// swaps even when the config text did not change).
    pub(crate) digest: String,
    /// The leaf certificate's identity, `sha256:` + 16 hex digits.
    pub(crate) leaf: String,
    /// The leaf certificate's notAfter, seconds since the Unix epoch.
    pub(crate) not_after: Option<u64>,
    /// What a verified client certificate does.
    pub(crate) client_auth: ClientAuth,
    /// The handshake deadline.
    pub(crate) handshake_timeout: Duration,
}

/// A client certificate verified against `tls.client_ca` on this request's connection: its
/// identity (`sha256:` + 16 hex digits of the DER certificate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerCert(pub(crate) String);

/// The short identity of a DER certificate.
pub(crate) fn cert_id(der: &[u8]) -> String {
    let h = pno_core::sha256_hex(der);
    format!("sha256:{}", &h[..16])
}

fn bad(key: &str, expected: &str, got: impl std::fmt::Display) -> ServeError {
    ServeError::Config {
        key: key.into(),
        expected: expected.into(),
        got: got.to_string(),
    }
}

fn read(key: &str, path: &std::path::Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| bad(key, what, format!("{}: {e}", path.display())))
}

fn certs(key: &str, path: &std::path::Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let what = "a PEM file of CERTIFICATE blocks";
    let certs: Vec<_> = CertificateDer::pem_slice_iter(bytes)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(key, what, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(bad(
            key,
            what,
            format!("{}: no certificate in it", path.display()),
        ));
    }
    for (i, c) in certs.iter().enumerate() {
        if not_after(c).is_none() {
            return Err(bad(
                key,
                what,
                format!(
                    "{}: certificate {} is not a well-formed X.509 certificate",
                    path.display(),
                    i + 1
                ),
            ));
        }
    }
    Ok(certs)
}

/// Read and check `[tls]`'s files and build the server configuration.
pub(crate) fn load(cfg: &TlsConfig) -> Result<TlsSetup> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert_bytes = read("tls.cert", &cfg.cert, "a readable PEM certificate file")?;
    let key_bytes = read("tls.key", &cfg.key, "a readable PEM private key file")?;
    let chain = certs("tls.cert", &cfg.cert, &cert_bytes)?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
        bad(
            "tls.key",
            "a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)",
            format!("{}: {e}", cfg.key.display()),
        )
    })?;
    let versions: &[&rustls::SupportedProtocolVersion] = match cfg.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| bad("tls.min_version", "a version rustls supports", e))?;
    let mut digest_input = vec![cert_bytes.clone(), key_bytes];
    let builder = match &cfg.client_ca {
        None => builder.with_no_client_auth(),
        Some(p) => {
            let bytes = read("tls.client_ca", p, "a readable PEM CA file")?;
            let mut roots = rustls::RootCertStore::empty();
            for c in certs("tls.client_ca", p, &bytes)? {
                roots.add(c).map_err(|e| {
                    bad(
                        "tls.client_ca",
                        "CA certificates",
                        format!("{}: {e}", p.display()),
                    )
                })?;
            }
            digest_input.push(bytes);
            // Optional at the handshake: readers and operators have no certificate.
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| bad("tls.client_ca", "usable CA certificates", e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let leaf = cert_id(&chain[0]);
    let expiry = not_after(&chain[0]);
    let mut server = builder.with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => bad(
            "tls.key",
            &format!(
                "the private key of the certificate in {}",
                cfg.cert.display()
            ),
            format!("{}: a key that does not match it", cfg.key.display()),
        ),
        e => bad(
            "tls.key",
            "a private key rustls can use (RSA, ECDSA P-256/P-384, Ed25519)",
            format!("{}: {e}", cfg.key.display()),
        ),
    })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let digest = pno_core::sha256_hex(&digest_input.concat());
    Ok(TlsSetup {
        server: Arc::new(server),
        digest,
        leaf,
        not_after: expiry,
        client_auth: cfg.client_auth,
        handshake_timeout: Duration::from_millis(cfg.handshake_timeout_ms),
    })
}

/// The TLS record type of a handshake: every TLS connection starts with it.
const HANDSHAKE: u8 = 0x16;

/// Why a connection never reached HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// It spoke plain HTTP (answered with a 400).
    PlainHttp,
    /// No handshake within the deadline.
    Timeout,
    /// The handshake failed (bad client certificate, no common version or suite, garbage).
    Handshake,
    /// The client closed before sending anything.
    Closed,
}

impl Refused {
    fn label(self) -> &'static str {
        match self {
            Refused::PlainHttp => "plain_http",
            Refused::Timeout => "timeout",
            Refused::Handshake => "handshake",
            Refused::Closed => "closed",
        }
    }
}

/// Run the handshake of `stream` under `setup`'s deadline; count and log failures.
pub(crate) async fn accept(
    setup: Arc<TlsSetup>,
    metrics: &Metrics,
    stream: TcpStream,
) -> std::result::Result<(tokio_rustls::server::TlsStream<TcpStream>, Option<PeerCert>), Refused> {
    let out = tokio::time::timeout(setup.handshake_timeout, handshake(&setup, stream)).await;
    let r = out.unwrap_or(Err(Refused::Timeout));
    if let Err(why) = r {
        metrics.inc(
            "pno_tls_handshake_failures_total",
            format!("reason=\"{}\"", why.label()),
            1.0,
        );
    }
    r
}

async fn handshake(
    setup: &TlsSetup,
    stream: TcpStream,
) -> std::result::Result<(tokio_rustls::server::TlsStream<TcpStream>, Option<PeerCert>), Refused> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(0) | Err(_) => return Err(Refused::Closed),
        Ok(_) => {}
    }
    if first[0] != HANDSHAKE {
        answer_plain_http(stream).await;
        return Err(Refused::PlainHttp);
    }
    let tls = tokio_rustls::TlsAcceptor::from(setup.server.clone())
        .accept(stream)
        .await
        .map_err(|e| {
            tracing::debug!(error = %e, "TLS handshake failed");
            Refused::Handshake
        })?;
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| PeerCert(cert_id(c)));
    Ok((tls, cert))
}

/// Read the plain request's head (bounded) so the client sees the answer rather than a reset,
/// then answer 400 and close.
async fn answer_plain_http(mut stream: TcpStream) {
    let mut buf = vec![0u8; 8192];
    let mut seen = 0;
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while seen < buf.len() {
            match stream.read(&mut buf[seen..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen += n,
            }
            if buf[..seen].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    answer_and_close(
        stream,
        "400 Bad Request",
        "",
        r#"{"error":"this port speaks TLS: use https://","class":"input"}"#,
    )
    .await;
}

/// Write a short JSON answer outside hyper (`status` like `400 Bad Request`, `headers` each
/// ending in CRLF) and close, giving up after a second.
pub(crate) async fn answer_and_close(
    mut stream: tokio::net::TcpStream,
    status: &str,
    headers: &str,
    body: &str,
) {
    let msg = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{headers}connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(msg.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

// --- A minimal DER reader: the leaf certificate's notAfter (for the expiry gauge) ---

/// One DER element: (tag, contents, the rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as Unix seconds.
fn asn1_time(tag: u8, v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(v).ok()?.strip_suffix('Z')?;
    let (year, rest) = match (tag, s.len()) {
        (0x17, 12) => {
            let yy: i64 = s[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        (0x18, 14) => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    if !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |i: usize| -> Option<i64> { rest[i..i + 2].parse().ok() };
    let (mo, d, h, mi, se) = (n(0)?, n(2)?, n(4)?, n(6)?, n(8)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(year, mo, d);
    u64::try_from(days * 86_400 + h * 3600 + mi * 60 + se).ok()
}

/// The notAfter of a DER X.509 certificate, or `None` when it is not one.
pub(crate) fn not_after(cert: &[u8]) -> Option<u64> {
    let (0x30, body, _) = der(cert)? else {
        return None;
    };
    let (0x30, tbs, _) = der(body)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, r) = der(rest)?;
    if tag == 0xa0 {
        rest = r; // explicit version
    }
    // serial, signature algorithm, issuer, then validity.
    for want in [0x02, 0x30, 0x30] {
        let (tag, _, r) = der(rest)?;
        if tag != want {
            return None;
        }
        rest = r;
    }
    let (0x30, validity, _) = der(rest)? else {
        return None;
    };
    let (t0, _, r) = der(validity)?;
    if t0 != 0x17 && t0 != 0x18 {
        return None;
    }
    let (t1, v1, _) = der(r)?;
    asn1_time(t1, v1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_match_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2038, 1, 19), 24_855);
        assert_eq!(asn1_time(0x17, b"380119031407Z"), Some(2_147_483_647));
        assert_eq!(asn1_time(0x18, b"20380119031407Z"), Some(2_147_483_647));
        assert_eq!(asn1_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        // 1950: before the epoch, not representable.
        assert_eq!(asn1_time(0x17, b"500101000000Z"), None);
        assert_eq!(asn1_time(0x17, b"38011903140Z"), None);
        assert_eq!(asn1_time(0x17, b"381319031407Z"), None);
    }

    #[test]
    fn not_after_reads_rcgen_certificates_and_rejects_garbage() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 7, 15);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let want = u64::try_from(days_from_civil(2031, 7, 15) * 86_400).unwrap();
        assert_eq!(not_after(cert.der()), Some(want));
        assert_eq!(not_after(b"not a certificate"), None);
        assert_eq!(not_after(&cert.der()[..40]), None);
    }
}
