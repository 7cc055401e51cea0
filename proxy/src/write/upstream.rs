//! Forwarding a judged write to the API server: paths, write parameters, the
//! relay's wait for its cache to hold the write, and telling a stale judgement (a
//! failed precondition) from any other conflict.

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use secret_relay_policy::{ClusterId, Secret};

use super::answer::bad;
use crate::route::SecretsRequest;
use crate::server::{Limits, Relay, forward};
use crate::status::{BoxError, RelayBody, status};

/// How long a write's answer waits for the cache to hold the write.
const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// What kube-apiserver says when a resourceVersion or uid precondition fails: an
/// update's (`the object has been modified`), and a delete's (`the ResourceVersion
/// in the precondition ... does not match`, from rest.BeforeDelete).
const STALE: [&str; 2] = ["the object has been modified", "in the precondition"];

pub(super) fn without_force(sr: &SecretsRequest) -> SecretsRequest {
    let mut sr = sr.clone();
    sr.query.other.remove("force");
    sr
}

pub(super) fn collection_path(cp: &str) -> String {
    format!("/api/v1/namespaces/{cp}/secrets")
}

/// The path of Secret `name` in `cp`. The name is percent-encoded as one path
/// segment: the API server decodes a segment once, so the very name the relay
/// judged is the one it acts on (a decoded `%61`, `?` or `#` written raw would
/// decode again, start a query or cut the path).
pub(crate) fn object_path(cp: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{cp}/secrets/{}", path_segment(name))
}

/// Everything but RFC 3986's unreserved characters is encoded in a path segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `name` as one path segment: percent-encoded (see [`object_path`]).
pub(crate) fn path_segment(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, SEGMENT).to_string()
}

pub(super) fn encode(secret: &Secret) -> Vec<u8> {
    // k8s-openapi's Serialize of a Secret has no failure case (string maps, byte
    // strings and plain fields), so this cannot fail for a decoded Secret.
    serde_json::to_vec(secret).expect("a Secret always serializes to JSON")
}

/// Forwards a JSON object body (the judged object) with the request's write
/// parameters, impersonating `cluster`.
pub(super) async fn send_json(
    relay: &Relay,
    method: &Method,
    path: &str,
    sr: &SecretsRequest,
    json: Vec<u8>,
    cluster: &ClusterId,
) -> Response<RelayBody> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let path = with_query(path, sr);
    forward_to(relay, method, &path, &headers, json, cluster, None).await
}

/// `path` with the write parameters of the request (`?` only when there are some).
pub(super) fn with_query(path: &str, sr: &SecretsRequest) -> String {
    let query = sr.query.forwarded();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

pub(super) async fn forward_to(
    relay: &Relay,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: Vec<u8>,
    cluster: &ClusterId,
    deleting: Option<(&str, u64)>,
) -> Response<RelayBody> {
    let Ok(uri) = path.parse::<http::Uri>() else {
        return bad("the request path is not a valid URI");
    };
    // Answers come back as JSON whatever the client accepts (every Kubernetes
    // client accepts JSON): the relay reads the written resourceVersion from them.
    let mut headers = headers.clone();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    let headers = &headers;
    let answer = forward(
        relay,
        method,
        &uri,
        headers,
        Bytes::from(body),
        Some(cluster),
    )
    .await;
    settle(relay, answer, deleting).await
}

/// Reads the body of the API server's answer whole, within the relay's
/// `upstream_timeout` and at most twice its `max_body_bytes` (an answer holds at
/// most the object the API server stores, with its metadata). A hub that stalls or
/// floods in the middle of an answer is an error the cluster gets (504 or 502),
/// never a wait without end: a revocation's return of an adopted copy waits on it.
async fn read_answer(limits: &Limits, body: RelayBody) -> Result<Bytes, Response<RelayBody>> {
    read_whole(
        body,
        limits.max_body_bytes.saturating_mul(2),
        limits.upstream_timeout,
    )
    .await
}

/// Reads an answer's body whole within `timeout` and at most `cap` bytes; a 504 or
/// 502 for the cluster otherwise.
pub(crate) async fn read_whole(
    body: RelayBody,
    cap: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, Response<RelayBody>> {
    use http_body_util::BodyExt as _;
    let read = async move {
        let mut body = body;
        let mut whole = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                if whole.len() + data.len() > cap {
                    return Err(BoxError::from(format!(
                        "the answer is larger than {cap} bytes"
                    )));
                }
                whole.extend_from_slice(&data);
            }
        }
        Ok(whole.freeze())
    };
    let (code, reason, message) = match tokio::time::timeout(timeout, read).await {
        Ok(Ok(whole)) => return Ok(whole),
        Err(_) => {
            tracing::warn!("the API server's answer did not arrive whole in time");
            (
                StatusCode::GATEWAY_TIMEOUT,
                "Timeout",
                "the control plane's API server did not finish its answer in time",
            )
        }
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "failed to read the API server's answer");
            (
                StatusCode::BAD_GATEWAY,
                "ServiceUnavailable",
                "failed to read the control plane's answer",
            )
        }
    };
    Err(status(code, reason, message, None))
}

