//! How floodgate reaches an upstream over TLS: the SNI it sends, certificate
//! verification (on unless turned off; a CA file, else the system's roots), an
//! optional client certificate, and the HTTP version. Applied alike to every
//! proxied request's peer and to the upstream's health check, so a check passes
//! only over the transport requests use.

use super::certs::CertPair;
use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::{BasicPeer, HttpPeer, PeerOptions};
use pingora_core::utils::tls::{parse_x509, CertKey, WrappedX509};
use rustls::pki_types::CertificateDer;
use std::sync::Arc;

/// Requests in flight on one HTTP/2 connection to a target (what most servers allow).
const H2_STREAMS_PER_CONNECTION: usize = 100;

pub struct UpstreamTls {
    /// Sent as SNI and, when verifying, the name the certificate must carry.
    pub sni: String,
    pub verify: bool,
    /// Trust only these CAs; `None`: the system's roots.
    ca: Option<Arc<pingora_core::protocols::tls::CaType>>,
    client_cert: Option<Arc<CertKey>>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("sni", &self.sni)
            .field("verify", &self.verify)
            .field("ca", &self.ca.is_some())
            .field("client_cert", &self.client_cert.is_some())
            .finish()
    }
}

impl UpstreamTls {
    /// From certificates already read and checked (`certs::load_*`).
    pub fn new(
        sni: String,
        verify: bool,
        ca: Option<Vec<CertificateDer<'static>>>,
        client: Option<&CertPair>,
    ) -> Self {
        UpstreamTls {
            sni,
            verify,
            ca: ca.map(|certs| {
                Arc::from(
                    certs
                        .into_iter()
                        .map(|c| WrappedX509::new(c.to_vec(), parse_x509))
                        .collect::<Vec<_>>()
                        .into_boxed_slice(),
                )
            }),
            client_cert: client.map(|pair| Arc::new(CertKey::new(pair.chain_der(), pair.key_der.clone()))),
        }
    }

    fn apply_options(&self, options: &mut PeerOptions) {
        options.verify_cert = self.verify;
        options.verify_hostname = self.verify;
        options.ca = self.ca.clone();
    }
}

/// The transport of one upstream: TLS or not, and HTTP/2 or HTTP/1.1.
#[derive(Debug, Default, Clone)]
pub struct Transport {
    pub tls: Option<Arc<UpstreamTls>>,
    pub http2: bool,
}

impl Transport {
    /// Makes `peer` use this transport.
    pub fn apply(&self, peer: &mut HttpPeer) {
        if let Some(tls) = &self.tls {
            peer.scheme = pingora_core::upstreams::peer::Scheme::HTTPS;
            peer.sni.clone_from(&tls.sni);
            tls.apply_options(&mut peer.options);
            peer.client_cert_key = tls.client_cert.clone();
        }
        if self.http2 {
            // Over TLS, h2 is agreed by ALPN; in the clear it is spoken from the start (h2c).
            peer.options.set_http_version(2, 2);
            peer.options.alpn = ALPN::H2;
            // Pingora's default is one stream per connection: no multiplexing.
            peer.options.max_h2_streams = H2_STREAMS_PER_CONNECTION;
        }
    }

    /// A TCP health check's peer: a TLS handshake too when the upstream uses TLS (with
    /// an SNI: Pingora's basic peer speaks TLS only then).
    pub fn apply_basic(&self, peer: &mut BasicPeer) {
        if let Some(tls) = &self.tls {
            peer.sni.clone_from(&tls.sni);
            tls.apply_options(&mut peer.options);
        }
    }
}
