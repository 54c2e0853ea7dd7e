//! Client certificates (two-way TLS): the identity an `http` step presents, its checks, and the
//! HTTP clients built for each identity.
//!
//! A reqwest client carries its TLS identity for its whole life, so each identity gets its own
//! client (and connection pool), built on first use and kept: later attempts with the same
//! certificate, key and CA reuse its connections. The cache is keyed by a SHA-256 of the three
//! PEM texts, held only in this process's memory and never stored, logged or shown (it is derived
//! from a secret). It holds at most [`MAX_IDENTITIES`] clients; past that it starts over, which
//! costs new handshakes, never correctness.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Identities whose clients are kept at once.
pub const MAX_IDENTITIES: usize = 64;

/// What a step presents in the TLS handshake: a PEM certificate (chain, leaf first) with its PEM
/// private key, and PEM certificates of a private CA to trust for the server; either or both.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// The certificate and its key; `None`: no client certificate (only `ca`).
    pub identity: Option<(String, String)>,
    pub ca: Option<String>,
}

// Debug output ends up in logs: nothing of the identity is printed.
impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("identity", &self.identity.is_some())
            .field("ca", &self.ca.is_some())
            .finish_non_exhaustive()
    }
}

/// Why an identity cannot be used. The messages name the part and the problem, never content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsProblem {
    #[error("`client_cert` holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    #[error("`client_cert` is not valid PEM: {0}")]
    BadCertificatePem(String),
    #[error("`client_key` holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)")]
    NoKey,
    #[error("`client_key` is not valid PEM: {0}")]
    BadKeyPem(String),
    #[error("`client_key` cannot be used: {0}")]
    UnusableKey(String),
    #[error("`client_cert` cannot be read as an X.509 certificate: {0}")]
    UnreadableCertificate(String),
    #[error("`client_key` is not the private key of the certificate in `client_cert`")]
    KeyMismatch,
    #[error("`ca` holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCaCertificate,
    #[error("`ca` is not valid PEM: {0}")]
    BadCaPem(String),
}

/// Checks that the certificate and key parse and belong together, and that the CA parses.
pub fn check(tls: &ClientTls) -> Result<(), TlsProblem> {
    if let Some(ca) = &tls.ca {
        certificates(ca)
            .map_err(TlsProblem::BadCaPem)?
            .ok_or(TlsProblem::NoCaCertificate)?;
    }
    let Some((cert, key)) = &tls.identity else {
        return Ok(());
    };
    let certs = certificates(cert)
        .map_err(TlsProblem::BadCertificatePem)?
        .ok_or(TlsProblem::NoCertificate)?;
    let key = private_key(key)?;
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsProblem::UnusableKey(e.to_string()))?;
    match rustls::sign::CertifiedKey::new(certs, signing_key).keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsProblem::KeyMismatch)
        }
        Err(other) => Err(TlsProblem::UnreadableCertificate(other.to_string())),
    }
}

/// The certificates of a PEM text; `None` when it holds none.
fn certificates(pem: &str) -> Result<Option<Vec<CertificateDer<'static>>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(&e))?;
    Ok((!certs.is_empty()).then_some(certs))
}

fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsProblem> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsProblem::NoKey,
        other => TlsProblem::BadKeyPem(pem_error(&other)),
    })
}

/// The kind of PEM problem, without the text around it.
fn pem_error(error: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match error {
        Error::MissingSectionEnd { .. } => "a section has no END line".to_owned(),
        Error::IllegalSectionStart { .. } => "a BEGIN line is malformed".to_owned(),
        Error::Base64Decode(_) => "the base64 between BEGIN and END is damaged".to_owned(),
        Error::NoItemsFound => "nothing was found".to_owned(),
        _ => "it cannot be read".to_owned(),
    }
}

