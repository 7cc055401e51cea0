"""The official Python client against each backend (the sandbox and kube-apiserver): status
codes, reasons and messages as a real API server gives them, and watch events."""

import base64
import json
import re
import time

import pytest
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException

WATCH_TIMEOUT_SECONDS = 20


def b64(text):
    return base64.b64encode(text.encode()).decode()


def status_of(error):
    body = json.loads(error.body)
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == error.status
    return body


def secret(name, labels=None, string_data=None, data=None):
    return k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name=name, labels=labels),
        type="Opaque",
        string_data=string_data,
        data=data,
    )


def test_create_returns_the_stored_secret_with_string_data_merged(core, ns):
    created = core.create_namespaced_secret(
        ns, secret("created", string_data={"user": "admin"}, data={"other": b64("x")})
    )

    assert created.metadata.uid
    assert created.metadata.resource_version
    assert created.metadata.creation_timestamp is not None
    assert created.metadata.namespace == ns
    assert created.data == {"user": b64("admin"), "other": b64("x")}
    assert created.string_data is None
    read = core.read_namespaced_secret("created", ns)
    assert read.data == created.data
    assert read.metadata.resource_version == created.metadata.resource_version


def test_duplicate_create_is_409_already_exists(core, ns):
    core.create_namespaced_secret(ns, secret("twice"))

    with pytest.raises(ApiException) as raised:
        core.create_namespaced_secret(ns, secret("twice"))

    assert raised.value.status == 409
    body = status_of(raised.value)
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == 'secrets "twice" already exists'
    assert body["details"] == {"name": "twice", "kind": "secrets"}


def test_read_of_a_missing_secret_is_404_not_found(core, ns):
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_secret("missing", ns)

    assert raised.value.status == 404
    body = status_of(raised.value)
    assert body["reason"] == "NotFound"
    assert body["message"] == 'secrets "missing" not found'


def test_stale_replace_is_409_conflict_and_changes_nothing(core, ns):
    original = core.create_namespaced_secret(ns, secret("raced", data={"k": b64("1")}))
    core.patch_namespaced_secret("raced", ns, {"metadata": {"labels": {"moved": "on"}}})
    original.data = {"k": b64("2")}

    with pytest.raises(ApiException) as raised:
        core.replace_namespaced_secret("raced", ns, original)

    assert raised.value.status == 409
    body = status_of(raised.value)
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on secrets "raced": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    assert core.read_namespaced_secret("raced", ns).data == {"k": b64("1")}


def test_replace_keeps_the_uid_and_advances_the_resource_version(core, ns):
    created = core.create_namespaced_secret(ns, secret("kept", data={"k": b64("1")}))
    created.data = {"k": b64("2")}

    replaced = core.replace_namespaced_secret("kept", ns, created)

    assert replaced.metadata.uid == created.metadata.uid
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    assert replaced.data == {"k": b64("2")}


def test_list_with_a_label_selector(core, ns):
    core.create_namespaced_secret(ns, secret("a", labels={"tier": "a"}))
    core.create_namespaced_secret(ns, secret("b", labels={"tier": "b", "skip": "yes"}))
    core.create_namespaced_secret(ns, secret("c", labels={"tier": "c"}))
    core.create_namespaced_secret(ns, secret("d", labels={"tier": "b"}))

    listed = core.list_namespaced_secret(ns, label_selector="tier in (a,b),!skip")

    assert [s.metadata.name for s in listed.items] == ["a", "d"]
    assert listed.metadata.resource_version
    everything = core.list_namespaced_secret(ns)
    assert [s.metadata.name for s in everything.items] == ["a", "b", "c", "d"]
    only_c = core.list_namespaced_secret(ns, label_selector="tier=c")
    assert [s.metadata.name for s in only_c.items] == ["c"]


def test_delete_returns_a_success_status(core, ns):
    created = core.create_namespaced_secret(ns, secret("gone"))

    status = core.delete_namespaced_secret("gone", ns)

    assert status.status == "Success"
    assert status.details.name == "gone"
    assert status.details.kind == "secrets"
    assert status.details.uid == created.metadata.uid
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_secret("gone", ns)
    assert raised.value.status == 404


def test_watch_sees_added_modified_and_deleted(core, ns):
    core.create_namespaced_secret(ns, secret("watched", data={"k": b64("1")}))
    watch = k8s_watch.Watch()
    seen = []
    for event in watch.stream(
        core.list_namespaced_secret, ns, timeout_seconds=WATCH_TIMEOUT_SECONDS
    ):
        obj = event["object"]
        seen.append((event["type"], obj.metadata.name))
        if event["type"] == "ADDED":
            assert obj.data == {"k": b64("1")}
            core.patch_namespaced_secret("watched", ns, {"data": {"k": b64("2")}})
        elif event["type"] == "MODIFIED":
            assert obj.data == {"k": b64("2")}
            core.delete_namespaced_secret("watched", ns)
        elif event["type"] == "DELETED":
            watch.stop()

    assert seen == [("ADDED", "watched"), ("MODIFIED", "watched"), ("DELETED", "watched")]


