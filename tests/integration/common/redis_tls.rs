//! A redis-server that speaks only TLS, with certificates made for it by openssl.

use super::ports::{free_port, on_free_ports};
use super::process::Proc;
use super::redis_modes::{acl_args, names_dir, redis_server, spawn};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A redis-server that speaks only TLS (`--port 0`), with a certificate for 127.0.0.1 and
/// localhost from a CA made for it, client certificates optional (or required, `start_mtls`)
/// and, if asked, one ACL user with the default user off. `other_ca_file` is a second,
/// unrelated CA: a client that trusts only it must fail the handshake.
pub struct TlsRedis {
    pub port: u16,
    acl: Option<(String, String)>,
    /// Before `dir`: the process dies before its files go.
    proc: Option<Proc>,
    dir: tempfile::TempDir,
}

impl TlsRedis {
    /// Client certificates required (`--tls-auth-clients yes`), so a client that connects
    /// proves it presented one.
    pub fn start(acl: Option<(&str, &str)>) -> TlsRedis {
        let mut r = TlsRedis {
            port: 0,
            acl: acl.map(|(u, p)| (u.to_string(), p.to_string())),
            proc: None,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        make_certs(r.dir.path());
        let proc = on_free_ports("redis-server (TLS)", || {
            r.port = free_port();
            let dir = r.dir.path();
            let mut cmd = redis_server(0, dir);
            cmd.args(["--tls-port", &r.port.to_string()])
                .arg("--tls-cert-file")
                .arg(dir.join("server.crt"))
                .arg("--tls-key-file")
                .arg(dir.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(r.ca_file())
                .args(["--tls-auth-clients", "yes"]);
            if let Some((user, pass)) = &r.acl {
                acl_args(&mut cmd, user, pass);
            }
            spawn("redis-server (TLS)", cmd, &dir.join("redis.log"), || {
                names_dir(&r.cli(&["CONFIG", "GET", "dir"]), dir)
            })
        });
        r.proc = Some(proc);
        r
    }

    /// "rediss://[user:pass@]127.0.0.1:P/0".
    pub fn url(&self, user_pass: Option<(&str, &str)>) -> String {
        let auth = user_pass.map(|(u, p)| format!("{u}:{p}@")).unwrap_or_default();
        format!("rediss://{auth}127.0.0.1:{}/0", self.port)
    }

    /// The CA that signed the server and client certificates (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// Another self-signed CA, which signed nothing this server or its clients use.
    pub fn other_ca_file(&self) -> PathBuf {
        self.dir.path().join("other-ca.crt")
    }

    pub fn client_cert(&self) -> PathBuf {
        self.dir.path().join("client.crt")
    }

    /// PKCS#8 PEM ("BEGIN PRIVATE KEY"), P-256.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client.key")
    }

    /// `redis-cli` over TLS with the right CA, the client certificate and the ACL user: one
    /// command's output (stdout then stderr), e.g. `cli(&["GET", "k"])`.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["--tls", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("--cacert")
            .arg(self.ca_file())
            .arg("--cert")
            .arg(self.client_cert())
            .arg("--key")
            .arg(self.client_key());
        if let Some((user, pass)) = &self.acl {
            cmd.args(["--user", user, "--pass", pass, "--no-auth-warning"]);
        }
        output_text(&cmd.args(args).stdin(Stdio::null()).output().expect("redis-cli"))
    }
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `openssl ARGS` in `dir`; panics with its output if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "openssl {}:\n{}",
        args.join(" "),
        output_text(&out)
    );
}

/// In `dir`: ca.crt (self-signed, CN floodgate-test-ca), server.crt/.key for IP 127.0.0.1 and
/// DNS localhost, client.crt/.key (both signed by ca.crt) and other-ca.crt (unrelated). P-256
/// keys: quick to make. Leaf certificates are v3 with `CA:FALSE` and an extended key usage, as
/// rustls/webpki insist; the server's name is only in subjectAltName, as they read it.
fn make_certs(dir: &Path) {
    const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    for (name, cn) in [("ca", "floodgate-test-ca"), ("other-ca", "floodgate-other-ca")] {
        let (key, crt, subj) = (format!("{name}.key"), format!("{name}.crt"), format!("/CN={cn}"));
        let mut args = vec!["req", "-x509", "-nodes", "-days", "2", "-subj", &subj];
        args.extend(EC);
        args.extend(["-keyout", &key, "-out", &crt]);
        openssl(dir, &args);
    }
    let leaves = [
        (
            "server",
            "localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "floodgate-test-client", "extendedKeyUsage=clientAuth\n"),
    ];
    for (name, cn, ext) in leaves {
        let (key, csr, crt, extfile) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        std::fs::write(
            dir.join(&extfile),
            format!("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n{ext}"),
        )
        .expect("extfile");
        let subj = format!("/CN={cn}");
        let mut args = vec!["req", "-nodes", "-subj", &subj];
        args.extend(EC);
        args.extend(["-keyout", &key, "-out", &csr]);
        openssl(dir, &args);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &crt,
                "-extfile",
                &extfile,
            ],
        );
    }
}
