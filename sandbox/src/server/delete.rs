//! Deletes: DELETE of one object (preconditions, admission, a namespace's contents first)
//! and of a collection.

use http::Response;
use serde_json::{Value, json};

use super::admit::admit;
use super::objects::{meta_mut, meta_str};
use super::request::{Req, selectors};
use super::response::{json_response, write_error};
use super::{Body, MAX_ATTEMPTS, Shared};
use crate::admission::Operation;
use crate::auth::{self, UserInfo};
use crate::meta;
use crate::resource::{self, NAMESPACES, ResourceKind};
use crate::status::{Resource, Status};
use crate::store::{WriteError, rv_of};

/// The DeleteOptions of a request: its body, or `{}`, with the query's settings.
fn delete_options(req: &Req) -> Result<Value, Status> {
    let mut opts = if req.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice::<Value>(&req.body)
            .map_err(|e| Status::bad_request(format!("failed to decode DeleteOptions: {e}")))?
    };
    opts["kind"] = json!("DeleteOptions");
    opts["apiVersion"] = json!("meta.k8s.io/v1");
    if let Some(p) = req.query.get("propagationPolicy") {
        opts["propagationPolicy"] = json!(p);
    }
    if let Some(g) = req
        .query
        .get("gracePeriodSeconds")
        .and_then(|g| g.parse::<i64>().ok())
    {
        opts["gracePeriodSeconds"] = json!(g);
    }
    if req.dry_run()? {
        opts["dryRun"] = json!(["All"]);
    }
    Ok(opts)
}

/// DELETE of one object; a namespace answers as terminating, its contents deleted.
pub(super) async fn delete(
    shared: &Shared,
    req: &Req,
    kind: ResourceKind,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, Status> {
    let opts = delete_options(req)?;
    let dry_run = opts["dryRun"].is_array();
    let deleted = delete_one(shared, &req.user, kind, ns, name, &opts, dry_run).await?;
    if kind.index == NAMESPACES.index {
        // kube-apiserver answers a namespace DELETE with the namespace, now terminating;
        // here its contents are already gone.
        let mut ns_obj = deleted;
        meta_mut(&mut ns_obj).insert("deletionTimestamp".into(), json!(meta::now()));
        ns_obj["status"] = json!({"phase": "Terminating"});
        return Ok(json_response(200, &ns_obj, &[]));
    }
    let uid = meta_str(&deleted, "uid").to_owned();
    Ok(json_response(
        200,
        &Status::success_json(kind.res(), name, &uid),
        &[],
    ))
}

/// Deletes one object through admission; returns it as it was deleted.
async fn delete_one(
    shared: &Shared,
    user: &UserInfo,
    kind: ResourceKind,
    ns: &str,
    name: &str,
    opts: &Value,
    dry_run: bool,
) -> Result<Value, Status> {
    for _ in 0..MAX_ATTEMPTS {
        let old = shared
            .db()
            .get(&kind, ns, name)
            .cloned()
            .ok_or_else(|| Status::not_found(kind.res(), name))?;
        check_preconditions(&kind, name, &old, opts)?;
        admit(
            shared,
            user,
            Operation::Delete,
            &kind,
            ns,
            name,
            None,
            Some(old.clone()),
            dry_run,
            opts.clone(),
            None,
            Ok,
        )
        .await?;
        if dry_run {
            return Ok(old);
        }
        if kind.index == NAMESPACES.index {
            delete_namespace_contents(shared, name).await?;
        }
        let result = shared.db().delete(&kind, ns, name, rv_of(&old));
        match result {
            Ok(deleted) => {
                tracing::debug!(resource = kind.resource, namespace = ns, name, "deleted");
                return Ok(deleted);
            }
            Err(WriteError::Stale) if opts["preconditions"]["resourceVersion"].is_null() => {
                continue;
            }
            Err(e) => return Err(write_error(e, &kind, ns, name)),
        }
    }
    Err(Status::conflict_modified(kind.res(), name))
}

/// rest.BeforeDelete checks the preconditions first, naming the kind (not the resource) as
/// the conflicting "resource" (staging/src/k8s.io/apiserver/pkg/registry/rest/delete.go).
fn check_preconditions(
    kind: &ResourceKind,
    name: &str,
    old: &Value,
    opts: &Value,
) -> Result<(), Status> {
    let uid = meta_str(old, "uid").to_owned();
    let by_kind = Resource {
        resource: kind.kind,
        group: kind.group,
    };
    let pre = &opts["preconditions"];
    if let Some(p) = pre["uid"].as_str()
        && p != uid
    {
        return Err(Status::conflict(
            by_kind,
            name,
            &format!(
                "the UID in the precondition ({p}) does not match the UID in record ({uid}). \
                 The object might have been deleted and then recreated"
            ),
        ));
    }
    if let Some(p) = pre["resourceVersion"].as_str() {
        let actual = meta_str(old, "resourceVersion");
        if p != actual {
            return Err(Status::conflict(
                by_kind,
                name,
                &format!(
                    "the ResourceVersion in the precondition ({p}) does not match the \
                     ResourceVersion in record ({actual}). The object might have been modified"
                ),
            ));
        }
    }
    Ok(())
}

/// What kube's namespace controller does: delete everything in the namespace, as itself.
async fn delete_namespace_contents(shared: &Shared, ns: &str) -> Result<(), Status> {
    let controller = auth::namespace_controller();
    let opts = json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "propagationPolicy": "Background"});
    for kind in resource::KINDS.iter().filter(|k| k.namespaced) {
        let names: Vec<String> = shared
            .db()
            .range(kind, Some(ns), None)
            .map(|(k, _)| k.1.clone())
            .collect();
        for name in names {
            match Box::pin(delete_one(
                shared,
                &controller,
                *kind,
                ns,
                &name,
                &opts,
                false,
            ))
            .await
            {
                Ok(_) => {}
                Err(s) if s.code == 404 => {}
                Err(s) => return Err(s),
            }
        }
    }
    Ok(())
}

/// DELETE of a collection: each matching object through admission, as deleted.
pub(super) async fn delete_collection(
    shared: &Shared,
    req: &Req,
    kind: ResourceKind,
    ns: Option<&str>,
) -> Result<Response<Body>, Status> {
    let (labels, field) = selectors(req, &kind)?;
    let opts = delete_options(req)?;
    let dry_run = opts["dryRun"].is_array();
    let targets: Vec<(String, String)> = shared
        .db()
        .range(&kind, ns, None)
        .filter(|(_, o)| labels.matches(o) && field.matches(o))
        .map(|(k, _)| k.clone())
        .collect();
    let mut items = Vec::new();
    for (obj_ns, name) in targets {
        let obj = shared.db().get(&kind, &obj_ns, &name).cloned();
        match delete_one(shared, &req.user, kind, &obj_ns, &name, &opts, dry_run).await {
            Ok(_) => items.extend(obj),
            Err(s) if s.code == 404 => {}
            Err(s) => return Err(s),
        }
    }
    let rv = shared.db().rv();
    let doc = json!({
        "kind": format!("{}List", kind.kind),
        "apiVersion": kind.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    });
    Ok(json_response(200, &doc, &[]))
}
