//! What a request to the relay asks for: a pure parse of method, path, query and
//! content type, refusing everything outside Secrets in the control-plane namespace.

use std::collections::BTreeMap;
use std::time::Duration;

use http::Method;
use secret_relay_policy::Selector;

use crate::cache::parse_rv;
use crate::watch::{ViewRequest, WatchParams};

/// A request the relay serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /version`.
    Version,
    /// `GET /api`.
    ApiVersions,
    /// `GET /api/v1`.
    ApiResources,
    /// `GET /apis`.
    ApiGroups,
    /// `GET /openapi/v2`, `/openapi/v3` and `/openapi/v3/api/v1`: schema documents,
    /// forwarded to the API server.
    OpenApi,
    /// A Secrets request in the control-plane namespace.
    Secrets(SecretsRequest),
    /// `GET /apis/secret-relay.io/v1/generation[?revision=R|?after=N]`: the
    /// relay's policy, held open until its revision is another than `revision` (or
    /// its generation another than `after`, as older agents ask): a long poll
    /// agents use to retry what an older policy denied.
    Generation {
        /// Answer once the generation is another than this.
        after: Option<u64>,
        /// Answer once the revision is another than this.
        revision: Option<String>,
    },
}

/// A Secrets request: the verb, the name when the path has one, and the query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretsRequest {
    /// What is asked.
    pub verb: Verb,
    /// The Secret's name, for verbs on one object.
    pub name: Option<String>,
    /// The query parameters the relay reads.
    pub query: Query,
}

/// The verbs of the Secrets surface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// `GET .../secrets/{name}`.
    Get,
    /// `GET .../secrets`.
    List,
    /// `GET .../secrets?watch=true`.
    Watch,
    /// `POST .../secrets`.
    Create,
    /// `PUT .../secrets/{name}`.
    Update,
    /// `PATCH .../secrets/{name}`.
    Patch(PatchKind),
    /// `DELETE .../secrets/{name}`.
    Delete,
}

/// The patch types Kubernetes accepts, by Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/strategic-merge-patch+json` (a merge for Secrets).
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

/// The query parameters of a Secrets request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `labelSelector`.
    pub label_selector: Option<String>,
    /// `fieldSelector`.
    pub field_selector: Option<String>,
    /// `allowWatchBookmarks`.
    pub allow_bookmarks: bool,
    /// `timeoutSeconds`.
    pub timeout_seconds: Option<u64>,
    /// `sendInitialEvents`.
    pub send_initial_events: bool,
    /// Everything else, passed through to the API server on writes.
    pub other: BTreeMap<String, String>,
}

/// Why a request is refused before any policy is consulted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No such path here (other resources, subresources, unknown API groups).
    #[error("{0}")]
    NotFound(String),
    /// A path the relay never serves to a cluster (other namespaces, all namespaces).
    #[error("{0}")]
    Forbidden(String),
    /// The method is not served on this path.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A malformed request (bad query, dangerous path).
    #[error("{0}")]
    BadRequest(String),
    /// A body type the relay does not read.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Parameters kube-apiserver would refuse as invalid (422).
    #[error("{0}")]
    Invalid(String),
}

