//! Certificates and keys read from PEM files, checked once when the config is
//! loaded: the chain parses, the key belongs to the leaf, and its expiry and names
//! are known. A mismatched pair is a config error under `-t`, not a failed
//! handshake hours later.

use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate chain with its key, ready to serve or to present to an upstream.
#[derive(Clone, Debug)]
pub struct CertPair {
    pub cert_file: String,
    pub key: Arc<CertifiedKey>,
    /// The leaf's DNS names (subject alternative names, else its common name), lower case.
    pub names: Vec<String>,
    pub not_after: SystemTime,
    /// The key as DER, for Pingora's client-certificate type.
    pub key_der: Vec<u8>,
}

impl CertPair {
    pub fn chain_der(&self) -> Vec<Vec<u8>> {
        self.key.cert.iter().map(|c| c.to_vec()).collect()
    }

    /// `Some(warning)` when the certificate has expired or expires within `within`.
    pub fn expiry_warning(&self, now: SystemTime, within: Duration) -> Option<String> {
        let days = |d: Duration| d.as_secs() / 86_400;
        match self.not_after.duration_since(now) {
            Err(_) => Some(format!("{} has expired", self.cert_file)),
            Ok(left) if left < within => Some(format!("{} expires in {} days", self.cert_file, days(left))),
            Ok(_) => None,
        }
    }
}

/// Reads a certificate chain and its private key.
pub fn load_pair(cert_file: &str, key_file: &str) -> Result<CertPair, String> {
    let chain = load_chain(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("{key_file}: no private key read ({e})"))?;
    let key_der = key.secret_der().to_vec();
    let certified = CertifiedKey::from_der(chain.clone(), key, &default_provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!("{key_file} is not the key of {cert_file}"),
        other => format!("{key_file}: {other}"),
    })?;
    let (names, not_after) = leaf_facts(cert_file, &chain[0])?;
    Ok(CertPair {
        cert_file: cert_file.to_string(),
        key: Arc::new(certified),
        names,
        not_after,
        key_der,
    })
}

/// Reads the certificates of a PEM file (a chain, or a CA bundle).
pub fn load_chain(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{path}: {e}"))?;
    if chain.is_empty() {
        return Err(format!("{path}: no PEM certificate in it"));
    }
    for cert in &chain {
        X509Certificate::from_der(cert).map_err(|e| format!("{path}: a certificate does not parse ({e})"))?;
    }
    Ok(chain)
}

fn leaf_facts(path: &str, leaf: &CertificateDer<'_>) -> Result<(Vec<String>, SystemTime), String> {
    let (_, cert) = X509Certificate::from_der(leaf)
        .map_err(|e| format!("{path}: the certificate does not parse ({e})"))?;
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    let secs = cert.validity().not_after.timestamp().max(0) as u64;
    Ok((names, UNIX_EPOCH + Duration::from_secs(secs)))
}
