//! Admission: calls the mutating and validating webhooks configured through the API,
//! as kube-apiserver's webhook dispatcher does
//! (k8s.io/apiserver/pkg/admission/plugin/webhook/{generic,mutating,validating,predicates}).
//!
//! This module dispatches: the two phases, each webhook's failure policy and the steps of
//! one call. Which webhooks match is in `matching`, the AdmissionReview and the answer's
//! checks in `review`, the HTTPS client in `client`.
//!
//! Differences from kube-apiserver, on purpose:
//! - `matchPolicy` is treated as `Equivalent` and there is one version per resource, so
//!   `requestKind`/`requestResource` always equal `kind`/`resource`;
//! - `reinvocationPolicy: IfNeeded` is not honoured: each mutating webhook runs once;
//! - `matchConditions` (CEL) are not evaluated;
//! - validating webhooks are called one after another, in order, rather than in parallel
//!   (the first denial in order wins, which is one of the outcomes kube-apiserver allows);
//! - a service is dialled at the address the sandbox's service map gives for
//!   `<name>.<namespace>.svc:<port>`, since there is no cluster DNS.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde_json::Value;

use crate::auth::UserInfo;
use crate::status::Status;

mod client;
mod matching;
mod review;
#[cfg(test)]
mod tests;
mod x509;

use matching::{is_exempt_configuration_resource, should_call};
use review::{admission_review, apply_patch, denial, new_uid, verify_response};

/// The admission operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    /// The AdmissionReview spelling: `CREATE`, `UPDATE`, `DELETE`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }

    /// The kind of the options object sent with this operation.
    fn options_kind(self) -> &'static str {
        match self {
            Operation::Create => "CreateOptions",
            Operation::Update => "UpdateOptions",
            Operation::Delete => "DeleteOptions",
        }
    }
}

/// Everything admission needs to know about one write.
///
/// `object` is the object about to be stored (after defaulting; for Secrets with
/// `stringData` already merged into `data`), `None` on DELETE; `old_object` is the stored
/// object on UPDATE and DELETE. `namespace_labels` are the labels of the request's
/// namespace (including `kubernetes.io/metadata.name`); they are not used for Namespace
/// objects, whose own labels count.
#[derive(Clone)]
pub(crate) struct AdmissionAttributes {
    pub(crate) operation: Operation,
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) kind: String,
    pub(crate) resource: String,
    pub(crate) subresource: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) object: Option<Value>,
    pub(crate) old_object: Option<Value>,
    pub(crate) user: UserInfo,
    pub(crate) dry_run: bool,
    pub(crate) options: Value,
    pub(crate) namespace_labels: BTreeMap<String, String>,
}

// Secret values must never reach logs: print only what identifies the request.
impl std::fmt::Debug for AdmissionAttributes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdmissionAttributes")
            .field("operation", &self.operation)
            .field("group", &self.group)
            .field("version", &self.version)
            .field("kind", &self.kind)
            .field("resource", &self.resource)
            .field("subresource", &self.subresource)
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("user", &self.user.username)
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

/// A snapshot of the webhook configurations stored in the API.
#[derive(Debug, Clone, Default)]
pub(crate) struct WebhookConfigs {
    pub(crate) mutating: Vec<Value>,
    pub(crate) validating: Vec<Value>,
}

/// The webhook dispatcher.
#[derive(Debug)]
pub(crate) struct AdmissionWebhooks {
    services: BTreeMap<String, SocketAddr>,
}

/// Which dispatcher a webhook belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HookKind {
    Mutating,
    Validating,
}

/// One webhook of one configuration, read from its JSON.
struct Hook<'a> {
    name: String,
    spec: &'a Value,
}

/// Why a webhook could not be called or answered nonsense (`webhookutil.ErrCallingWebhook`):
/// subject to `failurePolicy`.
struct CallError {
    reason: String,
}

/// How a single webhook call ended, short of success.
enum HookError {
    /// A call failure, which `failurePolicy: Ignore` lets through.
    Call(CallError),
    /// A denial or an error that no failure policy overrides.
    Reject(Box<Status>),
}

impl AdmissionWebhooks {
    /// A dispatcher that dials services through `services` ("name.namespace.svc:port" -> address).
    pub(crate) fn new(services: BTreeMap<String, SocketAddr>) -> Self {
        Self { services }
    }

    /// Runs the matching mutating webhooks (configurations sorted by name, webhooks in
    /// order), then the matching validating ones. Returns the object to store, patched by
    /// the mutating webhooks (`None` on DELETE), or the Status kube-apiserver would answer.
    /// (The server runs the two phases itself, with the registry's work between them.)
    #[cfg(test)]
    pub(crate) async fn admit(
        &self,
        configs: &WebhookConfigs,
        attrs: AdmissionAttributes,
    ) -> Result<Option<Value>, Status> {
        let mut warnings = Vec::new();
        self.admit_with_warnings(configs, attrs, &mut warnings)
            .await
    }