/// Parses one request. `namespace` is the control-plane namespace of the live policy.
pub fn route(
    method: &Method,
    path: &str,
    query: Option<&str>,
    content_type: Option<&str>,
    namespace: &str,
) -> Result<Route, RouteError> {
    check_path(path)?;
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let get_only = |route: Route| {
        if method == Method::GET || method == Method::HEAD {
            Ok(route)
        } else {
            Err(RouteError::MethodNotAllowed(format!(
                "{method} is not allowed on {path}"
            )))
        }
    };
    match segments.as_slice() {
        ["version"] => get_only(Route::Version),
        ["api"] => get_only(Route::ApiVersions),
        ["api", "v1"] => get_only(Route::ApiResources),
        ["apis"] => get_only(Route::ApiGroups),
        ["apis", "secret-relay.io", "v1", "generation"] => {
            let q = parse_query(query)?;
            let after = match q.other.get("after") {
                None => None,
                Some(v) => Some(v.parse().map_err(|_| {
                    RouteError::BadRequest(format!("after must be a number, not {v:?}"))
                })?),
            };
            let revision = match q.other.get("revision") {
                None => None,
                Some(v) if v.len() <= 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    Some(v.clone())
                }
                Some(_) => {
                    return Err(RouteError::BadRequest(
                        "revision must be the hex digits a generation answer gave".to_owned(),
                    ));
                }
            };
            get_only(Route::Generation { after, revision })
        }
        ["openapi", "v2"] | ["openapi", "v3"] | ["openapi", "v3", "api", "v1"] => {
            get_only(Route::OpenApi)
        }
        ["api", "v1", "namespaces", raw_ns, "secrets", rest @ ..] => {
            // Decided on the names the API server will read: percent-decoded.
            let ns = &decode_segment(raw_ns)?;
            if *ns != namespace {
                return Err(RouteError::Forbidden(format!(
                    "the relay serves Secrets in namespace {namespace} only, not in {ns}"
                )));
            }
            let name = match rest {
                [] => None,
                [name] if !name.is_empty() => Some(object_name(name)?),
                [_, sub, ..] => {
                    return Err(RouteError::NotFound(format!(
                        "the relay serves no subresources of Secrets ({sub})"
                    )));
                }
                _ => return Err(RouteError::NotFound(format!("no such path: {path}"))),
            };
            let query = parse_query(query)?;
            let verb = verb(method, name.is_some(), &query, content_type)?;
            if verb == Verb::Watch {
                check_watch_list(&query)?;
            }
            Ok(Route::Secrets(SecretsRequest { verb, name, query }))
        }
        ["api", "v1", "secrets"] => Err(RouteError::Forbidden(format!(
            "the relay serves Secrets in namespace {namespace} only, not across all namespaces"
        ))),
        ["api", "v1", "namespaces", raw_ns, ..] if decode_segment(raw_ns)? != namespace => {
            Err(RouteError::Forbidden(format!(
                "the relay serves Secrets in namespace {namespace} only, not in {}",
                decode_segment(raw_ns)?
            )))
        }
        _ => Err(RouteError::NotFound(format!(
            "the relay serves only Secrets in namespace {namespace}; {path} is not one of its paths"
        ))),
    }
}

/// A watch's streaming-list parameters, validated as kube-apiserver validates them:
/// `sendInitialEvents=true` needs `allowWatchBookmarks=true` (the end of the initial
/// events is a bookmark) and `resourceVersionMatch=NotOlderThan`; a
/// `resourceVersionMatch` on a watch needs `sendInitialEvents`.
fn check_watch_list(query: &Query) -> Result<(), RouteError> {
    let rv_match = query.other.get("resourceVersionMatch").map(String::as_str);
    if query.send_initial_events {
        if !query.allow_bookmarks {
            return Err(RouteError::Invalid(
                "allowWatchBookmarks: Required value: sendInitialEvents requires setting allowWatchBookmarks to true".to_owned(),
            ));
        }
        if rv_match != Some("NotOlderThan") {
            return Err(RouteError::Invalid(
                "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan".to_owned(),
            ));
        }
    } else if rv_match.is_some_and(|m| !m.is_empty()) {
        return Err(RouteError::Invalid(
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided".to_owned(),
        ));
    }
    Ok(())
}

/// One path segment as kube-apiserver reads it: percent-decoded. A segment that
/// does not decode to UTF-8, or decodes to a separator or a control character
/// (refused encoded already by [`check_path`], checked again here), is refused.
fn decode_segment(raw: &str) -> Result<String, RouteError> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| {
            RouteError::BadRequest("a path segment does not decode to UTF-8".to_owned())
        })?;
    if decoded
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return Err(RouteError::BadRequest(
            "encoded '/', '\\' or control characters in the path are refused".to_owned(),
        ));
    }
    Ok(decoded.into_owned())
}

