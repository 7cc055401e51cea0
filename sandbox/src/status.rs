//! `metav1.Status` errors, worded as kube-apiserver words them
//! (k8s.io/apimachinery/pkg/api/errors).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One field error of an Invalid status (`metav1.StatusCause`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCause {
    /// Machine-readable reason, e.g. `FieldValueInvalid`.
    pub reason: String,
    /// Human-readable message for this cause.
    pub message: String,
    /// The field path, e.g. `metadata.name`.
    pub field: String,
}

/// A failed request as kube-apiserver reports it: HTTP code, reason, message and details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// HTTP status code.
    pub code: u16,
    /// `StatusReason`, e.g. `NotFound`.
    pub reason: String,
    /// The message kube-apiserver would give.
    pub message: String,
    /// `details.name`.
    pub name: Option<String>,
    /// `details.group`.
    pub group: Option<String>,
    /// `details.kind`.
    pub kind: Option<String>,
    /// `details.uid`.
    pub uid: Option<String>,
    /// `details.causes`.
    pub causes: Vec<StatusCause>,
    /// `details.retryAfterSeconds`.
    pub retry_after_seconds: Option<u32>,
    /// Whether `details` is sent even when empty (`{}`), as `NewGenericServerResponse` does.
    pub empty_details: bool,
}

/// The resource a status talks about: plural resource and API group ("" for core).
#[derive(Debug, Clone, Copy)]
pub struct Resource<'a> {
    /// Plural resource name, e.g. `secrets`.
    pub resource: &'a str,
    /// API group, empty for core.
    pub group: &'a str,
}

impl Resource<'_> {
    /// `schema.GroupResource.String()`: `secrets`, or `validatingwebhookconfigurations.admissionregistration.k8s.io`.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// A field error (`field.Error`), rendered the way apimachinery renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueForbidden`, ...
    pub reason: &'static str,
    /// The field path.
    pub field: String,
    /// The body after the field: `Invalid value: "x": detail`.
    pub body: String,
}

impl FieldError {
    /// `field.Invalid` with a string value.
    pub fn invalid(field: impl Into<String>, value: &str, detail: &str) -> Self {
        Self::invalid_raw(field, &format!("{value:?}"), detail)
    }

    /// `field.Invalid` with an already formatted value.
    pub fn invalid_raw(field: impl Into<String>, value: &str, detail: &str) -> Self {
        let body = if detail.is_empty() {
            format!("Invalid value: {value}")
        } else {
            format!("Invalid value: {value}: {detail}")
        };
        Self {
            reason: "FieldValueInvalid",
            field: field.into(),
            body,
        }
    }

    /// `field.Required`.
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        let body = if detail.is_empty() {
            "Required value".to_owned()
        } else {
            format!("Required value: {detail}")
        };
        Self {
            reason: "FieldValueRequired",
            field: field.into(),
            body,
        }
    }

    /// `field.Forbidden`.
    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        Self {
            reason: "FieldValueForbidden",
            field: field.into(),
            body: format!("Forbidden: {detail}"),
        }
    }

    /// `field.TooLong` without a value (as used for Secret data).
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self {
            reason: "FieldValueTooLong",
            field: field.into(),
            body: format!("Too long: may not be more than {max} bytes"),
        }
    }

    /// `field.Duplicate`.
    pub fn duplicate(field: impl Into<String>, value: &str) -> Self {
        Self {
            reason: "FieldValueDuplicate",
            field: field.into(),
            body: format!("Duplicate value: {value:?}"),
        }
    }

    /// `field.NotSupported`.
    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Self {
            reason: "FieldValueNotSupported",
            field: field.into(),
            body: format!(
                "Unsupported value: {value:?}: supported values: {}",
                list.join(", ")
            ),
        }
    }

    /// `field.Error.Error()`: `metadata.name: Invalid value: ...`.
    pub fn render(&self) -> String {
        format!("{}: {}", self.field, self.body)
    }
}

