//! A judged JSON create or update, forwarded as the judged metadata spliced into
//! the values the client sent, instead of the whole Secret re-encoded.
//!
//! The decision reads only the metadata and the type, and the relay changes only the
//! metadata (namespace, stamps, the precondition). So the forwarded body is
//! `apiVersion`, `kind`, the stamped metadata re-encoded, and `immutable`, `data`,
//! `stringData` and `type` exactly as the client sent them: the same JSON values the
//! relay decoded and judged (the body's scan refuses duplicate keys, so there is one
//! of each), without base64-decoding and re-encoding every value. Every other
//! top-level field is left out, as the full re-encoding left it out. A profile of a
//! forwarded PUT put the re-encoding at about an eighth of its instructions
//! (BENCHMARKS.md, "The relay's write path").

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The top-level fields forwarded as sent.
#[derive(Deserialize)]
struct Values<'a> {
    #[serde(borrow)]
    immutable: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow, rename = "stringData")]
    string_data: Option<&'a RawValue>,
    #[serde(borrow, rename = "type")]
    type_: Option<&'a RawValue>,
}

/// The body to forward: `metadata` (the judged, stamped metadata) spliced into the
/// values of `sent`, a JSON Secret the relay decoded and judged. `None` when `sent`
/// is not such a JSON object (a protobuf body): the caller re-encodes the Secret.
pub(super) fn splice(sent: &[u8], metadata: &ObjectMeta) -> Option<Vec<u8>> {
    let values: Values<'_> = serde_json::from_slice(sent).ok()?;
    let mut out = Vec::with_capacity(sent.len() + 256);
    out.extend_from_slice(br#"{"apiVersion":"v1","kind":"Secret","metadata":"#);
    // An ObjectMeta has no failure case in Serialize (strings, maps and times).
    serde_json::to_writer(&mut out, metadata).expect("an ObjectMeta always serializes");
    for (key, value) in [
        ("immutable", values.immutable),
        ("data", values.data),
        ("stringData", values.string_data),
        ("type", values.type_),
    ] {
        if let Some(value) = value {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            out.extend_from_slice(value.get().as_bytes());
        }
    }
    out.push(b'}');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::splice;
    use k8s_openapi::api::core::v1::Secret;

    #[test]
    fn the_forwarded_secret_is_the_judged_metadata_with_the_sent_values() {
        let sent = br#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"repo","labels":{"secret-relay.io/owner":"forged"}},"data":{"password":"c2VjcmV0"},"stringData":{"url":"https://git.example.com"},"type":"Opaque","immutable":false,"status":{"x":1}}"#;
        let decoded: Secret = serde_json::from_slice(sent).unwrap();
        let mut judged = decoded.metadata.clone();
        judged.namespace = Some("argocd".to_owned());
        judged.labels = Some([("team".to_owned(), "platform".to_owned())].into());
        let forwarded = splice(sent, &judged).unwrap();
        let forwarded: serde_json::Value = serde_json::from_slice(&forwarded).unwrap();
        let mut expected = serde_json::to_value(Secret {
            metadata: judged,
            ..decoded
        })
        .unwrap();
        // The full re-encoding drops what a Secret does not have, as the splice does.
        assert!(expected.get("status").is_none());
        assert_eq!(forwarded, std::mem::take(&mut expected));
    }

    #[test]
    fn a_null_value_is_left_out_as_the_re_encoding_left_it_and_a_protobuf_body_is_not_spliced() {
        let sent = br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"repo"},"data":null}"#;
        let meta = serde_json::from_slice::<Secret>(sent).unwrap().metadata;
        let forwarded: serde_json::Value =
            serde_json::from_slice(&splice(sent, &meta).unwrap()).unwrap();
        assert_eq!(
            forwarded,
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "repo"}})
        );
        assert!(splice(b"k8s\0\x0a\x02v1", &meta).is_none());
        assert!(splice(b"[]", &meta).is_none());
    }
}