/// Holds a successful write's answer until the cache holds the write (or, for a
/// delete, no longer holds the object), so a client that reads right after its
/// write reads its write, as from kube-apiserver: the relay serves GET, LIST and the
/// next patch's judgement from the cache. Bounded by [`SETTLE_TIMEOUT`]: a cache that
/// lags longer answers anyway (the next write's precondition still holds).
pub(super) async fn settle(
    relay: &Relay,
    answer: Response<RelayBody>,
    deleting: Option<(&str, u64)>,
) -> Response<RelayBody> {
    if !answer.status().is_success() {
        return answer;
    }
    let (parts, body) = answer.into_parts();
    let bytes = match read_answer(&relay.inner.limits, body).await {
        Ok(bytes) => bytes,
        Err(failed) => return failed,
    };
    let cache = &relay.inner.cache;
    let held = async {
        if let Some((name, judged)) = deleting {
            // A delete answers with a Status (or the last object), not with the
            // deletion's resourceVersion: wait until the cache no longer holds the
            // version that was deleted.
            loop {
                match cache.get(name) {
                    Some(entry) if entry.rv <= judged => {}
                    _ => return,
                }
                cache.reached(cache.resource_version() + 1).await;
            }
        }
        if let Some(rv) = written_version(&bytes).filter(|rv| *rv > 0) {
            cache.reached(rv).await;
        }
    };
    if tokio::time::timeout(SETTLE_TIMEOUT, held).await.is_err() {
        tracing::debug!("the cache did not hold a write in time; answering anyway");
    }
    Response::from_parts(parts, crate::status::full(bytes))
}

/// The resourceVersion of the object a write's answer holds, when it holds a named
/// object (a delete's Status does not). The walk reads the top level only up to
/// `metadata` and stops there: kube-apiserver writes `metadata` before `data`, most
/// of a Secret's bytes, which a full decode would scan for nothing (about 5 % of a
/// forwarded PUT's instructions, BENCHMARKS.md "The relay's write path").
fn written_version(answer: &[u8]) -> Option<u64> {
    use serde::Deserializer as _;
    use serde::de::{Error as _, IgnoredAny, MapAccess, Visitor};
    #[derive(serde::Deserialize)]
    struct Meta {
        name: Option<String>,
        #[serde(rename = "resourceVersion")]
        resource_version: Option<String>,
    }
    struct UpToMetadata<'a>(&'a mut Option<Meta>);
    impl<'de> Visitor<'de> for UpToMetadata<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<String>()? {
                if key == "metadata" {
                    *self.0 = Some(map.next_value()?);
                    // Found: an error ends the walk without reading the rest.
                    return Err(A::Error::custom("metadata read"));
                }
                map.next_value::<IgnoredAny>()?;
            }
            Ok(())
        }
    }
    let mut meta = None;
    // The walk ends in an error by design once `metadata` is read; a body that is
    // not a JSON object simply names no version.
    let _ = serde_json::Deserializer::from_slice(answer).deserialize_map(UpToMetadata(&mut meta));
    let meta = meta?;
    meta.name?;
    Some(crate::cache::parse_rv(meta.resource_version.as_deref()))
}

/// A 409 that says the judged copy changed underneath (its resourceVersion
/// precondition failed) gives `None`: judge again. Any other answer, another 409
/// (server-side apply's field-manager conflicts) among them, is given back.
pub(super) async fn unless_stale(
    relay: &Relay,
    answer: Response<RelayBody>,
) -> Option<Response<RelayBody>> {
    if answer.status() != StatusCode::CONFLICT {
        return Some(answer);
    }
    let (parts, body) = answer.into_parts();
    let bytes = match read_answer(&relay.inner.limits, body).await {
        Ok(bytes) => bytes,
        Err(failed) => return Some(failed),
    };
    let stale = STALE
        .iter()
        .any(|marker| bytes.windows(marker.len()).any(|w| w == marker.as_bytes()));
    (!stale).then(|| Response::from_parts(parts, crate::status::full(bytes)))
}

