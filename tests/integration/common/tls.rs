//! TLS test fixtures: a throwaway PKI made with the openssl CLI, a rustls client for
//! raw exchanges over TLS, and upstream servers: HTTPS (Python's `ssl`, optionally
//! asking for a client certificate) and HTTP/2 in the clear answering with trailers
//! as gRPC does (the `h2` crate).

use super::process::Proc;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;

/// A CA, a second CA nobody trusts, and leaf certificates signed by the first.
pub struct Pki {
    dir: tempfile::TempDir,
}

/// A new P-256 key, unencrypted, for `openssl req`.
const NEW_EC_KEY: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
/// A new RSA-2048 key, unencrypted, for `openssl req`.
const NEW_RSA_KEY: [&str; 3] = ["-newkey", "rsa:2048", "-nodes"];

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    pub fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        for ca in ["ca", "other-ca"] {
            let (key, pem, subj) = (format!("{ca}.key"), format!("{ca}.pem"), format!("/CN={ca}"));
            let tail = ["-keyout", &key, "-out", &pem, "-days", "30", "-subj", &subj];
            openssl(
                pki.dir.path(),
                &[&["req", "-x509"], &NEW_EC_KEY[..], &tail].concat(),
            );
        }
        for name in ["api.test", "admin.test", "upstream.test"] {
            pki.leaf(name, "ca", 365, "serverAuth");
        }
        pki.leaf("client.test", "ca", 365, "clientAuth");
        pki.leaf("soon.test", "ca", 3, "serverAuth");
        pki.leaf("stranger.test", "other-ca", 365, "serverAuth");
        pki
    }

    /// `name.pem` and `name.key`, for `name` as a DNS name, valid for `days`.
    pub fn leaf(&self, name: &str, ca: &str, days: u32, usage: &str) {
        self.issue(name, name, &NEW_EC_KEY, ca, days, usage);
    }

    /// `file.pem` and `file.key`: an RSA-2048 server certificate for `name` (beside
    /// the P-256 one `leaf` makes for the same name, say).
    pub fn rsa_leaf(&self, file: &str, name: &str) {
        self.issue(file, name, &NEW_RSA_KEY, "ca", 365, "serverAuth");
    }

    fn issue(&self, file: &str, name: &str, new_key: &[&str], ca: &str, days: u32, usage: &str) {
        let dir = self.dir.path();
        std::fs::write(
            dir.join(format!("{file}.ext")),
            format!("subjectAltName=DNS:{name}\nextendedKeyUsage={usage}\n"),
        )
        .expect("ext file");
        let (key, csr, subj) = (
            format!("{file}.key"),
            format!("{file}.csr"),
            format!("/CN={name}"),
        );
        let tail = ["-keyout", &key, "-out", &csr, "-subj", &subj];
        openssl(dir, &[&["req"], new_key, &tail].concat());
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{file}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-out",
                &format!("{file}.pem"),
                "-days",
                &days.to_string(),
                "-extfile",
                &format!("{file}.ext"),
            ],
        );
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    /// A `listen` entry serving `names`' certificates (the first is the default) on `addr`.
    pub fn listener(&self, addr: SocketAddr, names: &[&str], more: &str) -> String {
        let certs: Vec<String> = names
            .iter()
            .map(|n| {
                format!(
                    "{{ cert_file: {}, key_file: {} }}",
                    self.path(&format!("{n}.pem")),
                    self.path(&format!("{n}.key"))
                )
            })
            .collect();
        format!(
            "{{ addr: \"{addr}\", tls: {{ certs: [{}] }}{more} }}",
            certs.join(", ")
        )
    }
}

pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to `addr` trusting the PKI's CA, sending `sni`, offering `alpn`.
pub fn tls_connect(pki: &Pki, addr: SocketAddr, sni: &str, alpn: &[&[u8]]) -> Result<TlsStream, String> {
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tls_over(pki, tcp, sni, alpn)
}

