//! Request bodies: reading one within the size limit, and decoding an object from JSON,
//! YAML or protobuf as kube-apiserver's codecs do, with their strict decoding errors.

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use super::request::Req;
use crate::gojson;
use crate::resource::ResourceKind;
use crate::status::Status;

/// A body as parsed, before the kind checks and fieldValidation.
struct Parsed {
    obj: Value,
    /// goyaml's strict errors for a YAML body: the keys a mapping repeats.
    yaml_errors: Vec<String>,
    /// The typed JSON decoder's strict errors, in document order (JSON bodies only).
    strict: Option<Vec<String>>,
}

/// Reads the request body, refusing one larger than `max_body` (by its Content-Length
/// first, then by what arrives).
pub(super) async fn read_body(
    headers: &HeaderMap,
    body: Incoming,
    max_body: usize,
) -> Result<Bytes, Status> {
    if headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|n| n > max_body)
    {
        return Err(Status::request_entity_too_large(max_body));
    }
    match Limited::new(body, max_body).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) => {
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return Err(Status::request_entity_too_large(max_body));
            }
            Err(Status::bad_request(format!(
                "failed to read request body: {err}"
            )))
        }
    }
}

/// Decodes a JSON or YAML body into an object of `kind` as kube-apiserver's decoder does,
/// with its strict decoding errors (unknown fields, which are dropped, and repeated keys)
/// answered per fieldValidation: a 400 for Strict, warnings for Warn (the default). `apply`:
/// the body of a server-side apply patch.
pub(super) fn decode_object(
    req: &Req,
    kind: &ResourceKind,
    apply: bool,
) -> Result<(Value, Vec<String>), Status> {
    let Parsed {
        mut obj,
        yaml_errors,
        strict,
    } = parse(req, kind, apply)?;
    check_type_meta(&obj, kind)?;
    if !apply {
        gojson::normalize_nulls(&mut obj, kind.schema());
    }
    let messages = match strict {
        Some(errors) => errors,
        None => kind
            .prune_unknown(&mut obj)
            .iter()
            .map(|f| format!("unknown field {}", gojson::quote(f)))
            .collect(),
    };
    let warnings = strict_decoding(req, kind, apply, messages, yaml_errors)?;
    Ok((obj, warnings))
}

/// The body by its content type: JSON (Go's decoder), YAML (JSON is YAML too) or protobuf.
fn parse(req: &Req, kind: &ResourceKind, apply: bool) -> Result<Parsed, Status> {
    let content_type = req.header("content-type").unwrap_or("application/json");
    let base = content_type.split(';').next().unwrap_or_default().trim();
    let mut parsed = Parsed {
        obj: Value::Null,
        yaml_errors: Vec::new(),
        strict: None,
    };
    if apply || base == "application/yaml" {
        match gojson::parse(&req.body) {
            // JSON is YAML: goyaml keeps a repeated key's later value (and its strict
            // decoder reports the key), where serde_yaml refuses the document.
            Ok(node) if node.has_repeated_keys() => {
                parsed.yaml_errors = gojson::yaml_repeated_keys(&node);
                parsed.obj = node.into_value();
            }
            _ => {
                let v: serde_yaml::Value = serde_yaml::from_slice(&req.body).map_err(|e| {
                    Status::bad_request(format!("error converting YAML to JSON: {e}"))
                })?;
                parsed.obj = serde_json::to_value(v).map_err(|e| {
                    Status::bad_request(format!("error converting YAML to JSON: {e}"))
                })?;
            }
        }
    } else if base == "application/json" || base == "*/*" || base.is_empty() {
        let node = gojson::parse(&req.body).map_err(|e| {
            Status::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?;
        let (obj, errors) = gojson::decode(node, kind.schema());
        parsed.obj = obj;
        parsed.strict = Some(errors);
    } else if base == "application/vnd.kubernetes.protobuf" {
        parsed.obj = match crate::protobuf::decode(kind, &req.body) {
            Ok(Some(obj)) => obj,
            Ok(None) => return Err(Status::unsupported_media_type()),
            Err(e) => {
                return Err(Status::bad_request(format!(
                    "failed to decode protobuf body: {e}"
                )));
            }
        };
    } else {
        return Err(Status::unsupported_media_type());
    }
    Ok(parsed)
}

/// An object whose `kind` and `apiVersion`, where set, are the request's.
fn check_type_meta(obj: &Value, kind: &ResourceKind) -> Result<(), Status> {
    if !obj.is_object() {
        return Err(Status::bad_request(
            "couldn't get version/kind; json parse error: the body is not a JSON object",
        ));
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str)
        && !k.is_empty()
        && k != kind.kind
    {
        return Err(Status::bad_request(format!(
            "the kind of the object ({k}) does not match the resource ({}) of the request",
            kind.kind
        )));
    }
    if let Some(v) = obj.get("apiVersion").and_then(Value::as_str)
        && !v.is_empty()
        && v != kind.api_version()
    {
        return Err(Status::bad_request(format!(
            "the API version in the data ({v}) does not match the expected API version ({})",
            kind.api_version()
        )));
    }
    Ok(())
}

/// The strict decoding errors per fieldValidation: a 400 for Strict, the warnings for Warn,
/// nothing for Ignore.
fn strict_decoding(
    req: &Req,
    kind: &ResourceKind,
    apply: bool,
    messages: Vec<String>,
    yaml_errors: Vec<String>,
) -> Result<Vec<String>, Status> {
    let yaml_error = format!("yaml: unmarshal errors:\n  {}", yaml_errors.join("\n  "));
    match req.field_validation()? {
        // create and update decode through the codec, which names the kind; apply does not
        "Strict" if !messages.is_empty() && apply => Err(Status::bad_request(format!(
            "strict decoding error: {}",
            messages.join(", ")
        ))),
        // apply checks the YAML once the patch is applied (applyPatcher)
        "Strict" if !yaml_errors.is_empty() && apply => Err(Status::bad_request(format!(
            "error strict decoding patch: error converting YAML to JSON: {yaml_error}"
        ))),
        "Strict" if !messages.is_empty() || !yaml_errors.is_empty() => {
            // YAMLToJSONStrict's error comes before the JSON decoder's
            let mut errors = messages;
            if !yaml_errors.is_empty() {
                errors.insert(0, yaml_error);
            }
            Err(Status::bad_request(format!(
                "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
                errors.join(", "),
                kind = kind.kind,
                version = kind.version,
            )))
        }
        // A YAML error is one warning per line (parseYAMLWarnings).
        "Warn" if apply => Ok([messages, yaml_errors].concat()),
        "Warn" => Ok([yaml_errors, messages].concat()),
        _ => Ok(Vec::new()),
    }
}
