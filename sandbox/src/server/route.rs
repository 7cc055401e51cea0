//! Routing: health probes, discovery and OpenAPI documents, then a resource path to its
//! REST handler by method.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use serde_json::Value;

use super::request::{Query, Req};
use super::response::{full, json_response};
use super::{Body, Shared, body, delete, patching, read, watch, write};
use crate::auth::{self, UserInfo};
use crate::discovery;
use crate::resource::ResourceKind;
use crate::status::Status;

/// What a resource path names.
struct Target {
    kind: ResourceKind,
    namespace: Option<String>,
    name: Option<String>,
}

fn parse_target(group: &str, rest: &[&str]) -> Result<Target, Status> {
    let lookup = |res: &str| ResourceKind::lookup(group, res).ok_or_else(Status::path_not_found);
    let target = match rest {
        [res] => Target {
            kind: lookup(res)?,
            namespace: None,
            name: None,
        },
        [res, name] => {
            let kind = lookup(res)?;
            if kind.namespaced {
                return Err(Status::path_not_found());
            }
            Target {
                kind,
                namespace: None,
                name: Some((*name).to_owned()),
            }
        }
        ["namespaces", ns, res] => {
            let kind = lookup(res)?;
            if !kind.namespaced {
                return Err(Status::path_not_found());
            }
            Target {
                kind,
                namespace: Some((*ns).to_owned()),
                name: None,
            }
        }
        ["namespaces", ns, res, name] => {
            let kind = lookup(res)?;
            if !kind.namespaced {
                return Err(Status::path_not_found());
            }
            Target {
                kind,
                namespace: Some((*ns).to_owned()),
                name: Some((*name).to_owned()),
            }
        }
        _ => return Err(Status::path_not_found()),
    };
    Ok(target)
}

/// Answers one request: probes need no user; everything else is authenticated (and maybe
/// impersonated) first.
pub(super) async fn route(
    shared: Arc<Shared>,
    peer: Option<UserInfo>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Status> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if let ["healthz" | "livez" | "readyz"] = segments.as_slice() {
        return Ok(Response::new(full("ok")));
    }
    let principal = shared
        .auth
        .authenticate(&parts.headers, peer.as_ref())
        .ok_or_else(Status::unauthorized)?;
    let user = auth::impersonate(principal, &parts.headers)?;

    if parts.method == Method::GET
        && let Some(response) = document(&segments)
    {
        return Ok(response);
    }
    let (group, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] if !rest.is_empty() => ("", rest),
        ["apis", group, "v1", rest @ ..]
            if !rest.is_empty() && discovery::GROUPS.contains(group) =>
        {
            (*group, rest)
        }
        _ => return Err(Status::path_not_found()),
    };
    let target = parse_target(group, rest)?;
    let body = body::read_body(&parts.headers, body, shared.max_body).await?;
    let req = Req {
        method: parts.method,
        query: Query::parse(parts.uri.query()),
        headers: parts.headers,
        body,
        user,
    };
    dispatch(shared, &req, target).await
}

/// A GET of an OpenAPI or discovery document, if the path names one.
fn document(segments: &[&str]) -> Option<Response<Body>> {
    if segments == ["openapi", "v2"] {
        // kubectl 1.27 and 1.28 read OpenAPI v2 (protobuf) before apply, diff and replace,
        // and give up on a 404. An empty document (zero bytes of protobuf) describes no
        // kind, so they compute patches from their built-in types and skip client-side
        // schema checks, as they do for any kind a server does not describe.
        let mut response = Response::new(full(Bytes::new()));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        return Some(response);
    }
    discovery_document(segments).map(|doc| json_response(200, &doc, &[]))
}

/// The version, API group and resource list documents, and the OpenAPI v3 ones.
fn discovery_document(segments: &[&str]) -> Option<Value> {
    match segments {
        ["version"] => Some(discovery::version()),
        ["api"] => Some(discovery::core_versions()),
        ["api", "v1"] => Some(discovery::resource_list("")),
        ["apis"] => Some(discovery::groups()),
        ["apis", group] if discovery::GROUPS.contains(group) => Some(discovery::api_group(group)),
        ["apis", group, "v1"] if discovery::GROUPS.contains(group) => {
            Some(discovery::resource_list(group))
        }
        ["openapi", "v3"] => Some(discovery::openapi_index()),
        ["openapi", "v3", "api", "v1"] => Some(discovery::openapi_document("")),
        ["openapi", "v3", "apis", group, "v1"] if discovery::GROUPS.contains(group) => {
            Some(discovery::openapi_document(group))
        }
        _ => None,
    }
}

/// The REST handler for the method and the target (a collection or one object).
async fn dispatch(
    shared: Arc<Shared>,
    req: &Req,
    target: Target,
) -> Result<Response<Body>, Status> {
    let Target {
        kind,
        namespace,
        name,
    } = target;
    let ns = namespace.as_deref();
    match (&req.method, name.as_deref()) {
        (&Method::GET, None) if req.query.flag("watch") => {
            watch::start_watch(shared, req, kind, ns)
        }
        (&Method::GET, None) => read::list(&shared, req, kind, ns),
        (&Method::POST, None) => match ns {
            Some(ns) => write::create(&shared, req, kind, ns).await,
            None if !kind.namespaced => write::create(&shared, req, kind, "").await,
            None => Err(Status::method_not_supported(kind.res(), "create")),
        },
        (&Method::DELETE, None) => delete::delete_collection(&shared, req, kind, ns).await,
        (&Method::GET, Some(name)) => read::get(&shared, req, kind, ns.unwrap_or_default(), name),
        (&Method::PUT, Some(name)) => {
            write::update(&shared, req, kind, ns.unwrap_or_default(), name).await
        }
        (&Method::PATCH, Some(name)) => {
            patching::patch_object(&shared, req, kind, ns.unwrap_or_default(), name).await
        }
        (&Method::DELETE, Some(name)) => {
            delete::delete(&shared, req, kind, ns.unwrap_or_default(), name).await
        }
        _ => Err(Status::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )),
    }
}
