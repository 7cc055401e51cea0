"""kubectl against each backend (the sandbox and kube-apiserver): each check asserts what a
real API server makes kubectl print.

Every test runs once per backend and kubectl binary (see conftest.py) in its own namespace.
"""

import base64
import json
import pathlib
import queue
import re
import threading
import time
import uuid

import pytest
import yaml
from kubernetes import client as k8s

LINE_DEADLINE_SECONDS = 30

CONFLICT = (
    'Operation cannot be fulfilled on secrets "{name}": the object has been modified; '
    "please apply your changes to the latest version and try again"
)


def b64(text):
    return base64.b64encode(text.encode()).decode()


def ok(result):
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result.stdout


def fails(result):
    assert result.returncode == 1, (
        f"expected exit 1, got {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result.stderr


def secret_manifest(ns, name, data=None, labels=None, annotations=None):
    metadata = {"name": name, "namespace": ns}
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,
            "type": "Opaque",
            "data": {k: b64(v) for k, v in (data or {}).items()},
        }
    )


def make_secret(core, ns, name, data=None, labels=None):
    return core.create_namespaced_secret(
        ns,
        k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name=name, labels=labels),
            type="Opaque",
            data={k: b64(v) for k, v in (data or {}).items()},
        ),
    )


# --- get ---------------------------------------------------------------------------


def test_get_prints_the_secret_table(kubectl, core, ns):
    make_secret(core, ns, "shown", {"a": "1", "b": "2"})

    lines = ok(kubectl.run("get", "secret", "shown", "-n", ns)).splitlines()

    assert lines[0].split() == ["NAME", "TYPE", "DATA", "AGE"]
    assert lines[1].split()[:3] == ["shown", "Opaque", "2"]
    assert len(lines) == 2


def test_get_lists_only_the_namespace_and_selected_labels(kubectl, core, ns):
    make_secret(core, ns, "one", labels={"app": "demo"})
    make_secret(core, ns, "two", labels={"app": "other"})

    out = ok(kubectl.run("get", "secrets", "-n", ns, "-l", "app=demo", "-o", "name"))

    assert out.splitlines() == ["secret/one"]


def test_get_output_json_and_yaml_are_the_stored_object(kubectl, core, ns):
    created = make_secret(core, ns, "dump", {"user": "admin"}, labels={"app": "demo"})

    as_json = json.loads(ok(kubectl.run("get", "secret", "dump", "-n", ns, "-o", "json")))
    as_yaml = yaml.safe_load(ok(kubectl.run("get", "secret", "dump", "-n", ns, "-o", "yaml")))

    for obj in (as_json, as_yaml):
        assert obj["apiVersion"] == "v1"
        assert obj["kind"] == "Secret"
        assert obj["type"] == "Opaque"
        assert obj["data"] == {"user": b64("admin")}
        assert obj["metadata"]["name"] == "dump"
        assert obj["metadata"]["namespace"] == ns
        assert obj["metadata"]["labels"] == {"app": "demo"}
        assert obj["metadata"]["uid"] == created.metadata.uid
        assert obj["metadata"]["resourceVersion"] == created.metadata.resource_version
        assert obj["metadata"]["creationTimestamp"]


def test_get_of_a_missing_secret_is_not_found(kubectl, ns):
    err = fails(kubectl.run("get", "secret", "nope", "-n", ns))

    assert err.strip() == 'Error from server (NotFound): secrets "nope" not found'


# --- watch -------------------------------------------------------------------------


class LineReader:
    """Collects a process's stdout lines on a thread, so waiting for a line has a deadline."""

    def __init__(self, stream):
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream):
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, predicate, what):
        deadline = time.monotonic() + LINE_DEADLINE_SECONDS
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                pytest.fail(f"no {what} within {LINE_DEADLINE_SECONDS}s; lines so far: {self.seen}")
            if line is None:
                pytest.fail(f"the watch ended before {what}; lines: {self.seen}")
            self.seen.append(line)
            if predicate(line):
                return line


def test_get_watch_prints_added_modified_and_deleted_events(kubectl, core, ns):
    watch = kubectl.popen("get", "secrets", "-n", ns, "-w", "--output-watch-events")
    try:
        reader = LineReader(watch.stdout)
        make_secret(core, ns, "watched", {"k": "v"})
        reader.expect(lambda l: l.split()[:2] == ["ADDED", "watched"], "ADDED event")
        assert reader.seen[0].split() == ["EVENT", "NAME", "TYPE", "DATA", "AGE"]

        core.patch_namespaced_secret("watched", ns, {"metadata": {"labels": {"x": "1"}}})
        modified = reader.expect(lambda l: l.split()[:1] == ["MODIFIED"], "MODIFIED event")
        assert modified.split()[1:4] == ["watched", "Opaque", "1"]

        core.delete_namespaced_secret("watched", ns)
        deleted = reader.expect(lambda l: l.split()[:1] == ["DELETED"], "DELETED event")
        assert deleted.split()[1] == "watched"
    finally:
        watch.kill()
        watch.wait()


