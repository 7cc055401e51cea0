//! AdmissionReview v1 decoding and encoding around the pure policy decisions.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use secret_relay_policy::{
    AdmissionInput, AdmissionVerdict, Mode, Operation, PatchOp, Policy, RelayIdentity, UserInfo,
    impersonated_cluster, in_scope, is_kubernetes_cleanup, mutate, mutate_reads_whole_objects,
    validate, validate_without_policy,
};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The only AdmissionReview version kube-apiserver sends us (`admissionReviewVersions: [v1]`).
pub const API_VERSION: &str = "admission.k8s.io/v1";
/// The envelope kind.
pub const KIND: &str = "AdmissionReview";

/// Which webhook endpoint is answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/validate`: allowed or denied, never a patch.
    Validate,
    /// `/mutate`: always allowed, with a JSON patch when something is stamped.
    Mutate,
}

/// Why a request body is not an AdmissionReview we can answer (HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum DecodeReviewError {
    /// Not JSON, or not the shape of an AdmissionReview.
    #[error("failed to decode AdmissionReview: {0}")]
    Json(#[source] serde_json::Error),
    /// apiVersion or kind is not `admission.k8s.io/v1` `AdmissionReview`.
    #[error(
        "failed to decode AdmissionReview: expected apiVersion {API_VERSION} and kind {KIND}, got {api_version:?} {kind:?}"
    )]
    Envelope {
        /// The body's apiVersion.
        api_version: String,
        /// The body's kind.
        kind: String,
    },
    /// The envelope carries no `request`.
    #[error("failed to decode AdmissionReview: it has no request")]
    MissingRequest,
    /// The object of a Secret request is not a Secret. The message never repeats the
    /// decoder's text, which could quote a value.
    #[error("failed to decode the {which} of AdmissionReview {uid} as a core/v1 Secret")]
    Secret {
        /// The request uid.
        uid: String,
        /// `object` or `oldObject`.
        which: &'static str,
    },
    /// The operation is not one of CREATE, UPDATE, DELETE, CONNECT.
    #[error("failed to decode AdmissionReview {uid}: unknown operation {operation:?}")]
    Operation {
        /// The request uid.
        uid: String,
        /// The operation.
        operation: String,
    },
}

/// What one review decided, for the response, logs and metrics.
#[derive(Debug)]
pub struct Reviewed {
    /// The encoded AdmissionReview response.
    pub body: Vec<u8>,
    /// The request uid.
    pub uid: String,
    /// `CREATE`, `UPDATE`, `DELETE`, `CONNECT`, or `invalid` for anything else.
    pub operation: &'static str,
    /// Request namespace.
    pub namespace: String,
    /// Request name.
    pub name: String,
    /// Whether the request was allowed.
    pub allowed: bool,
    /// The cluster whose write the relay made (an impersonated cluster), if it was one:
    /// such reviews are syncs, logged at info even when allowed.
    pub cluster: Option<String>,
    /// The rule id that decided (`not-a-secret` for kinds we pass through, `mutate` on
    /// `/mutate`).
    pub rule: &'static str,
    /// The patch length in operations (mutate only).
    pub patch_ops: usize,
    /// A break-glass identity bypassed the rules.
    pub break_glass: Option<String>,
    /// Whether the request was a dry run.
    pub dry_run: bool,
}

/// An AdmissionReview as decoded, its objects as `O`: kept as sent (`&RawValue`) to be
/// decoded whole once needed, or as [`StampedObject`] on `/mutate`'s one pass.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "O: Deserialize<'de>"))]
struct ReviewIn<'a, O> {
    #[serde(default, borrow)]
    api_version: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    request: Option<RequestIn<'a, O>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "O: Deserialize<'de>"))]
struct RequestIn<'a, O> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
    #[serde(borrow)]
    kind: GroupVersionKind<'a>,
    #[serde(default, borrow)]
    sub_resource: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow)]
    operation: Cow<'a, str>,
    #[serde(default)]
    user_info: UserInfoIn,
    #[serde(default = "Option::default")]
    object: Option<O>,
    #[serde(default = "Option::default")]
    old_object: Option<O>,
    #[serde(default)]
    dry_run: Option<bool>,
}