def test_watch_from_a_list_resource_version_sees_only_later_changes(core, ns):
    core.create_namespaced_secret(ns, secret("before"))
    listed = core.list_namespaced_secret(ns)
    core.create_namespaced_secret(ns, secret("after"))
    watch = k8s_watch.Watch()
    seen = []
    for event in watch.stream(
        core.list_namespaced_secret,
        ns,
        resource_version=listed.metadata.resource_version,
        timeout_seconds=WATCH_TIMEOUT_SECONDS,
    ):
        seen.append((event["type"], event["object"].metadata.name))
        watch.stop()

    assert seen == [("ADDED", "after")]


def test_watch_with_a_label_selector_sees_entry_and_exit(core, ns):
    core.create_namespaced_secret(ns, secret("mover", labels={"sync": "no"}))
    watch = k8s_watch.Watch()
    seen = []
    core.patch_namespaced_secret("mover", ns, {"metadata": {"labels": {"sync": "yes"}}})
    for event in watch.stream(
        core.list_namespaced_secret,
        ns,
        label_selector="sync=yes",
        timeout_seconds=WATCH_TIMEOUT_SECONDS,
    ):
        seen.append((event["type"], event["object"].metadata.name))
        if event["type"] == "ADDED":
            core.patch_namespaced_secret("mover", ns, {"metadata": {"labels": {"sync": "no"}}})
        elif event["type"] == "DELETED":
            watch.stop()

    assert seen == [("ADDED", "mover"), ("DELETED", "mover")]


def test_an_invalid_name_is_422_invalid_with_a_field_cause(core, ns):
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_secret(ns, secret("Bad_Name"))

    assert raised.value.status == 422
    body = status_of(raised.value)
    assert body["reason"] == "Invalid"
    detail = (
        'Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case '
        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    )
    assert body["message"] == f'Secret "Bad_Name" is invalid: metadata.name: {detail}'
    assert body["details"] == {
        "name": "Bad_Name",
        "kind": "Secret",
        "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": "metadata.name"}],
    }


def test_a_body_namespace_other_than_the_url_is_400(core, ns):
    body = secret("elsewhere")
    body.metadata.namespace = "other-namespace"

    with pytest.raises(ApiException) as raised:
        core.create_namespaced_secret(ns, body)

    assert raised.value.status == 400
    assert status_of(raised.value)["message"] == (
        "the namespace of the provided object does not match the namespace sent on the request"
    )


def test_generate_name_appends_a_random_suffix(core, ns):
    body = k8s.V1Secret(metadata=k8s.V1ObjectMeta(generate_name="gen-"))

    created = core.create_namespaced_secret(ns, body)

    assert created.metadata.name.startswith("gen-")
    assert len(created.metadata.name) == len("gen-") + 5
    assert core.read_namespaced_secret(created.metadata.name, ns).metadata.uid == created.metadata.uid


def test_dry_run_create_answers_but_stores_nothing(core, ns):
    answered = core.create_namespaced_secret(ns, secret("rehearsal", string_data={"k": "v"}), dry_run="All")

    assert answered.data == {"k": b64("v")}
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_secret("rehearsal", ns)
    assert raised.value.status == 404


def test_an_immutable_secret_refuses_new_data(core, ns):
    body = secret("frozen", data={"k": b64("1")})
    body.immutable = True
    core.create_namespaced_secret(ns, body)

    with pytest.raises(ApiException) as raised:
        core.patch_namespaced_secret("frozen", ns, {"data": {"k": b64("2")}})

    assert raised.value.status == 422
    body = status_of(raised.value)
    assert body["reason"] == "Invalid"
    assert body["message"] == (
        'Secret "frozen" is invalid: data: Forbidden: field is immutable when `immutable` is set'
    )
    assert core.read_namespaced_secret("frozen", ns).data == {"k": b64("1")}


def test_the_type_of_a_secret_cannot_change(core, ns):
    core.create_namespaced_secret(ns, secret("typed"))

    with pytest.raises(ApiException) as raised:
        core.patch_namespaced_secret("typed", ns, {"type": "example.com/other"})

    assert raised.value.status == 422
    assert status_of(raised.value)["message"] == (
        'Secret "typed" is invalid: type: Invalid value: "example.com/other": field is immutable'
    )