# --- apply ---------------------------------------------------------------------------


def test_apply_creates_then_configures_then_leaves_unchanged(kubectl, core, ns):
    first = secret_manifest(ns, "applied", {"user": "admin"}, labels={"app": "demo"})
    second = secret_manifest(ns, "applied", {"user": "root"}, labels={"app": "demo"})

    assert ok(kubectl.run("apply", "-f", "-", input=first)).strip() == "secret/applied created"
    stored = core.read_namespaced_secret("applied", ns)
    last_applied = json.loads(
        stored.metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]
    )
    assert last_applied["data"] == {"user": b64("admin")}
    assert stored.data == {"user": b64("admin")}

    assert ok(kubectl.run("apply", "-f", "-", input=second)).strip() == "secret/applied configured"
    stored = core.read_namespaced_secret("applied", ns)
    assert stored.data == {"user": b64("root")}
    last_applied = json.loads(
        stored.metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]
    )
    assert last_applied["data"] == {"user": b64("root")}

    assert ok(kubectl.run("apply", "-f", "-", input=second)).strip() == "secret/applied unchanged"


def test_apply_removes_a_key_dropped_from_the_manifest(kubectl, core, ns):
    ok(kubectl.run("apply", "-f", "-", input=secret_manifest(ns, "shrink", {"a": "1", "b": "2"})))

    out = ok(kubectl.run("apply", "-f", "-", input=secret_manifest(ns, "shrink", {"a": "1"})))

    assert out.strip() == "secret/shrink configured"
    assert core.read_namespaced_secret("shrink", ns).data == {"a": b64("1")}


def test_create_secret_generic_through_client_dry_run_and_apply(kubectl, core, ns):
    manifest = ok(
        kubectl.run(
            "create", "secret", "generic", "generated", "-n", ns,
            "--from-literal=password=s3cr3t", "--dry-run=client", "-o", "yaml",
        )
    )

    out = ok(kubectl.run("apply", "-f", "-", input=manifest))

    assert out.strip() == "secret/generated created"
    assert core.read_namespaced_secret("generated", ns).data == {"password": b64("s3cr3t")}


def test_create_secret_generic_directly(kubectl, core, ns):
    # Since 1.32, kubectl posts typed objects as protobuf.
    result = kubectl.run("create", "secret", "generic", "direct", "-n", ns, "--from-literal=a=b")

    assert ok(result).strip() == "secret/direct created"
    assert core.read_namespaced_secret("direct", ns).data == {"a": b64("b")}


# --- server-side apply ------------------------------------------------------------------


def test_server_side_apply_conflict_names_the_manager_and_field(kubectl, core, ns):
    mine = secret_manifest(ns, "ssa", {"key": "one"}, labels={"team": "a"})
    theirs = secret_manifest(ns, "ssa", {"key": "two"}, labels={"team": "a"})

    out = ok(kubectl.run("apply", "--server-side", "--field-manager=mgr-a", "-f", "-", input=mine))
    assert out.strip() == "secret/ssa serverside-applied"

    err = fails(
        kubectl.run("apply", "--server-side", "--field-manager=mgr-b", "-f", "-", input=theirs)
    )
    assert err.splitlines()[0] == (
        'error: Apply failed with 1 conflict: conflict with "mgr-a": .data.key'
    )
    assert "--force-conflicts" in err
    assert core.read_namespaced_secret("ssa", ns).data == {"key": b64("one")}

    out = ok(
        kubectl.run(
            "apply", "--server-side", "--field-manager=mgr-b", "--force-conflicts", "-f", "-",
            input=theirs,
        )
    )
    assert out.strip() == "secret/ssa serverside-applied"
    stored = core.read_namespaced_secret("ssa", ns)
    assert stored.data == {"key": b64("two")}
    owners = {
        entry.manager: entry.fields_v1
        for entry in stored.metadata.managed_fields
        if entry.operation == "Apply"
    }
    assert "f:key" in owners["mgr-b"]["f:data"]
    assert "f:key" not in owners.get("mgr-a", {}).get("f:data", {})


