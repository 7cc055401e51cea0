"""Admission through each backend (the sandbox and kube-apiserver), judged by kubectl and the Python client: webhook
configurations created through the API, the HTTPS call with SNI and caBundle, a mutation
that lands in storage, and a denial worded as kube-apiserver words it."""

import base64
import hashlib
import json

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from webhook_server import CA_NAME, DENIAL_MESSAGE, SERVER_NAME, UNDELETABLE_MESSAGE, WARNINGS

DENIED = f'admission webhook "deny.fidelity.example.com" denied the request: {DENIAL_MESSAGE}'


def b64(text):
    return base64.b64encode(text.encode()).decode()


def manifest(ns, name, labels):
    return yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "data": {"k": b64("v")},
    })


def test_python_create_is_mutated_by_the_webhook(admission_webhooks, core, ns):
    created = core.create_namespaced_secret(
        ns,
        k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name="mutated", labels={"fidelity-mutate": "true"}),
            string_data={"password": "s3cr3t"},
        ),
    )

    assert created.metadata.labels == {"fidelity-mutate": "true", "fidelity-mutated": "yes"}
    assert core.read_namespaced_secret("mutated", ns).metadata.labels == created.metadata.labels
    (call,) = [r for r in admission_webhooks.reviews_for(ns, "mutated") if r["path"].startswith("/mutate")]
    assert call["path"] == "/mutate?timeout=10s"
    request = call["review"]["request"]
    assert call["review"]["apiVersion"] == "admission.k8s.io/v1"
    assert request["operation"] == "CREATE"
    assert request["namespace"] == ns
    assert request["kind"] == {"group": "", "version": "v1", "kind": "Secret"}
    assert request["resource"] == {"group": "", "version": "v1", "resource": "secrets"}
    assert request["userInfo"]["username"] == "admin"
    assert "system:masters" in request["userInfo"]["groups"]
    assert request["object"]["data"] == {"password": b64("s3cr3t")}
    assert "stringData" not in request["object"]
    assert request["options"]["kind"] == "CreateOptions"
    assert request["options"]["apiVersion"] == "meta.k8s.io/v1"
    assert SERVER_NAME in admission_webhooks.server_names


def test_python_create_denied_by_the_webhook_is_403_with_its_message(admission_webhooks, core, ns):
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_secret(
            ns, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="denied", labels={"fidelity-deny": "true"}))
        )

    assert raised.value.status == 403
    body = json.loads(raised.value.body)
    assert body["reason"] == "Forbidden"
    assert body["message"] == DENIED
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_secret("denied", ns)
    assert missing.value.status == 404


def test_kubectl_apply_denied_by_the_webhook(admission_webhooks, kubectl, core, ns):
    result = kubectl.run(
        "apply", "-f", "-", input=manifest(ns, "refused", {"fidelity-deny": "true"})
    )

    assert result.returncode == 1, result.stdout
    assert result.stderr.strip() == (
        f'Error from server (Forbidden): error when creating "STDIN": {DENIED}'
    )


def test_kubectl_label_update_denied_by_the_webhook(admission_webhooks, kubectl, core, ns):
    core.create_namespaced_secret(ns, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="guarded")))

    result = kubectl.run("label", "secret", "guarded", "-n", ns, "fidelity-deny=true")

    assert result.returncode == 1, result.stdout
    assert result.stderr.strip() == f"Error from server (Forbidden): {DENIED}"
    assert not core.read_namespaced_secret("guarded", ns).metadata.labels
    (call,) = admission_webhooks.reviews_for(ns, "guarded")
    assert call["review"]["request"]["operation"] == "UPDATE"
    assert call["review"]["request"]["oldObject"]["metadata"]["name"] == "guarded"


def test_kubectl_dry_run_server_is_admitted_but_not_stored(admission_webhooks, kubectl, core, ns):
    result = kubectl.run(
        "apply", "--dry-run=server", "-f", "-",
        input=manifest(ns, "rehearsal", {"fidelity-mutate": "true"}),
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "secret/rehearsal created (server dry run)"
    (call,) = admission_webhooks.reviews_for(ns, "rehearsal")
    assert call["review"]["request"]["dryRun"] is True
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_secret("rehearsal", ns)
    assert missing.value.status == 404


def test_kubectl_delete_denied_by_the_webhook_keeps_the_secret(admission_webhooks, kubectl, core, ns):
    core.create_namespaced_secret(
        ns, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="pinned", labels={"fidelity-undeletable": "true"}))
    )

    result = kubectl.run("delete", "secret", "pinned", "-n", ns)

    assert result.returncode == 1, result.stdout
    assert result.stderr.strip() == (
        'Error from server (Forbidden): admission webhook "undeletable.fidelity.example.com" '
        f"denied the request: {UNDELETABLE_MESSAGE}"
    )
    assert core.read_namespaced_secret("pinned", ns).metadata.name == "pinned"
    (call,) = [
        r for r in admission_webhooks.reviews_for(ns, "pinned") if r["path"].startswith("/undeletable")
    ]
    request = call["review"]["request"]
    assert request["operation"] == "DELETE"
    assert request["object"] is None
    assert request["oldObject"]["metadata"]["labels"] == {"fidelity-undeletable": "true"}
    assert request["options"]["kind"] == "DeleteOptions"
    assert request["options"]["apiVersion"] == "meta.k8s.io/v1"


