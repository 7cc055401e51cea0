//! Responses: JSON bodies with their warning headers, and the Status errors that several
//! handlers share.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::Body;
use crate::resource::{NAMESPACES, ResourceKind};
use crate::status::Status;
use crate::store::WriteError;

/// A body of fixed bytes.
pub(super) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A JSON answer with `code`; each warning becomes a `Warning: 299 - "<text>"` header.
pub(super) fn json_response(code: u16, value: &Value, warnings: &[String]) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for w in warnings {
        let text = format!("299 - {}", serde_json::Value::String(w.clone()));
        if let Ok(v) = HeaderValue::from_str(&text) {
            response.headers_mut().append("warning", v);
        }
    }
    response
}

/// A Status as its JSON answer.
pub(super) fn status_response(status: &Status) -> Response<Body> {
    json_response(status.code, &status.to_json(), &[])
}

/// The Status of a store write that failed.
pub(super) fn write_error(err: WriteError, kind: &ResourceKind, ns: &str, name: &str) -> Status {
    match err {
        WriteError::Exists => Status::already_exists(kind.res(), name),
        WriteError::Missing => Status::not_found(kind.res(), name),
        WriteError::Stale => Status::conflict_modified(kind.res(), name),
        WriteError::NoNamespace => Status::not_found(NAMESPACES.res(), ns),
    }
}

/// An error that is not an API status, as kube-apiserver answers it: 500 with the error's
/// text and no reason (`ErrorToAPIStatus`).
pub(super) fn plain_error(message: String) -> Status {
    Status::new(500, "", message)
}
