//! Request bodies of writes, decoded with bounded work and read the way
//! kube-apiserver reads them, so that what the relay judges is what the API server
//! stores.
//!
//! - **JSON** is parsed by serde_json in time linear in the body, nested at most
//!   [`MAX_DEPTH`] levels (serde_json's own limit of 128 stays on underneath), with at
//!   most [`MAX_CONTAINERS`] non-empty arrays and objects (each costs an allocation of
//!   up to ~600 bytes however short it is in the body). No YAML
//!   parser ever runs on a request: serde_yaml's time grows quadratically with flow
//!   nesting. A server-side apply body (`application/apply-patch+yaml`) is read only
//!   when it is JSON, which is what kubectl, client-go and kube-rs send; anything else
//!   is refused with 415.
//! - **Duplicate keys.** An object that names a key twice, at any depth, is refused
//!   with 400 naming the field path. Go's decoder (sigs.k8s.io/json, kube-apiserver's)
//!   merges a repeated map field into the first one (two `labels` objects give their
//!   union) and reports the repeat only as a strict-decoding error or warning,
//!   depending on `fieldValidation`; serde keeps the last. Without the refusal the relay
//!   would judge another object than the one the API server stores.
//! - **Protobuf** (`application/vnd.kubernetes.protobuf`, which client-go's typed
//!   Secrets client sends by default): the `k8s\0` prefix, a `runtime.Unknown`
//!   envelope and a `k8s.io.api.core.v1.Secret`, decoded with k8s-pb's generated types
//!   and converted field by field. A Go zero value (an empty string, a zero time, an
//!   empty map or list) reads as absent, as Go's JSON encoding omits it.
//! - **CBOR, YAML and every other media type**: 415. client-go turns to JSON for
//!   later requests after a 415 answer to a CBOR one.
//!
//! An error names a field path, a media type or a position, never a value from the
//! body.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fmt::Write as _;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    FieldsV1, ManagedFieldsEntry, ObjectMeta, OwnerReference, Time,
};
use k8s_pb::api::core::v1 as pb_core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as pb_meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message as _;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::route::PatchKind;

/// How deeply arrays and objects may nest in a JSON body. A Secret nests about six
/// levels (a managedFields entry's fieldsV1 is the deepest part), a JSON patch two
/// more.
pub const MAX_DEPTH: usize = 64;

/// How many non-empty arrays and objects one JSON body may hold (a protobuf body: all
/// its managedFields' fieldsV1 together). Each costs the relay an allocation of up to
/// ~600 bytes (a node of serde_json's map) however few bytes it takes in the body, so
/// 3 MiB of `{"a":{"a":...}}` would cost about 300 MiB and a third of a second to read.
/// A Secret holds a few dozen; a JSON patch of [`MAX_JSON_PATCH_OPERATIONS`] operations
/// about as many as its operations. kube-apiserver keeps fieldsV1 as raw bytes and has
/// no such limit: the relay's is far above any real body.
pub const MAX_CONTAINERS: usize = 25_000;

/// The most operations a JSON patch may hold: kube-apiserver's own limit
/// (`maxJSONPatchOperations` in k8s.io/apiserver's patch handler).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The four bytes every Kubernetes protobuf body starts with.
pub const PROTOBUF_PREFIX: [u8; 4] = *b"k8s\0";

/// The media type of a Kubernetes protobuf body.
pub const PROTOBUF_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Why a request body gives nothing to judge. The message never quotes a value from
/// the body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body is not a valid one of its media type, or not the object its request
    /// needs: answer 400 BadRequest.
    #[error("{0}")]
    BadRequest(String),
    /// The relay does not read bodies of this media type: answer 415
    /// UnsupportedMediaType.
    #[error("{0}")]
    UnsupportedMediaType(String),
}

