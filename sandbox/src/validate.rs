//! Validation of names, labels, annotations and Secret/ConfigMap data, with
//! apimachinery's messages as kube-apiserver 1.37 words them: names and data keys from
//! k8s.io/apimachinery/pkg/util/validation (lengths in "characters"), label keys and values
//! from k8s.io/apimachinery/pkg/api/validate/content (lengths in "bytes", "a valid label key").

use serde_json::Value;

use crate::status::FieldError;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const CONFIG_KEY_FMT: &str = "[-._a-zA-Z0-9]+";

/// Total size limit of a Secret's or ConfigMap's data.
pub(crate) const MAX_DATA_BYTES: usize = 1024 * 1024;
const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

fn is_alnum_lower(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_alnum_lower(b[0])
        && is_alnum_lower(b[b.len() - 1])
        && b.iter().all(|&c| is_alnum_lower(c) || c == b'-')
}

/// `IsDNS1123Label`: the error details (empty when valid).
pub(crate) fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_owned());
    }
    if !is_dns1123_label(s) {
        errs.push(format!(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '{DNS1123_LABEL_FMT}')"
        ));
    }
    errs
}

/// `IsDNS1123Subdomain`: the error details (empty when valid).
pub(crate) fn dns1123_subdomain(s: &str) -> Vec<String> {
    dns1123_subdomain_in("characters", s)
}

/// `IsDNS1123Subdomain` with its length unit: "characters" (util/validation) or "bytes"
/// (api/validate/content).
fn dns1123_subdomain_in(unit: &str, s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(format!("must be no more than 253 {unit}"));
    }
    if s.is_empty() || !s.split('.').all(is_dns1123_label) {
        errs.push(format!(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{DNS1123_SUBDOMAIN_FMT}')"
        ));
    }
    errs
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

/// `IsQualifiedName`, which is `content.IsLabelKey` (label and annotation keys).
pub(crate) fn qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_owned());
            } else {
                for e in dns1123_subdomain_in("bytes", prefix) {
                    errs.push(format!("prefix part {e}"));
                }
            }
            name
        }
        _ => {
            errs.push(format!(
                "a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '{QUALIFIED_NAME_FMT}') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 bytes".to_owned());
    }
    // The pattern does not match an empty name either: Go reports both.
    if !is_qualified_name_part(name) {
        errs.push(format!(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '{QUALIFIED_NAME_FMT}')"
        ));
    }
    errs
}

/// `IsValidLabelValue`, which is `content.IsLabelValue`.
pub(crate) fn label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 bytes".to_owned());
    }
    if !s.is_empty() && !is_qualified_name_part(s) {
        errs.push(format!(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '{LABEL_VALUE_FMT}')"
        ));
    }
    errs
}

/// `IsConfigMapKey` (Secret and ConfigMap data keys).
pub(crate) fn config_key(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push("must be no more than 253 characters".to_owned());
    }
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
    {
        errs.push(format!(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '{CONFIG_KEY_FMT}')"
        ));
    }
    if s == "." {
        errs.push("must not be '.'".to_owned());
    } else if s == ".." {
        errs.push("must not be '..'".to_owned());
    } else if s.starts_with("..") {
        errs.push("must not start with '..'".to_owned());
    }
    errs
}

/// Name validation of a kind: namespaces are DNS-1123 labels, the rest subdomains.
pub(crate) fn object_meta(obj: &Value, name_is_label: bool, errs: &mut Vec<FieldError>) {
    let meta = &obj["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    let generate = meta["generateName"].as_str().unwrap_or_default();
    if name.is_empty() {
        if generate.is_empty() {
            errs.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
    } else {
        let details = if name_is_label {
            dns1123_label(name)
        } else {
            dns1123_subdomain(name)
        };
        for d in details {
            errs.push(FieldError::invalid("metadata.name", name, &d));
        }
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            for d in qualified_name(k) {
                errs.push(FieldError::invalid("metadata.labels", k, &d));
            }
            let v = v.as_str().unwrap_or_default();
            for d in label_value(v) {
                errs.push(FieldError::invalid("metadata.labels", v, &d));
            }
        }
    }
    if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (k, v) in annotations {
            for d in qualified_name(&k.to_lowercase()) {
                errs.push(FieldError::invalid("metadata.annotations", k, &d));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > MAX_ANNOTATIONS_BYTES {
            errs.push(FieldError::too_long(
                "metadata.annotations",
                MAX_ANNOTATIONS_BYTES,
            ));
        }
    }
}

/// Data keys and total size of Secret `data` (decoded bytes) or ConfigMap `data`/`binaryData`.
pub(crate) fn data_keys(
    field: &str,
    data: Option<&Value>,
    sizes: impl Fn(&Value) -> usize,
    errs: &mut Vec<FieldError>,
) -> usize {
    let mut total = 0;
    if let Some(map) = data.and_then(Value::as_object) {
        for (k, v) in map {
            for d in config_key(k) {
                errs.push(FieldError::invalid(format!("{field}[{k}]"), k, &d));
            }
            total += sizes(v);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn subdomain_rejects_uppercase_and_underscores() {
        assert!(dns1123_subdomain("a.b-c").is_empty());
        assert_eq!(dns1123_subdomain("Bad_Name").len(), 1);
        assert!(dns1123_subdomain("-a").len() == 1);
        assert_eq!(dns1123_subdomain(&"a".repeat(254)).len(), 1);
    }

    #[test]
    fn namespace_names_are_labels() {
        assert!(dns1123_label("akuity").is_empty());
        assert!(!dns1123_label("a.b").is_empty());
    }

    #[test]
    fn label_keys_and_values() {
        assert!(qualified_name("akuity.io/secret-sync").is_empty());
        assert!(qualified_name("app").is_empty());
        assert!(!qualified_name("bad key").is_empty());
        assert!(!qualified_name("a/b/c").is_empty());
        assert!(!qualified_name("Bad.Prefix/x").is_empty());
        assert!(label_value("").is_empty());
        assert!(label_value("v1.2_x").is_empty());
        assert!(!label_value("bad value").is_empty());
    }

    #[test]
    fn config_keys() {
        assert!(config_key(".dockerconfigjson").is_empty());
        assert!(!config_key("a/b").is_empty());
        assert!(!config_key("..x").is_empty());
        assert!(!config_key("").is_empty());
    }

    #[test]
    fn invalid_name_message_matches_kube() {
        let mut errs = Vec::new();
        object_meta(&json!({"metadata": {"name": "Bad"}}), false, &mut errs);
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].render(),
            r#"metadata.name: Invalid value: "Bad": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#
        );
    }
}
