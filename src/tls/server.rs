//! A TLS listener's server side: TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`
//! (or `http/1.1` alone), and the certificate chosen by the client's SNI: an exact
//! name, then a wildcard, else the listener's first certificate.

use super::certs::CertPair;
use pingora_core::listeners::tls::Acceptor;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::version::{TLS12, TLS13};
use rustls::ServerConfig;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
struct BySni {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl BySni {
    fn new(certs: &[CertPair]) -> Option<Self> {
        let default = certs.first()?.key.clone();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        // The first certificate naming a host wins, as the config lists them.
        for cert in certs {
            for name in &cert.names {
                let map = match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_string()),
                    None => exact.entry(name.clone()),
                };
                map.or_insert_with(|| cert.key.clone());
            }
        }
        Some(BySni {
            exact,
            wildcard,
            default,
        })
    }

    fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = sni.map(str::to_ascii_lowercase) else {
            return self.default.clone();
        };
        self.exact
            .get(&name)
            .or_else(|| {
                name.split_once('.')
                    .and_then(|(_, parent)| self.wildcard.get(parent))
            })
            .unwrap_or(&self.default)
            .clone()
    }
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

/// The acceptor of a listener serving `certs` (at least one: the config ensures it).
pub fn acceptor(certs: &[CertPair], h2: bool) -> Option<Acceptor> {
    let resolver = BySni::new(certs)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS12, &TLS13])
        .ok()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = if h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    // Stateless resumption: a returning client skips the key exchange on any worker.
    if let Ok(ticketer) = rustls::crypto::ring::Ticketer::new() {
        config.ticketer = ticketer;
    }
    Some(Acceptor::from_server_config(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Arc<CertifiedKey> {
        // Only identity matters here: the resolver never looks inside.
        #[derive(Debug)]
        struct NoKey;
        impl rustls::sign::SigningKey for NoKey {
            fn choose_scheme(&self, _: &[rustls::SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
                None
            }
            fn algorithm(&self) -> rustls::SignatureAlgorithm {
                rustls::SignatureAlgorithm::ECDSA
            }
        }
        Arc::new(CertifiedKey::new(
            vec![rustls::pki_types::CertificateDer::from(vec![n])],
            Arc::new(NoKey),
        ))
    }

    fn pair(n: u8, names: &[&str]) -> CertPair {
        CertPair {
            cert_file: format!("{n}.pem"),
            key: key(n),
            names: names.iter().map(|s| s.to_string()).collect(),
            not_after: std::time::SystemTime::now(),
            key_der: Vec::new(),
        }
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_the_first() {
        let certs = [
            pair(1, &["api.example.com"]),
            pair(2, &["admin.example.com", "*.example.org"]),
        ];
        let sni = BySni::new(&certs).expect("two certificates");
        let first_byte = |k: Arc<CertifiedKey>| k.cert[0].as_ref()[0];
        assert_eq!(first_byte(sni.pick(Some("ADMIN.example.com"))), 2);
        assert_eq!(first_byte(sni.pick(Some("api.example.com"))), 1);
        assert_eq!(first_byte(sni.pick(Some("x.example.org"))), 2);
        assert_eq!(
            first_byte(sni.pick(Some("a.b.example.org"))),
            1,
            "a wildcard covers one label"
        );
        assert_eq!(first_byte(sni.pick(Some("unknown.test"))), 1);
        assert_eq!(first_byte(sni.pick(None)), 1);
    }
}