/// Decodes the body of a create (POST) or an update (PUT) of a Secret by its
/// `Content-Type`: JSON when it is `application/json` or absent (as kube-apiserver
/// reads a body without one), or Kubernetes protobuf. Any other media type (YAML,
/// CBOR, ...) is [`BodyError::UnsupportedMediaType`]. A JSON body must be one object
/// with no duplicate key at any depth, nested at most [`MAX_DEPTH`] levels.
pub fn decode_secret(content_type: Option<&str>, body: &[u8]) -> Result<Secret, BodyError> {
    let media = media_type(content_type);
    match media.as_str() {
        "" | "application/json" => secret_from_json(body),
        PROTOBUF_MEDIA_TYPE => secret_from_protobuf(body),
        "application/cbor" | "application/apply-patch+cbor" => {
            Err(BodyError::UnsupportedMediaType(format!(
                "failed to decode the Secret: the relay does not read CBOR ({media}); send application/json or {PROTOBUF_MEDIA_TYPE}"
            )))
        }
        _ => Err(BodyError::UnsupportedMediaType(format!(
            "failed to decode the Secret: the body of a create or an update must be application/json or {PROTOBUF_MEDIA_TYPE}, not {}",
            quoted(&media)
        ))),
    }
}

/// Decodes a PATCH body of `kind` (the kind its `Content-Type` named) as JSON: a
/// merge, strategic-merge or apply patch to an object, a JSON patch to an array of at
/// most [`MAX_JSON_PATCH_OPERATIONS`] operations, each of which deserializes into a
/// [`json_patch::PatchOperation`]. No duplicate key at any depth, at most
/// [`MAX_DEPTH`] levels. An apply patch that is not JSON (YAML) is
/// [`BodyError::UnsupportedMediaType`]; every other fault is
/// [`BodyError::BadRequest`].
pub fn decode_patch_value(kind: PatchKind, body: &[u8]) -> Result<Value, BodyError> {
    let what = match kind {
        PatchKind::Merge => "the merge patch",
        PatchKind::Json => "the JSON patch",
        PatchKind::Strategic => "the strategic-merge patch",
        PatchKind::Apply => "the apply patch",
    };
    let not_json = if kind == PatchKind::Apply {
        NotJson::Unsupported
    } else {
        NotJson::Bad
    };
    let value = scan::<true>(body, what, not_json, &Cell::new(MAX_CONTAINERS))?;
    match kind {
        PatchKind::Json => {
            let Value::Array(ops) = &value else {
                return Err(BodyError::BadRequest(format!(
                    "failed to decode {what}: the body must be a JSON array of operations"
                )));
            };
            if ops.len() > MAX_JSON_PATCH_OPERATIONS {
                return Err(BodyError::BadRequest(format!(
                    "failed to decode {what}: the allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
                    ops.len()
                )));
            }
            serde_path_to_error::deserialize::<_, json_patch::Patch>(&value).map_err(|e| {
                BodyError::BadRequest(format!(
                    "failed to decode {what}: {} is not a valid operation (a missing or unknown op, path or from, or a value of the wrong type)",
                    quoted(&tracked_path(e.path()))
                ))
            })?;
        }
        PatchKind::Merge | PatchKind::Strategic | PatchKind::Apply => {
            if !value.is_object() {
                return Err(BodyError::BadRequest(format!(
                    "failed to decode {what}: the body must be a JSON object"
                )));
            }
        }
    }
    Ok(value)
}

/// Decodes any other JSON body the relay reads (DeleteOptions, for one) with the same
/// rules: any JSON value, no duplicate key at any depth, at most [`MAX_DEPTH`] levels.
pub fn decode_json(body: &[u8]) -> Result<Value, BodyError> {
    scan::<true>(body, "the body", NotJson::Bad, &Cell::new(MAX_CONTAINERS))
}

/// Decodes a DELETE body, DeleteOptions, as JSON (the rules of [`decode_json`]) or
/// protobuf (client-go's typed clients send it as they send Secrets), into the
/// JSON object the relay forwards. An empty body is no options.
pub fn decode_delete_options(content_type: Option<&str>, body: &[u8]) -> Result<Value, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::json!({"kind": "DeleteOptions", "apiVersion": "v1"}));
    }
    let media = media_type(content_type);
    if media == PROTOBUF_MEDIA_TYPE {
        return delete_options_from_protobuf(body);
    }
    if !matches!(media.as_str(), "" | "application/json") {
        return Err(BodyError::UnsupportedMediaType(format!(
            "the relay reads DeleteOptions as JSON or protobuf, not {}",
            quoted(&media)
        )));
    }
    let value = decode_json(body)?;
    if !value.is_object() {
        return Err(BodyError::BadRequest(
            "the body of a DELETE must be DeleteOptions".to_owned(),
        ));
    }
    Ok(value)
}

