//! Authentication (client certificates, bearer tokens) and impersonation.

use std::collections::BTreeMap;

use http::HeaderMap;
use serde::Serialize;

use crate::status::{Resource, Status};

/// The authenticated identity of a request, as admission's `userInfo` carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    /// `userInfo.username`.
    pub username: String,
    /// `userInfo.uid` (empty when unknown).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// `userInfo.groups`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// `userInfo.extra`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The identity of the namespace controller, which deletes a namespace's contents.
pub(crate) fn namespace_controller() -> UserInfo {
    UserInfo {
        username: "system:serviceaccount:kube-system:namespace-controller".to_owned(),
        uid: String::new(),
        groups: vec![
            "system:serviceaccounts".to_owned(),
            "system:serviceaccounts:kube-system".to_owned(),
            "system:authenticated".to_owned(),
        ],
        extra: BTreeMap::new(),
    }
}

/// A user known to the server and whether it may impersonate.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    pub(crate) user: UserInfo,
    pub(crate) impersonate: bool,
}

/// Users by bearer token and by client-certificate common name.
#[derive(Debug, Default)]
pub(crate) struct Authenticator {
    pub(crate) tokens: BTreeMap<String, UserInfo>,
    pub(crate) users: BTreeMap<String, bool>,
}

impl Authenticator {
    /// The principal of a request: a bearer token, else the verified client certificate.
    pub(crate) fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<&UserInfo>,
    ) -> Option<Principal> {
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            let token = value.to_str().ok()?.strip_prefix("Bearer ")?.trim();
            let user = self.tokens.get(token)?;
            return Some(self.principal(user.clone()));
        }
        let cert_user = peer?.clone();
        Some(self.principal(cert_user))
    }

    fn principal(&self, mut user: UserInfo) -> Principal {
        let impersonate = self.users.get(&user.username).copied().unwrap_or(false);
        if !user.groups.iter().any(|g| g == "system:authenticated") {
            user.groups.push("system:authenticated".to_owned());
        }
        Principal { user, impersonate }
    }
}

/// Applies `Impersonate-*` headers: the new identity, or 403 when not allowed.
pub(crate) fn impersonate(principal: Principal, headers: &HeaderMap) -> Result<UserInfo, Status> {
    let user = header_values(headers, "impersonate-user");
    let groups = header_values(headers, "impersonate-group");
    let uid = header_values(headers, "impersonate-uid");
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-") {
            let key = percent_decode(key);
            if let Ok(v) = value.to_str() {
                extra.entry(key).or_default().push(v.to_owned());
            }
        }
    }
    if user.is_empty() && groups.is_empty() && uid.is_empty() && extra.is_empty() {
        return Ok(principal.user);
    }
    let Some(target) = user.first() else {
        return Err(Status::internal_error(
            "requested [] without impersonating a user",
        ));
    };
    if !principal.impersonate {
        let res = Resource {
            resource: "users",
            group: "",
        };
        return Err(Status::forbidden(
            res,
            target,
            &format!(
                "User {:?} cannot impersonate resource \"users\" in API group \"\" at the cluster scope",
                principal.user.username
            ),
        ));
    }
    let mut out_groups = groups;
    let is_sa = target.starts_with("system:serviceaccount:");
    if !out_groups.iter().any(|g| g == "system:authenticated") && target != "system:anonymous" {
        out_groups.push("system:authenticated".to_owned());
    }
    if is_sa && out_groups.len() == 1 {
        // kube-apiserver adds the service-account groups when none are asked for
        if let Some(ns) = target.split(':').nth(2) {
            out_groups.insert(0, format!("system:serviceaccounts:{ns}"));
            out_groups.insert(0, "system:serviceaccounts".to_owned());
        }
    }
    Ok(UserInfo {
        username: target.clone(),
        uid: uid.first().cloned().unwrap_or_default(),
        groups: out_groups,
        extra,
    })
}

fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `userInfo.extra` key kube-apiserver fills with the credential that authenticated a
/// request (staging/src/k8s.io/apiserver/pkg/authentication/user: `CredentialIDKey`).
pub(crate) const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";

/// The user named by a client certificate: CN is the user, O entries the groups, and the
/// certificate's SHA-256 as the credential id (`X509SHA256=<hex>`, as the x509
/// authenticator sets it).
pub(crate) fn user_from_cert(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let username = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Some(UserInfo {
        username,
        uid: String::new(),
        groups,
        extra: BTreeMap::from([(
            CREDENTIAL_ID_KEY.to_owned(),
            vec![format!("X509SHA256={hex}")],
        )]),
    })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn principal(name: &str, impersonate: bool) -> Principal {
        Principal {
            user: UserInfo {
                username: name.into(),
                groups: vec!["system:authenticated".into()],
                ..Default::default()
            },
            impersonate,
        }
    }

    #[test]
    fn impersonation_without_permission_is_forbidden() {
        let mut h = HeaderMap::new();
        h.insert("impersonate-user", HeaderValue::from_static("x"));
        let err = impersonate(principal("y", false), &h).unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            r#"users "x" is forbidden: User "y" cannot impersonate resource "users" in API group "" at the cluster scope"#
        );
    }

    #[test]
    fn impersonated_user_gets_groups_and_authenticated() {
        let mut h = HeaderMap::new();
        h.insert(
            "impersonate-user",
            HeaderValue::from_static("secret-relay:cluster:c1"),
        );
        h.append(
            "impersonate-group",
            HeaderValue::from_static("secret-relay:clusters"),
        );
        h.append(
            "impersonate-extra-scopes%2Fa",
            HeaderValue::from_static("v"),
        );
        let user = impersonate(principal("relay", true), &h).unwrap();
        assert_eq!(user.username, "secret-relay:cluster:c1");
        assert_eq!(
            user.groups,
            vec!["secret-relay:clusters", "system:authenticated"]
        );
        assert_eq!(user.extra["scopes/a"], vec!["v"]);
    }

    #[test]
    fn no_headers_keeps_the_caller() {
        let user = impersonate(principal("me", false), &HeaderMap::new()).unwrap();
        assert_eq!(user.username, "me");
    }

    #[test]
    fn unknown_token_is_unauthenticated() {
        let auth = Authenticator::default();
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer nope"),
        );
        assert!(auth.authenticate(&h, None).is_none());
    }
}
