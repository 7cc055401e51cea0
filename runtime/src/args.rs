//! The flag groups every server subcommand shares, and logging setup.

use std::path::PathBuf;
use std::time::Duration;

use crate::policy::PolicySource;

/// Serving certificate and key, and optionally the CA that client certificates chain to.
#[derive(Clone, Debug, clap::Args)]
pub struct TlsArgs {
    /// Serving certificate (PEM); re-read when it changes.
    #[arg(long, env = "SECRET_RELAY_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// Serving key (PEM); re-read when it changes.
    #[arg(long, env = "SECRET_RELAY_TLS_KEY")]
    pub tls_key: PathBuf,
}

/// Where the policy comes from: a file or a ConfigMap.
#[derive(Clone, Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct PolicyArgs {
    /// Policy document file, re-read when it changes.
    #[arg(long, env = "SECRET_RELAY_POLICY_FILE")]
    pub policy_file: Option<PathBuf>,
    /// Policy ConfigMap as NAMESPACE/NAME (key policy.yaml), watched through the API server.
    #[arg(long, env = "SECRET_RELAY_POLICY_CONFIGMAP")]
    pub policy_configmap: Option<String>,
}

/// Logging.
#[derive(Clone, Debug, clap::Args)]
pub struct LogArgs {
    /// Log as JSON lines.
    #[arg(long, env = "SECRET_RELAY_LOG_JSON")]
    pub log_json: bool,
}

/// How a server behind a Service stops.
#[derive(Clone, Debug, clap::Args)]
pub struct ShutdownArgs {
    /// Seconds to keep serving after SIGTERM while /readyz answers 503, so the
    /// Service stops routing here before the listener closes (then in-flight
    /// requests get up to 10 s to finish). The manifests set it; 0 stops at once.
    #[arg(long, env = "SECRET_RELAY_SHUTDOWN_DELAY_SECONDS", default_value_t = 0)]
    pub shutdown_delay_seconds: u64,
}

impl ShutdownArgs {
    /// The process's shutdown token, cancelled the delay after the stop signal.
    pub fn signal(&self) -> crate::CancellationToken {
        crate::shutdown_signal_after(Duration::from_secs(self.shutdown_delay_seconds))
    }
}

impl PolicyArgs {
    /// The source these flags name, polling a file every `interval`.
    pub fn source(&self, interval: Duration) -> Result<PolicySource, String> {
        match (&self.policy_file, &self.policy_configmap) {
            (Some(path), _) => Ok(PolicySource::File {
                path: path.clone(),
                interval,
            }),
            (None, Some(spec)) => {
                let (namespace, name) = spec
                    .split_once('/')
                    .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
                    .ok_or_else(|| {
                        format!("--policy-configmap must be NAMESPACE/NAME, got {spec:?}")
                    })?;
                Ok(PolicySource::ConfigMap {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                })
            }
            (None, None) => {
                Err("one of --policy-file or --policy-configmap is required".to_owned())
            }
        }
    }
}

/// Installs the tracing subscriber (level from `SECRET_RELAY_LOG`, default info) on stderr.
/// Colours only on a terminal: a container's log (`kubectl logs`) or a file gets plain
/// text.
pub fn init_tracing(json: bool) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SECRET_RELAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second init (tests) keeps the first subscriber.
    if json {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}
