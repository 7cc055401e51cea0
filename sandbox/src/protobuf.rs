//! Decoding of the Kubernetes protobuf envelope for Namespaces, Secrets and ConfigMaps,
//! as `kubectl create namespace|secret|configmap` send them
//! (`application/vnd.kubernetes.protobuf`: magic `k8s\0`, then a `runtime.Unknown`).

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::resource::ResourceKind;

const MAGIC: &[u8] = b"k8s\0";

/// One decoded protobuf field.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.buf.split_first().ok_or("truncated varint")?;
            self.buf = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint too long".to_owned())
    }

    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, String> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length overflow")?;
                if len > self.buf.len() {
                    return Err("truncated field".to_owned());
                }
                let (bytes, rest) = self.buf.split_at(len);
                self.buf = rest;
                Field::Bytes(bytes)
            }
            1 => {
                self.skip(8)?;
                Field::Varint(0)
            }
            5 => {
                self.skip(4)?;
                Field::Varint(0)
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        Ok(Some((key >> 3, field)))
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        if n > self.buf.len() {
            return Err("truncated field".to_owned());
        }
        self.buf = &self.buf[n..];
        Ok(())
    }
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    let mut reader = Reader { buf };
    let mut out = Vec::new();
    while let Some(f) = reader.next()? {
        out.push(f);
    }
    Ok(out)
}

fn string(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "invalid UTF-8 in a string field".to_owned())
}

/// A map entry (key = 1, value = 2); `binary` values are base64-encoded as JSON does.
fn map_entry(buf: &[u8], binary: bool) -> Result<(String, Value), String> {
    let mut key = String::new();
    let mut value = Value::String(String::new());
    for (tag, f) in fields(buf)? {
        match (tag, f) {
            (1, Field::Bytes(b)) => key = string(b)?,
            (2, Field::Bytes(b)) if binary => {
                value = json!(base64::engine::general_purpose::STANDARD.encode(b));
            }
            (2, Field::Bytes(b)) => value = json!(string(b)?),
            _ => {}
        }
    }
    Ok((key, value))
}

fn insert_entry(
    obj: &mut Map<String, Value>,
    name: &str,
    buf: &[u8],
    binary: bool,
) -> Result<(), String> {
    let (k, v) = map_entry(buf, binary)?;
    let map = obj.entry(name).or_insert_with(|| json!({}));
    if let Some(m) = map.as_object_mut() {
        m.insert(k, v);
    }
    Ok(())
}

fn push_string(obj: &mut Map<String, Value>, name: &str, b: &[u8]) -> Result<(), String> {
    let s = string(b)?;
    let list = obj.entry(name).or_insert_with(|| json!([]));
    if let Some(l) = list.as_array_mut() {
        l.push(json!(s));
    }
    Ok(())
}

fn object_meta(buf: &[u8]) -> Result<Value, String> {
    let mut meta = Map::new();
    for (tag, f) in fields(buf)? {
        match (tag, f) {
            (1, Field::Bytes(b)) => drop(meta.insert("name".into(), json!(string(b)?))),
            (2, Field::Bytes(b)) => drop(meta.insert("generateName".into(), json!(string(b)?))),
            (3, Field::Bytes(b)) => drop(meta.insert("namespace".into(), json!(string(b)?))),
            (5, Field::Bytes(b)) => drop(meta.insert("uid".into(), json!(string(b)?))),
            (6, Field::Bytes(b)) => drop(meta.insert("resourceVersion".into(), json!(string(b)?))),
            (11, Field::Bytes(b)) => insert_entry(&mut meta, "labels", b, false)?,
            (12, Field::Bytes(b)) => insert_entry(&mut meta, "annotations", b, false)?,
            (14, Field::Bytes(b)) => push_string(&mut meta, "finalizers", b)?,
            _ => {}
        }
    }
    Ok(Value::Object(meta))
}

