//! `secret-relay certs`: the PKI on disk (CA, server and cluster certificates).

use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use secret_relay_certs::{Ca, IssuedCert, Validity};

/// Flags of `secret-relay certs`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: CertsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum CertsCommand {
    /// Create a CA (ECDSA P-256) as DIR/ca.crt and DIR/ca.key.
    Init {
        #[command(flatten)]
        out: OutArgs,
        /// Validity of the CA in days.
        #[arg(long, env = "SECRET_RELAY_CERTS_CA_DAYS", default_value_t = 3650)]
        days: u32,
    },
    /// Issue a server certificate DIR/NAME.crt and DIR/NAME.key from the CA in DIR.
    Server {
        #[command(flatten)]
        out: OutArgs,
        /// File name stem and common name.
        #[arg(long, env = "SECRET_RELAY_CERTS_NAME")]
        name: String,
        /// DNS subject alternative names (repeatable).
        #[arg(long = "dns", env = "SECRET_RELAY_CERTS_DNS", value_delimiter = ',')]
        dns: Vec<String>,
        /// IP subject alternative names (repeatable).
        #[arg(long = "ip", env = "SECRET_RELAY_CERTS_IP", value_delimiter = ',')]
        ip: Vec<IpAddr>,
        /// Validity in days.
        #[arg(long, env = "SECRET_RELAY_CERTS_DAYS", default_value_t = 365)]
        days: u32,
    },
    /// Issue a cluster's client certificate DIR/NAME.crt, DIR/NAME.key and the agent's
    /// Secret manifest DIR/NAME-agent-secret.yaml.
    Cluster {
        #[command(flatten)]
        out: OutArgs,
        /// The cluster name (CN and URI SAN spiffe://secret-relay/cluster/NAME).
        #[arg(long, env = "SECRET_RELAY_CERTS_NAME")]
        name: String,
        /// Validity in days.
        #[arg(long, env = "SECRET_RELAY_CERTS_DAYS", default_value_t = 365)]
        days: u32,
        /// Namespace of the agent's Secret.
        #[arg(long, env = "SECRET_RELAY_AGENT_NAMESPACE", default_value = "akuity")]
        namespace: String,
        /// Name of the agent's Secret.
        #[arg(
            long,
            env = "SECRET_RELAY_AGENT_TLS_SECRET",
            default_value = "secret-relay-agent-tls"
        )]
        secret_name: String,
    },
    /// Print the base64 caBundle of DIR/ca.crt for webhook configurations.
    CaBundle {
        /// The PKI directory.
        #[arg(long, env = "SECRET_RELAY_CERTS_DIR")]
        dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct OutArgs {
    /// The PKI directory.
    #[arg(long, env = "SECRET_RELAY_CERTS_DIR")]
    dir: PathBuf,
    /// Overwrite existing files.
    #[arg(long, env = "SECRET_RELAY_CERTS_FORCE")]
    force: bool,
}

/// One file to write: path, contents, whether it is secret (mode 0600).
struct Output {
    path: PathBuf,
    contents: String,
    secret: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        CertsCommand::Init { out, days } => {
            let targets = [out.dir.join("ca.crt"), out.dir.join("ca.key")];
            refuse_overwrite(&targets, out.force)?;
            let ca = Ca::generate("secret-relay CA", Validity::days(days))
                .context("failed to generate the CA")?;
            write_all(
                &out.dir,
                vec![
                    Output {
                        path: targets[0].clone(),
                        contents: ca.cert_pem().to_owned(),
                        secret: false,
                    },
                    Output {
                        path: targets[1].clone(),
                        contents: ca.key_pem().to_owned(),
                        secret: true,
                    },
                ],
            )?;
        }
        CertsCommand::Server {
            out,
            name,
            dns,
            ip,
            days,
        } => {
            check_stem(&name)?;
            let targets = [
                out.dir.join(format!("{name}.crt")),
                out.dir.join(format!("{name}.key")),
            ];
            refuse_overwrite(&targets, out.force)?;
            let ca = load_ca(&out.dir)?;
            let issued = ca
                .issue_server(&name, &dns, &ip, Validity::days(days))
                .with_context(|| format!("failed to issue the server certificate {name}"))?;
            write_all(&out.dir, pair(&targets, issued))?;
        }
        CertsCommand::Cluster {
            out,
            name,
            days,
            namespace,
            secret_name,
        } => {
            check_stem(&name)?;
            let targets = [
                out.dir.join(format!("{name}.crt")),
                out.dir.join(format!("{name}.key")),
                out.dir.join(format!("{name}-agent-secret.yaml")),
            ];
            refuse_overwrite(&targets, out.force)?;
            let ca = load_ca(&out.dir)?;
            let issued = ca
                .issue_cluster(&name, Validity::days(days))
                .with_context(|| format!("failed to issue the cluster certificate {name}"))?;
            let manifest = agent_secret(&secret_name, &namespace, &name, &issued, ca.cert_pem());
            let mut files = pair(&targets, issued);
            files.push(Output {
                path: targets[2].clone(),
                contents: manifest,
                secret: true,
            });
            write_all(&out.dir, files)?;
        }
        CertsCommand::CaBundle { dir } => {
            let path = dir.join("ca.crt");
            let pem = std::fs::read_to_string(&path)
                .with_context(|| format!("failed to read {}", path.display()))?;
            secret_relay_certs::parse_certs_pem(&pem)
                .with_context(|| format!("failed to load {}", path.display()))?;
            println!("{}", base64::engine::general_purpose::STANDARD.encode(pem));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn pair(targets: &[PathBuf], issued: IssuedCert) -> Vec<Output> {
    vec![
        Output {
            path: targets[0].clone(),
            contents: issued.cert_pem,
            secret: false,
        },
        Output {
            path: targets[1].clone(),
            contents: issued.key_pem,
            secret: true,
        },
    ]
}

/// A file name stem must not climb out of the PKI directory.
fn check_stem(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        bail!("--name {name:?} must be a plain name: no '/', and not starting with '.'");
    }
    Ok(())
}

fn load_ca(dir: &Path) -> anyhow::Result<Ca> {
    let cert = dir.join("ca.crt");
    let key = dir.join("ca.key");
    let cert_pem = std::fs::read_to_string(&cert).with_context(|| {
        format!(
            "failed to read {} (run `secret-relay certs init --dir {}` first)",
            cert.display(),
            dir.display()
        )
    })?;
    let key_pem = std::fs::read_to_string(&key)
        .with_context(|| format!("failed to read {}", key.display()))?;
    Ca::from_pem(&cert_pem, &key_pem)
        .with_context(|| format!("failed to load the CA from {}", dir.display()))
}

/// Checks every target before anything is written, so a refusal changes nothing.
fn refuse_overwrite(targets: &[PathBuf], force: bool) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    let existing: Vec<String> = targets
        .iter()
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() {
        bail!(
            "refusing to overwrite {} (pass --force to replace)",
            existing.join(", ")
        );
    }
    Ok(())
}

fn write_all(dir: &Path, files: Vec<Output>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    for file in files {
        write_file(&file).with_context(|| format!("failed to write {}", file.path.display()))?;
        eprintln!("wrote {}", file.path.display());
    }
    Ok(())
}

fn write_file(file: &Output) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let mode = if file.secret { 0o600 } else { 0o644 };
        options.mode(mode);
        let mut f = options.open(&file.path)?;
        // The mode given to open applies only to new files; an overwritten one is set here.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(file.contents.as_bytes())?;
        f.sync_all()
    }
    #[cfg(not(unix))]
    {
        let mut f = options.open(&file.path)?;
        f.write_all(file.contents.as_bytes())?;
        f.sync_all()
    }
}

/// The agent's kubernetes.io/tls Secret: its client certificate, key and the CA.
fn agent_secret(
    name: &str,
    namespace: &str,
    cluster: &str,
    issued: &IssuedCert,
    ca_pem: &str,
) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "# The secret-relay agent's identity for cluster {cluster}: apply it on that cluster.\n\
         apiVersion: v1\n\
         kind: Secret\n\
         metadata:\n  name: {name}\n  namespace: {namespace}\n  labels:\n    app.kubernetes.io/part-of: secret-relay\n\
         type: kubernetes.io/tls\n\
         data:\n  tls.crt: {}\n  tls.key: {}\n  ca.crt: {}\n",
        b64(&issued.cert_pem),
        b64(&issued.key_pem),
        b64(ca_pem),
    )
}