def test_server_side_apply_of_the_same_values_by_two_managers_shares_them(kubectl, core, ns):
    manifest = secret_manifest(ns, "shared", {"key": "same"})

    ok(kubectl.run("apply", "--server-side", "--field-manager=mgr-a", "-f", "-", input=manifest))
    out = ok(
        kubectl.run("apply", "--server-side", "--field-manager=mgr-b", "-f", "-", input=manifest)
    )

    assert out.strip() == "secret/shared serverside-applied"
    entries = [
        (e.manager, e.operation, e.fields_v1)
        for e in core.read_namespaced_secret("shared", ns).metadata.managed_fields
    ]
    fields = {"f:data": {"f:key": {}}, "f:type": {}}
    assert entries == [("mgr-b", "Apply", fields), ("mgr-a", "Apply", fields)]


# --- diff ----------------------------------------------------------------------------------


def test_diff_exits_one_with_a_diff_when_different_and_zero_when_same(kubectl, ns):
    manifest = secret_manifest(ns, "differ", {"k": "v"}, labels={"team": "a"})
    ok(kubectl.run("apply", "-f", "-", input=manifest))

    same = kubectl.run("diff", "-f", "-", input=manifest)
    assert same.returncode == 0, same.stderr
    assert same.stdout == ""

    changed = kubectl.run(
        "diff", "-f", "-", input=secret_manifest(ns, "differ", {"k": "v"}, labels={"team": "b"})
    )
    assert changed.returncode == 1, changed.stderr
    assert re.search(r"^-\s+team: a$", changed.stdout, re.MULTILINE), changed.stdout
    assert re.search(r"^\+\s+team: b$", changed.stdout, re.MULTILINE), changed.stdout


# --- label and annotate ------------------------------------------------------------------


def test_label_add_refuse_overwrite_and_remove(kubectl, core, ns):
    make_secret(core, ns, "labelled")

    assert ok(kubectl.run("label", "secret", "labelled", "-n", ns, "team=a")).strip() == (
        "secret/labelled labeled"
    )
    err = fails(kubectl.run("label", "secret", "labelled", "-n", ns, "team=b"))
    assert err.strip() == "error: 'team' already has a value (a), and --overwrite is false"
    assert core.read_namespaced_secret("labelled", ns).metadata.labels == {"team": "a"}

    ok(kubectl.run("label", "secret", "labelled", "-n", ns, "--overwrite", "team=b"))
    assert core.read_namespaced_secret("labelled", ns).metadata.labels == {"team": "b"}

    assert ok(kubectl.run("label", "secret", "labelled", "-n", ns, "team-")).strip() == (
        "secret/labelled unlabeled"
    )
    assert not core.read_namespaced_secret("labelled", ns).metadata.labels


def test_annotate_add_refuse_overwrite_and_overwrite(kubectl, core, ns):
    make_secret(core, ns, "noted")

    # kubectl 1.27 itself prints "annotate" rather than "annotated".
    out = ok(kubectl.run("annotate", "secret", "noted", "-n", ns, "note=x")).strip()
    assert re.fullmatch(r"secret/noted annotated?", out), out
    err = fails(kubectl.run("annotate", "secret", "noted", "-n", ns, "note=y"))
    assert err.strip() == (
        "error: --overwrite is false but found the following declared annotation(s): "
        "'note' already has a value (x)"
    )

    ok(kubectl.run("annotate", "secret", "noted", "-n", ns, "--overwrite", "note=y"))
    assert core.read_namespaced_secret("noted", ns).metadata.annotations == {"note": "y"}


# --- patch -------------------------------------------------------------------------------------


def test_patch_merge_and_no_change(kubectl, core, ns):
    make_secret(core, ns, "patched", {"a": "1"})
    body = json.dumps({"metadata": {"labels": {"p": "1"}}, "data": {"b": b64("2")}})

    out = ok(kubectl.run("patch", "secret", "patched", "-n", ns, "--type", "merge", "-p", body))
    assert out.strip() == "secret/patched patched"
    stored = core.read_namespaced_secret("patched", ns)
    assert stored.metadata.labels == {"p": "1"}
    assert stored.data == {"a": b64("1"), "b": b64("2")}

    again = ok(kubectl.run("patch", "secret", "patched", "-n", ns, "--type", "merge", "-p", body))
    assert again.strip() == "secret/patched patched (no change)"


