"""The repository's kustomize bases, judged by Kubernetes' own schemas
(kubernetes-validate, strict, for the oldest and newest API we target), by a
security scanner (checkov) and by the contract the code relies on: what the
webhook configurations select, replicas and disruption budgets, the agent's
identity and certificate, least-privilege RBAC, restricted pods, network
policies. Skips of checkov findings are annotated in the manifests with their
reason (`checkov.io/skipN: CHECK=reason`).

tests/manifests.rs applies the same bases to a real control plane."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
BASES = ["control-plane", "managed-cluster"]


def kubectl():
    listed = [k for k in os.environ.get("KUBECTL_BINARIES", "").split(":") if k]
    if listed:
        return listed[-1]
    if "KUBECTL_BINARIES" not in os.environ and shutil.which("kubectl"):
        return "kubectl"
    pytest.skip("!!! no kubectl >= 1.27 to run kustomize: manifest checks NOT run !!!")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("manifests")
    for base in BASES:
        text = subprocess.run(
            [kubectl(), "kustomize", str(ROOT / "manifests" / base)],
            check=True, capture_output=True, text=True,
        ).stdout
        (out / f"{base}.yaml").write_text(text)
    return out


def documents(rendered, base):
    return [d for d in yaml.safe_load_all((rendered / f"{base}.yaml").read_text()) if d]


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("version", ["1.27.0", "1.33.0"])
def test_every_manifest_is_valid_against_the_kubernetes_schemas(rendered, base, version):
    import kubernetes_validate

    docs = documents(rendered, base)
    assert {d["kind"] for d in docs} >= {
        "Namespace", "ServiceAccount", "Role", "RoleBinding", "Deployment",
        "PodDisruptionBudget", "Service", "ConfigMap", "NetworkPolicy",
        "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
    }
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


# What Kubernetes' own cleanup runs as: policy/src/keys.rs KUBERNETES_SYSTEM_USERS.
KUBERNETES_CLEANUP_USERS = {
    "system:serviceaccount:kube-system:namespace-controller",
    "system:serviceaccount:kube-system:generic-garbage-collector",
    "system:kube-controller-manager",
}
# Each side's webhooks select only the namespace they guard (a small blast radius):
# the control-plane namespace on the hub, the agent namespace on a managed cluster.
GUARDED_NAMESPACE = {"control-plane": "argocd", "managed-cluster": "akuity"}


@pytest.mark.parametrize("base", BASES)
def test_the_webhook_configurations_keep_their_contract(rendered, base):
    hooks = {}
    for doc in documents(rendered, base):
        if doc["kind"].endswith("WebhookConfiguration"):
            assert len(doc["webhooks"]) == 1
            hooks[doc["kind"]] = doc["webhooks"][0]
    assert set(hooks) == {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}
    for kind, hook in hooks.items():
        assert hook["failurePolicy"] == "Fail", kind
        assert hook["timeoutSeconds"] == 2, kind
        assert hook["sideEffects"] == "None", kind
        assert hook["admissionReviewVersions"] == ["v1"], kind
        assert hook["matchPolicy"] == "Equivalent", kind
        # Only the guarded namespace: an outage of the webhook never blocks Secret
        # writes elsewhere (Helm releases, cert-manager).
        assert hook["namespaceSelector"] == {"matchExpressions": [{
            "key": "kubernetes.io/metadata.name", "operator": "In",
            "values": [GUARDED_NAMESPACE[base]],
        }]}, kind
        assert "objectSelector" not in hook, kind
        # The API server spares the webhook Kubernetes' cleanup deletes, and the
        # hub's mutating webhook the clusters' writes, which the relay stamps.
        conditions = hook["matchConditions"]
        relayed = base == "control-plane" and kind == "MutatingWebhookConfiguration"
        assert len(conditions) == (2 if relayed else 1), kind
        if relayed:
            assert conditions[1]["expression"].strip() == "!('secret-relay:relay-stamped' in request.userInfo.groups)"
        condition = conditions[0]
        expression = condition["expression"]
        assert "request.operation == 'DELETE'" in expression, kind
        assert set(expression.split("'")[1::2]) - {"DELETE"} == KUBERNETES_CLEANUP_USERS, kind
        service = hook["clientConfig"]["service"]
        assert (service["name"], service["namespace"], service["port"]) == (
            "secret-relay-webhook", "secret-relay-system", 443), kind
        assert hook["clientConfig"]["caBundle"] == "Cg==", "the placeholder the docs and tests replace"
        [rule] = hook["rules"]
        assert (rule["apiGroups"], rule["apiVersions"], rule["resources"], rule["scope"]) == (
            [""], ["v1"], ["secrets"], "Namespaced"), kind
    mutate, validate = hooks["MutatingWebhookConfiguration"], hooks["ValidatingWebhookConfiguration"]
    assert mutate["clientConfig"]["service"]["path"] == "/mutate"
    assert mutate["reinvocationPolicy"] == "Never"
    assert mutate["rules"][0]["operations"] == ["CREATE", "UPDATE"]
    assert validate["clientConfig"]["service"]["path"] == "/validate"
    assert validate["rules"][0]["operations"] == ["CREATE", "UPDATE", "DELETE"]


@pytest.mark.parametrize("base", BASES)
def test_the_webhook_is_reachable_while_unready_and_survives_disruptions(rendered, base):
    docs = documents(rendered, base)
    deployment = one(docs, "Deployment", "secret-relay-webhook")
    assert deployment["metadata"]["namespace"] == "secret-relay-system"
    service = one(docs, "Service", "secret-relay-webhook")
    # Kubernetes' cleanup must reach a webhook that has no valid policy yet.
    assert service["spec"]["publishNotReadyAddresses"] is True
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert deployment["spec"]["replicas"] == 2
    pdb = one(docs, "PodDisruptionBudget", "secret-relay-webhook")
    assert pdb["spec"]["minAvailable"] == 1 and selects(pdb["spec"]["selector"], labels)


def test_the_control_plane_runs_two_of_each_server_behind_a_budget_and_a_service(rendered):
    docs = documents(rendered, "control-plane")
    assert {d["metadata"]["name"] for d in by_kind(docs, "Deployment")} == {
        "secret-relay", "secret-relay-webhook"}
    assert [d["metadata"]["name"] for d in by_kind(docs, "Namespace")] == ["secret-relay-system"]
    assert one(docs, "ConfigMap", "secret-relay-policy")["metadata"]["namespace"] == "secret-relay-system"
    for deployment in by_kind(docs, "Deployment"):
        name = deployment["metadata"]["name"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["replicas"] == 2, name
        assert [p for p in by_kind(docs, "PodDisruptionBudget")
                if selects(p["spec"]["selector"], labels) and p["spec"]["minAvailable"] == 1], name
        assert [s for s in by_kind(docs, "Service")
                if all(labels.get(k) == v for k, v in s["spec"]["selector"].items())], name


def container_arg(deployment, flag):
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"{flag}=")]
    assert len(values) == 1, f"{flag} in {args}"
    return values[0]


def test_the_managed_cluster_agent_is_one_writer_in_its_namespace_with_its_certificate(rendered):
    docs = documents(rendered, "managed-cluster")
    agent = one(docs, "Deployment", "secret-relay-agent")
    namespace = agent["metadata"]["namespace"]
    pod = agent["spec"]["template"]["spec"]
    # One writer per cluster, and the old one gone before the new one starts.
    assert agent["spec"]["replicas"] == 1
    assert agent["spec"]["strategy"] == {"type": "Recreate"}
    assert namespace == "akuity"
    assert container_arg(agent, "--namespace") == namespace
    policy = yaml.safe_load(one(docs, "ConfigMap", "secret-relay-policy")["data"]["policy.yaml"])
    assert policy["agentNamespace"] == namespace
    assert one(docs, "Namespace", namespace)
    assert pod["containers"][0]["args"][0] == "agent"
    # The webhook locks down copies against anyone but this very service account.
    account = pod["serviceAccountName"]
    assert one(docs, "ServiceAccount", account)["metadata"]["namespace"] == namespace
    webhook = one(docs, "Deployment", "secret-relay-webhook")
    assert webhook["metadata"]["namespace"] == "secret-relay-system"
    assert container_arg(webhook, "--mode") == "managed-cluster"
    assert container_arg(webhook, "--agent-service-account") == (
        f"system:serviceaccount:{namespace}:{account}")
    # The certificate Secret `secret-relay certs cluster` writes (src/certs_cmd.rs):
    # kubernetes.io/tls secret-relay-agent-tls with tls.crt, tls.key and ca.crt.
    [volume] = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == "secret-relay-agent-tls"
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    for flag, key in [("--tls-cert", "tls.crt"), ("--tls-key", "tls.key"), ("--relay-ca", "ca.crt")]:
        assert container_arg(agent, flag) == f"{mount['mountPath']}/{key}"
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["SECRET_RELAY_RELAY"]["value"].startswith("https://")
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_the_agent_may_touch_only_its_namespaces_secrets_and_events(rendered):
    docs = documents(rendered, "managed-cluster")
    agent = one(docs, "Deployment", "secret-relay-agent")
    namespace = agent["metadata"]["namespace"]
    account = agent["spec"]["template"]["spec"]["serviceAccountName"]
    bindings = [
        b for b in by_kind(docs, "RoleBinding") + by_kind(docs, "ClusterRoleBinding")
        if {"kind": "ServiceAccount", "name": account, "namespace": namespace} in b["subjects"]
    ]
    assert [(b["kind"], b["metadata"]["namespace"], b["roleRef"]["kind"]) for b in bindings] == [
        ("RoleBinding", namespace, "Role")]
    role = one(docs, "Role", bindings[0]["roleRef"]["name"])
    assert role["metadata"]["namespace"] == namespace
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"],
         "verbs": ["get", "list", "watch", "create", "update", "delete"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ]
    assert by_kind(docs, "ClusterRole") == [] and by_kind(docs, "ClusterRoleBinding") == []


@pytest.mark.parametrize("base", BASES)
def test_rbac_grants_no_wildcards_and_impersonates_only_named_identities(rendered, base):
    for doc in documents(rendered, base):
        if doc["kind"] not in ("Role", "ClusterRole"):
            continue
        for rule in doc["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), (doc["metadata"]["name"], rule)
            if {"impersonate", "escalate", "bind"} & set(rule["verbs"]):
                assert rule["verbs"] == ["impersonate"], rule
                assert rule["resourceNames"], (doc["metadata"]["name"], rule)
    if base == "control-plane":
        docs = documents(rendered, base)
        assert [d["metadata"]["name"] for d in by_kind(docs, "ClusterRole")] == [
            "secret-relay-impersonate-clusters"]
        impersonated = {n for r in one(docs, "ClusterRole", "secret-relay-impersonate-clusters")["rules"]
                        for n in r["resourceNames"]}
        # The clusters' users and group, and the group that marks a write the relay
        # stamped (it spares only the mutating webhook; the validating one checks).
        assert all(n.startswith("secret-relay:cluster") or n == "secret-relay:relay-stamped"
                   for n in impersonated), impersonated


@pytest.mark.parametrize("base", BASES)
def test_every_pod_runs_restricted(rendered, base):
    for deployment in by_kind(documents(rendered, base), "Deployment"):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(field), (name, field)
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, name
        assert isinstance(context["runAsUser"], int) and context["runAsUser"] > 10000, name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert all(v.keys() <= {"name", "secret", "emptyDir", "projected"} for v in pod.get("volumes", []))
        for container in pod["containers"] + pod.get("initContainers", []):
            c = container["securityContext"]
            assert c["allowPrivilegeEscalation"] is False, name
            assert c["readOnlyRootFilesystem"] is True, name
            assert c["capabilities"] == {"drop": ["ALL"]}, name
            assert not c.get("privileged"), name
            assert container["resources"]["limits"] and container["resources"]["requests"], name
            assert container["readinessProbe"] and container["livenessProbe"], name


@pytest.mark.parametrize("base", BASES)
def test_every_pod_is_fenced_by_a_network_policy(rendered, base):
    docs = documents(rendered, base)
    for deployment in by_kind(docs, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        fences = [
            p for p in by_kind(docs, "NetworkPolicy")
            if p["metadata"]["namespace"] == deployment["metadata"]["namespace"]
            and selects(p["spec"]["podSelector"], labels)
        ]
        assert fences, deployment["metadata"]["name"]
        for fence in fences:
            assert set(fence["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            ports = {p["port"] for rule in fence["spec"]["egress"] for p in rule["ports"]}
            assert {443, 53} <= ports, "the API server and DNS"


@pytest.mark.parametrize("base", BASES)
def test_our_namespace_enforces_the_restricted_pod_security_profile(rendered, base):
    labels = one(documents(rendered, base), "Namespace", "secret-relay-system")["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def checkov_report(rendered):
    checkov = pathlib.Path(sys.executable).with_name("checkov")
    result = subprocess.run(
        [str(checkov), "-d", str(rendered), "--framework", "kubernetes", "--output", "json"],
        capture_output=True, text=True,
    )
    report = json.loads(result.stdout)
    return report if isinstance(report, list) else [report]


# Every checkov finding we skip, with why (the reason itself is in the manifests'
# `checkov.io/skipN: CHECK=reason` annotations, which the test below requires):
# - CKV_K8S_38 (service account token mounted): each server talks to the API server
#   as its service account;
# - CKV_K8S_43 (image by digest): the release pipeline pins it with
#   `kustomize edit set image`;
# - CKV2_K8S_5 (a service account reads all secrets): the relay's shared watch of the
#   control-plane namespace and the agent's of its own namespace, namespaced Roles.
ALLOWED_SKIPS = {"CKV_K8S_38", "CKV_K8S_43", "CKV2_K8S_5"}


def test_checkov_finds_nothing_unexplained(rendered):
    reports = checkov_report(rendered)
    results = [r.get("results", {}) for r in reports]
    failed = [
        f'{c["check_id"]} {c["resource"]}: {c["check_name"]}'
        for r in results for c in r.get("failed_checks", [])
    ]
    assert failed == [], "\n".join(failed)
    skipped = [c for r in results for c in r.get("skipped_checks", [])]
    assert {c["check_id"] for c in skipped} <= ALLOWED_SKIPS
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason.split()) >= 5 and reason != "No comment provided", (
            f'{check["check_id"]} {check["resource"]} is skipped without a documented reason')
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    assert passed > 100


def test_every_checkov_skip_annotation_carries_a_reason():
    found = 0
    for path in (ROOT / "manifests").rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            annotations = ((doc or {}).get("metadata") or {}).get("annotations") or {}
            for key, value in annotations.items():
                if key.startswith("checkov.io/skip"):
                    found += 1
                    check, _, reason = value.partition("=")
                    assert check in ALLOWED_SKIPS and len(reason.split()) >= 5, (path.name, key, value)
    assert found >= 8