fn delete_options_from_protobuf(body: &[u8]) -> Result<Value, BodyError> {
    let bad = |detail: String| {
        BodyError::BadRequest(format!(
            "failed to decode DeleteOptions from protobuf: {detail}"
        ))
    };
    let unknown = protobuf_envelope(body, &bad)?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    if !matches!(kind.as_str(), "" | "DeleteOptions") {
        return Err(bad(format!(
            "the body holds a {}, not DeleteOptions",
            quoted(&kind)
        )));
    }
    let raw = unknown.raw.unwrap_or_default();
    let o = pb_meta::DeleteOptions::decode(raw.as_slice()).map_err(|e| bad(e.to_string()))?;
    let mut out = serde_json::Map::new();
    out.insert("kind".to_owned(), "DeleteOptions".into());
    out.insert("apiVersion".to_owned(), "v1".into());
    if let Some(g) = o.grace_period_seconds {
        out.insert("gracePeriodSeconds".to_owned(), g.into());
    }
    if let Some(p) = o.preconditions {
        let mut pre = serde_json::Map::new();
        if let Some(uid) = present(p.uid) {
            pre.insert("uid".to_owned(), uid.into());
        }
        if let Some(rv) = present(p.resource_version) {
            pre.insert("resourceVersion".to_owned(), rv.into());
        }
        out.insert("preconditions".to_owned(), Value::Object(pre));
    }
    if let Some(orphan) = o.orphan_dependents {
        out.insert("orphanDependents".to_owned(), orphan.into());
    }
    if let Some(policy) = present(o.propagation_policy) {
        out.insert("propagationPolicy".to_owned(), policy.into());
    }
    if !o.dry_run.is_empty() {
        out.insert("dryRun".to_owned(), o.dry_run.into());
    }
    if let Some(ignore) = o.ignore_store_read_error_with_cluster_breaking_potential {
        out.insert(
            "ignoreStoreReadErrorWithClusterBreakingPotential".to_owned(),
            ignore.into(),
        );
    }
    Ok(Value::Object(out))
}

/// The media type of a `Content-Type` value, lowercased, without parameters.
fn media_type(content_type: Option<&str>) -> String {
    content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// What a JSON syntax error means for the request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NotJson {
    /// A malformed body (400).
    Bad,
    /// A body of a media type the relay reads only as JSON (415).
    Unsupported,
}

/// Whether a create or update body of `content_type` is read as JSON (the type is
/// `application/json`, or absent).
pub(crate) fn is_json(content_type: Option<&str>) -> bool {
    matches!(media_type(content_type).as_str(), "" | "application/json")
}

/// Checks a JSON create or update body by the rules of this module (syntax, depth,
/// containers, duplicate keys) and that it is one object, on a pass that keeps
/// nothing: what a typed decode of the body may then rely on.
pub(crate) fn check_json_secret(body: &[u8]) -> Result<(), BodyError> {
    const WHAT: &str = "the Secret";
    let shape = scan::<false>(body, WHAT, NotJson::Bad, &Cell::new(MAX_CONTAINERS))?;
    if !shape.is_object() {
        return Err(BodyError::BadRequest(format!(
            "failed to decode {WHAT}: the body must be a JSON object"
        )));
    }
    Ok(())
}