def test_patch_json_applies_operations_and_a_failed_test_changes_nothing(kubectl, core, ns):
    make_secret(core, ns, "jp", {"a": "1"}, labels={"keep": "yes"})
    ops = json.dumps([
        {"op": "test", "path": "/metadata/labels/keep", "value": "yes"},
        {"op": "add", "path": "/data/b", "value": b64("2")},
        {"op": "remove", "path": "/data/a"},
    ])

    out = ok(kubectl.run("patch", "secret", "jp", "-n", ns, "--type", "json", "-p", ops))
    assert out.strip() == "secret/jp patched"
    before = core.read_namespaced_secret("jp", ns)
    assert before.data == {"b": b64("2")}

    failing = json.dumps([
        {"op": "test", "path": "/metadata/labels/keep", "value": "no"},
        {"op": "add", "path": "/data/c", "value": b64("3")},
    ])
    err = fails(kubectl.run("patch", "secret", "jp", "-n", ns, "--type", "json", "-p", failing))
    # kube-apiserver answers 422 Invalid with a generic message and no cause
    # (NewGenericServerResponse in the apiserver's patch handler): the failed test is not named.
    assert err.strip() == (
        "The request is invalid: the server rejected our request due to an error in our request"
    ), err
    after = core.read_namespaced_secret("jp", ns)
    assert after.data == {"b": b64("2")}
    assert after.metadata.resource_version == before.metadata.resource_version


def test_patch_of_a_missing_secret_is_not_found(kubectl, ns):
    err = fails(
        kubectl.run("patch", "secret", "ghost", "-n", ns, "--type", "merge", "-p", '{"data":{}}')
    )

    assert err.strip() == 'Error from server (NotFound): secrets "ghost" not found'


# --- replace and delete --------------------------------------------------------------------


def test_replace_with_a_stale_resource_version_is_a_conflict(kubectl, core, ns):
    make_secret(core, ns, "stale", {"a": "1"})
    snapshot = json.loads(ok(kubectl.run("get", "secret", "stale", "-n", ns, "-o", "json")))
    core.patch_namespaced_secret("stale", ns, {"metadata": {"labels": {"moved": "on"}}})
    snapshot["data"] = {"a": b64("changed")}

    err = fails(kubectl.run("replace", "-f", "-", input=json.dumps(snapshot)))

    assert err.strip() == (
        'Error from server (Conflict): error when replacing "STDIN": '
        + CONFLICT.format(name="stale")
    )
    assert core.read_namespaced_secret("stale", ns).data == {"a": b64("1")}


def test_replace_with_the_current_resource_version_succeeds(kubectl, core, ns):
    make_secret(core, ns, "fresh", {"a": "1"})
    current = json.loads(ok(kubectl.run("get", "secret", "fresh", "-n", ns, "-o", "json")))
    current["data"] = {"a": b64("2")}

    out = ok(kubectl.run("replace", "-f", "-", input=json.dumps(current)))

    assert out.strip() == "secret/fresh replaced"
    stored = core.read_namespaced_secret("fresh", ns)
    assert stored.data == {"a": b64("2")}
    assert stored.metadata.uid == current["metadata"]["uid"]


def test_delete_prints_deleted_and_a_second_delete_is_not_found(kubectl, core, ns):
    make_secret(core, ns, "doomed")

    assert ok(kubectl.run("delete", "secret", "doomed", "-n", ns)).strip() == (
        'secret "doomed" deleted'
    )
    err = fails(kubectl.run("delete", "secret", "doomed", "-n", ns))
    assert err.strip() == 'Error from server (NotFound): secrets "doomed" not found'


# --- webhook configurations -----------------------------------------------------------------


