//! Reads: GET of one object and LIST of a collection (pages, `continue` tokens, Table and
//! metadata-only renderings). Watches are in `watch`.

use base64::Engine as _;
use http::Response;
use serde_json::{Value, json};

use super::objects::meta_str;
use super::request::{
    Req, list_query_conversion, parse_resource_version, selectors, validate_list_options,
};
use super::response::{json_response, plain_error};
use super::{Body, Shared};
use crate::resource::ResourceKind;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::Status;
use crate::store::{self, Db};
use crate::table;

/// Where a paged list resumes: the list's resourceVersion and the key after the last item.
#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: u64,
    start: (String, String),
}

/// One page of a list: its items (without kind and apiVersion), the key the next page
/// starts at and how many matching objects are left.
struct Page {
    items: Vec<Value>,
    next: Option<store::Key>,
    remaining: usize,
}

/// GET of one object.
pub(super) fn get(
    shared: &Shared,
    req: &Req,
    kind: ResourceKind,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, Status> {
    parse_resource_version(req.query.get("resourceVersion")).map_err(plain_error)?;
    let db = shared.db();
    let obj = db
        .get(&kind, ns, name)
        .ok_or_else(|| Status::not_found(kind.res(), name))?;
    if let Some(include) = req.table() {
        let meta = json!({"resourceVersion": meta_str(obj, "resourceVersion")});
        return Ok(json_response(
            200,
            &table::table(&kind, &[obj], meta, include, true),
            &[],
        ));
    }
    if req.metadata_only() {
        return Ok(json_response(200, &table::partial(obj), &[]));
    }
    Ok(json_response(200, obj, &[]))
}

/// LIST of a collection (all namespaces when `ns` is `None`).
pub(super) fn list(
    shared: &Shared,
    req: &Req,
    kind: ResourceKind,
    ns: Option<&str>,
) -> Result<Response<Body>, Status> {
    list_query_conversion(req)?;
    let (labels, field) = selectors(req, &kind)?;
    validate_list_options(req, false)?;
    parse_resource_version(req.query.get("resourceVersion"))
        .map_err(|e| Status::bad_request(format!("invalid resource version: {e}")))?;
    let limit = req
        .query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let token = continue_token(req)?;
    let db = shared.db();
    if let Some(t) = &token
        && t.rv < db.compacted(&kind)
    {
        return Err(Status::continue_expired());
    }
    let list_rv = token.as_ref().map_or(db.rv(), |t| t.rv);
    let page = page(&db, &kind, ns, token.as_ref(), limit, &labels, &field);
    drop(db);
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if let Some(start) = page.next {
        let token = ContinueToken {
            v: "meta.k8s.io/v1".into(),
            rv: list_rv,
            start,
        };
        // Strings and an integer: no failure case (an empty token would restart the list).
        let encoded = base64::engine::general_purpose::STANDARD.encode(
            serde_json::to_vec(&token).expect("a continue token always serializes to JSON"),
        );
        metadata["continue"] = json!(encoded);
        if labels.is_empty() && field.is_empty() {
            metadata["remainingItemCount"] = json!(page.remaining);
        }
    }
    Ok(render_list(req, &kind, page.items, metadata))
}

/// The request's `continue` token, decoded.
fn continue_token(req: &Req) -> Result<Option<ContinueToken>, Status> {
    let Some(c) = req.query.get("continue").filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(c)
        .map_err(|_| Status::bad_request("continue key is not valid: illegal base64 data"))?;
    let token: ContinueToken = serde_json::from_slice(&bytes)
        .map_err(|e| Status::bad_request(format!("continue key is not valid: {e}")))?;
    Ok(Some(token))
}

/// The matching objects from the token's key on, at most `limit` of them.
fn page(
    db: &Db,
    kind: &ResourceKind,
    ns: Option<&str>,
    token: Option<&ContinueToken>,
    limit: Option<usize>,
    labels: &LabelSelector,
    field: &FieldSelector,
) -> Page {
    let mut page = Page {
        items: Vec::new(),
        next: None,
        remaining: 0,
    };
    for (key, obj) in db.range(kind, ns, token.map(|t| &t.start)) {
        if !labels.matches(obj) || !field.matches(obj) {
            continue;
        }
        if limit.is_some_and(|l| page.items.len() >= l) {
            if page.next.is_none() {
                page.next = Some(key.clone());
            }
            page.remaining += 1;
            continue;
        }
        let mut item = obj.clone();
        if let Some(m) = item.as_object_mut() {
            m.remove("kind");
            m.remove("apiVersion");
        }
        page.items.push(item);
    }
    page
}

/// The list as the Accept header asks: a Table, a PartialObjectMetadataList or the kind's
/// list.
fn render_list(
    req: &Req,
    kind: &ResourceKind,
    items: Vec<Value>,
    metadata: Value,
) -> Response<Body> {
    if let Some(include) = req.table() {
        let refs: Vec<&Value> = items.iter().collect();
        return json_response(
            200,
            &table::table(kind, &refs, metadata, include, true),
            &[],
        );
    }
    if req.metadata_only() {
        let partials: Vec<Value> = items.iter().map(table::partial).collect();
        let doc = json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": metadata,
            "items": partials,
        });
        return json_response(200, &doc, &[]);
    }
    let doc = json!({
        "kind": format!("{}List", kind.kind),
        "apiVersion": kind.api_version(),
        "metadata": metadata,
        "items": items,
    });
    json_response(200, &doc, &[])
}