fn secret_from_json(body: &[u8]) -> Result<Secret, BodyError> {
    const WHAT: &str = "the Secret";
    // First the rules (syntax, depth, duplicate keys), on a pass that keeps nothing;
    // then the typed decode of a body now known to be sound.
    check_json_secret(body)?;
    // The typed decode without path tracking first: a sound body decodes on it, and
    // only a failure pays for the second decode that names the field.
    if let Ok(secret) = serde_json::from_slice(body) {
        return Ok(secret);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        // serde's own messages for a wrong type quote the value: only the path and
        // the position are given.
        BodyError::BadRequest(format!(
            "failed to decode {WHAT}: {} holds a value of the wrong type, or an invalid or missing one (line {}, column {})",
            quoted(&tracked_path(e.path())),
            e.inner().line(),
            e.inner().column()
        ))
    })
}

/// The `runtime.Unknown` envelope of a Kubernetes protobuf body (`k8s\0`, then the
/// envelope); `bad` words the error for the type being decoded.
fn protobuf_envelope(
    body: &[u8],
    bad: &impl Fn(String) -> BodyError,
) -> Result<Unknown, BodyError> {
    let Some(envelope) = body.strip_prefix(&PROTOBUF_PREFIX[..]) else {
        return Err(bad(
            "the body does not start with the Kubernetes protobuf prefix".to_owned(),
        ));
    };
    // prost's errors name the message, the field and the fault, never the bytes.
    Unknown::decode(envelope).map_err(|e| bad(e.to_string()))
}

fn secret_from_protobuf(body: &[u8]) -> Result<Secret, BodyError> {
    let bad = |detail: String| {
        BodyError::BadRequest(format!(
            "failed to decode the Secret from protobuf: {detail}"
        ))
    };
    if body == PROTOBUF_PREFIX {
        return Err(bad("the body is empty".to_owned()));
    }
    let unknown = protobuf_envelope(body, &bad)?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    // As kube-apiserver does, an empty apiVersion or kind takes the endpoint's (v1 Secret).
    if !matches!(api_version.as_str(), "" | "v1") || !matches!(kind.as_str(), "" | "Secret") {
        return Err(bad(format!(
            "the body holds a {} of {}, not a v1 Secret",
            quoted(&kind),
            quoted(&api_version)
        )));
    }
    let raw = unknown.raw.unwrap_or_default();
    let secret = pb_core::Secret::decode(raw.as_slice()).map_err(|e| bad(e.to_string()))?;
    secret_from_pb(secret)
}

