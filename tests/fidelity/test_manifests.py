"""The repository's kustomize bases, judged by Kubernetes' own schemas
(kubernetes-validate, strict, for the oldest and newest API we target) and by a
security scanner (checkov). Skips of checkov findings are annotated in the
manifests with their reason."""

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


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("version", ["1.27.0", "1.33.0"])
def test_every_manifest_is_valid_against_the_kubernetes_schemas(rendered, base, version):
    import kubernetes_validate

    docs = [d for d in yaml.safe_load_all((rendered / f"{base}.yaml").read_text()) if d]
    assert {d["kind"] for d in docs} >= {
        "Deployment", "Service", "ConfigMap", "NetworkPolicy",
        "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
    }
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("base", BASES)
def test_the_webhook_configurations_keep_their_contract(rendered, base):
    docs = [d for d in yaml.safe_load_all((rendered / f"{base}.yaml").read_text()) if d]
    guarded = "argocd" if base == "control-plane" else "akuity"
    for doc in docs:
        if not doc["kind"].endswith("WebhookConfiguration"):
            continue
        for hook in doc["webhooks"]:
            assert hook["failurePolicy"] == "Fail"
            assert hook["timeoutSeconds"] == 2
            assert hook["sideEffects"] == "None"
            assert hook["admissionReviewVersions"] == ["v1"]
            exprs = hook["namespaceSelector"]["matchExpressions"]
            assert {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [guarded]} in exprs
            notin = [e for e in exprs if e["operator"] == "NotIn"][0]["values"]
            assert "kube-system" in notin and "secret-relay-system" in notin


def test_checkov_finds_nothing_unexplained(rendered):
    checkov = pathlib.Path(sys.executable).with_name("checkov")
    result = subprocess.run(
        [str(checkov), "-d", str(rendered), "--framework", "kubernetes", "--output", "json", "--quiet"],
        capture_output=True, text=True,
    )
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f'{c["check_id"]} {c["resource"]}: {c["check_name"]}'
        for r in reports for c in r.get("results", {}).get("failed_checks", [])
    ]
    assert failed == [], "\n".join(failed)
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    assert passed > 100