/// A TLS handshake over a socket already connected (after a PROXY header, say).
pub fn tls_over(pki: &Pki, tcp: TcpStream, sni: &str, alpn: &[&[u8]]) -> Result<TlsStream, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(pki.path("ca.pem")).expect("ca.pem") {
        roots.add(cert.expect("ca cert")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| format!("handshake: {e}"))?;
    }
    Ok(stream)
}

use rustls::pki_types::pem::PemObject;

const HTTPS_SERVER: &str = r#"
import http.server, ssl, sys
port, cert, key, client_ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        peer = self.connection.getpeercert()
        who = dict(x[0] for x in peer["subject"])["commonName"] if peer else "-"
        body = ("tls upstream; client " + who + "; host " + str(self.headers.get("host"))).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
if client_ca != "-":
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(client_ca)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// An HTTPS server (Python's `ssl`) with `name`'s certificate, answering who it is
/// and which client certificate it saw; with `client_ca`, it requires one.
pub struct HttpsUpstream {
    pub addr: SocketAddr,
    _child: Proc,
}

impl HttpsUpstream {
    pub fn start(pki: &Pki, name: &str, client_ca: Option<&str>) -> HttpsUpstream {
        let mut child = Command::new("python3")
            .args([
                "-c",
                HTTPS_SERVER,
                "0",
                &pki.path(&format!("{name}.pem")),
                &pki.path(&format!("{name}.key")),
                &client_ca.map_or("-".to_string(), |ca| pki.path(ca)),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("port line");
        let port: u16 = line.trim().parse().expect("port");
        HttpsUpstream {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _child: Proc::from(child),
        }
    }
}

/// An HTTP/2 server in the clear (prior knowledge) answering every request as a gRPC
/// server does: headers, one data frame, then trailers with the status.
pub fn start_h2_upstream() -> SocketAddr {
    let listener = super::ports::listener();
    let addr = listener.local_addr().expect("h2 addr");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(socket).await else {
                        return;
                    };
                    while let Some(Ok((request, mut respond))) = conn.accept().await {
                        let path = request.uri().path().to_string();
                        let response = http::Response::builder()
                            .status(200)
                            .header("content-type", "application/grpc")
                            .body(())
                            .expect("response");
                        let Ok(mut send) = respond.send_response(response, false) else {
                            continue;
                        };
                        let _ = send.send_data(bytes::Bytes::from(format!("h2 upstream {path}")), false);
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                        trailers.insert("grpc-message", http::HeaderValue::from_static("all good"));
                        let _ = send.send_trailers(trailers);
                    }
                });
            }
        });
    });
    addr
}

/// One request over HTTP/2 in the clear to `addr`: the status, the body, and the trailers.
pub fn h2c_request(addr: SocketAddr, path: &str) -> Result<(u16, String, http::HeaderMap), String> {
    h2c_request_to(addr, &addr.to_string(), path)
}

/// The same, with `authority` as the request's `:authority`.
pub fn h2c_request_to(
    addr: SocketAddr,
    authority: &str,
    path: &str,
) -> Result<(u16, String, http::HeaderMap), String> {
    h2c_request_with(addr, authority, path, &[])
}

/// The same, with `headers` (in order, repeats kept) in the request's header list.
pub fn h2c_request_with(
    addr: SocketAddr,
    authority: &str,
    path: &str,
    headers: &[(String, String)],
) -> Result<(u16, String, http::HeaderMap), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let (mut client, conn) = h2::client::handshake(tcp).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut request = http::Request::builder()
            .uri(format!("http://{authority}{path}"))
            .header("te", "trailers");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request.body(()).map_err(|e| e.to_string())?;
        let (response, _) = client.send_request(request, true).map_err(|e| e.to_string())?;
        let response = response.await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut text = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let _ = body.flow_control().release_capacity(chunk.len());
            text.extend_from_slice(&chunk);
        }
        let trailers = body
            .trailers()
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        Ok((status, String::from_utf8_lossy(&text).into_owned(), trailers))
    })
}