/// The Secret that kube-apiserver's JSON encoding of `pb` would decode to: Go writes
/// every non-pointer field to protobuf, zero or not, and omits zero ones from JSON.
fn secret_from_pb(pb: pb_core::Secret) -> Result<Secret, BodyError> {
    let pb_core::Secret {
        metadata,
        immutable,
        data,
        string_data,
        r#type,
    } = pb;
    Ok(Secret {
        metadata: object_meta(metadata.unwrap_or_default())?,
        immutable,
        data: (!data.is_empty())
            .then(|| data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
        string_data: (!string_data.is_empty()).then_some(string_data),
        type_: present(r#type),
    })
}

fn object_meta(m: pb_meta::ObjectMeta) -> Result<ObjectMeta, BodyError> {
    let pb_meta::ObjectMeta {
        name,
        generate_name,
        namespace,
        self_link,
        uid,
        resource_version,
        generation,
        creation_timestamp,
        deletion_timestamp,
        deletion_grace_period_seconds,
        labels,
        annotations,
        owner_references,
        finalizers,
        managed_fields,
    } = m;
    // One budget of arrays and objects for every entry's fieldsV1.
    let budget = Cell::new(MAX_CONTAINERS);
    let managed_fields = managed_fields
        .into_iter()
        .enumerate()
        .map(|(i, e)| managed_fields_entry(i, e, &budget))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ObjectMeta {
        name: present(name),
        generate_name: present(generate_name),
        namespace: present(namespace),
        self_link: present(self_link),
        uid: present(uid),
        resource_version: present(resource_version),
        generation: generation.filter(|g| *g != 0),
        creation_timestamp: time(creation_timestamp, "metadata.creationTimestamp")?,
        deletion_timestamp: time(deletion_timestamp, "metadata.deletionTimestamp")?,
        // A pointer in Go: written only when set, and kept when zero.
        deletion_grace_period_seconds,
        labels: (!labels.is_empty()).then_some(labels),
        annotations: (!annotations.is_empty()).then_some(annotations),
        owner_references: (!owner_references.is_empty())
            .then(|| owner_references.into_iter().map(owner_reference).collect()),
        finalizers: (!finalizers.is_empty()).then_some(finalizers),
        managed_fields: (!managed_fields.is_empty()).then_some(managed_fields),
    })
}

fn owner_reference(r: pb_meta::OwnerReference) -> OwnerReference {
    let pb_meta::OwnerReference {
        api_version,
        kind,
        name,
        uid,
        controller,
        block_owner_deletion,
    } = r;
    OwnerReference {
        api_version: api_version.unwrap_or_default(),
        kind: kind.unwrap_or_default(),
        name: name.unwrap_or_default(),
        uid: uid.unwrap_or_default(),
        controller,
        block_owner_deletion,
    }
}

fn managed_fields_entry(
    index: usize,
    e: pb_meta::ManagedFieldsEntry,
    budget: &Cell<usize>,
) -> Result<ManagedFieldsEntry, BodyError> {
    let pb_meta::ManagedFieldsEntry {
        manager,
        operation,
        api_version,
        time: at,
        fields_type,
        fields_v1,
        subresource,
    } = e;
    let fields_v1 = match fields_v1.and_then(|f| f.raw).filter(|raw| !raw.is_empty()) {
        // Raw JSON inside the protobuf, read by the same rules as a JSON body.
        Some(raw) => Some(FieldsV1(scan::<true>(
            &raw,
            &format!("metadata.managedFields[{index}].fieldsV1 of the Secret"),
            NotJson::Bad,
            budget,
        )?)),
        None => None,
    };
    Ok(ManagedFieldsEntry {
        manager: present(manager),
        operation: present(operation),
        api_version: present(api_version),
        time: time(at, &format!("metadata.managedFields[{index}].time"))?,
        fields_type: present(fields_type),
        fields_v1,
        subresource: present(subresource),
    })
}

/// A string field of Go's that is not a pointer: the empty string is its zero value.
fn present(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// A `metav1.Time`: Go writes the zero time as an empty message and reads an empty
/// message back as the zero time, which its JSON encoding gives as null. It keeps
/// whole seconds only.
fn time(t: Option<pb_meta::Time>, field: &str) -> Result<Option<Time>, BodyError> {
    let Some(pb_meta::Time { seconds, nanos }) = t else {
        return Ok(None);
    };
    if seconds.is_none() && nanos.is_none() {
        return Ok(None);
    }
    k8s_openapi::jiff::Timestamp::from_second(seconds.unwrap_or(0))
        .map(|ts| Some(Time(ts)))
        .map_err(|_| {
            BodyError::BadRequest(format!(
                "failed to decode the Secret from protobuf: {field} is out of range"
            ))
        })
}

/// Checks `body` as one JSON value by the rules of this module and returns it: the
/// whole value when `BUILD`, else only the kind of the top-level value (an empty
/// object or array, or null for a scalar), for a caller that decodes the body again.
fn scan<const BUILD: bool>(
    body: &[u8],
    what: &str,
    not_json: NotJson,
    containers: &Cell<usize>,
) -> Result<Value, BodyError> {
    let scan = Scan {
        what,
        failure: RefCell::new(None),
        containers,
    };
    let root = At {
        parent: None,
        step: Step::Root,
        depth: 0,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let checked = Check::<BUILD> {
        scan: &scan,
        at: &root,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    checked.map_err(|e| {
        scan.failure
            .take()
            .unwrap_or_else(|| json_syntax(what, &e, not_json))
    })
}

/// A serde_json error that no rule of ours raised: the body is not JSON.
fn json_syntax(what: &str, e: &serde_json::Error, not_json: NotJson) -> BodyError {
    let detail = match e.classify() {
        // These messages name the fault and its position, never the input.
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => e.to_string(),
        serde_json::error::Category::Data | serde_json::error::Category::Io => {
            format!("invalid at line {}, column {}", e.line(), e.column())
        }
    };
    match not_json {
        NotJson::Bad => BodyError::BadRequest(format!("failed to decode {what}: {detail}")),
        NotJson::Unsupported => BodyError::UnsupportedMediaType(format!(
            "failed to decode {what}: the relay reads server-side apply bodies only as JSON (as kubectl, client-go and kube-rs send them), and this one is not JSON: {detail}"
        )),
    }
}

/// One JSON pass: what it is reading, the first rule it found broken, and how many
/// more non-empty arrays and objects it may meet.
struct Scan<'w> {
    what: &'w str,
    failure: RefCell<Option<BodyError>>,
    containers: &'w Cell<usize>,
}

/// Where a value sits in the body: frames on the stack, each naming its parent.
#[derive(Clone, Copy)]
struct At<'a> {
    parent: Option<&'a At<'a>>,
    step: Step<'a>,
    depth: usize,
}

#[derive(Clone, Copy)]
enum Step<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

/// Checks one JSON value (and, when `BUILD`, returns it whole).
struct Check<'s, 'a, const BUILD: bool> {
    scan: &'s Scan<'s>,
    at: &'a At<'a>,
}

/// The keys an object has named so far, when the object itself is not kept. Most
/// objects have a few keys: a short list, then a hash set (randomly keyed, so a body
/// cannot make it slow).
enum Keys<'de> {
    Few(Vec<Cow<'de, str>>),
    Many(HashSet<Cow<'de, str>>),
}

const FEW_KEYS: usize = 16;

/// A key, borrowed from the body when it has no escape.
struct KeySeed;

/// How many characters of one key a path shows.
const PATH_KEY_CHARS: usize = 64;

impl At<'_> {
    fn path(&self) -> String {
        let mut steps = Vec::with_capacity(self.depth + 1);
        let mut at = Some(self);
        while let Some(a) = at {
            steps.push(a.step);
            at = a.parent;
        }
        let mut path = PathText::default();
        for step in steps.iter().rev() {
            match step {
                Step::Root => {}
                Step::Key(k) => path.key(k),
                Step::Index(i) => path.index(*i),
            }
        }
        path.0
    }
}

/// A field path as Go's strict decoder writes it: `metadata.labels`, `items[2].op`.
#[derive(Default)]
struct PathText(String);

impl PathText {
    fn key(&mut self, key: &str) {
        if !self.0.is_empty() {
            self.0.push('.');
        }
        let mut chars = key.chars();
        self.0.extend(chars.by_ref().take(PATH_KEY_CHARS));
        if chars.next().is_some() {
            self.0.push('…');
        }
    }

    fn index(&mut self, index: usize) {
        let _ = write!(self.0, "[{index}]");
    }
}

/// The path serde_path_to_error tracked, written as [`PathText`].
fn tracked_path(path: &serde_path_to_error::Path) -> String {
    let mut text = PathText::default();
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => text.index(*index),
            serde_path_to_error::Segment::Map { key } => text.key(key),
            serde_path_to_error::Segment::Enum { variant } => text.key(variant),
            serde_path_to_error::Segment::Unknown => text.key("?"),
        }
    }
    text.0
}

