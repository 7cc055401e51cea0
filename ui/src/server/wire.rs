//! What every handler shares: a JSON request body read under a size limit, and the
//! answers: JSON, plain text, empty, the API server's errors verbatim and the
//! page's own refusals.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::Body;
use crate::view;

/// Largest request body the API accepts.
const BODY_LIMIT: usize = 1 << 20;

/// The request's JSON body, or the 413 or 400 answer.
pub(super) async fn body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, Response<Body>> {
    let bytes = match Limited::new(req.into_body(), BODY_LIMIT).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Err(json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({"error": {"code": 413, "message": "the request body is too large or broken"}}),
            ));
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": {"code": 400, "message": format!("bad request: {e}")}}),
        )
    })
}

/// The API server's answer, verbatim: the webhook's denials are its messages.
pub(super) fn api_error(err: &kube::Error) -> Response<Body> {
    match err {
        kube::Error::Api(status) => {
            let causes: Vec<_> = status
                .details
                .as_ref()
                .map(|d| {
                    d.causes
                        .iter()
                        .map(
                            |c| json!({"reason": c.reason, "message": c.message, "field": c.field}),
                        )
                        .collect()
                })
                .unwrap_or_default();
            let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::BAD_GATEWAY);
            json_response(
                code,
                &json!({"error": {
                    "code": status.code,
                    "reason": status.reason,
                    "message": status.message,
                    "causes": causes,
                    "from": "api-server",
                }}),
            )
        }
        other => json_response(
            StatusCode::BAD_GATEWAY,
            &json!({"error": {"code": 502, "message": format!("failed to reach the API server: {other}")}}),
        ),
    }
}

/// The page's own refusal of a write the policy would refuse (422).
pub(super) fn refused(refusal: view::DecisionView) -> Response<Body> {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        &json!({"error": {
            "code": 422,
            "reason": "Refused",
            "rule": refusal.rule,
            "message": refusal.reason,
            "from": "page",
        }}),
    )
}

/// A request the page cannot act on (400).
pub(super) fn invalid(message: &str) -> Response<Body> {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": {"code": 400, "reason": "Invalid", "message": message, "from": "page"}}),
    )
}

pub(super) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

pub(super) fn empty(code: StatusCode) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = code;
    resp
}

pub(super) fn text(code: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

pub(super) fn json_response<T: Serialize>(code: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(full(body));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}
