//! Writes: POST (create) and PUT (update), and the tail they share with PATCH: defaults,
//! managed fields, admission, the no-op check and the store.

use http::Response;
use serde_json::{Value, json};

use super::admit::{admit, options};
use super::body::decode_object;
use super::objects::{before_create, meta_mut, meta_str, prepare, same_object, same_ownership};
use super::request::Req;
use super::response::{json_response, write_error};
use super::validation::validate_object;
use super::{Body, MAX_ATTEMPTS, Shared};
use crate::admission::Operation;
use crate::fields;
use crate::meta;
use crate::resource::{NAMESPACES, ResourceKind};
use crate::status::Status;
use crate::store::{WriteError, rv_of};

/// The shared tail of PUT and PATCH: defaults, validation, admission, managed fields, store.
pub(super) struct Write<'a> {
    pub(super) kind: ResourceKind,
    pub(super) ns: &'a str,
    pub(super) name: &'a str,
    /// Whether the caller pinned a resourceVersion (then a race is a 409, not a retry).
    pub(super) conditional: bool,
}

/// How one write attempt ended.
pub(super) enum Outcome {
    Done(Response<Body>),
    /// Another writer got there first; read the object again and retry.
    Retry,
}

/// POST: creates an object in namespace `ns` ("" for a cluster-scoped kind).
pub(super) async fn create(
    shared: &Shared,
    req: &Req,
    kind: ResourceKind,
    ns: &str,
) -> Result<Response<Body>, Status> {
    let (mut obj, mut warnings) = decode_object(req, &kind, false)?;
    let dry_run = req.dry_run()?;
    set_namespace(&kind, &mut obj, ns)?;
    prepare(&kind, &mut obj, None, false)?;
    // The field manager records the request before admission: what mutating webhooks add
    // is owned by no manager.
    fields::record_update(
        None,
        &mut obj,
        &req.manager(),
        &kind.api_version(),
        &meta::now(),
    );
    if kind.namespaced && !shared.db().namespace_exists(ns) {
        return Err(Status::not_found(NAMESPACES.res(), ns));
    }
    // The request's name: empty with generateName (until the validating phase).
    let request_name = meta_str(&obj, "name").to_owned();
    let admitted = admit(
        shared,
        &req.user,
        Operation::Create,
        &kind,
        ns,
        &request_name,
        Some(obj.clone()),
        None,
        dry_run,
        options("CreateOptions", req, dry_run),
        Some(&mut warnings),
        |mutated| {
            // rest.BeforeCreate: the generated name, uid and creationTimestamp, then
            // the strategy's validation.
            let mut obj = mutated.unwrap_or_default();
            before_create(&kind, &mut obj)?;
            validate_object(&kind, &obj, None)?;
            Ok(Some(obj))
        },
    )
    .await?;
    let obj = admitted.unwrap_or_default();
    let name = meta_str(&obj, "name").to_owned();
    if dry_run {
        let db = shared.db();
        if db.get(&kind, ns, &name).is_some() {
            return Err(Status::already_exists(kind.res(), &name));
        }
        return Ok(json_response(201, &obj, &warnings));
    }
    let stored = shared
        .db()
        .create(&kind, obj)
        .map_err(|e| write_error(e, &kind, ns, &name))?;
    tracing::debug!(resource = kind.resource, namespace = ns, name = %name, "created");
    Ok(json_response(201, &stored, &warnings))
}