/// A name for a message: quoted, and cut short.
fn quoted(s: &str) -> String {
    if s.is_empty() {
        return "(the top level)".to_owned();
    }
    let mut chars = s.chars();
    let mut short: String = chars.by_ref().take(256).collect();
    if chars.next().is_some() {
        short.push('…');
    }
    format!("{short:?}")
}

impl<const BUILD: bool> Check<'_, '_, BUILD> {
    /// Records `err` as the reason (the first one found stays) and gives serde an
    /// error to unwind with.
    fn fail<E: de::Error>(&self, err: BodyError) -> E {
        let mut failure = self.scan.failure.borrow_mut();
        if failure.is_none() {
            *failure = Some(err);
        }
        E::custom("refused by the relay's body rules")
    }

    /// The depth of an array or object opening here, if allowed.
    fn enter<E: de::Error>(&self) -> Result<usize, E> {
        let depth = self.at.depth + 1;
        if depth > MAX_DEPTH {
            return Err(self.fail(BodyError::BadRequest(format!(
                "failed to decode {}: arrays and objects nest deeper than {MAX_DEPTH} levels at {}",
                self.scan.what,
                quoted(&self.at.path())
            ))));
        }
        Ok(depth)
    }

    /// Records a key named twice in one object.
    fn duplicate<E: de::Error>(&self, key: &str, depth: usize) -> E {
        let at = At {
            parent: Some(self.at),
            step: Step::Key(key),
            depth,
        };
        self.fail(BodyError::BadRequest(format!(
            "failed to decode {}: duplicate field {}",
            self.scan.what,
            quoted(&at.path())
        )))
    }

