//! PATCH: JSON, merge and strategic merge patches of a stored object, and server-side
//! apply (which may create the object), each ending in the shared write tail.

use http::Response;
use serde_json::Value;

use super::body::decode_object;
use super::objects::{meta_mut, meta_str};
use super::request::Req;
use super::write::{Outcome, Write, check_identity, finish_write, set_namespace};
use super::{Body, MAX_ATTEMPTS, Shared};
use crate::fields;
use crate::gojson;
use crate::meta;
use crate::patch::{self, PatchType};
use crate::resource::ResourceKind;
use crate::status::{FieldError, Status};

/// PATCH of one object: the patch type by Content-Type, `force` for apply only; an
/// unconditional patch retries a race.
pub(super) async fn patch_object(
    shared: &Shared,
    req: &Req,
    kind: ResourceKind,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, Status> {
    let patch_type = PatchType::from_content_type(req.header("content-type").unwrap_or_default())?;
    patch::check_json(patch_type, &req.body)?;
    let (applied, mut warnings) = if patch_type == PatchType::Apply {
        let (applied, warnings) = apply_configuration(req, &kind, ns, name)?;
        (Some(applied), warnings)
    } else {
        (None, Vec::new())
    };
    let force = req.query.flag("force");
    if force && patch_type != PatchType::Apply {
        return Err(Status::invalid(
            "PatchOptions",
            "meta.k8s.io",
            "",
            &[FieldError::forbidden(
                "force",
                "may not be specified for non-apply patch",
            )],
        ));
    }
    let mut conditional = false;
    for _ in 0..MAX_ATTEMPTS {
        let old = shared.db().get(&kind, ns, name).cloned();
        let new = match (&applied, &old) {
            (Some(applied), old) => {
                let requested = meta_str(applied, "resourceVersion");
                conditional = !requested.is_empty();
                merge_applied(req, &kind, name, applied, old.as_ref(), force)?
            }
            (None, None) => return Err(Status::not_found(kind.res(), name)),
            (None, Some(old)) => {
                let (target, patched_warnings) = patched(req, &kind, ns, name, patch_type, old)?;
                warnings = patched_warnings;
                target
            }
        };
        let w = Write {
            kind,
            ns,
            name,
            conditional,
        };
        match finish_write(shared, req, &w, new, old, applied.is_some(), &warnings).await? {
            Outcome::Done(r) => return Ok(r),
            Outcome::Retry => continue,
        }
    }
    Err(Status::conflict_modified(kind.res(), name))
}

/// The body of a server-side apply: it needs a field manager; its name and namespace are
/// the URL's. Returns the configuration and its decoding warnings.
fn apply_configuration(
    req: &Req,
    kind: &ResourceKind,
    ns: &str,
    name: &str,
) -> Result<(Value, Vec<String>), Status> {
    let manager = req.query.get("fieldManager").unwrap_or_default();
    if manager.is_empty() {
        return Err(Status::invalid(
            "PatchOptions",
            "meta.k8s.io",
            "",
            &[FieldError::required(
                "fieldManager",
                "is required for apply patch",
            )],
        ));
    }
    let (mut applied, warnings) = decode_object(req, kind, true)?;
    check_identity(kind, &mut applied, ns, name)?;
    Ok((applied, warnings))
}

/// The object after applying the configuration to `old` (or creating it): a
/// resourceVersion in the configuration must be the stored one.
fn merge_applied(
    req: &Req,
    kind: &ResourceKind,
    name: &str,
    applied: &Value,
    old: Option<&Value>,
    force: bool,
) -> Result<Value, Status> {
    let requested = meta_str(applied, "resourceVersion");
    if let Some(old) = old
        && !requested.is_empty()
        && requested != meta_str(old, "resourceVersion")
    {
        return Err(Status::conflict_modified(kind.res(), name));
    }
    let mut applied = applied.clone();
    meta_mut(&mut applied).remove("resourceVersion");
    let manager = req.query.get("fieldManager").unwrap_or_default();
    fields::apply(
        old,
        &applied,
        manager,
        force,
        &kind.api_version(),
        &meta::now(),
    )
}

/// The stored object with a JSON, merge or strategic merge patch applied, its name and
/// namespace checked (checkName, rest.BeforeUpdate) and its resourceVersion the stored
/// one unless the patch pins another. Returns it with its strict decoding warnings.
fn patched(
    req: &Req,
    kind: &ResourceKind,
    ns: &str,
    name: &str,
    patch_type: PatchType,
    old: &Value,
) -> Result<(Value, Vec<String>), Status> {
    let mut target = old.clone();
    let patched = patch::apply_patch(patch_type, &mut target, &req.body, kind.schema())?;
    if !target.is_object() {
        return Err(Status::bad_request(
            "the patched object is not a JSON object",
        ));
    }
    let warnings = patched_object_strict_errors(req, kind, &mut target, patched)?;
    gojson::normalize_nulls(&mut target, kind.schema());
    // checkName, before the update compares resourceVersions
    let patched_name = meta_str(&target, "name");
    if patched_name.is_empty() {
        return Err(Status::bad_request(format!(
            "the name of the object ({name} based on URL) was undeterminable: name must be provided"
        )));
    }
    if patched_name != name {
        return Err(Status::bad_request(format!(
            "the name of the object ({patched_name}) does not match the name on the URL ({name})"
        )));
    }
    // rest.BeforeUpdate
    set_namespace(kind, &mut target, ns)?;
    let patched_rv = meta_str(&target, "resourceVersion");
    if patched_rv != meta_str(old, "resourceVersion") {
        if !patched_rv.is_empty() {
            return Err(Status::conflict_modified(kind.res(), name));
        }
        // a patch that removes resourceVersion is unconditional
        meta_mut(&mut target).insert(
            "resourceVersion".into(),
            old["metadata"]["resourceVersion"].clone(),
        );
    }
    Ok((target, warnings))
}

/// The strict decoding errors of a merge, strategic merge or JSON patch: the patch body's
/// own, then the unknown fields of the patched object (dropped here), which kube-apiserver
/// finds decoding it into its type (sorted for a strategic merge patch,
/// `FromUnstructuredWithValidation`). With fieldValidation Strict any is a 422 whose value is
/// the patched object as JSON (the patch as Go prints a map for a strategic merge patch);
/// with Warn they are the warnings.
fn patched_object_strict_errors(
    req: &Req,
    kind: &ResourceKind,
    target: &mut Value,
    patched: patch::Applied,
) -> Result<Vec<String>, Status> {
    let mode = req.field_validation()?;
    let shown = match &patched.strategic {
        _ if mode != "Strict" => String::new(),
        Some(patch) => gojson::sprint(patch),
        None => gojson::marshal(target),
    };
    let mut unknown: Vec<String> = kind
        .prune_unknown(target)
        .iter()
        .map(|f| format!("unknown field {}", gojson::quote(f)))
        .collect();
    if patched.strategic.is_some() {
        unknown.sort();
    }
    let errors = [patched.strict, unknown].concat();
    match mode {
        "Strict" if !errors.is_empty() => Err(Status::invalid(
            "",
            "",
            "",
            &[FieldError::invalid_raw(
                "patch",
                &gojson::quote(&shown),
                &format!("strict decoding error: {}", errors.join(", ")),
            )],
        )),
        "Warn" => Ok(errors),
        _ => Ok(Vec::new()),
    }
}