/// PUT: replaces an object, retrying a race unless the body pins a resourceVersion.
pub(super) async fn update(
    shared: &Shared,
    req: &Req,
    kind: ResourceKind,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, Status> {
    let (mut obj, warnings) = decode_object(req, &kind, false)?;
    check_identity(&kind, &mut obj, ns, name)?;
    let requested_rv = meta_str(&obj, "resourceVersion").to_owned();
    let w = Write {
        kind,
        ns,
        name,
        conditional: !requested_rv.is_empty(),
    };
    for _ in 0..MAX_ATTEMPTS {
        let old = shared
            .db()
            .get(&kind, ns, name)
            .cloned()
            .ok_or_else(|| Status::not_found(kind.res(), name))?;
        if !requested_rv.is_empty() && requested_rv != meta_str(&old, "resourceVersion") {
            return Err(Status::conflict_modified(kind.res(), name));
        }
        match finish_write(shared, req, &w, obj.clone(), Some(old), false, &warnings).await? {
            Outcome::Done(r) => return Ok(r),
            Outcome::Retry => continue,
        }
    }
    Err(Status::conflict_modified(kind.res(), name))
}

/// Writes `obj` over `old` (or creates it when `old` is `None`): defaults and managed
/// fields, admission, then the store unless nothing changed or it is a dry run. `applied`:
/// a server-side apply, whose managed fields are already computed.
#[allow(clippy::too_many_arguments)]
pub(super) async fn finish_write(
    shared: &Shared,
    req: &Req,
    w: &Write<'_>,
    mut obj: Value,
    old: Option<Value>,
    applied: bool,
    warnings: &[String],
) -> Result<Outcome, Status> {
    let kind = w.kind;
    let mut warnings = warnings.to_vec();
    let dry_run = req.dry_run()?;
    prepare(&kind, &mut obj, old.as_ref(), applied)?;
    if !applied {
        // As for a create, the field manager runs before admission.
        fields::record_update(
            old.as_ref(),
            &mut obj,
            &req.manager(),
            &kind.api_version(),
            &meta::now(),
        );
    }
    if kind.namespaced && old.is_none() && !shared.db().namespace_exists(w.ns) {
        return Err(Status::not_found(NAMESPACES.res(), w.ns));
    }
    let obj = admit_write(shared, req, w, obj, old.as_ref(), dry_run, &mut warnings).await?;
    // An update that changes nothing is not written (the webhooks were still called).
    if let Some(old) = &old
        && same_object(&obj, old)
        && (!applied || same_ownership(&obj, old))
    {
        return Ok(Outcome::Done(json_response(200, old, &warnings)));
    }
    let code = if old.is_some() { 200 } else { 201 };
    if dry_run {
        return Ok(Outcome::Done(json_response(code, &obj, &warnings)));
    }
    let result = {
        let mut db = shared.db();
        match &old {
            Some(old) => db.update(&kind, obj, rv_of(old)),
            None => db.create(&kind, obj),
        }
    };
    match result {
        Ok(stored) => Ok(Outcome::Done(json_response(code, &stored, &warnings))),
        Err(WriteError::Stale | WriteError::Exists | WriteError::Missing) if !w.conditional => {
            Ok(Outcome::Retry)
        }
        Err(e) => Err(write_error(e, &kind, w.ns, w.name)),
    }
}

/// Admission of a PUT or PATCH: an UPDATE of `old`, or a CREATE where there is none (a
/// patch or apply that creates), with the registry's BeforeCreate and validation between
/// the phases. Returns the object to store.
async fn admit_write(
    shared: &Shared,
    req: &Req,
    w: &Write<'_>,
    obj: Value,
    old: Option<&Value>,
    dry_run: bool,
    warnings: &mut Vec<String>,
) -> Result<Value, Status> {
    let kind = w.kind;
    let operation = if old.is_some() {
        Operation::Update
    } else {
        Operation::Create
    };
    let admitted = admit(
        shared,
        &req.user,
        operation,
        &kind,
        w.ns,
        w.name,
        Some(obj.clone()),
        old.cloned(),
        dry_run,
        // kube converts PATCH options to the Create/UpdateOptions of the operation
        options(
            match operation {
                Operation::Create => "CreateOptions",
                _ => "UpdateOptions",
            },
            req,
            dry_run,
        ),
        Some(warnings),
        |mutated| {
            let mut obj = mutated.unwrap_or_default();
            if old.is_none() {
                before_create(&kind, &mut obj)?;
            }
            validate_object(&kind, &obj, old)?;
            Ok(Some(obj))
        },
    )
    .await?;
    Ok(admitted.unwrap_or_default())
}

/// Checks the body's name against the URL's (filling it in when empty), and its namespace.
pub(super) fn check_identity(
    kind: &ResourceKind,
    obj: &mut Value,
    ns: &str,
    name: &str,
) -> Result<(), Status> {
    let body_name = meta_str(obj, "name").to_owned();
    if body_name.is_empty() {
        meta_mut(obj).insert("name".into(), json!(name));
    } else if body_name != name {
        return Err(Status::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    set_namespace(kind, obj, ns)
}

/// The object's namespace is the request's: one in the body must match it; a
/// cluster-scoped kind has none.
pub(super) fn set_namespace(kind: &ResourceKind, obj: &mut Value, ns: &str) -> Result<(), Status> {
    if kind.namespaced {
        let body_ns = meta_str(obj, "namespace").to_owned();
        if !body_ns.is_empty() && body_ns != ns {
            return Err(Status::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        meta_mut(obj).insert("namespace".into(), json!(ns));
    } else {
        meta_mut(obj).remove("namespace");
    }
    Ok(())
}