def test_apply_of_a_webhook_configuration_creates_it_with_defaults(kubectl):
    name = "fid-" + uuid.uuid4().hex[:10]
    # The webhook can never match (objectSelector) and fails open, so it cannot disturb
    # the other tests sharing this server.
    manifest = yaml.safe_dump({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "validate.fidelity.example.com",
            "clientConfig": {
                "service": {"name": "nowhere", "namespace": "default", "path": "/validate"},
                "caBundle": b64("not used"),
            },
            "rules": [{
                "operations": ["CREATE", "UPDATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["secrets"],
            }],
            "objectSelector": {"matchLabels": {"fidelity-never": "true"}},
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        }],
    })
    try:
        out = ok(kubectl.run("apply", "-f", "-", input=manifest))
        assert out.strip() == (
            f"validatingwebhookconfiguration.admissionregistration.k8s.io/{name} created"
        )
        stored = json.loads(ok(kubectl.run("get", "validatingwebhookconfiguration", name, "-o", "json")))
        hook = stored["webhooks"][0]
        assert hook["timeoutSeconds"] == 10
        assert hook["matchPolicy"] == "Equivalent"
        assert hook["namespaceSelector"] == {}
        assert hook["rules"][0]["scope"] == "*"
        assert hook["clientConfig"]["service"]["port"] == 443

        # Re-applying merges the webhook by name (a strategic merge whose
        # `$setElementOrder/webhooks` makes the patch non-empty, so kubectl says
        # "configured"); the stored webhook stays whole and valid.
        again = kubectl.run("apply", "-f", "-", input=manifest)
        assert again.returncode == 0, again.stderr
        assert again.stderr == "", again.stderr
        assert again.stdout.strip() == (
            f"validatingwebhookconfiguration.admissionregistration.k8s.io/{name} configured"
        )
        stored = json.loads(ok(kubectl.run("get", "validatingwebhookconfiguration", name, "-o", "json")))
        assert stored["webhooks"][0]["sideEffects"] == "None"
        assert stored["webhooks"][0]["clientConfig"]["service"]["name"] == "nowhere"
    finally:
        kubectl.run("delete", "validatingwebhookconfiguration", name, "--ignore-not-found")


def webhook_manifests():
    """Every webhook configuration document in the repository's manifests/."""
    root = pathlib.Path(__file__).resolve().parents[2] / "manifests"
    found = []
    for path in sorted(root.rglob("*.yaml")) + sorted(root.rglob("*.yml")):
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            continue
        for document in documents:
            if isinstance(document, dict) and str(document.get("kind", "")).endswith(
                "WebhookConfiguration"
            ):
                found.append(pytest.param(document, id=f"{path.relative_to(root)}"))
    return found or [pytest.param(None, id="none")]


@pytest.mark.parametrize("document", webhook_manifests())
def test_the_repository_webhook_manifests_are_accepted(kubectl, document):
    if document is None:
        pytest.skip("manifests/ holds no webhook configuration yet")
    # Server-side dry run: admission and validation run, nothing is registered, so a
    # failurePolicy: Fail webhook cannot disturb the other tests.
    result = kubectl.run("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(document))

    assert result.returncode == 0, result.stderr
    kind = document["kind"].lower()
    name = document["metadata"]["name"]
    assert result.stdout.strip() == (
        f"{kind}.admissionregistration.k8s.io/{name} created (server dry run)"
    )


def test_delete_with_server_dry_run_keeps_the_secret(kubectl, core, ns):
    make_secret(core, ns, "kept")

    out = ok(kubectl.run("delete", "secret", "kept", "-n", ns, "--dry-run=server"))

    assert out.strip() == 'secret "kept" deleted (server dry run)'
    assert core.read_namespaced_secret("kept", ns).metadata.name == "kept"


def test_get_in_an_empty_namespace_says_no_resources(kubectl, ns):
    result = kubectl.run("get", "secrets", "-n", ns)

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.strip() == f"No resources found in {ns} namespace."


def test_get_namespace_prints_its_status(kubectl, ns):
    lines = ok(kubectl.run("get", "namespace", ns)).splitlines()

    assert lines[0].split() == ["NAME", "STATUS", "AGE"]
    assert lines[1].split()[:2] == [ns, "Active"]


def test_server_side_apply_removes_fields_the_manager_stops_applying(kubectl, core, ns):
    both = secret_manifest(ns, "pruned", {"a": "1", "b": "2"}, labels={"x": "1", "y": "2"})
    fewer = secret_manifest(ns, "pruned", {"a": "1"}, labels={"x": "1"})
    ok(kubectl.run("apply", "--server-side", "--field-manager=owner", "-f", "-", input=both))

    ok(kubectl.run("apply", "--server-side", "--field-manager=owner", "-f", "-", input=fewer))

    stored = core.read_namespaced_secret("pruned", ns)
    assert stored.data == {"a": b64("1")}
    assert stored.metadata.labels == {"x": "1"}


def test_apply_of_an_unknown_field_is_a_strict_decoding_error(kubectl, core, ns):
    document = yaml.safe_load(secret_manifest(ns, "strict", {"k": "v"}))
    document["spec"] = {"oops": True}

    err = fails(kubectl.run("apply", "-f", "-", input=yaml.safe_dump(document)))

    assert err.strip() == (
        'Error from server (BadRequest): error when creating "STDIN": Secret in version "v1" '
        'cannot be handled as a Secret: strict decoding error: unknown field "spec"'
    )
