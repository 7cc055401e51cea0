//! Server TLS material that rotates without a restart.
//!
//! The server config is built once around a resolver holding `ArcSwap<CertifiedKey>`
//! and, with client authentication, a verifier whose trusted roots swap atomically.
//! rustls asks both on every handshake, so a reload changes what new handshakes see
//! while open connections go on with what they negotiated.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::task::JoinHandle;

use crate::config::{ClientAuth, TlsConfigError, provider, root_store};
use crate::issue::{LoadCertError, parse_certs_pem, parse_key_pem};

/// The files a server's TLS material is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
    /// CA bundle that client certificates must chain to, PEM.
    pub client_ca: Option<PathBuf>,
}

/// Failed to load or reload TLS material; the material in use stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadTlsError {
    /// A file could not be read.
    #[error("failed to read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file did not parse.
    #[error("failed to load {path}")]
    Load {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: LoadCertError,
    },
    /// The key does not belong to the certificate, or rustls refused it.
    #[error("failed to load the key {key} for certificate {cert}")]
    Key {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
    /// The certificate is outside its validity period.
    #[error("failed to load {path}: the certificate is {why}")]
    Validity {
        /// The certificate file.
        path: PathBuf,
        /// `expired` or `not yet valid`.
        why: &'static str,
    },
    /// The client CA bundle could not be made into a verifier.
    #[error("failed to load client CA bundle {path}")]
    ClientCa {
        /// The bundle file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: TlsConfigError,
    },
    /// Client authentication was requested without a client CA file.
    #[error("failed to build TLS config: client authentication needs a client CA file")]
    MissingClientCa,
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The files are the ones in use.
    Unchanged,
    /// New material is in use for new handshakes.
    Rotated,
}

/// A server config whose certificate, key and client CA bundle are re-read from files.
#[derive(Debug)]
pub struct ReloadingServerTls {
    files: TlsFiles,
    resolver: Arc<RotatingCertResolver>,
    verifier: Option<Arc<RotatingClientVerifier>>,
    config: Arc<ServerConfig>,
    provider: Arc<CryptoProvider>,
    seen: Mutex<FileContents>,
    /// Shared with the accept loop, which notes it before each handshake.
    rotations: Arc<AtomicU64>,
    /// When the served certificate expires, in seconds since the Unix epoch.
    not_after: AtomicI64,
    /// Why the newest material on disk is refused, while it is.
    refused: Mutex<Option<String>>,
}

#[derive(Debug, Default, PartialEq, Eq, Clone)]
struct FileContents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

#[derive(Debug)]
struct RotatingCertResolver {
    current: ArcSwap<CertifiedKey>,
}

#[derive(Debug)]
struct RotatingClientVerifier {
    current: ArcSwap<Arc<dyn ClientCertVerifier>>,
    mandatory: bool,
}

impl ReloadingServerTls {
    /// Loads the files and builds the config once, on [`provider`]. Fails if the first
    /// material is invalid.
    pub fn new(
        files: TlsFiles,
        client_auth: ClientAuth,
        alpn: &[&[u8]],
    ) -> Result<Arc<ReloadingServerTls>, ReloadTlsError> {
        ReloadingServerTls::with_provider(files, client_auth, alpn, provider())
    }

    /// [`ReloadingServerTls::new`] on another crypto provider (benchmarks compare
    /// providers with it; the servers use [`ReloadingServerTls::new`]).
    pub fn with_provider(
        files: TlsFiles,
        client_auth: ClientAuth,
        alpn: &[&[u8]],
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<ReloadingServerTls>, ReloadTlsError> {
        let contents = read_files(&files)?;
        let key = certified_key(&files, &contents, &provider)?;
        let not_after = leaf_not_after(&key);
        let resolver = Arc::new(RotatingCertResolver {
            current: ArcSwap::from_pointee(key),
        });
        let verifier = match client_auth {
            ClientAuth::None => None,
            ClientAuth::Optional | ClientAuth::Required => {
                let mandatory = client_auth == ClientAuth::Required;
                let inner = client_verifier(&files, &contents, mandatory, &provider)?;
                Some(Arc::new(RotatingClientVerifier {
                    current: ArcSwap::from_pointee(inner),
                    mandatory,
                }))
            }
        };
        // Protocol versions come from the provider's safe defaults; they cannot be refused.
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|source| ReloadTlsError::Key {
                cert: files.cert.clone(),
                key: files.key.clone(),
                source,
            })?;
        let builder = match &verifier {
            None => builder.with_no_client_auth(),
            Some(v) => builder.with_client_cert_verifier(v.clone()),
        };
        let mut config = builder.with_cert_resolver(resolver.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(ReloadingServerTls {
            files,
            resolver,
            verifier,
            config: Arc::new(config),
            provider,
            seen: Mutex::new(contents),
            rotations: Arc::new(AtomicU64::new(0)),
            not_after: AtomicI64::new(not_after),
            refused: Mutex::new(None),
        }))
    }

