//! A TLS listener's server side: TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`
//! (or `http/1.1` alone), and the certificate chosen by the client's SNI: an exact
//! name, then a wildcard, else the listener's first certificate. Among several
//! certificates for one name (ECDSA and RSA, say) the client gets the first it can
//! verify a signature of.

use super::certs::CertPair;
use pingora_core::listeners::tls::Acceptor;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::version::{TLS12, TLS13};
use rustls::{ServerConfig, SignatureScheme};
use std::collections::HashMap;
use std::sync::Arc;

/// The certificates for one name, in the config's order.
type Candidates = Vec<Arc<CertifiedKey>>;

#[derive(Debug)]
struct BySni {
    exact: HashMap<String, Candidates>,
    /// `*.example.com` under `example.com`.
    wildcard: HashMap<String, Candidates>,
    /// Every certificate, the listener's first first: for unknown names.
    default: Candidates,
}

impl BySni {
    fn new(certs: &[CertPair]) -> Option<Self> {
        certs.first()?;
        let mut exact: HashMap<String, Candidates> = HashMap::new();
        let mut wildcard: HashMap<String, Candidates> = HashMap::new();
        for cert in certs {
            for name in &cert.names {
                let map = match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_string()),
                    None => exact.entry(name.clone()),
                };
                map.or_default().push(cert.key.clone());
            }
        }
        Some(BySni {
            exact,
            wildcard,
            default: certs.iter().map(|c| c.key.clone()).collect(),
        })
    }

    /// For `sni`, the first certificate (exact names before a wildcard, as the config
    /// lists them) whose key can sign with one of `schemes`; when none can, the first
    /// for the name, and the handshake fails as it must.
    fn pick(&self, sni: Option<&str>, schemes: &[SignatureScheme]) -> Arc<CertifiedKey> {
        let name = sni.map(str::to_ascii_lowercase);
        let exact = name.as_ref().and_then(|n| self.exact.get(n));
        let wildcard = name
            .as_ref()
            .and_then(|n| n.split_once('.'))
            .and_then(|(_, parent)| self.wildcard.get(parent));
        let usable = |cert: &&Arc<CertifiedKey>| cert.key.choose_scheme(schemes).is_some();
        let chosen = match exact.or(wildcard) {
            Some(most_specific) => exact
                .into_iter()
                .chain(wildcard)
                .flatten()
                .find(usable)
                .unwrap_or(&most_specific[0]),
            None => self.default.iter().find(usable).unwrap_or(&self.default[0]),
        };
        chosen.clone()
    }
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls has already narrowed the schemes to the cipher suites the client offers
        // (on TLS 1.2, an ECDHE-RSA suite alone leaves RSA schemes only).
        Some(self.pick(hello.server_name(), hello.signature_schemes()))
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
    use rustls::sign::{Signer, SigningKey};
    use SignatureScheme::{ECDSA_NISTP256_SHA256, RSA_PKCS1_SHA256, RSA_PSS_SHA256};

    const ECDSA: &[SignatureScheme] = &[ECDSA_NISTP256_SHA256];
    const RSA: &[SignatureScheme] = &[RSA_PSS_SHA256, RSA_PKCS1_SHA256];
    const BOTH: &[SignatureScheme] = &[ECDSA_NISTP256_SHA256, RSA_PSS_SHA256];

    /// A key that signs with `schemes` (and never signs: the resolver only asks which).
    #[derive(Debug)]
    struct FakeKey(&'static [SignatureScheme]);

    #[derive(Debug)]
    struct FakeSigner(SignatureScheme);

    impl SigningKey for FakeKey {
        fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
            let scheme = self.0.iter().find(|s| offered.contains(s))?;
            Some(Box::new(FakeSigner(*scheme)))
        }
        fn algorithm(&self) -> rustls::SignatureAlgorithm {
            match self.0 {
                ECDSA => rustls::SignatureAlgorithm::ECDSA,
                _ => rustls::SignatureAlgorithm::RSA,
            }
        }
    }

    impl Signer for FakeSigner {
        fn sign(&self, _: &[u8]) -> Result<Vec<u8>, rustls::Error> {
            Err(rustls::Error::General("not a real key".into()))
        }
        fn scheme(&self) -> SignatureScheme {
            self.0
        }
    }

    /// A certificate whose chain is the byte `n`, for `names`, with a key signing with `schemes`.
    fn pair(n: u8, names: &[&str], schemes: &'static [SignatureScheme]) -> CertPair {
        CertPair {
            cert_file: format!("{n}.pem"),
            key: Arc::new(CertifiedKey::new(
                vec![rustls::pki_types::CertificateDer::from(vec![n])],
                Arc::new(FakeKey(schemes)),
            )),
            names: names.iter().map(|s| s.to_string()).collect(),
            not_after: std::time::SystemTime::now(),
            key_der: Vec::new(),
        }
    }

    fn first_byte(k: Arc<CertifiedKey>) -> u8 {
        k.cert[0].as_ref()[0]
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_the_first() {
        let certs = [
            pair(1, &["api.example.com"], ECDSA),
            pair(2, &["admin.example.com", "*.example.org"], ECDSA),
        ];
        let sni = BySni::new(&certs).expect("two certificates");
        let pick = |name| first_byte(sni.pick(name, BOTH));
        assert_eq!(pick(Some("ADMIN.example.com")), 2);
        assert_eq!(pick(Some("api.example.com")), 1);
        assert_eq!(pick(Some("x.example.org")), 2);
        assert_eq!(pick(Some("a.b.example.org")), 1, "a wildcard covers one label");
        assert_eq!(pick(Some("unknown.test")), 1);
        assert_eq!(pick(None), 1);
    }

    #[test]
    fn among_certificates_for_a_name_the_client_gets_the_first_it_can_verify() {
        let certs = [
            pair(1, &["api.example.com"], ECDSA),
            pair(2, &["api.example.com"], RSA),
            pair(3, &["*.example.com"], RSA),
            pair(4, &["other.example.org"], ECDSA),
        ];
        let sni = BySni::new(&certs).expect("certificates");
        let pick = |name, schemes| first_byte(sni.pick(name, schemes));
        assert_eq!(pick(Some("api.example.com"), BOTH), 1, "the config's order first");
        assert_eq!(pick(Some("api.example.com"), ECDSA), 1);
        assert_eq!(pick(Some("api.example.com"), RSA), 2);
        assert_eq!(
            pick(Some("api.example.com"), &[SignatureScheme::ED25519]),
            1,
            "none usable: the first for the name, and the handshake fails"
        );
        let only_wildcard = [
            pair(1, &["api.example.com"], ECDSA),
            pair(2, &["*.example.com"], RSA),
        ];
        let sni_wild = BySni::new(&only_wildcard).expect("certificates");
        assert_eq!(
            first_byte(sni_wild.pick(Some("api.example.com"), RSA)),
            2,
            "a wildcard for the name before a certificate the client cannot use"
        );
        assert_eq!(
            pick(Some("unknown.test"), ECDSA),
            1,
            "unknown names: the first usable"
        );
        assert_eq!(pick(None, RSA), 2);
        assert_eq!(
            pick(Some("other.example.org"), RSA),
            4,
            "never another name's certificate"
        );
    }
}
