//! A JSON create or update read for its judgement without its values, and forwarded
//! as the judged metadata spliced into the values the client sent.
//!
//! The decision reads the metadata and the type, and the relay changes only the
//! metadata (namespace, stamps, the precondition). So a JSON body that passed the
//! body rules ([`check_json_secret`](crate::body::check_json_secret): syntax, depth,
//! duplicate keys) is decoded into its metadata, type and `immutable`, while `data`
//! and `stringData` stay the JSON the client sent. The forwarded body is
//! `apiVersion`, `kind`, the judged metadata, `immutable` and `type` re-encoded, and
//! `data` and `stringData` as sent: the same values, without base64-decoding and
//! re-encoding each of them. The API server checks the values (base64, sizes) as it
//! checks any client's. Every other top-level field is left out, as the full
//! re-encoding left it out. A body that is not such an object (a wrong `kind`, `data`
//! not an object, ...) takes the full decode, which names what is wrong.
//! A profile of a forwarded PUT put the decode and re-encoding of the values at about
//! a fifth of its instructions (BENCHMARKS.md, "The relay's write path").

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::value::RawValue;

/// A JSON Secret as sent: what is judged decoded, the values raw.
#[derive(Deserialize)]
struct Sent<'a> {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<ObjectMeta>,
    immutable: Option<bool>,
    #[serde(rename = "type")]
    type_: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow, rename = "stringData")]
    string_data: Option<&'a RawValue>,
}

/// The values of a JSON Secret, as the client sent them.
pub(super) struct Values<'a> {
    data: Option<&'a RawValue>,
    string_data: Option<&'a RawValue>,
}

/// Reads a checked JSON body into the Secret to judge (no values) and its values as
/// sent; `None` when the body is not plainly a v1 Secret with object values, for the
/// full decode to answer.
pub(super) fn read(body: &[u8]) -> Option<(Secret, Values<'_>)> {
    let sent: Sent<'_> = serde_json::from_slice(body).ok()?;
    let plain = sent.api_version.as_deref() == Some("v1")
        && sent.kind.as_deref() == Some("Secret")
        && [sent.data, sent.string_data]
            .iter()
            .flatten()
            .all(|v| v.get().starts_with('{'));
    if !plain {
        return None;
    }
    let secret = Secret {
        metadata: sent.metadata.unwrap_or_default(),
        immutable: sent.immutable,
        type_: sent.type_,
        ..Secret::default()
    };
    let values = Values {
        data: sent.data,
        string_data: sent.string_data,
    };
    Some((secret, values))
}

/// The body to forward: `judged` (the Secret as judged, its metadata stamped), with
/// the values as sent.
pub(super) fn splice(judged: &Secret, values: &Values<'_>) -> Vec<u8> {
    let raw =
        values.data.map_or(0, |v| v.get().len()) + values.string_data.map_or(0, |v| v.get().len());
    let mut out = Vec::with_capacity(raw + 1024);
    out.extend_from_slice(br#"{"apiVersion":"v1","kind":"Secret","metadata":"#);
    // ObjectMeta, a bool and a string have no failure case in Serialize.
    serde_json::to_writer(&mut out, &judged.metadata).expect("an ObjectMeta always serializes");
    if let Some(immutable) = judged.immutable {
        out.extend_from_slice(if immutable {
            b",\"immutable\":true"
        } else {
            b",\"immutable\":false"
        });
    }
    if let Some(type_) = &judged.type_ {
        out.extend_from_slice(b",\"type\":");
        serde_json::to_writer(&mut out, type_).expect("a string always serializes");
    }
    for (key, value) in [("data", values.data), ("stringData", values.string_data)] {
        if let Some(value) = value {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            out.extend_from_slice(value.get().as_bytes());
        }
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::{read, splice};
    use k8s_openapi::api::core::v1::Secret;

    #[test]
    fn the_forwarded_secret_is_the_judged_one_with_the_values_as_sent() {
        let sent = br#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"repo","labels":{"secret-relay.io/owner":"forged"}},"data":{"password":"c2VjcmV0"},"stringData":{"url":"https:\/\/git.example.com"},"type":"Opaque","immutable":false,"status":{"x":1}}"#;
        let decoded: Secret = serde_json::from_slice(sent).unwrap();
        let (mut judged, values) = read(sent).unwrap();
        assert_eq!(judged.metadata, decoded.metadata);
        assert_eq!(
            (&judged.type_, judged.immutable),
            (&decoded.type_, decoded.immutable)
        );
        assert_eq!((&judged.data, &judged.string_data), (&None, &None));
        judged.metadata.namespace = Some("argocd".to_owned());
        judged.metadata.labels = Some([("team".to_owned(), "platform".to_owned())].into());
        let forwarded: Secret = serde_json::from_slice(&splice(&judged, &values)).unwrap();
        // What the API server decodes is the full re-encoding of the judged Secret,
        // without what a Secret does not have (`status`).
        let expected = Secret {
            metadata: judged.metadata,
            ..decoded
        };
        assert_eq!(forwarded, expected);
        let forwarded: serde_json::Value =
            serde_json::from_slice(&splice(&read(sent).unwrap().0, &values)).unwrap();
        assert!(forwarded.get("status").is_none());
    }

    #[test]
    fn a_body_that_is_not_plainly_a_v1_secret_takes_the_full_decode() {
        for body in [
            &br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"repo"}}"#[..],
            br#"{"kind":"Secret","metadata":{"name":"repo"}}"#,
            br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"repo"},"data":"c2VjcmV0"}"#,
            br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"repo"},"stringData":[1]}"#,
            br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":7}}"#,
            b"k8s\0\x0a\x02v1",
        ] {
            assert!(read(body).is_none(), "{}", String::from_utf8_lossy(body));
        }
        let null = br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"repo"},"data":null}"#;
        let (judged, values) = read(null).unwrap();
        let forwarded: serde_json::Value =
            serde_json::from_slice(&splice(&judged, &values)).unwrap();
        assert_eq!(
            forwarded,
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "repo"}})
        );
    }
}
