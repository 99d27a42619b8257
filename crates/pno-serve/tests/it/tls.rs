//! Native TLS on a real socket: HTTPS with the test CA, a plain-HTTP request answered 400 (not a
//! hang), a silent client cut at the handshake deadline, certificates that do not parse or do
//! not match their key refused at start and on reload, a renewed certificate picked up by a
//! reload, client certificates for the admin role, and checkpoint delivery to a webhook.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use pno_serve::config::{ClientAuth, TlsConfig};

use crate::*;

/// A test certificate authority.
struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new(name: &str) -> Self {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Self(CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap())
    }
    fn pem(&self) -> String {
        self.0.pem()
    }
    /// A leaf for `names` (server) or a client certificate: (cert PEM, key PEM).
    fn leaf(&self, names: &[&str], client: bool) -> (String, String) {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("client"),
        );
        p.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.0).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Files of a server certificate signed by `ca` under `dir`; returns its TLS config.
fn server_files(dir: &Path, ca: &Ca) -> TlsConfig {
    let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"], false);
    std::fs::write(dir.join("server.pem"), cert).unwrap();
    std::fs::write(dir.join("server.key"), key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    TlsConfig {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        client_ca: None,
        client_auth: ClientAuth::Off,
        min_version: Default::default(),
        handshake_timeout_ms: 5000,
    }
}

fn client_config(ca_pem: &str, identity: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    Arc::new(match identity {
        None => b.with_no_client_auth(),
        Some((cert, key)) => b
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    })
}

/// One HTTPS request on a fresh connection: (status, body, the server's leaf certificate).
async fn https(
    addr: std::net::SocketAddr,
    client: &Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &[u8],
) -> Result<(u16, Vec<u8>, Vec<u8>), std::io::Error> {
    let tcp = TcpStream::connect(addr).await?;
    let mut s = tokio_rustls::TlsConnector::from(client.clone())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let leaf = s.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    let mut buf = Vec::new();
    // rustls reports a peer that closes without close_notify as an error: keep what came.
    if let Err(e) = s.read_to_end(&mut buf).await
        && buf.is_empty()
    {
        return Err(e);
    }
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    Ok((status, buf[split + 4..].to_vec(), leaf))
}

fn tls_state(dir: &Path, tls: TlsConfig) -> AppState {
    let repo = repo(dir, "pno", &[1]);
    let mut cfg = config(&repo);
    cfg.tls = Some(tls);
    state(cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_the_same_numbers_and_plain_http_gets_a_clean_400() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let mut tls = server_files(dir.path(), &ca);
    tls.handshake_timeout_ms = 400;
    let st = tls_state(dir.path(), tls);
    let (addr, tx, server) = start(&st).await;
    let client = client_config(&ca.pem(), None);

    let (s, _, _) = https(addr, &client, "GET", "/v2/health/ready", None, b"")
        .await
        .unwrap();
    assert_eq!(s, 200);
    // The same seed gives the same numbers as the in-process route.
    let body = infer_body(&input(1), 1, json!({"n_samples": 3, "seed": 11}));
    let (s, b, _) = https(
        addr,
        &client,
        "POST",
        "/v2/models/pno/infer",
        None,
        body.to_string().as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let over_tls: Value = serde_json::from_slice(&b).unwrap();
    let (s, direct) = call(&st, post_json("/v2/models/pno/infer", &body)).await;
    assert_eq!(s, axum::http::StatusCode::OK);
    assert_eq!(
        floats(&over_tls["outputs"][0]["data"]),
        floats(&direct["outputs"][0]["data"])
    );

    // Plain HTTP on the TLS port: a 400 that says so, at once.
    let t = Instant::now();
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /v2/health/ready HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer))
        .await
        .expect("a plain-HTTP request must not hang")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("this port speaks TLS"), "{answer}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // A client that connects and says nothing is closed at the handshake deadline (400 ms).
    let t = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("a silent client must be cut off")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        t.elapsed() >= Duration::from_millis(350),
        "{:?}",
        t.elapsed()
    );

    // A client that does not trust the server's CA fails the handshake; the server counts it.
    let other = client_config(&Ca::new("other CA").pem(), None);
    assert!(
        https(addr, &other, "GET", "/v2/health/live", None, b"")
            .await
            .is_err()
    );
    let (_, m, _) = https(addr, &client, "GET", "/metrics", None, b"")
        .await
        .unwrap();
    let m = String::from_utf8(m).unwrap();
    for reason in ["plain_http", "timeout", "handshake"] {
        assert!(
            m.contains(&format!(
                "pno_tls_handshake_failures_total{{reason=\"{reason}\",replica=\"t\"}} 1"
            )),
            "{reason}: {m}"
        );
    }
    assert!(
        m.contains("pno_tls_cert_expiry_timestamp_seconds{sha256=\""),
        "{m}"
    );
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

fn start_error(dir: &Path, tls: TlsConfig) -> String {
    let repo = repo(dir, "pno", &[1]);
    let mut cfg = config(&repo);
    cfg.tls = Some(tls);
    pno_serve::AppState::new(cfg, pno_models::burn::tensor::Device::flex())
        .unwrap_err()
        .to_string()
}

#[test]
fn certificates_that_do_not_parse_or_match_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let good = server_files(dir.path(), &ca);
    let write = |name: &str, text: &str| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    // Not PEM at all.
    let e = start_error(
        dir.path(),
        TlsConfig {
            cert: write("junk.pem", "hello"),
            ..good.clone()
        },
    );
    assert!(
        e.contains("tls.cert") && e.contains("no certificate"),
        "{e}"
    );
    // PEM framing around bytes that are not a certificate.
    let fake = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let e = start_error(
        dir.path(),
        TlsConfig {
            cert: write("fake.pem", fake),
            ..good.clone()
        },
    );
    assert!(e.contains("tls.cert") && e.contains("X.509"), "{e}");
    // A key from another pair.
    let (_, other_key) = ca.leaf(&["localhost"], false);
    let e = start_error(
        dir.path(),
        TlsConfig {
            key: write("other.key", &other_key),
            ..good.clone()
        },
    );
    assert!(e.contains("tls.key") && e.contains("does not match"), "{e}");
    // A missing file.
    let e = start_error(
        dir.path(),
        TlsConfig {
            key: dir.path().join("missing.key"),
            ..good.clone()
        },
    );
    assert!(e.contains("tls.key") && e.contains("missing.key"), "{e}");
    // Client authentication without a CA, and a CA without client authentication.
    let e = start_error(
        dir.path(),
        TlsConfig {
            client_auth: ClientAuth::Admin,
            ..good.clone()
        },
    );
    assert!(e.contains("tls.client_ca"), "{e}");
    let e = start_error(
        dir.path(),
        TlsConfig {
            client_ca: Some(dir.path().join("ca.pem")),
            ..good
        },
    );
    assert!(e.contains("tls.client_auth"), "{e}");
    // Unknown keys in [tls] are named.
    let e = pno_serve::ServeConfig::from_toml_str(
        "[tls]\ncert = \"a\"\nkey = \"b\"\nciphers = \"all\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("ciphers"), "{e}");
    let e = pno_serve::ServeConfig::from_toml_str(
        "[tls]\ncert = \"a\"\nkey = \"b\"\nmin_version = \"1.0\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("min_version"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_in_a_renewed_certificate_and_keeps_the_old_one_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let tls = server_files(dir.path(), &ca);
    let repo = repo(dir.path(), "pno", &[1]);
    let file = dir.path().join("serve.toml");
    let text = format!(
        "repository = {:?}\n[tls]\ncert = {:?}\nkey = {:?}\nhandshake_timeout_ms = 2000\n",
        repo.display().to_string(),
        tls.cert.display().to_string(),
        tls.key.display().to_string()
    );
    std::fs::write(&file, &text).unwrap();
    let st = state(pno_serve::ServeConfig::from_file(&file).unwrap());
    let f = file.clone();
    st.set_config_source(Box::new(move || pno_serve::ServeConfig::from_file(&f)));
    let (addr, tx, server) = start(&st).await;
    let client = client_config(&ca.pem(), None);
    let leaf = |st| async move {
        https(addr, st, "GET", "/v2/health/live", None, b"")
            .await
            .unwrap()
            .2
    };
    let first = leaf(&client).await;

    // Nothing changed: nothing swapped.
    assert!(st.reload("test").await.unwrap().changed.is_empty());
    // A renewed certificate at the same paths: the reload names the change, new handshakes
    // get the new certificate.
    let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"], false);
    std::fs::write(&tls.cert, &cert).unwrap();
    std::fs::write(&tls.key, &key).unwrap();
    let r = st.reload("test").await.unwrap();
    assert_eq!(r.changed, ["tls.files"]);
    let second = leaf(&client).await;
    assert_ne!(first, second);
    assert_eq!(
        second,
        CertificateDer::from_pem_slice(cert.as_bytes())
            .unwrap()
            .to_vec()
    );

    // A certificate that does not match the key on disk: rejected, the last good one serves.
    let (mismatched, _) = ca.leaf(&["localhost"], false);
    std::fs::write(&tls.cert, mismatched).unwrap();
    let e = st.reload("test").await.unwrap_err().to_string();
    assert!(e.contains("tls.key") && e.contains("does not match"), "{e}");
    assert_eq!(leaf(&client).await, second);
    // Turning TLS off needs a restart.
    std::fs::write(
        &file,
        format!("repository = {:?}\n", repo.display().to_string()),
    )
    .unwrap();
    let e = st.reload("test").await.unwrap_err().to_string();
    assert!(e.contains("restart") && e.contains("tls"), "{e}");
    assert_eq!(leaf(&client).await, second);
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_the_admin_credential() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("server CA");
    let admins = Ca::new("admin client CA");
    std::fs::write(dir.path().join("admins.pem"), admins.pem()).unwrap();
    let mut tls = server_files(dir.path(), &ca);
    tls.client_ca = Some(dir.path().join("admins.pem"));
    tls.client_auth = ClientAuth::AdminRequired;
    let repo = repo(dir.path(), "pno", &[1]);
    let mut cfg = config(&repo);
    cfg.tls = Some(tls);
    cfg.keys = Some(dir.path().join("keys.json"));
    cfg.anonymous = Some(pno_serve::config::AnonymousRole::Reader);
    cfg.audit.path = Some(dir.path().join("audit.log"));
    let st = state(cfg);
    let (admin_key, _) = st.keys().create(pno_serve::auth::Role::Admin).unwrap();
    let (addr, tx, server) = start(&st).await;

    let no_cert = client_config(&ca.pem(), None);
    let (cert, key) = admins.leaf(&["ops"], true);
    let with_cert = client_config(&ca.pem(), Some((&cert, &key)));
    let (stranger_cert, stranger_key) = Ca::new("someone else").leaf(&["ops"], true);
    let stranger = client_config(&ca.pem(), Some((&stranger_cert, &stranger_key)));

    // Readers need no certificate.
    let (s, _, _) = https(addr, &no_cert, "GET", "/v2/models/pno", None, b"")
        .await
        .unwrap();
    assert_eq!(s, 200);
    // An admin key without a certificate: refused on admin routes, saying why.
    let (s, b, _) = https(
        addr,
        &no_cert,
        "GET",
        "/v2/admin/keys",
        Some(&admin_key),
        b"",
    )
    .await
    .unwrap();
    assert_eq!(s, 403);
    let b = String::from_utf8_lossy(&b);
    assert!(b.contains("client certificate"), "{b}");
    // ... but it keeps operator powers.
    let (s, _, _) = https(
        addr,
        &no_cert,
        "POST",
        "/v2/repository/models/pno/load",
        Some(&admin_key),
        b"{}",
    )
    .await
    .unwrap();
    assert_eq!(s, 200);
    // The certificate alone is the admin credential.
    let (s, b, _) = https(addr, &with_cert, "GET", "/v2/admin/keys", None, b"")
        .await
        .unwrap();
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    // A certificate from another CA does not get through the handshake.
    assert!(
        https(addr, &stranger, "GET", "/v2/admin/keys", None, b"")
            .await
            .is_err()
    );
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    // The audit log names the certificate as the actor.
    let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    let id = format!("cert:sha256:{}", &pno_core::sha256_hex(&der)[..16]);
    assert!(log.contains(&id), "{id} not in {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_reach_the_webhook_over_http_and_https_with_retries() {
    use pno_serve::audit::checkpoint::{VerifierKey, open};
    let dir = tempfile::tempdir().unwrap();
    // The witness over HTTPS with the test CA's server certificate.
    let ca = Ca::new("witness CA");
    let files = server_files(dir.path(), &ca);
    let witness_tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        CertificateDer::pem_file_iter(&files.cert)
            .unwrap()
            .map(|c| c.unwrap())
            .collect(),
        PrivateKeyDer::from_pem_file(&files.key).unwrap(),
    )
    .unwrap();
    for https_witness in [false, true] {
        let sub = dir.path().join(format!("https-{https_witness}"));
        std::fs::create_dir_all(&sub).unwrap();
        let (witness, mut notes) =
            receiver(2, https_witness.then(|| Arc::new(witness_tls.clone()))).await;
        let (signer, verifier) =
            pno_serve::audit::checkpoint::generate_key("pno-serve/test").unwrap();
        std::fs::write(sub.join("audit-key"), signer).unwrap();
        let repo = repo(&sub, "pno", &[1]);
        let mut cfg = config(&repo);
        cfg.audit.path = Some(sub.join("audit.log"));
        cfg.audit.checkpoint_key = Some(sub.join("audit-key"));
        cfg.audit.checkpoint_every_s = 1;
        cfg.audit.checkpoint_webhook = Some(if https_witness {
            format!("https://localhost:{}/checkpoints", witness.port())
        } else {
            format!("http://{witness}/checkpoints")
        });
        if https_witness {
            cfg.audit.checkpoint_webhook_ca = Some(dir.path().join("ca.pem"));
        }
        let st = state(cfg);
        let (addr, tx, server) = start(&st).await;
        // One audited request, so there is something to checkpoint.
        let body = infer_body(&input(1), 1, json!({"n_samples": 2})).to_string();
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain
            .write_all(
                format!(
                    "POST /v2/models/pno/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let mut sink = Vec::new();
        plain.read_to_end(&mut sink).await.unwrap();
        assert!(
            sink.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&sink)
        );
        // Two 503s, then the note arrives (retried), signed, equal to the file on disk.
        let note = tokio::time::timeout(Duration::from_secs(30), notes.recv())
            .await
            .expect("the checkpoint must reach the webhook")
            .unwrap();
        let vk = VerifierKey::parse(&verifier).unwrap();
        let cp = open(&note, &vk).unwrap();
        assert!(cp.size >= 1);
        let on_disk = std::fs::read_to_string(sub.join(format!(
            "audit.log.checkpoints/checkpoint-{:012}.txt",
            cp.size
        )))
        .unwrap();
        assert_eq!(note, on_disk);
        tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
    // A webhook URL that is not http(s) is refused, naming the key.
    let mut cfg = config(&dir.path().join("https-false/repo"));
    cfg.audit.path = Some(dir.path().join("x.log"));
    cfg.audit.checkpoint_key = Some(dir.path().join("https-false/audit-key"));
    cfg.audit.checkpoint_webhook = Some("ftp://witness/".into());
    let e = cfg.validate().unwrap_err().to_string();
    assert!(
        e.contains("audit.checkpoint_webhook") && e.contains("ftp"),
        "{e}"
    );
}
