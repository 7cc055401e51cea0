//! Release: a hub copy this cluster owns whose Secret is gone (or no longer opted in)
//! is released through the relay.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::DeleteParams;

use super::answer::{denied_rule, is_denial};
use super::{Context, lock};

/// Releases `hub`, this cluster's hub copy of `name`.
pub(super) async fn release(ctx: &Context, name: &str, hub: &Secret) {
    let cp = hub.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.relay.clone(), &cp);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            ctx.metrics.action("release", "ok");
            ctx.clear_status(name, "up");
            let mut memo = lock(&ctx.up);
            memo.pushed.remove(name);
            memo.synced.remove(name);
            tracing::info!(%name, "released the hub copy");
        }
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(kube::Error::Api(status)) if status.code == 429 => {
            tracing::debug!(%name, "the relay is over this cluster's rate; will retry");
            ctx.retries.throttled(name);
        }
        Err(kube::Error::Api(status)) if is_denial(&status) => {
            ctx.metrics.action("release", "denied");
            tracing::info!(%name, rule = %denied_rule(&status), reason = %status.message, "release denied");
        }
        Err(err) => {
            ctx.metrics.action("release", "error");
            tracing::warn!(%name, error = %err, "failed to release; will retry");
            ctx.retries.later(name);
        }
    }
}