impl Status {
    /// A bare failure with code, reason and message.
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.to_owned(),
            message: message.into(),
            name: None,
            group: None,
            kind: None,
            uid: None,
            causes: Vec::new(),
            retry_after_seconds: None,
            empty_details: false,
        }
    }

    fn with_details(mut self, res: Resource<'_>, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self.group = Some(res.group.to_owned());
        self.kind = Some(res.resource.to_owned());
        self
    }

    /// 404 `secrets "x" not found`.
    pub fn not_found(res: Resource<'_>, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", res.qualified()),
        )
        .with_details(res, name)
    }

    /// 404 for a path the server does not serve.
    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 409 `secrets "x" already exists`.
    pub fn already_exists(res: Resource<'_>, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", res.qualified()),
        )
        .with_details(res, name)
    }

    /// 409 Conflict with kube's optimistic-concurrency message.
    pub fn conflict_modified(res: Resource<'_>, name: &str) -> Self {
        Self::conflict(
            res,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 `Operation cannot be fulfilled on secrets "x": <reason>`.
    pub fn conflict(res: Resource<'_>, name: &str, reason: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: {reason}",
                res.qualified()
            ),
        )
        .with_details(res, name)
    }

    /// 422 `Secret "x" is invalid: ...` with one cause per field error.
    pub fn invalid(kind: &str, group: &str, name: &str, errors: &[FieldError]) -> Self {
        let rendered: Vec<String> = errors.iter().map(FieldError::render).collect();
        let agg = if rendered.len() == 1 {
            rendered[0].clone()
        } else {
            format!("[{}]", rendered.join(", "))
        };
        let qualified = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        let mut status = Self::new(
            422,
            "Invalid",
            format!("{qualified} {name:?} is invalid: {agg}"),
        );
        status.name = Some(name.to_owned());
        status.group = Some(group.to_owned());
        status.kind = Some(kind.to_owned());
        status.causes = errors
            .iter()
            .map(|e| StatusCause {
                reason: e.reason.to_owned(),
                message: e.body.clone(),
                field: e.field.clone(),
            })
            .collect();
        status
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 403 `secrets "x" is forbidden: <reason>`.
    pub fn forbidden(res: Resource<'_>, name: &str, reason: &str) -> Self {
        let message = if name.is_empty() {
            format!("{} is forbidden: {reason}", res.qualified())
        } else {
            format!("{} {name:?} is forbidden: {reason}", res.qualified())
        };
        Self::new(403, "Forbidden", message).with_details(res, name)
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 500 `Internal error occurred: <message>`.
    pub fn internal_error(message: &str) -> Self {
        let mut status = Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        );
        status.causes = vec![StatusCause {
            reason: String::new(),
            message: message.to_owned(),
            field: String::new(),
        }];
        status
    }

    /// 410 Expired, e.g. `too old resource version: 1 (5)`.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 410 for a `continue` token whose snapshot is gone.
    pub fn continue_expired() -> Self {
        Self::expired(
            "The provided continue parameter is too old to display a consistent list result. \
             You can start a new list without the continue parameter, or use the continue token \
             in this response to retrieve the remainder of the results. Continuing with the \
             provided token results in an inconsistent list - objects that were created, \
             modified, or deleted between the time the first chunk was returned and now may \
             show up in the list.",
        )
    }

    /// 415 for a body in a format the sandbox does not decode.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: \
             application/json, application/yaml, application/vnd.kubernetes.protobuf",
        )
    }

    /// 413 `Request entity too large: limit is N`.
    pub fn request_entity_too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    /// 405 for a verb the resource does not support.
    pub fn method_not_supported(res: Resource<'_>, action: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!(
                "{action} is not supported on resources of kind {:?}",
                res.qualified()
            ),
        )
        .with_details(res, "")
    }

    /// 409 Conflict of server-side apply, with `FieldManagerConflict` causes.
    pub fn apply_conflict(message: String, causes: Vec<StatusCause>) -> Self {
        let mut status = Self::new(409, "Conflict", message);
        status.causes = causes;
        status
    }

    /// The Status object as JSON.
    pub fn to_json(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        });
        // metav1.Status.Reason is omitempty: a plain error has none.
        if !self.reason.is_empty() {
            status["reason"] = json!(self.reason);
        }
        let mut details = serde_json::Map::new();
        if let Some(name) = self.name.as_deref().filter(|n| !n.is_empty()) {
            details.insert("name".into(), json!(name));
        }
        if let Some(group) = self.group.as_deref().filter(|g| !g.is_empty()) {
            details.insert("group".into(), json!(group));
        }
        if let Some(kind) = self.kind.as_deref().filter(|k| !k.is_empty()) {
            details.insert("kind".into(), json!(kind));
        }
        if let Some(uid) = &self.uid {
            details.insert("uid".into(), json!(uid));
        }
        if !self.causes.is_empty() {
            let causes: Vec<Value> = self
                .causes
                .iter()
                .map(|c| {
                    let mut cause = serde_json::Map::new();
                    if !c.reason.is_empty() {
                        cause.insert("reason".into(), json!(c.reason));
                    }
                    if !c.message.is_empty() {
                        cause.insert("message".into(), json!(c.message));
                    }
                    if !c.field.is_empty() {
                        cause.insert("field".into(), json!(c.field));
                    }
                    Value::Object(cause)
                })
                .collect();
            details.insert("causes".into(), Value::Array(causes));
        }
        if let Some(secs) = self.retry_after_seconds {
            details.insert("retryAfterSeconds".into(), json!(secs));
        }
        if !details.is_empty() || self.empty_details {
            status["details"] = Value::Object(details);
        }
        status
    }

    /// A successful `Status` (as DELETE returns it).
    pub fn success_json(res: Resource<'_>, name: &str, uid: &str) -> Value {
        let mut details = json!({ "name": name, "kind": res.resource, "uid": uid });
        if !res.group.is_empty() {
            details["group"] = json!(res.group);
        }
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": details,
        })
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for Status {}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRETS: Resource<'static> = Resource {
        resource: "secrets",
        group: "",
    };

    #[test]
    fn not_found_message_matches_kube() {
        let s = Status::not_found(SECRETS, "x");
        assert_eq!(s.message, r#"secrets "x" not found"#);
        let j = s.to_json();
        assert_eq!(j["details"]["kind"], "secrets");
        assert_eq!(j["code"], 404);
    }

    #[test]
    fn conflict_message_matches_kube() {
        let s = Status::conflict_modified(SECRETS, "x");
        assert_eq!(
            s.message,
            r#"Operation cannot be fulfilled on secrets "x": the object has been modified; please apply your changes to the latest version and try again"#
        );
    }

    #[test]
    fn grouped_resource_is_qualified() {
        let res = Resource {
            resource: "validatingwebhookconfigurations",
            group: "admissionregistration.k8s.io",
        };
        let s = Status::already_exists(res, "w");
        assert_eq!(
            s.message,
            r#"validatingwebhookconfigurations.admissionregistration.k8s.io "w" already exists"#
        );
    }

    #[test]
    fn invalid_aggregates_several_errors_in_brackets() {
        let errs = vec![
            FieldError::required("metadata.name", "name or generateName is required"),
            FieldError::invalid("type", "x", "field is immutable"),
        ];
        let s = Status::invalid("Secret", "", "", &errs);
        assert_eq!(
            s.message,
            r#"Secret "" is invalid: [metadata.name: Required value: name or generateName is required, type: Invalid value: "x": field is immutable]"#
        );
        assert_eq!(s.causes.len(), 2);
        assert_eq!(
            s.causes[1].message,
            r#"Invalid value: "x": field is immutable"#
        );
    }
}
