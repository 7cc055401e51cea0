//! What every secret-relay server process shares: the accept loop with drain (TLS,
//! or plain HTTP for the ui on loopback), the shutdown signal, the kube client, the
//! policy sources with "not loaded yet" and change notification, the admin endpoints
//! (`/healthz`, `/readyz`, `/metrics`) with one metrics registry, and the shared
//! flag groups.
//!
//! The webhook, the relay and the agent stand on this floor; each registers its
//! metrics into [`Admin`]'s registry and its readiness as named parts.

mod admin;
mod args;
mod body;
mod client;
mod currency;
mod policy;
mod serve;
mod shutdown;
mod threads;
mod tls_status;

pub use admin::{Admin, Readiness, serve_admin, text_response};
pub use args::{LogArgs, PolicyArgs, ShutdownArgs, TlsArgs, init_tracing};
pub use body::{BodyBudget, declared_length};
pub use client::{BuildClientError, kube_client, kube_config};
pub use currency::Currency;
pub use policy::{
    LoadOutcome, LoadPolicyError, PolicySource, PolicyState, Rejection, parse_policy,
    parse_policy_data, reload_file_once, run_policy_source, watch_configmap, watch_file,
};
pub use serve::{ConnCounters, ConnInfo, ConnReasonLabels, ServeOptions, serve_http, serve_tls};
pub use shutdown::{CancellationToken, is_stopping, shutdown_signal, shutdown_signal_after};
pub use threads::server_runtime;
pub use tls_status::{register_tls_metrics, tls_readiness};
