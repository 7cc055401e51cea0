//! The AdmissionReview exchange: the review sent for one call, the checks on the
//! webhook's answer, a denial as kube-apiserver words it, and a mutating webhook's patch.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::{AdmissionAttributes, CallError, HookError, HookKind, str_at};
use crate::auth::UserInfo;
use crate::status::{Status, StatusCause};

/// A fresh random (version 4) UUID.
pub(super) fn new_uid() -> String {
    let mut bytes = [0u8; 16];
    if secret_relay_certs::provider()
        .secure_random
        .fill(&mut bytes)
        .is_err()
    {
        // No system randomness: fall back to time and a process-wide counter, which is
        // still unique per call, which is all the uid must be.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes[..8].copy_from_slice(&nanos.to_be_bytes());
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes[8..].copy_from_slice(&n.to_be_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The AdmissionReview v1 request for one call.
pub(super) fn admission_review(uid: &str, attrs: &AdmissionAttributes) -> Value {
    let kind = json!({ "group": attrs.group, "version": attrs.version, "kind": attrs.kind });
    let resource =
        json!({ "group": attrs.group, "version": attrs.version, "resource": attrs.resource });
    let mut request = json!({
        "uid": uid,
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "operation": attrs.operation.as_str(),
        "userInfo": user_info(&attrs.user),
        "object": attrs.object.as_ref().map_or(Value::Null, |o| typed(o.clone(), attrs)),
        "oldObject": attrs.old_object.as_ref().map_or(Value::Null, |o| typed(o.clone(), attrs)),
        "dryRun": attrs.dry_run,
        "options": options(attrs),
    });
    if !attrs.subresource.is_empty() {
        request["subResource"] = json!(attrs.subresource);
        request["requestSubResource"] = json!(attrs.subresource);
    }
    if !attrs.name.is_empty() {
        request["name"] = json!(attrs.name);
    }
    if !attrs.namespace.is_empty() {
        request["namespace"] = json!(attrs.namespace);
    }
    json!({ "kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request })
}

/// `authenticationv1.UserInfo`, empty fields omitted.
fn user_info(user: &UserInfo) -> Value {
    let mut info = json!({});
    if !user.username.is_empty() {
        info["username"] = json!(user.username);
    }
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.groups.is_empty() {
        info["groups"] = json!(user.groups);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}

/// An object as the versioned encoding carries it: with `apiVersion` and `kind`.
fn typed(mut object: Value, attrs: &AdmissionAttributes) -> Value {
    if let Some(map) = object.as_object_mut() {
        let api_version = if attrs.group.is_empty() {
            attrs.version.clone()
        } else {
            format!("{}/{}", attrs.group, attrs.version)
        };
        map.entry("apiVersion")
            .or_insert_with(|| json!(api_version));
        map.entry("kind").or_insert_with(|| json!(attrs.kind));
    }
    object
}

/// The operation's options with `kind` and `apiVersion: meta.k8s.io/v1`.
fn options(attrs: &AdmissionAttributes) -> Value {
    let mut options = match &attrs.options {
        Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    options.insert("kind".into(), json!(attrs.operation.options_kind()));
    options.insert("apiVersion".into(), json!("meta.k8s.io/v1"));
    Value::Object(options)
}

/// Checks the envelope of a webhook's answer (`VerifyAdmissionResponse`) and returns its
/// `response`.
pub(super) fn verify_response(uid: &str, kind: HookKind, body: &[u8]) -> Result<Value, String> {
    let review: Value =
        serde_json::from_slice(body).map_err(|e| format!("failed to decode the response: {e}"))?;
    let response = review
        .get("response")
        .filter(|r| r.is_object())
        .ok_or_else(|| "webhook response was absent".to_owned())?;
    let got_uid = str_at(response, "uid").unwrap_or("");
    if got_uid != uid {
        return Err(format!("expected response.uid={uid:?}, got {got_uid:?}"));
    }
    let api_version = str_at(&review, "apiVersion").unwrap_or("");
    let review_kind = str_at(&review, "kind").unwrap_or("");
    if api_version != "admission.k8s.io/v1" || review_kind != "AdmissionReview" {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        return Err(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {group}/{version}, Kind={review_kind}"
        ));
    }
    let patch_type = str_at(response, "patchType").unwrap_or("");
    let has_patch = str_at(response, "patch").is_some_and(|p| !p.is_empty());
    if !patch_type.is_empty() {
        if kind == HookKind::Validating {
            return Err("validating webhook may not return patchType".to_owned());
        }
        if !has_patch {
            return Err("patchType set without patch".to_owned());
        }
        if patch_type != "JSONPatch" {
            return Err(format!("unsupported patchType: {patch_type:?}"));
        }
    } else if has_patch {
        return Err("patch set without patchType".to_owned());
    }
    Ok(response.clone())
}

/// A denial as `webhookerrors.ToStatusErr` words it: the webhook's status with the
/// message prefixed, a code of at least 400.
pub(super) fn denial(webhook: &str, result: Option<&Value>) -> Status {
    let result = result.unwrap_or(&Value::Null);
    let denied_by = format!("admission webhook {webhook:?} denied the request");
    let message = str_at(result, "message").unwrap_or("");
    let reason = str_at(result, "reason").unwrap_or("");
    let message = if !message.is_empty() {
        format!("{denied_by}: {message}")
    } else if !reason.is_empty() {
        format!("{denied_by}: {reason}")
    } else {
        format!("{denied_by} without explanation")
    };
    let code = result
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400)
        .unwrap_or(400);
    let mut status = Status::new(code, reason, message);
    if let Some(details) = result.get("details").filter(|d| d.is_object()) {
        let text = |key: &str| str_at(details, key).map(str::to_owned);
        status.name = text("name");
        status.group = text("group");
        status.kind = text("kind");
        status.uid = text("uid");
        status.retry_after_seconds = details
            .get("retryAfterSeconds")
            .and_then(Value::as_u64)
            .and_then(|s| u32::try_from(s).ok());
        status.causes = details
            .get("causes")
            .and_then(Value::as_array)
            .map(|causes| {
                causes
                    .iter()
                    .map(|c| StatusCause {
                        reason: str_at(c, "reason").unwrap_or("").to_owned(),
                        message: str_at(c, "message").unwrap_or("").to_owned(),
                        field: str_at(c, "field").unwrap_or("").to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
    }
    status
}

/// Applies a mutating webhook's JSON patch to the object, operations in order.
pub(super) fn apply_patch(
    webhook: &str,
    response: &Value,
    attrs: &mut AdmissionAttributes,
) -> Result<(), HookError> {
    let Some(encoded) = str_at(response, "patch").filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let undecodable = |e: String| {
        HookError::Call(CallError {
            reason: format!("received undecodable patch in webhook response: {e}"),
        })
    };
    let raw = BASE64
        .decode(encoded)
        .map_err(|e| undecodable(e.to_string()))?;
    let patch: json_patch::Patch =
        serde_json::from_slice(&raw).map_err(|e| undecodable(e.to_string()))?;
    if patch.0.is_empty() {
        return Ok(());
    }
    let Some(object) = attrs.object.as_mut() else {
        return Err(HookError::Reject(Box::new(Status::internal_error(
            &format!(
                "admission webhook {webhook:?} attempted to modify the object, which is not supported for this operation"
            ),
        ))));
    };
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &patch.0)
        .map_err(|e| HookError::Reject(Box::new(Status::internal_error(&e.to_string()))))?;
    if !patched.is_object() {
        return Err(HookError::Reject(Box::new(Status::internal_error(
            "the patched object is not a JSON object",
        ))));
    }
    *object = patched;
    Ok(())
}
