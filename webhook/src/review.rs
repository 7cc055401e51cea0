//! AdmissionReview v1 decoding and encoding around the pure policy decisions.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use secret_relay_policy::{
    AdmissionInput, AdmissionVerdict, Mode, Operation, PatchOp, Policy, RelayIdentity, UserInfo,
    impersonated_cluster, in_scope, is_kubernetes_cleanup, mutate, validate,
    validate_without_policy,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The only AdmissionReview version kube-apiserver sends us (admissionReviewVersions: [v1]).
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
    /// `CREATE`, `UPDATE`, ...
    pub operation: String,
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<'a> {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(borrow)]
    request: Option<RequestIn<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn<'a> {
    uid: String,
    kind: GroupVersionKind,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    operation: String,
    #[serde(default)]
    user_info: UserInfoIn,
    #[serde(default, borrow)]
    object: Option<&'a RawValue>,
    #[serde(default, borrow)]
    old_object: Option<&'a RawValue>,
    #[serde(default)]
    dry_run: Option<bool>,
}

#[derive(Deserialize)]
struct GroupVersionKind {
    #[serde(default)]
    group: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    kind: String,
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
/// Secret outside the namespace the policy guards is decided without decoding its
/// objects. A validating answer never carries a patch; a mutating answer is always
/// allowed and carries the stamps.
pub fn review(
    policy: &Policy,
    relay: &RelayIdentity,
    mode: &Mode,
    endpoint: Endpoint,
    body: &[u8],
) -> Result<Reviewed, DecodeReviewError> {
    let review: ReviewIn<'_> = decode_envelope(body)?;
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
    let review: ReviewIn<'_> = decode_envelope(body)?;
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

fn decode_envelope(body: &[u8]) -> Result<ReviewIn<'_>, DecodeReviewError> {
    let review: ReviewIn<'_> = serde_json::from_slice(body).map_err(DecodeReviewError::Json)?;
    if review.api_version != API_VERSION || review.kind != KIND {
        return Err(DecodeReviewError::Envelope {
            api_version: review.api_version,
            kind: review.kind,
        });
    }
    Ok(review)
}

fn is_secret(req: &RequestIn<'_>) -> bool {
    req.kind.group.is_empty()
        && req.kind.version == "v1"
        && req.kind.kind == "Secret"
        && req.sub_resource.as_deref().unwrap_or("").is_empty()
}

/// The operation, the user and (when `with_objects`) the decoded objects.
fn decode_request(
    req: RequestIn<'_>,
    with_objects: bool,
) -> Result<SecretRequest, DecodeReviewError> {
    let operation = match req.operation.as_str() {
        "CREATE" => Operation::Create,
        "UPDATE" => Operation::Update,
        "DELETE" => Operation::Delete,
        "CONNECT" => Operation::Connect,
        other => {
            return Err(DecodeReviewError::Operation {
                uid: req.uid.clone(),
                operation: other.to_owned(),
            });
        }
    };
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
        user: UserInfo {
            username: req.user_info.username,
            groups: req.user_info.groups,
        },
    })
}

impl Answer {
    fn new(req: &RequestIn<'_>) -> Answer {
        Answer {
            reviewed: Reviewed {
                body: Vec::new(),
                uid: req.uid.clone(),
                operation: req.operation.clone(),
                namespace: req.namespace.clone().unwrap_or_default(),
                name: req.name.clone().unwrap_or_default(),
                allowed: true,
                cluster: None,
                rule: NOT_A_SECRET,
                patch_ops: 0,
                break_glass: None,
                dry_run: req.dry_run.unwrap_or(false),
            },
            response: ResponseOut {
                uid: req.uid.clone(),
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
