//! Client certificates (two-way TLS) end to end: a real `flowd serve` sends to a local rustls
//! server on 127.0.0.1 that requires a client certificate issued by its private CA. Certificates
//! are made here with `rcgen`; the identity travels as secrets set through the API. The right
//! certificate succeeds (and a second run reuses the connection: one handshake for two
//! requests); no certificate, one from another CA, or no `ca` for the server's private CA fails
//! with the handshake error recorded on the attempt; a flow whose certificate and key do not
//! match is warned about when it is saved, and its attempts fail before connecting.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use reqwest::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::support::api::Api;
use crate::support::flowd::FlowdProcess;

const DEADLINE: Duration = Duration::from_secs(60);

/// A certificate authority that signs server and client certificates.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

/// A certificate with its private key, in PEM.
struct Identity {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        Ca { params, key, pem }
    }

    fn issue(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> Identity {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().expect("key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("certificate");
        Identity {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// What the server saw: completed handshakes, refused ones, requests answered.
#[derive(Default)]
struct Seen {
    handshakes: AtomicUsize,
    refused: AtomicUsize,
    requests: AtomicUsize,
}

/// An HTTPS server on 127.0.0.1 that requires a client certificate issued by `clients`, answers
/// every request `200 ok` and keeps connections open.
async fn start_server(server: &Identity, clients: &Ca) -> (String, Arc<Seen>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(clients.pem.as_bytes()).expect("CA"))
        .expect("root");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("client verifier");
    let chain = CertificateDer::pem_slice_iter(server.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("server chain");
    let key = PrivateKeyDer::from_pem_slice(server.key.as_bytes()).expect("server key");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("https://{}/mtls", listener.local_addr().expect("address"));
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), counts.clone());
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(stream) => {
                        seen.handshakes.fetch_add(1, Ordering::SeqCst);
                        answer_requests(stream, &seen).await;
                    }
                    Err(_) => {
                        seen.refused.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    (url, seen)
}

/// Reads requests (headers, then `content-length` bytes) and answers each until the client
/// closes. A client refused after the handshake (TLS 1.3 checks the certificate then) ends here
/// with a read error, counted as refused.
async fn answer_requests<S>(stream: S, seen: &Seen)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut stream = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            match stream.read_line(&mut line).await {
                Ok(0) => return,
                Ok(_) => {}
                Err(_) => {
                    seen.refused.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        seen.requests.fetch_add(1, Ordering::SeqCst);
        let reply = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";
        if stream.get_mut().write_all(reply).await.is_err() {
            return;
        }
    }
}

fn flow(id: &str, url: &str, tls: &str) -> String {
    format!(
        "id: {id}\ntriggers: [{{manual: {{label: Go}}}}]\nsteps:\n  - id: push\n    http:\n      url: \"{url}\"\n      body: {{hello: mtls}}\n      retry: {{attempts: 1}}\n{tls}"
    )
}

const RIGHT_TLS: &str = "      tls:\n        client_cert: \"{{secrets.X_CERT}}\"\n        client_key: \"{{secrets.X_KEY}}\"\n        ca: \"{{secrets.X_CA}}\"\n";

async fn create_flow(api: &Api, source: &str) -> Value {
    let (status, created) = api
        .request("POST", "/api/v1/flows", Some(("application/yaml", source)))
        .await
        .expect("create flow");
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

/// Triggers `flow` and waits until its run ends; answers the run.
async fn run_once(api: &Api, flow: &str, flowd: &FlowdProcess) -> Value {
    let run_id = api.trigger(flow).await.expect("trigger");
    api.wait_for_run(
        &run_id,
        |r| r["status"] == "succeeded" || r["status"] == "failed",
        DEADLINE,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", flowd.stderr_tail()))
}

#[tokio::test]
async fn a_client_certificate_opens_a_server_that_requires_one() {
    let ca = Ca::new("flowd test CA");
    let server = ca.issue(&["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let client = ca.issue(&["flowd-client"], ExtendedKeyUsagePurpose::ClientAuth);
    let stranger =
        Ca::new("another CA").issue(&["flowd-client"], ExtendedKeyUsagePurpose::ClientAuth);
    let (url, seen) = start_server(&server, &ca).await;

    let dir = tempfile::tempdir().expect("temporary directory");
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).expect("flows folder");
    let database = format!("sqlite://{}", dir.path().join("flowd.db").display());
    let env = crate::secrets::env_with_key(database, flows);
    let flowd = FlowdProcess::start(&env).await;
    let api = flowd.api();
    for (name, value) in [
        ("X_CERT", &client.cert),
        ("X_KEY", &client.key),
        ("X_CA", &ca.pem),
        ("STRANGER_CERT", &stranger.cert),
        ("STRANGER_KEY", &stranger.key),
    ] {
        api.put_secret(name, value).await.expect("put a secret");
    }

    // Saved with a certificate and a key that do not belong together: a warning at the key.
    let mismatched = flow(
        "mtls-mismatch",
        &url,
        "      tls:\n        client_cert: \"{{secrets.X_CERT}}\"\n        client_key: \"{{secrets.STRANGER_KEY}}\"\n        ca: \"{{secrets.X_CA}}\"\n",
    );
    let created = create_flow(&api, &mismatched).await;
    let warnings = created["warnings"].to_string();
    assert!(
        warnings.contains("not the private key of the certificate")
            && warnings.contains("client_key")
            && warnings.contains("\"line\":11"),
        "{created}"
    );
    let right = create_flow(&api, &flow("mtls", &url, RIGHT_TLS)).await;
    assert_eq!(right["warnings"], json!([]), "{right}");
    // Only the CA: the server is trusted, but no client certificate is presented.
    let ca_only = "      tls: {ca: \"{{secrets.X_CA}}\"}\n";
    create_flow(&api, &flow("mtls-none", &url, ca_only)).await;
    // No `tls` at all: the server's certificate, issued by a private CA, is not trusted.
    create_flow(&api, &flow("mtls-untrusted", &url, "")).await;
    let stranger_tls = RIGHT_TLS
        .replace("X_CERT", "STRANGER_CERT")
        .replace("X_KEY", "STRANGER_KEY");
    create_flow(&api, &flow("mtls-stranger", &url, &stranger_tls)).await;

    // The right certificate: two runs, two requests, one handshake (the client is kept).
    for _ in 0..2 {
        let run = run_once(&api, "mtls", &flowd).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["steps"][0]["output"]["body"], "ok", "{run}");
    }
    assert_eq!(seen.requests.load(Ordering::SeqCst), 2);
    assert_eq!(
        seen.handshakes.load(Ordering::SeqCst),
        1,
        "the second run reuses the connection of the first"
    );

    // No certificate, or one the server's CA did not issue: refused, recorded, nothing served.
    for (refused, expected) in [
        ("mtls-none", "the server refused the handshake"),
        ("mtls-stranger", "the server refused the handshake"),
        ("mtls-untrusted", "the server's certificate is not trusted"),
        ("mtls-mismatch", "not the private key of the certificate"),
    ] {
        let run = run_once(&api, refused, &flowd).await;
        assert_eq!(run["status"], "failed", "{refused}: {run}");
        let error = run["steps"][0]["error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{refused}: {run}");
        let attempt_error = run["steps"][0]["attempts"][0]["error"].as_str();
        assert_eq!(attempt_error, Some(error), "{refused}: {run}");
    }
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        2,
        "no refused client was served"
    );
    assert!(seen.refused.load(Ordering::SeqCst) >= 3);

    // Nothing of the identity in the log or in what the API shows.
    let (lines, _) = flowd.output_lines();
    let mut shown = lines.join("\n");
    shown.push_str(
        &api.get_json("/api/v1/runs")
            .await
            .expect("runs")
            .to_string(),
    );
    shown.push_str(
        &api.get_json("/api/v1/flows")
            .await
            .expect("flows")
            .to_string(),
    );
    for pem in [&client.key, &client.cert, &stranger.key] {
        let body: String = pem.lines().nth(1).unwrap_or_default().to_owned();
        assert!(!shown.contains(&body), "a PEM line was shown");
    }
}