def test_list_with_numeric_and_set_based_selectors(core, ns):
    for name, labels in [
        ("one", {"n": "1", "tier": "a"}),
        ("five", {"n": "5", "tier": "b"}),
        ("ten", {"n": "10"}),
        ("word", {"n": "many", "tier": "a"}),
    ]:
        core.create_namespaced_secret(ns, secret(name, labels=labels))

    def names(selector):
        return sorted(s.metadata.name for s in core.list_namespaced_secret(ns, label_selector=selector).items)

    # Gt and Lt compare the label as an integer; a label that is not one never matches.
    assert names("n>2") == ["five", "ten"]
    assert names("n<6,n>1") == ["five"]
    assert names("n > 0, tier notin (a)") == ["five", "ten"]
    assert names("tier in (a,,b),!missing") == ["five", "one", "word"]
    assert names("tier notin ()") == ["five", "one", "ten", "word"]
    assert names("n!=5,tier") == ["one", "word"]


def test_managed_fields_record_who_created_a_map_and_who_set_its_keys(core, ns):
    def owners(obj):
        return [(e.manager, e.operation, e.fields_v1) for e in obj.metadata.managed_fields or []]

    created = core.create_namespaced_secret(
        ns, secret("owned", data={"x": b64("1")}), field_manager="m1"
    )
    assert owners(created) == [
        ("m1", "Update", {"f:data": {".": {}, "f:x": {}}, "f:type": {}}),
    ]

    # m2 takes the key it changes; m1 keeps the map it created, without keys.
    taken = core.patch_namespaced_secret(
        "owned", ns, {"data": {"x": b64("2"), "y": b64("3")}}, field_manager="m2"
    )
    assert owners(taken) == [
        ("m1", "Update", {"f:data": {}, "f:type": {}}),
        ("m2", "Update", {"f:data": {"f:x": {}, "f:y": {}}}),
    ]

    # Removing the map leaves no one owning it or its keys.
    emptied = core.patch_namespaced_secret("owned", ns, {"data": None}, field_manager="m3")
    assert emptied.data is None
    assert owners(emptied) == [("m1", "Update", {"f:type": {}})]


def test_list_pages_with_limit_and_continue(core, ns):
    for name in ("p1", "p2", "p3"):
        core.create_namespaced_secret(ns, secret(name))

    first = core.list_namespaced_secret(ns, limit=2)
    assert [s.metadata.name for s in first.items] == ["p1", "p2"]
    assert first.metadata._continue
    second = core.list_namespaced_secret(ns, limit=2, _continue=first.metadata._continue)

    assert [s.metadata.name for s in second.items] == ["p3"]
    assert not second.metadata._continue


def test_list_with_a_field_selector_on_the_name(core, ns):
    for name in ("f1", "f2"):
        core.create_namespaced_secret(ns, secret(name))

    listed = core.list_namespaced_secret(ns, field_selector="metadata.name=f2")

    assert [s.metadata.name for s in listed.items] == ["f2"]


def test_secret_data_over_one_mebibyte_is_invalid(core, ns):
    big = base64.b64encode(b"x" * (1024 * 1024 + 1)).decode()

    with pytest.raises(ApiException) as raised:
        core.create_namespaced_secret(ns, secret("big", data={"blob": big}))

    assert raised.value.status == 422
    body = status_of(raised.value)
    assert body["message"] == (
        'Secret "big" is invalid: data: Too long: may not be more than 1048576 bytes'
    )
    assert body["details"]["causes"] == [{
        "reason": "FieldValueTooLong",
        "message": "Too long: may not be more than 1048576 bytes",
        "field": "data",
    }]


def test_watch_from_a_resource_version_older_than_the_history_is_410_expired(
    backend, api_client, core, ns
):
    # A resourceVersion written when the server started (conftest.py); then enough
    # changes that the server's watch history no longer reaches back to it. The sandbox
    # keeps a fixed number of events; kube-apiserver's watch cache keeps every event for
    # 75s and only then drops the oldest once its buffer is full. (Compacting etcd does
    # not do it: the watch cache still serves resourceVersions etcd has compacted.)
    forgotten = backend.first_resource_version
    age = time.monotonic() - backend.first_written_at
    time.sleep(max(0.0, backend.history_min_age_seconds() + 1 - age))
    core.create_namespaced_secret(ns, secret("churn"))
    for i in range(backend.history_capacity(api_client) + 10):
        core.patch_namespaced_secret("churn", ns, {"metadata": {"labels": {"n": str(i)}}})
    watch = k8s_watch.Watch()

    with pytest.raises(ApiException) as raised:
        for _ in watch.stream(
            core.list_namespaced_secret,
            ns,
            resource_version=forgotten,
            timeout_seconds=WATCH_TIMEOUT_SECONDS,
        ):
            pass

    assert raised.value.status == 410
    assert re.fullmatch(
        rf"Expired: too old resource version: {forgotten} \(\d+\)", raised.value.reason
    ), raised.value.reason