/// An object's name from its path segment, refused as kube-apiserver's storage
/// refuses it before any lookup (`content.IsPathSegmentName`): `.`, `..`, or a
/// name that still holds `%` once decoded (encoded twice) is a bad request, for
/// every verb, whether a Secret of the name decoded again exists or not.
fn object_name(raw: &str) -> Result<String, RouteError> {
    let name = decode_segment(raw)?;
    let problem = match name.as_str() {
        "." | ".." => format!("may not be '{name}'"),
        _ if name.contains('%') => "may not contain '%'".to_owned(),
        _ => return Ok(name),
    };
    Err(RouteError::BadRequest(format!(
        "Name parameter invalid: {name:?}: {problem}"
    )))
}

/// Refuses paths that could mean something else after normalization: dot segments,
/// empty segments, encoded separators or dots, and control characters.
fn check_path(path: &str) -> Result<(), RouteError> {
    if !path.starts_with('/') {
        return Err(RouteError::BadRequest(
            "the path must be absolute".to_owned(),
        ));
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f")
        || lower.contains("%5c")
        || lower.contains("%2e")
        || lower.contains("%00")
    {
        return Err(RouteError::BadRequest(
            "encoded '/', '\\', '.' or NUL in the path are refused".to_owned(),
        ));
    }
    if path.bytes().any(|b| b.is_ascii_control() || b == b'\\') {
        return Err(RouteError::BadRequest(
            "control characters or '\\' in the path are refused".to_owned(),
        ));
    }
    // Every segment after the leading '/', so `//api/...` has an empty first one.
    let inner = &path[1..];
    if path.len() > 1
        && inner
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(RouteError::BadRequest(
            "empty, '.' or '..' path segments are refused".to_owned(),
        ));
    }
    Ok(())
}

fn verb(
    method: &Method,
    named: bool,
    query: &Query,
    content_type: Option<&str>,
) -> Result<Verb, RouteError> {
    let watch = query
        .other
        .get("watch")
        .is_some_and(|v| v == "true" || v == "1");
    let not_allowed = |what: &str| Err(RouteError::MethodNotAllowed(what.to_owned()));
    match (method.as_str(), named) {
        ("GET" | "HEAD", true) if watch => Err(RouteError::BadRequest(
            "watch a single Secret with a fieldSelector on the collection, not with ?watch on its name"
                .to_owned(),
        )),
        ("GET" | "HEAD", true) => Ok(Verb::Get),
        ("GET" | "HEAD", false) if watch => Ok(Verb::Watch),
        ("GET" | "HEAD", false) => Ok(Verb::List),
        ("POST", false) => Ok(Verb::Create),
        ("PUT", true) => Ok(Verb::Update),
        ("PATCH", true) => Ok(Verb::Patch(patch_kind(content_type)?)),
        ("DELETE", true) => Ok(Verb::Delete),
        ("DELETE", false) => not_allowed(
            "deleting a collection of Secrets through the relay is not allowed; delete them one by one",
        ),
        ("POST", true) => not_allowed("POST creates in the collection, not on a name"),
        (m, _) => Err(RouteError::MethodNotAllowed(format!(
            "{m} is not allowed on Secrets through the relay"
        ))),
    }
}

fn patch_kind(content_type: Option<&str>) -> Result<PatchKind, RouteError> {
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match media.as_str() {
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/json-patch+json" => Ok(PatchKind::Json),
        "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
        "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
        other => Err(RouteError::UnsupportedMediaType(format!(
            "the body of a PATCH must be a merge, JSON, strategic-merge or apply patch, not {other:?}"
        ))),
    }
}