    /// Counts an array or object that turned out not to be empty, if allowed.
    fn spend<E: de::Error>(&self) -> Result<(), E> {
        let left = self.scan.containers.get();
        if left == 0 {
            return Err(self.fail(BodyError::BadRequest(format!(
                "failed to decode {}: more than {MAX_CONTAINERS} non-empty arrays and objects (the relay's limit), at {}",
                self.scan.what,
                quoted(&self.at.path())
            ))));
        }
        self.scan.containers.set(left - 1);
        Ok(())
    }
}

impl<'de, const BUILD: bool> DeserializeSeed<'de> for Check<'_, '_, BUILD> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, const BUILD: bool> Visitor<'de> for Check<'_, '_, BUILD> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(if BUILD { Value::Bool(v) } else { Value::Null })
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(if BUILD { Value::from(v) } else { Value::Null })
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(if BUILD { Value::from(v) } else { Value::Null })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(if BUILD { Value::from(v) } else { Value::Null })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(if BUILD {
            Value::String(v.to_owned())
        } else {
            Value::Null
        })
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(if BUILD { Value::String(v) } else { Value::Null })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let depth = self.enter()?;
        let mut items = Vec::new();
        let mut index = 0;
        loop {
            let at = At {
                parent: Some(self.at),
                step: Step::Index(index),
                depth,
            };
            let next = seq.next_element_seed(Check::<BUILD> {
                scan: self.scan,
                at: &at,
            })?;
            match next {
                Some(v) => {
                    if index == 0 {
                        self.spend()?;
                    }
                    if BUILD {
                        items.push(v);
                    }
                }
                None => break,
            }
            index += 1;
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let depth = self.enter()?;
        let mut object = serde_json::Map::new();
        let mut keys = Keys::Few(Vec::new());
        let mut first = true;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if first {
                self.spend()?;
                first = false;
            }
            // One lookup per key: the map's own entry when the object is kept, else
            // the set of keys (a borrowed key is copied for free).
            if BUILD {
                match object.entry(key.into_owned()) {
                    serde_json::map::Entry::Occupied(seen) => {
                        return Err(self.duplicate(seen.key(), depth));
                    }
                    serde_json::map::Entry::Vacant(slot) => {
                        let at = At {
                            parent: Some(self.at),
                            step: Step::Key(slot.key()),
                            depth,
                        };
                        let value = map.next_value_seed(Check::<BUILD> {
                            scan: self.scan,
                            at: &at,
                        })?;
                        slot.insert(value);
                    }
                }
            } else {
                if !keys.insert(key.clone()) {
                    return Err(self.duplicate(&key, depth));
                }
                let at = At {
                    parent: Some(self.at),
                    step: Step::Key(&key),
                    depth,
                };
                map.next_value_seed(Check::<BUILD> {
                    scan: self.scan,
                    at: &at,
                })?;
            }
        }
        Ok(Value::Object(object))
    }
}

impl<'de> Keys<'de> {
    /// Adds `key`; false when it was there already.
    fn insert(&mut self, key: Cow<'de, str>) -> bool {
        match self {
            Keys::Few(list) if list.contains(&key) => false,
            Keys::Few(list) if list.len() < FEW_KEYS => {
                list.push(key);
                true
            }
            Keys::Few(list) => {
                let mut set: HashSet<Cow<'de, str>> = list.drain(..).collect();
                set.insert(key);
                *self = Keys::Many(set);
                true
            }
            Keys::Many(set) => set.insert(key),
        }
    }
}

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests;
