//! Dev only: a whole secret-relay stack in one place, for the demo, the testkit
//! and the benches.
//!
//! - [`backend`]: the API servers (sandbox, real through `scripts/control-plane.sh`,
//!   outside clusters);
//! - [`pki`]: a stack's CA and certificates;
//! - [`manifests`]: the repository's `manifests/`, rendered as kustomize does and
//!   applied, not a second copy of them;
//! - [`stack`]: each server started through its own `start`;
//! - [`Fleet`]: a control plane and its managed clusters, every server running, as
//!   `secret-relay demo` shows it.
//!
//! The product image is built without this crate (the `sandbox` feature of the
//! binary brings it in).

pub mod backend;
pub mod manifests;
pub mod pki;
pub mod stack;

mod fleet;

pub use backend::{
    ApiServer, ApiServerOptions, Backend, RealControlPlane, client_from_kubeconfig,
    create_namespace, repo_root,
};
pub use fleet::{Fleet, FleetConfig, ManagedCluster};
pub use pki::Pki;