    /// The webhook's server TLS: no client certificates, ALPN `http/1.1` only
    /// (kube-apiserver calls webhooks over HTTP/1.1).
    pub fn webhook(files: TlsFiles) -> Result<Arc<ReloadingServerTls>, ReloadTlsError> {
        ReloadingServerTls::new(files, ClientAuth::None, &[b"http/1.1"])
    }

    /// The relay's server TLS: a client certificate chaining to the CA is required;
    /// ALPN `h2` and `http/1.1`.
    pub fn relay(files: TlsFiles) -> Result<Arc<ReloadingServerTls>, ReloadTlsError> {
        if files.client_ca.is_none() {
            return Err(ReloadTlsError::MissingClientCa);
        }
        ReloadingServerTls::new(files, ClientAuth::Required, &[b"h2", b"http/1.1"])
    }

    /// The server config; hand it to the acceptor once, it follows every rotation.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// How many times new material was swapped in since start.
    pub fn rotations(&self) -> u64 {
        self.rotations.load(Ordering::Acquire)
    }

    /// The rotation count itself, for an accept loop to note before each handshake
    /// which material (and client CA) the handshake verifies against.
    pub fn rotation_counter(&self) -> Arc<AtomicU64> {
        self.rotations.clone()
    }

    /// Verifies a client certificate chain (leaf first) against the client CA
    /// served now: a connection verified under an earlier CA is checked again
    /// after a rotation. Without client authentication, every chain passes.
    pub fn verify_client_now(&self, chain: &[CertificateDer<'_>]) -> Result<(), rustls::Error> {
        let Some(verifier) = &self.verifier else {
            return Ok(());
        };
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or(rustls::Error::NoCertificatesPresented)?;
        verifier
            .current
            .load()
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map(|_| ())
    }

    /// When the served certificate expires, in seconds since the Unix epoch.
    pub fn not_after(&self) -> i64 {
        self.not_after.load(Ordering::Acquire)
    }

    /// Why the newest material on disk is refused (the current one is still
    /// served), while it is: [`ReloadingServerTls::spawn_watch`] records it.
    pub fn refused(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Ready while the served certificate has not expired; the detail says until
    /// when, and why newer material on disk is refused, if it is.
    pub fn readiness(&self) -> (bool, String) {
        let not_after = self.not_after();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let until = time::OffsetDateTime::from_unix_timestamp(not_after)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| not_after.to_string());
        let mut detail = if not_after > now {
            format!(
                "serving certificate valid until {until} ({} days left)",
                (not_after - now) / 86_400
            )
        } else {
            format!("serving certificate expired at {until}: renew it (the files are re-read)")
        };
        if let Some(why) = self.refused() {
            detail.push_str(&format!(
                "; newer material on disk is refused, the current one is served: {why}"
            ));
        }
        (not_after > now, detail)
    }

    /// The files this material is read from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Re-reads the files. Changed, valid material is swapped in for new handshakes;
    /// invalid material is refused with the reason and the current material stays.
    pub fn reload(&self) -> Result<ReloadOutcome, ReloadTlsError> {
        let contents = read_files(&self.files)?;
        // A poisoned lock only means a panic elsewhere mid-compare; the data is plain bytes.
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if *seen == contents {
            return Ok(ReloadOutcome::Unchanged);
        }
        let key = certified_key(&self.files, &contents, &self.provider)?;
        let verifier = match &self.verifier {
            Some(v) => Some(client_verifier(
                &self.files,
                &contents,
                v.mandatory,
                &self.provider,
            )?),
            None => None,
        };
        self.not_after
            .store(leaf_not_after(&key), Ordering::Release);
        self.resolver.current.store(Arc::new(key));
        if let (Some(v), Some(new)) = (&self.verifier, verifier) {
            v.current.store(Arc::new(new));
        }
        *seen = contents;
        self.rotations.fetch_add(1, Ordering::AcqRel);
        Ok(ReloadOutcome::Rotated)
    }

    /// Polls the files every `interval` until `shutdown` resolves, reloading on change.
    /// Polling file contents follows Kubernetes' symlink-swapped Secret mounts, which
    /// file-event watchers miss. An invalid change is logged and retried on the next tick.
    pub fn spawn_watch(
        self: Arc<Self>,
        interval: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_error: Option<String> = None;
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    () = &mut shutdown => return,
                    _ = ticker.tick() => {}
                }
                let this = self.clone();
                let result = tokio::task::spawn_blocking(move || this.reload()).await;
                if let Ok(outcome) = &result {
                    *self
                        .refused
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) =
                        outcome.as_ref().err().map(|err| error_chain(err));
                }
                match result {
                    Ok(Ok(ReloadOutcome::Rotated)) => {
                        last_error = None;
                        tracing::info!(cert = %self.files.cert.display(), "TLS material rotated");
                    }
                    Ok(Ok(ReloadOutcome::Unchanged)) => last_error = None,
                    Ok(Err(err)) => {
                        let why = error_chain(&err);
                        // Log a refusal once, not on every tick.
                        if last_error.as_deref() != Some(why.as_str()) {
                            tracing::warn!(error = %why, "refused new TLS material; keeping the current one");
                            last_error = Some(why);
                        }
                    }
                    Err(join) => tracing::warn!(error = %join, "TLS reload task failed"),
                }
            }
        })
    }
}

