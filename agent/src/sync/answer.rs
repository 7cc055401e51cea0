//! Reading the relay's and the webhook's refusals: which are decisions of
//! secret-relay's rules, the rule each names, and which is the relay's refusal of
//! this cluster as unregistered.

use secret_relay_policy::Rule;

/// Whether an error answer is a decision of secret-relay's rules (the relay's or the
/// webhook's: both name the rule, `(rule <id>)`). The API server's own refusals
/// (400, 409, 422: validation, a conflict, a field that cannot change) are errors,
/// retried with backoff, and so is any other 403: the API server's authorization of
/// the relay's own identity, RBAC that is still loading after a restart (or missing).
pub(super) fn is_denial(status: &kube::core::Status) -> bool {
    status.code == 403 && status.message.contains("(rule ")
}

/// Whether `err` is the relay's refusal of this cluster as unregistered: a 403 that
/// names rule `unknown-cluster`, which the relay gives only under a loaded policy
/// and over the cluster's authenticated connection. Nothing else counts: not a
/// network error, not another 403, not a 503 of a relay still loading its policy.
pub(super) fn is_unregistered(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status)
        if status.code == 403 && denied_rule(status) == Rule::UnknownCluster.as_str())
}

/// The rule id a relay or webhook denial names: the Status cause's reason, else the
/// `(rule <id>)` at the end of the message.
pub(super) fn denied_rule(status: &kube::core::Status) -> String {
    if let Some(cause) = status.details.as_ref().and_then(|d| d.causes.first())
        && !cause.reason.is_empty()
    {
        return cause.reason.clone();
    }
    status
        .message
        .rsplit_once("(rule ")
        .map(|(_, r)| r.trim_end_matches(')').to_owned())
        .unwrap_or_else(|| status.reason.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_names_its_rule_from_the_cause_or_the_message() {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 403, "reason": "Forbidden",
            "message": "secret-relay denied the request: no (rule no-matching-source)",
            "details": {"causes": [{"reason": "no-matching-source", "message": "no"}]},
        }))
        .unwrap();
        assert_eq!(denied_rule(&status), "no-matching-source");
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 403, "reason": "Forbidden",
            "message": "admission webhook \"validate.secret-relay.io\" denied the request: owned (rule owned-by-other-cluster)",
        }))
        .unwrap();
        assert_eq!(denied_rule(&status), "owned-by-other-cluster");
    }

    #[test]
    fn only_a_decision_that_names_its_rule_is_a_denial() {
        let status = |code: u16, message: &str| -> kube::core::Status {
            serde_json::from_value(serde_json::json!({
                "status": "Failure", "code": code, "reason": "Forbidden", "message": message,
            }))
            .unwrap()
        };
        assert!(is_denial(&status(
            403,
            "secret-relay denied the request: no (rule no-matching-source)"
        )));
        assert!(is_denial(&status(
            403,
            "admission webhook \"validate.secret-relay.io\" denied the request: owned (rule owned-by-other-cluster)"
        )));
        // The API server's validation is an error, retried, not a denial.
        assert!(!is_denial(&status(422, "Secret \"x\" is invalid")));
        assert!(!is_denial(&status(400, "the body is not a Secret")));
        // RBAC before the restarted API server has loaded it: retried, not remembered.
        assert!(!is_denial(&status(
            403,
            "secrets is forbidden: User \"secret-relay:cluster:cluster1\" cannot create resource \"secrets\" in API group \"\" in the namespace \"argocd\""
        )));
        assert!(!is_denial(&status(
            502,
            "failed to reach the control plane's API server"
        )));
    }

    #[test]
    fn only_the_relays_refusal_as_unregistered_counts_toward_clearing_down_copies() {
        let api = |code: u16, message: &str| {
            kube::Error::Api(
                serde_json::from_value(serde_json::json!({
                    "status": "Failure", "code": code, "reason": "Forbidden", "message": message,
                }))
                .unwrap(),
            )
        };
        assert!(is_unregistered(&api(
            403,
            "cluster cluster2 is not registered: add it to clusters in the secret-relay-policy ConfigMap (rule unknown-cluster)"
        )));
        // Another refusal, a relay still loading its policy, a network error: never.
        assert!(!is_unregistered(&api(
            403,
            "secret-relay denied the request: no (rule no-matching-source)"
        )));
        assert!(!is_unregistered(&api(
            403,
            "cluster cluster2 is not registered"
        )));
        assert!(!is_unregistered(&api(
            503,
            "the relay has not loaded a valid policy yet; see its /readyz"
        )));
        assert!(!is_unregistered(&kube::Error::Service(
            "connection refused".into()
        )));
    }
}