def test_kubectl_prints_webhook_warnings(admission_webhooks, kubectl, ns):
    result = kubectl.run("apply", "-f", "-", input=manifest(ns, "warned", {"fidelity-warn": "true"}))

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "secret/warned created"
    assert result.stderr.splitlines() == [f"Warning: {w}" for w in WARNINGS]


def test_kubectl_sees_a_webhook_signed_by_another_ca_fail_closed(admission_webhooks, kubectl, ns):
    # The caBundle holds a CA of the same name but another key, as after a CA was replaced:
    # Go's x509 names the candidate it tried.
    result = kubectl.run("apply", "-f", "-", input=manifest(ns, "untrusted", {"fidelity-bad-ca": "true"}))

    assert result.returncode == 1, result.stdout
    assert result.stderr.strip() == (
        'Error from server (InternalError): error when creating "STDIN": Internal error occurred: '
        'failed calling webhook "bad-ca.fidelity.example.com": failed to call webhook: '
        f'Post "https://{SERVER_NAME}:{admission_webhooks.port}/validate?timeout=10s": '
        "tls: failed to verify certificate: x509: certificate signed by unknown authority "
        '(possibly because of "x509: ECDSA verification failure" while trying to verify '
        f'candidate authority certificate "{CA_NAME}")'
    )


def test_python_create_through_a_webhook_of_an_unrelated_ca_fails_closed(admission_webhooks, core, ns):
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_secret(
            ns,
            k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="foreign", labels={"fidelity-foreign-ca": "true"})),
        )

    assert raised.value.status == 500
    body = json.loads(raised.value.body)
    assert body["reason"] == "InternalError"
    assert body["message"] == (
        'Internal error occurred: failed calling webhook "foreign-ca.fidelity.example.com": '
        f'failed to call webhook: Post "https://{SERVER_NAME}:{admission_webhooks.port}/validate?timeout=10s": '
        "tls: failed to verify certificate: x509: certificate signed by unknown authority"
    )
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_secret("foreign", ns)
    assert missing.value.status == 404


def test_python_create_times_out_on_a_webhook_that_never_answers(admission_webhooks, core, ns):
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_secret(
            ns, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="stuck", labels={"fidelity-slow": "true"}))
        )

    assert raised.value.status == 500
    body = json.loads(raised.value.body)
    assert body["reason"] == "InternalError"
    assert body["message"] == (
        'Internal error occurred: failed calling webhook "slow.fidelity.example.com": '
        f'failed to call webhook: Post "https://{SERVER_NAME}:{admission_webhooks.port}/slow?timeout=1s": '
        "context deadline exceeded"
    )
    (call,) = admission_webhooks.reviews_for(ns, "stuck")
    assert call["path"] == "/slow?timeout=1s"


def credential_id(kubeconfig):
    """What kube-apiserver's x509 authenticator puts in userInfo.extra for a client certificate."""
    config = yaml.safe_load(kubeconfig.read_text())
    pem = base64.b64decode(config["users"][0]["user"]["client-certificate-data"])
    der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    return "X509SHA256=" + hashlib.sha256(der).hexdigest()


def test_webhooks_see_the_object_before_and_after_the_registry(admission_webhooks, backend, core, ns):
    # Mutating webhooks run in the handler, after the field manager and before
    # rest.BeforeCreate: no uid, no creationTimestamp, no generated name yet. Validating
    # webhooks see the object as it will be stored, under its generated name.
    labels = {"fidelity-mutate": "true", "fidelity-warn": "true"}
    created = core.create_namespaced_secret(
        ns, k8s.V1Secret(metadata=k8s.V1ObjectMeta(generate_name="gen-", labels=labels))
    )

    # The mutating call names no object yet.
    (mutate,) = [r["review"]["request"] for r in admission_webhooks.reviews_for(ns, None)]
    assert "name" not in mutate
    assert "uid" not in mutate["object"]["metadata"]
    assert "creationTimestamp" not in mutate["object"]["metadata"]
    assert mutate["object"]["metadata"]["generateName"] == "gen-"
    assert [e["manager"] for e in mutate["object"]["metadata"]["managedFields"]] == ["OpenAPI-Generator"]
    (validate,) = [r["review"]["request"] for r in admission_webhooks.reviews_for(ns, created.metadata.name)]
    assert validate["object"]["metadata"]["name"] == created.metadata.name
    assert validate["object"]["metadata"]["uid"] == created.metadata.uid
    assert validate["object"]["metadata"]["labels"]["fidelity-mutated"] == "yes"
    assert validate["userInfo"]["extra"] == {
        "authentication.kubernetes.io/credential-id": [credential_id(backend.kubeconfig)]
    }
    # What the mutating webhook added is owned by no manager.
    (entry,) = created.metadata.managed_fields
    assert entry.manager == "OpenAPI-Generator"
    assert entry.fields_v1 == {
        "f:metadata": {
            "f:generateName": {},
            "f:labels": {".": {}, "f:fidelity-mutate": {}, "f:fidelity-warn": {}},
        },
        "f:type": {},
    }


def test_an_update_that_changes_nothing_still_calls_the_webhooks(admission_webhooks, core, ns):
    labels = {"fidelity-warn": "true"}
    created = core.create_namespaced_secret(
        ns, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="same", labels=labels), data={"k": "dg=="})
    )

    patched = core.patch_namespaced_secret("same", ns, {"data": {"k": "dg=="}})

    assert patched.metadata.resource_version == created.metadata.resource_version
    operations = [r["review"]["request"]["operation"] for r in admission_webhooks.reviews_for(ns, "same")]
    assert operations == ["CREATE", "UPDATE"]