fn parse_query(query: Option<&str>) -> Result<Query, RouteError> {
    let mut out = Query::default();
    let bool_param = |key: &str, v: &str| match v {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        _ => Err(RouteError::BadRequest(format!(
            "{key} must be true or false, not {v:?}"
        ))),
    };
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let value = value.into_owned();
        let set = |slot: &mut Option<String>| {
            if slot.replace(value.clone()).is_some() {
                Err(RouteError::BadRequest(format!(
                    "{key} is given more than once"
                )))
            } else {
                Ok(())
            }
        };
        match key.as_ref() {
            "resourceVersion" => set(&mut out.resource_version)?,
            "labelSelector" => set(&mut out.label_selector)?,
            "fieldSelector" => set(&mut out.field_selector)?,
            "allowWatchBookmarks" => out.allow_bookmarks = bool_param(&key, &value)?,
            "sendInitialEvents" => out.send_initial_events = bool_param(&key, &value)?,
            "timeoutSeconds" => {
                out.timeout_seconds = Some(value.parse().map_err(|_| {
                    RouteError::BadRequest(format!(
                        "timeoutSeconds must be a number, not {value:?}"
                    ))
                })?);
            }
            other => {
                if out.other.insert(other.to_owned(), value).is_some() {
                    return Err(RouteError::BadRequest(format!(
                        "{other} is given more than once"
                    )));
                }
            }
        }
    }
    Ok(out)
}

impl Query {
    /// The query string to forward to the API server for a write: only the parameters
    /// a write reads (`dryRun`, `fieldManager`, `fieldValidation`, `force`, `pretty`,
    /// `gracePeriodSeconds`, `propagationPolicy`), re-encoded.
    pub fn forwarded(&self) -> String {
        const WRITE_PARAMS: &[&str] = &[
            "dryRun",
            "fieldManager",
            "fieldValidation",
            "force",
            "pretty",
            "gracePeriodSeconds",
            "propagationPolicy",
        ];
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.other {
            if WRITE_PARAMS.contains(&k.as_str()) {
                out.append_pair(k, v);
            }
        }
        out.finish()
    }

