//! A stack's PKI, on disk as the components read it: one CA signs the webhooks'
//! and the relay's serving certificates and every cluster's client certificate.
//! Files: `ca.crt` (and `ca.key`), `relay.crt`/`.key`, `<cluster>.crt`/`.key`,
//! `<stem>.crt`/`.key` per webhook; keys are written `0600`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use secret_relay_certs::{Ca, IssuedCert, TlsFiles, Validity};

use crate::stack::WEBHOOK_SERVICE;

/// A CA and the directory its certificates are written to.
pub struct Pki {
    /// The CA.
    pub ca: Ca,
    dir: PathBuf,
}

impl Pki {
    /// A new CA named `name`, written to `dir/ca.crt` and `dir/ca.key`.
    pub fn generate(dir: &Path, name: &str) -> anyhow::Result<Pki> {
        Pki::with_ca(dir, Ca::generate(name, Validity::ca_default())?)
    }

    /// The CA made elsewhere (`cert_pem`, `key_pem`: a deployed stack's), written to
    /// `dir/ca.crt` and `dir/ca.key`.
    pub fn open(dir: &Path, cert_pem: &str, key_pem: &str) -> anyhow::Result<Pki> {
        let ca = Ca::from_pem(cert_pem, key_pem).context("failed to load the CA")?;
        Pki::with_ca(dir, ca)
    }

    fn with_ca(dir: &Path, ca: Ca) -> anyhow::Result<Pki> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        std::fs::write(dir.join("ca.crt"), ca.cert_pem())?;
        write_private(&dir.join("ca.key"), ca.key_pem())?;
        Ok(Pki {
            ca,
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `dir/ca.crt`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Client certificates for `clusters`: `<cluster>.crt` and `.key`.
    pub fn issue_clusters(&self, clusters: &[String]) -> anyhow::Result<()> {
        for name in clusters {
            let cert = self.ca.issue_cluster(name, Validity::default())?;
            self.write(name, &cert)?;
        }
        Ok(())
    }

    /// The relay's serving certificate (`relay.crt`, for `localhost` and
    /// 127.0.0.1), and the files it serves with: clients must chain to the CA.
    pub fn issue_relay(&self) -> anyhow::Result<TlsFiles> {
        let cert = self.ca.issue_server(
            "secret-relay",
            &["localhost".to_owned()],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            Validity::default(),
        )?;
        let mut files = self.write("relay", &cert)?;
        files.client_ca = Some(self.ca_file());
        Ok(files)
    }

    /// A webhook's serving certificate for its Service name, as `<stem>.crt`.
    pub fn issue_webhook(&self, stem: &str) -> anyhow::Result<TlsFiles> {
        let cert = self.ca.issue_server(
            WEBHOOK_SERVICE,
            &[WEBHOOK_SERVICE.to_owned()],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            Validity::default(),
        )?;
        self.write(stem, &cert)
    }

    /// Writes `cert` as `<stem>.crt` and `<stem>.key`.
    pub fn write(&self, stem: &str, cert: &IssuedCert) -> anyhow::Result<TlsFiles> {
        let files = TlsFiles {
            cert: self.dir.join(format!("{stem}.crt")),
            key: self.dir.join(format!("{stem}.key")),
            client_ca: None,
        };
        std::fs::write(&files.cert, &cert.cert_pem)?;
        write_private(&files.key, &cert.key_pem)?;
        Ok(files)
    }

    /// A kubeconfig at `path` that reaches the relay at `relay` as cluster `cluster`
    /// (its client certificate), in `namespace`.
    pub fn relay_kubeconfig(
        &self,
        relay: SocketAddr,
        cluster: &str,
        namespace: &str,
        path: &Path,
    ) -> anyhow::Result<PathBuf> {
        let b64 = |p: PathBuf| -> anyhow::Result<String> {
            let bytes =
                std::fs::read(&p).with_context(|| format!("failed to read {}", p.display()))?;
            Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
        };
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: relay\n  cluster:\n    server: https://{relay}\n    certificate-authority-data: {}\nusers:\n- name: {cluster}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: {cluster}\n  context: {{cluster: relay, user: {cluster}, namespace: {namespace}}}\ncurrent-context: {cluster}\n",
            b64(self.ca_file())?,
            b64(self.dir.join(format!("{cluster}.crt")))?,
            b64(self.dir.join(format!("{cluster}.key")))?,
        );
        write_private(path, &text)?;
        Ok(path.to_path_buf())
    }
}

/// Writes a file only its owner reads.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents)
        .with_context(|| format!("failed to write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
