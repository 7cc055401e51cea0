//! One reading of a Secret's metadata for every crate: its name, labels and
//! annotations, and whether a cluster opted it in. The agent, the relay, the
//! webhook and the Secrets page read them here, so "opted in" means one thing.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::keys;

/// The object's name, or "" before the API server has given it one.
pub fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

/// The object's labels; an object without any has an empty map.
pub fn labels(meta: &ObjectMeta) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    meta.labels.as_ref().unwrap_or(&EMPTY)
}

/// The value of label `key`, if the object has it.
pub fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

/// The value of annotation `key`, if the object has it.
pub fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// Whether a cluster's Secret asks to be synced: label `akuity.io/secret-sync`
/// is exactly `true` (any other value, `True` included, is not an opt-in).
pub fn is_opted_in(meta: &ObjectMeta) -> bool {
    label(meta, keys::SECRET_SYNC_LABEL) == Some("true")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ObjectMeta {
        let map = |pairs: &[(&str, &str)]| {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };
        ObjectMeta {
            name: Some("db".to_owned()),
            labels: map(labels),
            annotations: map(annotations),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn opt_in_is_exactly_true() {
        assert!(is_opted_in(&meta(
            &[(keys::SECRET_SYNC_LABEL, "true")],
            &[]
        )));
        for other in ["True", "yes", "1", ""] {
            assert!(!is_opted_in(&meta(
                &[(keys::SECRET_SYNC_LABEL, other)],
                &[]
            )));
        }
        assert!(!is_opted_in(&ObjectMeta::default()));
    }

    #[test]
    fn accessors_read_what_is_there_and_nothing_else() {
        let m = meta(&[("team", "a")], &[("note", "x")]);
        assert_eq!(name(&m), "db");
        assert_eq!(label(&m, "team"), Some("a"));
        assert_eq!(label(&m, "note"), None);
        assert_eq!(annotation(&m, "note"), Some("x"));
        assert_eq!(labels(&m).len(), 1);
        assert!(labels(&ObjectMeta::default()).is_empty());
        assert_eq!(name(&ObjectMeta::default()), "");
    }
}