fn body(kind: &ResourceKind, raw: &[u8]) -> Result<Value, String> {
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!(kind.api_version()));
    obj.insert("kind".into(), json!(kind.kind));
    for (tag, f) in fields(raw)? {
        match (kind.kind, tag, f) {
            (_, 1, Field::Bytes(b)) => drop(obj.insert("metadata".into(), object_meta(b)?)),
            ("Secret", 2, Field::Bytes(b)) => insert_entry(&mut obj, "data", b, true)?,
            ("Secret", 3, Field::Bytes(b)) => drop(obj.insert("type".into(), json!(string(b)?))),
            ("Secret", 4, Field::Bytes(b)) => insert_entry(&mut obj, "stringData", b, false)?,
            ("Secret", 5, Field::Varint(v)) => drop(obj.insert("immutable".into(), json!(v != 0))),
            ("ConfigMap", 2, Field::Bytes(b)) => insert_entry(&mut obj, "data", b, false)?,
            ("ConfigMap", 3, Field::Bytes(b)) => insert_entry(&mut obj, "binaryData", b, true)?,
            ("ConfigMap", 4, Field::Varint(v)) => {
                drop(obj.insert("immutable".into(), json!(v != 0)))
            }
            ("Namespace", 2, Field::Bytes(b)) => {
                let mut spec = Map::new();
                for (t, f) in fields(b)? {
                    if let (1, Field::Bytes(s)) = (t, f) {
                        push_string(&mut spec, "finalizers", s)?;
                    }
                }
                obj.insert("spec".into(), Value::Object(spec));
            }
            _ => {}
        }
    }
    Ok(Value::Object(obj))
}

/// Decodes a protobuf request body of `kind`; `Err` carries a message for a 400, `Ok(None)`
/// means the kind has no protobuf decoder here (415).
pub(crate) fn decode(kind: &ResourceKind, buf: &[u8]) -> Result<Option<Value>, String> {
    if !matches!(kind.kind, "Secret" | "ConfigMap" | "Namespace") {
        return Ok(None);
    }
    let envelope = buf.strip_prefix(MAGIC).ok_or(
        "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]",
    )?;
    let mut raw: &[u8] = &[];
    let mut type_kind = String::new();
    for (tag, f) in fields(envelope)? {
        match (tag, f) {
            (1, Field::Bytes(type_meta)) => {
                for (t, f) in fields(type_meta)? {
                    if let (2, Field::Bytes(k)) = (t, f) {
                        type_kind = string(k)?;
                    }
                }
            }
            (2, Field::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    if !type_kind.is_empty() && type_kind != kind.kind {
        return Err(format!(
            "the kind of the object ({type_kind}) does not match the resource ({})",
            kind.kind
        ));
    }
    body(kind, raw).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{NAMESPACES, SECRETS};

    fn field(tag: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![
            u8::try_from(tag << 3 | 2).unwrap(),
            u8::try_from(bytes.len()).unwrap(),
        ];
        out.extend_from_slice(bytes);
        out
    }

    fn envelope(kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [field(1, b"v1"), field(2, kind.as_bytes())].concat();
        [MAGIC.to_vec(), field(1, &type_meta), field(2, raw)].concat()
    }

    #[test]
    fn kubectl_create_secret_generic_decodes() {
        let meta = [
            field(1, b"s1"),
            field(3, b"default"),
            field(11, &[field(1, b"app"), field(2, b"x")].concat()),
        ]
        .concat();
        let data = [field(1, b"k"), field(2, b"v")].concat();
        let raw = [field(1, &meta), field(2, &data), field(3, b"Opaque")].concat();
        let obj = decode(&SECRETS, &envelope("Secret", &raw))
            .unwrap()
            .unwrap();
        assert_eq!(obj["metadata"]["name"], "s1");
        assert_eq!(obj["metadata"]["labels"]["app"], "x");
        assert_eq!(obj["data"]["k"], "dg==");
        assert_eq!(obj["type"], "Opaque");
    }

    #[test]
    fn namespace_decodes_and_garbage_is_an_error() {
        let raw = field(1, &field(1, b"team"));
        let obj = decode(&NAMESPACES, &envelope("Namespace", &raw))
            .unwrap()
            .unwrap();
        assert_eq!(obj["metadata"]["name"], "team");
        assert!(decode(&NAMESPACES, b"nope").is_err());
        assert!(decode(&NAMESPACES, &[MAGIC, &[0x0a, 0x09]].concat()).is_err());
        assert!(decode(&SECRETS, &envelope("ConfigMap", &raw)).is_err());
    }
}