/// What `/mutate` decodes of an object in its one pass: the metadata [`mutate`] reads
/// (name, labels and annotations). `data` and `stringData` must be maps of strings, as
/// in any Secret, and are not kept: their values are neither decoded nor copied. Every
/// other field is skipped unread, so `/mutate` judges nothing: `/validate` decodes the
/// whole object the API server will store.
#[derive(Deserialize)]
struct StampedObject {
    #[serde(default)]
    metadata: StampedMeta,
    #[serde(default, rename = "data")]
    _data: Option<StringMap>,
    #[serde(default, rename = "stringData")]
    _string_data: Option<StringMap>,
}

#[derive(Deserialize, Default)]
struct StampedMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// A JSON object whose values are all strings: checked, not kept.
struct StringMap;

#[derive(Deserialize)]
struct GroupVersionKind<'a> {
    #[serde(default, borrow)]
    group: Cow<'a, str>,
    #[serde(default, borrow)]
    version: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
}

#[derive(Deserialize, Default)]
struct UserInfoIn {
    #[serde(default)]
    username: String,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut {
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut {
    uid: String,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    audit_annotations: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct StatusOut {
    code: u16,
    reason: &'static str,
    message: String,
}

/// The rule id answered for kinds and subresources passed through untouched.
const NOT_A_SECRET: &str = "not-a-secret";

/// An answer being built: what is logged and counted, and the response.
struct Answer {
    reviewed: Reviewed,
    response: ResponseOut,
}

/// A decoded Secret request: the operation and the objects it carries.
struct SecretRequest {
    operation: Operation,
    object: Option<Secret>,
    old_object: Option<Secret>,
    user: UserInfo,
}

/// Answers one AdmissionReview body with the given policy snapshot.
///
/// Non-Secret kinds and subresources are allowed untouched (rule `not-a-secret`). A
/// Secret outside the namespace the policy guards is validated without decoding its
/// objects. A validating answer never carries a patch; a mutating answer is always
/// allowed and carries the stamps, read in one pass with only the metadata `mutate`
/// reads (`mutate_in_one_pass`).
pub fn review(
    policy: &Policy,
    relay: &RelayIdentity,
    mode: &Mode,
    endpoint: Endpoint,
    body: &[u8],
) -> Result<Reviewed, DecodeReviewError> {
    if endpoint == Endpoint::Mutate
        && let Some(reviewed) = mutate_in_one_pass(policy, relay, mode, body)
    {
        return Ok(reviewed);
    }
    let review: ReviewIn<'_, &RawValue> = decode_envelope(body)?;
    let req = review.request.ok_or(DecodeReviewError::MissingRequest)?;
    let mut answer = Answer::new(&req);
    if !is_secret(&req) {
        answer.pass_through(endpoint);
        return Ok(answer.finish());
    }
    let (namespace, name) = (
        answer.reviewed.namespace.clone(),
        answer.reviewed.name.clone(),
    );
    // Outside the guarded namespace the decision needs no object: skip decoding them.
    let scoped = in_scope(policy, mode, &namespace);
    let secret = decode_request(req, scoped)?;
    let input = AdmissionInput {
        operation: secret.operation,
        namespace: &namespace,
        name: &name,
        object: secret.object.as_ref(),
        old_object: secret.old_object.as_ref(),
        user: &secret.user,
        dry_run: answer.reviewed.dry_run,
    };
    match endpoint {
        Endpoint::Validate => answer.verdict(validate(policy, relay, mode, &input), &secret.user),
        Endpoint::Mutate => answer.patch(&mutate(policy, relay, mode, &input)),
    }
    Ok(answer.finish())
}

/// Answers one AdmissionReview body while no valid policy has loaded: Kubernetes'
/// own cleanup (a delete, or an update of only ownerReferences and finalizers, by
/// kube-controller-manager) is allowed and never patched, and kinds other than
/// Secrets pass untouched; `Ok(None)` for anything else, which the server refuses
/// as not ready.
pub fn review_without_policy(
    endpoint: Endpoint,
    body: &[u8],
) -> Result<Option<Reviewed>, DecodeReviewError> {
    let review: ReviewIn<'_, &RawValue> = decode_envelope(body)?;
    let req = review.request.ok_or(DecodeReviewError::MissingRequest)?;
    let mut answer = Answer::new(&req);
    if !is_secret(&req) {
        answer.pass_through(endpoint);
        return Ok(Some(answer.finish()));
    }
    let (namespace, name) = (
        answer.reviewed.namespace.clone(),
        answer.reviewed.name.clone(),
    );
    let secret = decode_request(req, true)?;
    let input = AdmissionInput {
        operation: secret.operation,
        namespace: &namespace,
        name: &name,
        object: secret.object.as_ref(),
        old_object: secret.old_object.as_ref(),
        user: &secret.user,
        dry_run: answer.reviewed.dry_run,
    };
    match endpoint {
        Endpoint::Validate => match validate_without_policy(&input) {
            Some(verdict) => answer.verdict(verdict, &secret.user),
            None => return Ok(None),
        },
        Endpoint::Mutate if is_kubernetes_cleanup(&input) => answer.patch(&[]),
        Endpoint::Mutate => return Ok(None),
    }
    Ok(Some(answer.finish()))
}

/// `/mutate` in one pass over the body: the review with [`StampedObject`]s, which is
/// all [`mutate`] reads. `None` sends the body down the whole decode instead: when it
/// does not decode so (the whole decode then says what is wrong without quoting a
/// value), and for Kubernetes' cleanup, which `mutate` tells by the whole objects.
fn mutate_in_one_pass(
    policy: &Policy,
    relay: &RelayIdentity,
    mode: &Mode,
    body: &[u8],
) -> Option<Reviewed> {
    let review: ReviewIn<'_, StampedObject> = serde_json::from_slice(body).ok()?;
    if review.api_version != API_VERSION || review.kind != KIND {
        return None;
    }
    let req = review.request?;
    let operation = operation(&req.operation)?;
    let mut answer = Answer::new(&req);
    if !is_secret(&req) {
        answer.pass_through(Endpoint::Mutate);
        return Some(answer.finish());
    }
    let user = req.user_info.into_user();
    if mutate_reads_whole_objects(&user) {
        return None;
    }
    let object = req.object.map(StampedObject::into_secret);
    let old_object = req.old_object.map(StampedObject::into_secret);
    let input = AdmissionInput {
        operation,
        namespace: &answer.reviewed.namespace,
        name: &answer.reviewed.name,
        object: object.as_ref(),
        old_object: old_object.as_ref(),
        user: &user,
        dry_run: answer.reviewed.dry_run,
    };
    let ops = mutate(policy, relay, mode, &input);
    answer.patch(&ops);
    Some(answer.finish())
}

fn decode_envelope(body: &[u8]) -> Result<ReviewIn<'_, &RawValue>, DecodeReviewError> {
    let review: ReviewIn<'_, &RawValue> =
        serde_json::from_slice(body).map_err(DecodeReviewError::Json)?;
    if review.api_version != API_VERSION || review.kind != KIND {
        return Err(DecodeReviewError::Envelope {
            api_version: review.api_version.into_owned(),
            kind: review.kind.into_owned(),
        });
    }
    Ok(review)
}

fn is_secret<O>(req: &RequestIn<'_, O>) -> bool {
    req.kind.group.is_empty()
        && req.kind.version == "v1"
        && req.kind.kind == "Secret"
        && req.sub_resource.as_deref().unwrap_or("").is_empty()
}

/// The operation, the user and (when `with_objects`) the decoded objects.
fn decode_request(
    req: RequestIn<'_, &RawValue>,
    with_objects: bool,
) -> Result<SecretRequest, DecodeReviewError> {
    let operation = operation(&req.operation).ok_or_else(|| DecodeReviewError::Operation {
        uid: req.uid.to_string(),
        operation: req.operation.to_string(),
    })?;
    let (object, old_object) = if with_objects {
        (
            decode_secret(req.object, &req.uid, "object")?,
            decode_secret(req.old_object, &req.uid, "oldObject")?,
        )
    } else {
        (None, None)
    };
    Ok(SecretRequest {
        operation,
        object,
        old_object,
        user: req.user_info.into_user(),
    })
}

impl Answer {
    fn new<O>(req: &RequestIn<'_, O>) -> Answer {
        Answer {
            reviewed: Reviewed {
                body: Vec::new(),
                uid: req.uid.to_string(),
                operation: operation_label(&req.operation),
                namespace: req.namespace.as_deref().unwrap_or_default().to_owned(),
                name: req.name.as_deref().unwrap_or_default().to_owned(),
                allowed: true,
                cluster: None,
                rule: NOT_A_SECRET,
                patch_ops: 0,
                break_glass: None,
                dry_run: req.dry_run.unwrap_or(false),
            },
            response: ResponseOut {
                uid: req.uid.to_string(),
                allowed: true,
                status: None,
                patch_type: None,
                patch: None,
                warnings: Vec::new(),
                audit_annotations: BTreeMap::new(),
            },
        }
    }

    fn pass_through(&mut self, endpoint: Endpoint) {
        if endpoint == Endpoint::Validate {
            self.response
                .audit_annotations
                .insert("rule".to_owned(), NOT_A_SECRET.to_owned());
        }
    }

    fn verdict(&mut self, verdict: AdmissionVerdict, user: &UserInfo) {
        let decision = &verdict.decision;
        self.reviewed.allowed = decision.allowed;
        self.reviewed.rule = decision.rule.as_str();
        self.reviewed.cluster = impersonated_cluster(user).map(str::to_owned);
        if verdict.break_glass_used {
            self.reviewed.break_glass = Some(user.username.clone());
        }
        self.response.allowed = decision.allowed;
        if !decision.allowed {
            self.response.status = Some(StatusOut {
                code: 403,
                reason: "Forbidden",
                message: format!("{} (rule {})", decision.reason, decision.rule.as_str()),
            });
        }
        self.response.warnings = verdict.warnings;
        self.response.audit_annotations = verdict.audit;
    }

    fn patch(&mut self, ops: &[PatchOp]) {
        self.reviewed.rule = "mutate";
        self.reviewed.patch_ops = ops.len();
        if !ops.is_empty() {
            self.response.patch_type = Some("JSONPatch");
            self.response.patch = Some(encode_patch(ops));
        }
    }

    fn finish(self) -> Reviewed {
        let Answer {
            mut reviewed,
            response,
        } = self;
        let out = ReviewOut {
            api_version: API_VERSION,
            kind: KIND,
            response,
        };
        // Plain structs of strings, bools, numbers and string maps have no failure
        // case; an empty body would answer the API server an empty 200.
        reviewed.body =
            serde_json::to_vec(&out).expect("an AdmissionReview response always serializes");
        reviewed
    }
}

impl UserInfoIn {
    fn into_user(self) -> UserInfo {
        UserInfo {
            username: self.username,
            groups: self.groups,
        }
    }
}

/// The operation as counted and logged: one of kube-apiserver's four, or `invalid`.
/// Anybody who reaches the webhook's port may send any string there, and a label
/// value taken from a request would grow the metrics without bound.
fn operation_label(name: &str) -> &'static str {
    operation(name).map_or("invalid", Operation::as_str)
}

fn operation(name: &str) -> Option<Operation> {
    Operation::from_name(name)
}

impl StampedObject {
    /// A Secret holding only what was decoded: its name, namespace, labels and
    /// annotations.
    fn into_secret(self) -> Secret {
        let StampedMeta {
            name,
            namespace,
            labels,
            annotations,
        } = self.metadata;
        Secret {
            metadata: ObjectMeta {
                name,
                namespace,
                labels,
                annotations,
                ..ObjectMeta::default()
            },
            ..Secret::default()
        }
    }
}

impl<'de> Deserialize<'de> for StringMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StringMap, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = StringMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StringMap, A::Error> {
                while map.next_key::<AnyString>()?.is_some() {
                    map.next_value::<AnyString>()?;
                }
                Ok(StringMap)
            }
        }
        d.deserialize_map(Entries)
    }
}

/// Any JSON string, checked to be one and not kept. It is read as bytes, which spares
/// the UTF-8 check of values `/mutate` never reads.
struct AnyString;

impl<'de> Deserialize<'de> for AnyString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AnyString, D::Error> {
        struct Str;
        impl Visitor<'_> for Str {
            type Value = AnyString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<AnyString, E> {
                Ok(AnyString)
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<AnyString, E> {
                Ok(AnyString)
            }
        }
        d.deserialize_bytes(Str)
    }
}

fn decode_secret(
    raw: Option<&RawValue>,
    uid: &str,
    which: &'static str,
) -> Result<Option<Secret>, DecodeReviewError> {
    match raw {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => {
            serde_json::from_str(raw.get())
                .map(Some)
                .map_err(|_| DecodeReviewError::Secret {
                    uid: uid.to_owned(),
                    which,
                })
        }
    }
}

fn encode_patch(ops: &[PatchOp]) -> String {
    // PatchOp serializes to plain JSON objects (string paths, JSON values): no
    // failure case; an empty patch would be a wrong answer, not a refusal.
    let json = serde_json::to_vec(ops).expect("JSON-patch operations always serialize");
    base64::engine::general_purpose::STANDARD.encode(json)
}