def test_strategic_merge_patch_directives_replace_or_delete_a_map(core, ns):
    core.create_namespaced_secret(
        ns, secret("directives", labels={"a": "1", "b": "1"}, data={"k": b64("v")})
    )

    # The client sends a dict as a strategic merge patch.
    replaced = core.patch_namespaced_secret(
        "directives", ns, {"metadata": {"labels": {"$patch": "replace", "y": "2"}}}
    )
    assert replaced.metadata.labels == {"y": "2"}
    kept = core.patch_namespaced_secret(
        "directives", ns, {"metadata": {"labels": {"$retainKeys": []}}, "data": {"$patch": "delete"}}
    )
    assert kept.metadata.labels is None
    assert kept.data is None
    core.patch_namespaced_secret("directives", ns, {"metadata": {"labels": {"a": "1"}}})
    deleted = core.patch_namespaced_secret(
        "directives", ns, {"metadata": {"labels": {"$patch": "delete"}}}
    )
    assert deleted.metadata.labels is None
    assert core.read_namespaced_secret("directives", ns).metadata.labels is None


def test_finalizers_merge_as_a_set_and_set_element_order_orders_them(core, ns):
    core.create_namespaced_secret(
        ns,
        k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="ordered", finalizers=["x.io/a", "x.io/b"])),
    )
    try:
        merged = core.patch_namespaced_secret(
            "ordered", ns, {"metadata": {"finalizers": ["x.io/c", "x.io/a"]}}
        )
        assert merged.metadata.finalizers == ["x.io/c", "x.io/a", "x.io/b"]
        ordered = core.patch_namespaced_secret(
            "ordered", ns, {"metadata": {
                "$setElementOrder/finalizers": ["x.io/b", "x.io/c"],
                "$deleteFromPrimitiveList/finalizers": ["x.io/a"],
            }},
        )
        assert ordered.metadata.finalizers == ["x.io/b", "x.io/c"]
    finally:
        core.patch_namespaced_secret("ordered", ns, {"metadata": {"finalizers": None}})


def test_a_body_that_repeats_a_key_merges_the_maps_and_warns(api_client, core, ns):
    body = (
        '{"metadata": {"name": "twice", "labels": {"a": "1", "b": "1"}, '
        '"labels": {"b": "2", "c": "2"}}, "type": "Opaque", "type": null}'
    )
    response = api_client.rest_client.pool_manager.request(
        "POST",
        f"{api_client.configuration.host}/api/v1/namespaces/{ns}/secrets",
        body=body.encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        timeout=30,
    )

    assert response.status == 201, response.data
    assert response.headers.getlist("Warning") == [
        '299 - "duplicate field \\"metadata.labels\\""',
        '299 - "duplicate field \\"type\\""',
    ]
    stored = core.read_namespaced_secret("twice", ns)
    assert stored.metadata.labels == {"a": "1", "b": "2", "c": "2"}
    assert stored.type == "Opaque"


@pytest.mark.sandbox_differs(
    "namespace deletion is immediate in the sandbox, so a create in a namespace just deleted "
    "is 404 NotFound there, not 403 NamespaceTerminating (sandbox/src/lib.rs)"
)
def test_a_create_in_a_terminating_namespace_is_403_namespace_terminating(core, ns):
    # A finalizer holds the Secret, so the namespace stays Terminating.
    core.create_namespaced_secret(
        ns,
        k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="held", finalizers=["fidelity.example.com/hold"])),
    )
    core.delete_namespace(ns)
    try:
        with pytest.raises(ApiException) as raised:
            core.create_namespaced_secret(ns, secret("late"))

        assert raised.value.status == 403
        body = status_of(raised.value)
        assert body["reason"] == "Forbidden"
        assert body["message"] == (
            f'secrets "late" is forbidden: unable to create new content in namespace {ns} '
            "because it is being terminated"
        )
        assert body["details"] == {
            "name": "late",
            "kind": "secrets",
            "causes": [{
                "reason": "NamespaceTerminating",
                "message": f"namespace {ns} is being terminated",
                "field": "metadata.namespace",
            }],
        }
    finally:
        # Let the namespace controller finish.
        try:
            core.patch_namespaced_secret("held", ns, {"metadata": {"finalizers": None}})
        except ApiException:
            pass