#[cfg(test)]
mod tests {
    use super::{object_path, read_answer, written_version};
    use crate::server::Limits;
    use crate::status::{BoxError, RelayBody};
    use bytes::Bytes;
    use http_body_util::BodyExt as _;
    use std::time::Duration;

    /// A body of `chunks`, then, when `stall`, no end.
    fn answer_body(chunks: Vec<Vec<u8>>, stall: bool) -> RelayBody {
        use futures::StreamExt as _;
        let frames = futures::stream::iter(chunks)
            .map(|c| Ok::<_, BoxError>(hyper::body::Frame::data(Bytes::from(c))));
        let body = if stall {
            http_body_util::StreamBody::new(frames.chain(futures::stream::pending()).boxed())
        } else {
            http_body_util::StreamBody::new(frames.boxed())
        };
        body.boxed_unsync()
    }

    #[tokio::test]
    async fn an_answer_that_stalls_or_floods_mid_body_is_an_error_not_a_wait() {
        let limits = Limits {
            max_body_bytes: 8,
            // The stalled answer below waits this long: short, not a sleep.
            upstream_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let whole = read_answer(
            &limits,
            answer_body(vec![b"{\"a\"".to_vec(), b":1}".to_vec()], false),
        )
        .await
        .unwrap();
        assert_eq!(&whole[..], b"{\"a\":1}");
        // Headers came, then half the body, then nothing: answered at the timeout.
        let stalled = read_answer(&limits, answer_body(vec![b"{\"a\"".to_vec()], true))
            .await
            .unwrap_err();
        assert_eq!(stalled.status(), http::StatusCode::GATEWAY_TIMEOUT);
        // More than twice the largest request: not read on.
        let flood = read_answer(
            &limits,
            answer_body(vec![vec![b'x'; 10], vec![b'x'; 10]], true),
        )
        .await
        .unwrap_err();
        assert_eq!(flood.status(), http::StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn a_name_goes_upstream_as_the_one_segment_the_relay_judged() {
        assert_eq!(
            object_path("argocd", "repo-1.a"),
            "/api/v1/namespaces/argocd/secrets/repo-1.a"
        );
        // Decoded once by the relay; the API server decodes what it is sent once.
        for (name, path) in [
            (
                "%61rgocd-secret",
                "/api/v1/namespaces/argocd/secrets/%2561rgocd-secret",
            ),
            (
                "a?dryRun=All",
                "/api/v1/namespaces/argocd/secrets/a%3FdryRun%3DAll",
            ),
            ("a#b c", "/api/v1/namespaces/argocd/secrets/a%23b%20c"),
        ] {
            let built = object_path("argocd", name);
            assert_eq!(built, path);
            let uri: http::Uri = built.parse().unwrap();
            assert_eq!(uri.query(), None, "{name}");
            let segment = uri.path().rsplit('/').next().unwrap();
            let decoded = percent_encoding::percent_decode_str(segment)
                .decode_utf8()
                .unwrap();
            assert_eq!(decoded, name);
        }
    }

    #[test]
    fn the_written_version_is_read_from_metadata_wherever_it_stands() {
        let stored = br#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"repo","namespace":"argocd","resourceVersion":"4711","labels":{"resourceVersion":"1"}},"data":{"password":"c2VjcmV0"},"type":"Opaque"}"#;
        assert_eq!(written_version(stored), Some(4711));
        let data_first = br#"{"data":{"resourceVersion":"MQ=="},"metadata":{"resourceVersion":"12","name":"repo"}}"#;
        assert_eq!(written_version(data_first), Some(12));
    }

    #[test]
    fn an_answer_without_a_named_object_names_no_version() {
        let status = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success"}"#;
        assert_eq!(written_version(status), None);
        assert_eq!(written_version(b"not json"), None);
        assert_eq!(written_version(b"[1,2]"), None);
        assert_eq!(written_version(br#"{"kind":"Secret"}"#), None);
    }
}