/// When the leaf certificate of `key` expires, in seconds since the Unix epoch
/// (0 when it does not parse: [`certified_key`] has already checked it does).
fn leaf_not_after(key: &CertifiedKey) -> i64 {
    key.cert.first().and_then(not_after).unwrap_or(0)
}

/// When certificate `der` expires, in seconds since the Unix epoch; `None` when it
/// does not parse.
pub fn not_after(der: &CertificateDer<'_>) -> Option<i64> {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .map(|(_, cert)| cert.validity().not_after.timestamp())
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn read(path: &Path) -> Result<Vec<u8>, ReloadTlsError> {
    std::fs::read(path).map_err(|source| ReloadTlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_files(files: &TlsFiles) -> Result<FileContents, ReloadTlsError> {
    Ok(FileContents {
        cert: read(&files.cert)?,
        key: read(&files.key)?,
        client_ca: files.client_ca.as_deref().map(read).transpose()?,
    })
}

fn text<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str, ReloadTlsError> {
    std::str::from_utf8(bytes).map_err(|_| ReloadTlsError::Load {
        path: path.to_owned(),
        source: LoadCertError::NoCertificate {
            what: "a file that is not UTF-8 PEM".to_owned(),
        },
    })
}

fn certified_key(
    files: &TlsFiles,
    contents: &FileContents,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, ReloadTlsError> {
    let certs = parse_certs_pem(text(&files.cert, &contents.cert)?).map_err(|source| {
        ReloadTlsError::Load {
            path: files.cert.clone(),
            source,
        }
    })?;
    let key =
        parse_key_pem(text(&files.key, &contents.key)?).map_err(|source| ReloadTlsError::Load {
            path: files.key.clone(),
            source,
        })?;
    check_validity(&files.cert, &certs[0])?;
    let key =
        CertifiedKey::from_der(certs, key, provider).map_err(|source| ReloadTlsError::Key {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        })?;
    Ok(key)
}

fn check_validity(path: &Path, cert: &CertificateDer<'_>) -> Result<(), ReloadTlsError> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
        return Err(ReloadTlsError::Load {
            path: path.to_owned(),
            source: LoadCertError::NoCertificate {
                what: "an unparsable certificate".to_owned(),
            },
        });
    };
    let now = x509_parser::time::ASN1Time::now();
    let validity = parsed.validity();
    if now > validity.not_after {
        return Err(ReloadTlsError::Validity {
            path: path.to_owned(),
            why: "expired",
        });
    }
    if now < validity.not_before {
        return Err(ReloadTlsError::Validity {
            path: path.to_owned(),
            why: "not yet valid",
        });
    }
    Ok(())
}

fn client_verifier(
    files: &TlsFiles,
    contents: &FileContents,
    mandatory: bool,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, ReloadTlsError> {
    let (Some(path), Some(bytes)) = (&files.client_ca, &contents.client_ca) else {
        return Err(ReloadTlsError::MissingClientCa);
    };
    let client_ca = |source| ReloadTlsError::ClientCa {
        path: path.clone(),
        source,
    };
    let roots = root_store(text(path, bytes)?).map_err(client_ca)?;
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let builder = if mandatory {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder
        .build()
        .map_err(|e| client_ca(TlsConfigError::Verifier(e)))
}

impl ResolvesServerCert for RotatingCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl ClientCertVerifier for RotatingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints would borrow from the swapped verifier; sending none is allowed
        // (RFC 8446 4.3.2) and clients with one certificate send it regardless.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current
            .load()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current.load().supported_verify_schemes()
    }
}
