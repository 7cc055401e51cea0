//! Secrets as the sync suites write and read them.

use k8s_openapi::api::core::v1::Secret;

/// The opt-in label of a cluster's Secret.
pub const OPT_IN: (&str, &str) = ("akuity.io/secret-sync", "true");
/// Argo CD's repository-credentials label.
pub const REPO_CREDS: (&str, &str) = ("argocd.argoproj.io/secret-type", "repo-creds");
/// The annotation sending a hub secret to every cluster.
pub const TO_ALL: (&str, &str) = ("akuity.io/managed-secret-allowed-clusters", "ALL");

/// A Secret named `name` with `labels`, `annotations` and `value` as its `password`.
pub fn secret(
    name: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
    value: &str,
) -> Secret {
    secret_with_data(name, labels, annotations, &[("password", value)])
}

/// A Secret named `name` with `labels`, `annotations` and `data` (as `stringData`).
pub fn secret_with_data(
    name: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
    data: &[(&str, &str)],
) -> Secret {
    let map = |kv: &[(&str, &str)]| {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect::<serde_json::Map<_, _>>()
    };
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": map(labels), "annotations": map(annotations)},
        "stringData": map(data),
    }))
    .unwrap()
}

/// Label `key` of `s`.
pub fn label<'a>(s: &'a Secret, key: &str) -> Option<&'a str> {
    s.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// The `password` of `s` (written by the API server as `data`); empty when it has none.
pub fn password(s: &Secret) -> &[u8] {
    s.data
        .as_ref()
        .and_then(|d| d.get("password"))
        .map_or(&[], |b| b.0.as_slice())
}