/// The in-memory key of an identity in the client cache.
pub(crate) fn identity_key(tls: &ClientTls) -> [u8; 32] {
    let mut hash = Sha256::new();
    let (cert, key) = match &tls.identity {
        Some((cert, key)) => (Some(cert.as_str()), Some(key.as_str())),
        None => (None, None),
    };
    for part in [cert, key, tls.ca.as_deref()] {
        // Absent and empty differ.
        hash.update([u8::from(part.is_some())]);
        let part = part.unwrap_or_default();
        // Lengths first, so moving text from one part to the next gives another key.
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().into()
}

/// The clients built for each identity; see the module comment.
#[derive(Default)]
pub(crate) struct IdentityClients {
    clients: Mutex<HashMap<[u8; 32], reqwest::Client>>,
}

impl IdentityClients {
    /// The client kept for `tls`, if one was built.
    pub fn get(&self, tls: &ClientTls) -> Option<reqwest::Client> {
        self.lock().get(&identity_key(tls)).cloned()
    }

    /// Keeps `client` for `tls`; answers the one kept (an earlier one wins a race).
    pub fn keep(&self, tls: &ClientTls, client: reqwest::Client) -> reqwest::Client {
        let mut clients = self.lock();
        if clients.len() >= MAX_IDENTITIES {
            clients.clear();
        }
        clients.entry(identity_key(tls)).or_insert(client).clone()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], reqwest::Client>> {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl fmt::Debug for IdentityClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityClients({})", self.len())
    }
}

/// Adds `tls` to a client builder: the identity, and the CA merged with the usual roots.
pub(crate) fn configure(
    builder: reqwest::ClientBuilder,
    tls: &ClientTls,
) -> Result<reqwest::ClientBuilder, String> {
    check(tls).map_err(|e| format!("the client certificate cannot be used: {e}"))?;
    let mut builder = builder;
    if let Some((cert, key)) = &tls.identity {
        let identity = reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes())
            .map_err(|e| format!("the client certificate cannot be used: {e}"))?;
        builder = builder.identity(identity);
    }
    if let Some(ca) = &tls.ca {
        let roots = reqwest::Certificate::from_pem_bundle(ca.as_bytes())
            .map_err(|e| format!("the `ca` certificates cannot be used: {e}"))?;
        builder = builder.tls_certs_merge(roots);
    }
    Ok(builder)
}

/// What a failed handshake means for the flow's author, when the transport error came from TLS.
pub(crate) fn handshake_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let tls = find_tls_error(err)?;
    let hint = match tls {
        rustls::Error::AlertReceived(_) => {
            "; the server refused the handshake: if it asks for a client certificate, check the step's `tls.client_cert` and `tls.client_key` (and that its CA issued them)"
        }
        rustls::Error::InvalidCertificate(_) => {
            "; the server's certificate is not trusted: for a private CA, set the step's `tls.ca`"
        }
        _ => "",
    };
    Some(format!("TLS handshake failed: {tls}{hint}"))
}

/// The TLS error in a transport error's causes.
fn find_tls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // io::Error hides its inner error from `source()`: look inside it explicitly.
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
        if let Some(found) = inner.and_then(|inner| find_tls_error(inner)) {
            return Some(found);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOT_PEM: &str = "just text";

    #[test]
    fn missing_and_damaged_pem_are_named() {
        let tls = |cert: &str, key: &str| ClientTls {
            identity: Some((cert.to_owned(), key.to_owned())),
            ca: None,
        };
        assert_eq!(
            check(&tls(NOT_PEM, NOT_PEM)),
            Err(TlsProblem::NoCertificate)
        );
        let damaged = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            check(&tls(damaged, NOT_PEM)),
            Err(TlsProblem::BadCertificatePem(_))
        ));
    }

    fn identity() -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["client".to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("certificate");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_certificate_and_its_key_match_and_another_key_does_not() {
        let (cert, key) = identity();
        let (other_cert, other_key) = identity();
        let tls = |identity: (String, String), ca: Option<String>| ClientTls {
            identity: Some(identity),
            ca,
        };
        assert_eq!(check(&tls((cert.clone(), key.clone()), None)), Ok(()));
        assert_eq!(
            check(&tls((cert.clone(), other_key), Some(other_cert.clone()))),
            Err(TlsProblem::KeyMismatch)
        );
        assert_eq!(
            check(&tls((cert.clone(), cert.clone()), None)),
            Err(TlsProblem::NoKey)
        );
        assert_eq!(
            check(&tls((cert, key), Some(NOT_PEM.to_owned()))),
            Err(TlsProblem::NoCaCertificate)
        );
        let ca_only = ClientTls {
            identity: None,
            ca: Some(other_cert),
        };
        assert_eq!(check(&ca_only), Ok(()));
    }

    #[test]
    fn debug_output_and_cache_key_hide_the_identity() {
        let tls = ClientTls {
            identity: Some(("CERT-TEXT".to_owned(), "KEY-TEXT".to_owned())),
            ca: Some("CA-TEXT".to_owned()),
        };
        let shown = format!("{tls:?}");
        assert!(!shown.contains("TEXT"), "{shown}");
        let moved = ClientTls {
            identity: Some(("CERT-TEXTK".to_owned(), "EY-TEXT".to_owned())),
            ..tls.clone()
        };
        assert_ne!(identity_key(&tls), identity_key(&moved));
        let ca_only = ClientTls {
            identity: None,
            ..tls.clone()
        };
        assert_ne!(identity_key(&tls), identity_key(&ca_only));
        assert_eq!(identity_key(&tls), identity_key(&tls.clone()));
    }
}
