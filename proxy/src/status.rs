//! Responses: Kubernetes `Status` bodies, JSON, and the one body type of the relay.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full};

/// Errors a response body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every relay response: a full buffer, a watch stream or an upstream body.
pub type RelayBody = UnsyncBoxBody<Bytes, BoxError>;

/// A full body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> RelayBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A JSON response.
pub(crate) fn json(code: StatusCode, body: impl Into<Bytes>) -> Response<RelayBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A `Status` failure, as the API server writes them: `reason` is the Kubernetes
/// reason (`Forbidden`, `NotFound`, ...); `causes` are (reason, message) pairs.
pub(crate) fn status(
    code: StatusCode,
    reason: &str,
    message: &str,
    details: Option<(&str, &[(&str, &str)])>,
) -> Response<RelayBody> {
    let mut body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some((name, causes)) = details {
        body["details"] = serde_json::json!({
            "name": name,
            "kind": "secrets",
            "causes": causes
                .iter()
                .map(|(reason, message)| serde_json::json!({"reason": reason, "message": message}))
                .collect::<Vec<_>>(),
        });
    }
    json(code, body.to_string())
}

/// A `Status` success for a verb that returns no object.
pub(crate) fn success(name: &str, message: &str) -> Response<RelayBody> {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "message": message,
        "details": {"name": name, "kind": "secrets"},
    });
    json(StatusCode::OK, body.to_string())
}
