//! Request parsing: query parameters, the authenticated request with its body, and the
//! options of a list or watch (`ListOptions` as kube-apiserver converts and validates them).

use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::auth::UserInfo;
use crate::fields;
use crate::resource::ResourceKind;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{FieldError, Status};
use crate::table;

/// Query parameters, decoded.
pub(super) struct Query(Vec<(String, String)>);

impl Query {
    pub(super) fn parse(q: Option<&str>) -> Self {
        let pairs = q
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (url_decode(k), url_decode(v))
            })
            .collect();
        Self(pairs)
    }

    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub(super) fn flag(&self, key: &str) -> bool {
        // runtime.Convert_Slice_string_To_bool: present and neither "0" nor "false" in any
        // case is true (the Python client sends `watch=True`; `watch=` is true too).
        self.get(key)
            .is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
    }
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                match s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An authenticated request with its body read.
pub(super) struct Req {
    pub(super) method: Method,
    pub(super) query: Query,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
    pub(super) user: UserInfo,
}

impl Req {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The Table rendering asked for by the Accept header, if any.
    pub(super) fn table(&self) -> Option<table::IncludeObject> {
        table::wants_table(self.header("accept"))
            .then(|| table::IncludeObject::parse(self.query.get("includeObject")))
    }

    /// Whether the Accept header asks for metadata only.
    pub(super) fn metadata_only(&self) -> bool {
        table::wants_metadata(self.header("accept"))
    }

    pub(super) fn manager(&self) -> String {
        fields::manager_from(self.query.get("fieldManager"), self.header("user-agent"))
    }

    pub(super) fn dry_run(&self) -> Result<bool, Status> {
        let values = self.query.all("dryRun");
        for v in &values {
            if *v != "All" {
                return Err(Status::bad_request(format!(
                    "Invalid dryRun value: {v:?}: supported values: \"All\""
                )));
            }
        }
        Ok(!values.is_empty())
    }

    pub(super) fn field_validation(&self) -> Result<&str, Status> {
        match self.query.get("fieldValidation") {
            None | Some("") => Ok("Warn"),
            Some(v @ ("Strict" | "Warn" | "Ignore")) => Ok(v),
            Some(other) => Err(Status::bad_request(format!(
                "fieldValidation parameter unsupported: {other:?}; supported values are \"Ignore\", \"Warn\", \"Strict\""
            ))),
        }
    }
}

/// Go's `strconv.ParseInt(s, 10, 64)` or `strconv.ParseUint(s, 10, 64)`, with its error text.
fn go_parse_int(s: &str, unsigned: bool) -> Result<i128, String> {
    let func = if unsigned { "ParseUint" } else { "ParseInt" };
    let digits = if unsigned {
        s
    } else {
        s.strip_prefix(['+', '-']).unwrap_or(s)
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.{func}: parsing {s:?}: invalid syntax"));
    }
    let out_of_range = || format!("strconv.{func}: parsing {s:?}: value out of range");
    if unsigned {
        s.parse::<u64>().map(i128::from).map_err(|_| out_of_range())
    } else {
        s.parse::<i64>().map(i128::from).map_err(|_| out_of_range())
    }
}

/// The integer parameters of a list or watch, converted as the query decoding converts them
/// into ListOptions before anything else (`timeoutSeconds`, then `limit`): a 400 with
/// strconv's error.
pub(super) fn list_query_conversion(req: &Req) -> Result<(), Status> {
    for key in ["timeoutSeconds", "limit"] {
        if let Some(v) = req.query.get(key) {
            go_parse_int(v, false).map_err(Status::bad_request)?;
        }
    }
    Ok(())
}

/// `ValidateListOptions` (staging/src/k8s.io/apimachinery/pkg/apis/meta/internalversion/
/// validation/validation.go): a 422 on ListOptions.meta.k8s.io.
pub(super) fn validate_list_options(req: &Req, watch: bool) -> Result<(), Status> {
    let errs = if watch {
        watch_option_errors(&req.query)
    } else {
        list_option_errors(&req.query)
    };
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Status::invalid("ListOptions", "meta.k8s.io", "", &errs))
    }
}