    /// The view a list or watch of `cluster` asks for: `labelSelector` parsed, and
    /// `fieldSelector` on `metadata.name` and `metadata.namespace` (the control-plane
    /// namespace `namespace`; another one selects nothing). Anything else is 400.
    pub fn view(&self, cluster: &str, namespace: &str) -> Result<ViewRequest, RouteError> {
        let labels = match self.label_selector.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(Selector::parse(s).map_err(|e| {
                RouteError::BadRequest(format!("unable to parse labelSelector: {e}"))
            })?),
        };
        let mut name = None;
        for term in self
            .field_selector
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter(|t| !t.is_empty())
        {
            let (field, value) = term
                .split_once("==")
                .or_else(|| term.split_once('='))
                .ok_or_else(|| {
                    RouteError::BadRequest(format!("unsupported fieldSelector term {term:?}"))
                })?;
            match field.trim() {
                "metadata.name" => name = Some(value.trim().to_owned()),
                "metadata.namespace" if value.trim() == namespace => {}
                // Another namespace: no hub copy has an empty name, so nothing matches.
                "metadata.namespace" => name = Some(String::new()),
                other => {
                    return Err(RouteError::BadRequest(format!(
                        "field label not supported: {other} (the relay supports metadata.name and metadata.namespace)"
                    )));
                }
            }
        }
        Ok(ViewRequest {
            cluster: cluster.to_owned(),
            labels,
            name,
        })
    }

    /// The parameters of a watch: where it starts, bookmarks, and how long it lasts
    /// (`timeoutSeconds`, never longer than `max_watch`).
    pub fn watch_params(&self, max_watch: Duration, bookmark_interval: Duration) -> WatchParams {
        WatchParams {
            resource_version: self
                .resource_version
                .as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| parse_rv(Some(v))),
            bookmarks: self.allow_bookmarks,
            timeout: self
                .timeout_seconds
                .map(Duration::from_secs)
                .unwrap_or(max_watch)
                .min(max_watch),
            bookmark_interval,
            send_initial_events: self.send_initial_events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: Method, path: &str, query: Option<&str>) -> Result<Route, RouteError> {
        route(&method, path, query, Some("application/json"), "argocd")
    }

    #[test]
    fn a_name_encoded_twice_is_refused_as_kube_apiserver_refuses_it() {
        // `%2561rgocd-secret` decodes once to `%61rgocd-secret`, which the API server
        // would never decode again: refused, for every verb, before any lookup.
        for method in [Method::GET, Method::PUT, Method::PATCH, Method::DELETE] {
            match r(
                method.clone(),
                "/api/v1/namespaces/argocd/secrets/%2561rgocd-secret",
                None,
            ) {
                Err(RouteError::BadRequest(m)) => assert_eq!(
                    m, r#"Name parameter invalid: "%61rgocd-secret": may not contain '%'"#,
                    "{method}"
                ),
                other => panic!("{method}: {other:?}"),
            }
        }
        // `?` and `#` decoded are part of the name: the name the relay judges.
        let Ok(Route::Secrets(sr)) = r(
            Method::DELETE,
            "/api/v1/namespaces/argocd/secrets/a%3FdryRun%3DAll%23b",
            None,
        ) else {
            panic!("not a Secret's path");
        };
        assert_eq!(sr.name.as_deref(), Some("a?dryRun=All#b"));
        assert!(sr.query.other.is_empty());
    }

    #[test]
    fn secrets_in_the_control_plane_namespace_map_to_verbs() {
        let cases = [
            (
                Method::GET,
                "/api/v1/namespaces/argocd/secrets",
                None,
                Verb::List,
            ),
            (
                Method::GET,
                "/api/v1/namespaces/argocd/secrets",
                Some("watch=true&resourceVersion=5"),
                Verb::Watch,
            ),
            (
                Method::GET,
                "/api/v1/namespaces/argocd/secrets/a",
                None,
                Verb::Get,
            ),
            (
                Method::POST,
                "/api/v1/namespaces/argocd/secrets",
                None,
                Verb::Create,
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/argocd/secrets/a",
                None,
                Verb::Update,
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/argocd/secrets/a",
                None,
                Verb::Delete,
            ),
        ];
        for (method, path, query, want) in cases {
            match r(method.clone(), path, query) {
                Ok(Route::Secrets(req)) => assert_eq!(req.verb, want, "{method} {path}"),
                other => panic!("{method} {path}: {other:?}"),
            }
        }
        let patch = route(
            &Method::PATCH,
            "/api/v1/namespaces/argocd/secrets/a",
            None,
            Some("application/apply-patch+yaml; charset=utf-8"),
            "argocd",
        );
        assert!(matches!(
            patch,
            Ok(Route::Secrets(SecretsRequest {
                verb: Verb::Patch(PatchKind::Apply),
                ..
            }))
        ));
    }

    #[test]
    fn other_namespaces_resources_and_path_tricks_are_refused() {
        let forbidden = [
            "/api/v1/namespaces/kube-system/secrets",
            "/api/v1/namespaces/kube-system/secrets/x",
            "/api/v1/secrets",
            "/api/v1/namespaces/default/configmaps",
        ];
        for path in forbidden {
            assert!(
                matches!(r(Method::GET, path, None), Err(RouteError::Forbidden(_))),
                "{path}"
            );
        }
        let bad = [
            "/api/v1/namespaces/argocd/secrets/../../kube-system/secrets",
            "/api/v1/namespaces/argocd/secrets/%2e%2e",
            "/api/v1/namespaces/argocd%2Fsecrets",
            "/api/v1/namespaces/argocd/secrets/a%2Fb",
            "/api/v1/namespaces/argocd//secrets",
            "/api/v1/namespaces/argocd/secrets/./a",
            "//api/v1/namespaces/argocd/secrets",
            "//apis",
        ];
        for path in bad {
            assert!(
                matches!(r(Method::GET, path, None), Err(RouteError::BadRequest(_))),
                "{path}"
            );
        }
        let not_found = [
            "/api/v1/namespaces/argocd/configmaps",
            "/api/v1/namespaces/argocd/secrets/a/status",
            "/apis/apps/v1/deployments",
            "/api/v1/namespaces/argocd",
        ];
        for path in not_found {
            assert!(
                matches!(r(Method::GET, path, None), Err(RouteError::NotFound(_))),
                "{path}"
            );
        }
        assert!(matches!(
            r(
                Method::GET,
                "/api/v1/namespaces/argocd/secrets/a",
                Some("watch=true")
            ),
            Err(RouteError::BadRequest(_))
        ));
        assert!(matches!(
            r(Method::DELETE, "/api/v1/namespaces/argocd/secrets", None),
            Err(RouteError::MethodNotAllowed(_))
        ));
        assert!(matches!(
            r(Method::POST, "/api/v1", None),
            Err(RouteError::MethodNotAllowed(_))
        ));
        assert!(matches!(
            route(
                &Method::PATCH,
                "/api/v1/namespaces/argocd/secrets/a",
                None,
                Some("text/plain"),
                "argocd"
            ),
            Err(RouteError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn the_generation_long_poll_reads_after() {
        assert_eq!(
            r(
                Method::GET,
                "/apis/secret-relay.io/v1/generation",
                Some("after=4")
            ),
            Ok(Route::Generation {
                after: Some(4),
                revision: None
            })
        );
        assert_eq!(
            r(
                Method::GET,
                "/apis/secret-relay.io/v1/generation",
                Some("revision=0a1b")
            ),
            Ok(Route::Generation {
                after: None,
                revision: Some("0a1b".to_owned())
            })
        );
        assert!(matches!(
            r(
                Method::GET,
                "/apis/secret-relay.io/v1/generation",
                Some("revision=%3Cx%3E")
            ),
            Err(RouteError::BadRequest(_))
        ));
        assert!(matches!(
            r(
                Method::GET,
                "/apis/secret-relay.io/v1/generation",
                Some("after=x")
            ),
            Err(RouteError::BadRequest(_))
        ));
    }

    #[test]
    fn queries_are_read_strictly() {
        let Ok(Route::Secrets(req)) = r(
            Method::GET,
            "/api/v1/namespaces/argocd/secrets",
            Some(
                "watch=1&labelSelector=a%3Db&allowWatchBookmarks=true&timeoutSeconds=30&resourceVersion=7",
            ),
        ) else {
            panic!("not a secrets route");
        };
        assert_eq!(req.query.label_selector.as_deref(), Some("a=b"));
        assert!(req.query.allow_bookmarks);
        assert_eq!(req.query.timeout_seconds, Some(30));
        assert_eq!(req.query.resource_version.as_deref(), Some("7"));
        for q in [
            "timeoutSeconds=x",
            "allowWatchBookmarks=maybe",
            "labelSelector=a&labelSelector=b",
        ] {
            assert!(
                matches!(
                    r(Method::GET, "/api/v1/namespaces/argocd/secrets", Some(q)),
                    Err(RouteError::BadRequest(_))
                ),
                "{q}"
            );
        }
        let Ok(Route::Secrets(req)) = r(
            Method::POST,
            "/api/v1/namespaces/argocd/secrets",
            Some("fieldManager=agent&dryRun=All&labelSelector=x"),
        ) else {
            panic!("not a secrets route");
        };
        assert_eq!(req.query.forwarded(), "dryRun=All&fieldManager=agent");
    }

    proptest::proptest! {
        #[test]
        fn no_path_outside_the_namespace_reaches_the_secrets_surface(path in "/[a-z0-9./%_-]{0,60}") {
            if let Ok(Route::Secrets(_)) = r(Method::GET, &path, None) {
                proptest::prop_assert!(path.starts_with("/api/v1/namespaces/argocd/secrets"));
                proptest::prop_assert!(!path.contains(".."));
            }
        }
    }
}