    /// As [`AdmissionWebhooks::admit`], also collecting the webhooks' `warnings`, which the
    /// server returns as `Warning: 299 - "<text>"` response headers.
    #[cfg(test)]
    pub(crate) async fn admit_with_warnings(
        &self,
        configs: &WebhookConfigs,
        mut attrs: AdmissionAttributes,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Value>, Status> {
        attrs.object = self.mutate(configs, attrs.clone(), warnings).await?;
        self.validate(configs, &attrs, warnings).await?;
        Ok(attrs.object)
    }

    /// The mutating phase alone: returns the object patched by the matching mutating
    /// webhooks. kube-apiserver validates the object between the two phases; a server that
    /// does the same calls [`AdmissionWebhooks::mutate`], validates, then
    /// [`AdmissionWebhooks::validate`].
    pub(crate) async fn mutate(
        &self,
        configs: &WebhookConfigs,
        attrs: AdmissionAttributes,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Value>, Status> {
        if is_exempt_configuration_resource(&attrs) {
            return Ok(attrs.object);
        }
        let mut attrs = request_namespace(attrs);
        for hook in ordered_hooks(&configs.mutating) {
            self.dispatch(HookKind::Mutating, &hook, &mut attrs, warnings)
                .await?;
        }
        Ok(attrs.object)
    }

    /// The validating phase alone, on the final object.
    pub(crate) async fn validate(
        &self,
        configs: &WebhookConfigs,
        attrs: &AdmissionAttributes,
        warnings: &mut Vec<String>,
    ) -> Result<(), Status> {
        if is_exempt_configuration_resource(attrs) {
            return Ok(());
        }
        // Validating webhooks cannot change the object: they work on a copy.
        let mut attrs = request_namespace(attrs.clone());
        for hook in ordered_hooks(&configs.validating) {
            self.dispatch(HookKind::Validating, &hook, &mut attrs, warnings)
                .await?;
        }
        Ok(())
    }

    /// Calls one webhook if it matches and applies its failure policy.
    async fn dispatch(
        &self,
        kind: HookKind,
        hook: &Hook<'_>,
        attrs: &mut AdmissionAttributes,
        warnings: &mut Vec<String>,
    ) -> Result<(), Status> {
        match should_call(hook, attrs) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(message) => return Err(Status::internal_error(&message)),
        }
        match self.call_hook(kind, hook, attrs, warnings).await {
            Ok(()) => Ok(()),
            Err(HookError::Reject(status)) => Err(*status),
            Err(HookError::Call(err)) => {
                let message = format!("failed calling webhook {:?}: {}", hook.name, err.reason);
                if str_at(hook.spec, "failurePolicy") == Some("Ignore") {
                    tracing::warn!(webhook = %hook.name, error = %message, "failed calling webhook, failing open");
                    Ok(())
                } else {
                    tracing::warn!(webhook = %hook.name, error = %message, "failed calling webhook, failing closed");
                    Err(Status::internal_error(&message))
                }
            }
        }
    }

    /// One webhook call: the dry-run check, the review, the HTTPS POST, the response checks
    /// and, for a mutating webhook, the patch.
    async fn call_hook(
        &self,
        kind: HookKind,
        hook: &Hook<'_>,
        attrs: &mut AdmissionAttributes,
        warnings: &mut Vec<String>,
    ) -> Result<(), HookError> {
        if attrs.dry_run {
            check_dry_run(hook)?;
        }
        let uid = new_uid();
        let review = admission_review(&uid, attrs);
        let timeout_seconds = hook
            .spec
            .get("timeoutSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(10);
        tracing::debug!(webhook = %hook.name, %uid, operation = attrs.operation.as_str(),
            namespace = %attrs.namespace, name = %attrs.name, "calling admission webhook");
        let body = self
            .post(hook, &review, timeout_seconds)
            .await
            .map_err(|reason| {
                HookError::Call(CallError {
                    reason: format!("failed to call webhook: {reason}"),
                })
            })?;
        let response = verify_response(&uid, kind, &body).map_err(|reason| {
            HookError::Call(CallError {
                reason: format!("received invalid webhook response: {reason}"),
            })
        })?;
        if let Some(list) = response.get("warnings").and_then(Value::as_array) {
            warnings.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
        }
        if !response
            .get("allowed")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            return Err(HookError::Reject(Box::new(denial(
                &hook.name,
                response.get("status"),
            ))));
        }
        if kind == HookKind::Mutating {
            apply_patch(&hook.name, &response, attrs)?;
        }
        Ok(())
    }
}

/// A dry run may only reach a webhook that declares no side effects (or none on dry run).
fn check_dry_run(hook: &Hook<'_>) -> Result<(), HookError> {
    match str_at(hook.spec, "sideEffects") {
        None => Err(HookError::Call(CallError {
            reason: "Webhook SideEffects is nil".to_owned(),
        })),
        Some("None" | "NoneOnDryRun") => Ok(()),
        Some(_) => Err(HookError::Reject(Box::new(Status::bad_request(format!(
            "admission webhook {:?} does not support dry run",
            hook.name
        ))))),
    }
}

/// The request namespace as kube-apiserver's request info has it: a request on
/// `/api/v1/namespaces/<name>` (a Namespace's own update or delete) carries `<name>` as its
/// namespace, which webhooks see in `request.namespace` and which rule scopes judge.
fn request_namespace(mut attrs: AdmissionAttributes) -> AdmissionAttributes {
    if attrs.group.is_empty()
        && attrs.resource == "namespaces"
        && attrs.namespace.is_empty()
        && attrs.operation != Operation::Create
    {
        attrs.namespace = attrs.name.clone();
    }
    attrs
}

/// Webhook configurations sorted by name, each one's webhooks in order.
fn ordered_hooks(configs: &[Value]) -> Vec<Hook<'_>> {
    let mut configs: Vec<&Value> = configs.iter().collect();
    configs.sort_by(|a, b| config_name(a).cmp(config_name(b)));
    configs
        .into_iter()
        .flat_map(|config| {
            config
                .get("webhooks")
                .and_then(Value::as_array)
                .map(|hooks| hooks.as_slice())
                .unwrap_or_default()
        })
        .map(|spec| Hook {
            name: str_at(spec, "name").unwrap_or("").to_owned(),
            spec,
        })
        .collect()
}

fn config_name(config: &Value) -> &str {
    config
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The string at `key` of a JSON object.
fn str_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}