/// `ValidateListOptions` for a watch: resourceVersionMatch only as `NotOlderThan` with
/// sendInitialEvents, and never with continue.
fn watch_option_errors(q: &Query) -> Vec<FieldError> {
    let rv_match = q.get("resourceVersionMatch").unwrap_or_default();
    let has_continue = q.get("continue").is_some_and(|c| !c.is_empty());
    let send_initial = q.get("sendInitialEvents").is_some();
    let mut errs = Vec::new();
    let path = "resourceVersionMatch";
    if send_initial && rv_match != "NotOlderThan" {
        errs.push(FieldError::forbidden(
            path,
            "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ));
    }
    if !rv_match.is_empty() {
        if !send_initial {
            errs.push(FieldError::forbidden(
                path,
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            ));
        }
        if rv_match != "NotOlderThan" {
            errs.push(FieldError::not_supported(path, rv_match, &["NotOlderThan"]));
        }
        if has_continue {
            errs.push(FieldError::forbidden(
                path,
                "resourceVersionMatch is forbidden when continue is provided",
            ));
        }
    }
    errs
}

/// `ValidateListOptions` for a list: resourceVersionMatch needs a resourceVersion and no
/// continue, `Exact` not with "0"; no sendInitialEvents.
fn list_option_errors(q: &Query) -> Vec<FieldError> {
    let rv_match = q.get("resourceVersionMatch").unwrap_or_default();
    let has_continue = q.get("continue").is_some_and(|c| !c.is_empty());
    let send_initial = q.get("sendInitialEvents").is_some();
    let mut errs = Vec::new();
    let path = "resourceVersionMatch";
    let rv = q.get("resourceVersion").unwrap_or_default();
    if !rv_match.is_empty() {
        if rv.is_empty() {
            errs.push(FieldError::forbidden(
                path,
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        if has_continue {
            errs.push(FieldError::forbidden(
                path,
                "resourceVersionMatch is forbidden when continue is provided",
            ));
        }
        if rv_match != "Exact" && rv_match != "NotOlderThan" {
            errs.push(FieldError::not_supported(
                path,
                rv_match,
                &["Exact", "NotOlderThan", ""],
            ));
        }
        if rv_match == "Exact" && rv == "0" {
            errs.push(FieldError::forbidden(
                path,
                "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            ));
        }
    }
    if send_initial {
        errs.push(FieldError::forbidden(
            "sendInitialEvents",
            "sendInitialEvents is forbidden for list",
        ));
    }
    errs
}

/// The storage's `ParseResourceVersion`: `None` for "" and "0", else the number, or its
/// InvalidError text.
pub(super) fn parse_resource_version(rv: Option<&str>) -> Result<Option<u64>, String> {
    match rv {
        None | Some("" | "0") => Ok(None),
        Some(v) => go_parse_int(v, true)
            .map(|n| u64::try_from(n).ok())
            .map_err(|e| format!("resourceVersion: Invalid value: {v:?}: {e}")),
    }
}

pub(super) fn field_extras(kind: &ResourceKind) -> &'static [&'static str] {
    match kind.index {
        1 => &["type"],
        0 => &["status.phase"],
        _ => &[],
    }
}

/// The `labelSelector` and `fieldSelector` of a list-like request.
pub(super) fn selectors(
    req: &Req,
    kind: &ResourceKind,
) -> Result<(LabelSelector, FieldSelector), Status> {
    let labels = LabelSelector::parse(req.query.get("labelSelector").unwrap_or_default())?;
    let field = FieldSelector::parse(
        req.query.get("fieldSelector").unwrap_or_default(),
        field_extras(kind),
    )?;
    Ok((labels, field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_url_decoded() {
        let q = Query::parse(Some("labelSelector=a%3Db%2Cc+in+%28x%29&watch=1"));
        assert_eq!(q.get("labelSelector"), Some("a=b,c in (x)"));
        assert!(q.flag("watch"));
    }
}
