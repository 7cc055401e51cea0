//! The cluster identity of a verified peer certificate.

use std::fmt;

use rustls_pki_types::CertificateDer;
use secret_relay_policy::ClusterId;
use x509_parser::extensions::GeneralName;

use crate::issue::SPIFFE_CLUSTER_PREFIX;

/// The cluster a verified client certificate names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterIdentity {
    /// The cluster name, held to the policy's cluster-name rule.
    pub name: ClusterId,
    /// Where the name came from.
    pub source: IdentitySource,
}

/// Which part of the certificate named the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentitySource {
    /// The URI SAN `spiffe://secret-relay/cluster/<name>`.
    SpiffeUri,
    /// The subject common name (certificates without the URI SAN).
    CommonName,
}

/// The certificate names no cluster.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    /// The certificate does not parse as X.509.
    #[error("failed to read the peer certificate: not valid X.509")]
    Unparsable,
    /// Neither a secret-relay URI SAN nor a common name.
    #[error(
        "failed to identify the peer: its certificate has no spiffe://secret-relay/cluster/ URI SAN and no common name"
    )]
    NoIdentity,
    /// The name found is not a valid cluster name.
    #[error("failed to identify the peer: {0:?} is not a valid cluster name")]
    InvalidName(String),
    /// More than one secret-relay URI SAN naming different clusters, or a common
    /// name other than the cluster its URI SAN names.
    #[error("failed to identify the peer: its certificate names more than one cluster")]
    Ambiguous,
}

impl IdentityError {
    /// Why the certificate names no cluster, in words that quote nothing of it:
    /// what the relay answers the peer.
    pub fn reason(&self) -> &'static str {
        match self {
            IdentityError::Unparsable => "it is not valid X.509",
            IdentityError::NoIdentity => {
                "it has no spiffe://secret-relay/cluster/ URI SAN and no common name"
            }
            IdentityError::InvalidName(_) => {
                "the name it carries is not a valid cluster name (1 to 55 lowercase letters, digits or '-', starting and ending with a letter or digit)"
            }
            IdentityError::Ambiguous => "it names more than one cluster",
        }
    }
}

impl fmt::Display for ClusterIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name.as_str())
    }
}

/// The cluster named by a peer certificate that rustls already verified: the URI SAN
/// `spiffe://secret-relay/cluster/<name>` (whose common name, if any, must be the
/// same name), or else the common name.
pub fn peer_identity(cert: &CertificateDer<'_>) -> Result<ClusterIdentity, IdentityError> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert).map_err(|_| IdentityError::Unparsable)?;
    let mut from_uri: Option<&str> = None;
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name
                && let Some(cluster) = uri.strip_prefix(SPIFFE_CLUSTER_PREFIX)
            {
                match from_uri {
                    Some(seen) if seen != cluster => return Err(IdentityError::Ambiguous),
                    _ => from_uri = Some(cluster),
                }
            }
        }
    }
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty());
    let (name, source) = match (from_uri, cn) {
        // A certificate naming one cluster by its URI and another by its common name
        // is refused: which one it is for is not for the relay to guess.
        (Some(uri), Some(cn)) if cn != uri => return Err(IdentityError::Ambiguous),
        (Some(name), _) => (name.to_owned(), IdentitySource::SpiffeUri),
        (None, Some(cn)) => (cn.to_owned(), IdentitySource::CommonName),
        (None, None) => return Err(IdentityError::NoIdentity),
    };
    // The policy's rule, the one the cluster registry is held to.
    let Some(name) = ClusterId::new(&name) else {
        return Err(IdentityError::InvalidName(name));
    };
    Ok(ClusterIdentity { name, source })
}
