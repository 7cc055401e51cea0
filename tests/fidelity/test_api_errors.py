"""Error answers, byte for byte as kube-apiserver 1.37 gives them, from both backends.

Each case sends one request that a server must refuse (a selector that does not parse,
list options that do not validate, a patch body that does not decode, a delete whose
preconditions fail, labels that are not valid) and compares the whole Status: code,
reason, message and details (present and empty where kube-apiserver sends `{}`, absent
where it sends nothing). The expectations were read from kube-apiserver; the sandbox must
give the same answer. Each case gets a fresh namespace holding Secret "a" (label x=1,
data k); `{uid}` and `{rv}` in a message stand for that Secret's uid and resourceVersion.
"""

import json
import urllib.parse

import pytest
from kubernetes import client as k8s

LONG = "a" * 64
LONG_NAME = "a" * 254
# apimachinery's validation texts (api/validate/content for label keys and values).
NAME_PART = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
    "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_KEY = (
    "a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
    "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with "
    "an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
)
LABEL_VALUE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
CONFIG_KEY = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
    "'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
    "'[-._a-zA-Z0-9]+')"
)
GENERIC_422 = "the server rejected our request due to an error in our request"
ABSENT = object()


def case(case_id, method, path, content_type, body, code, reason, message, details=ABSENT):
    """One request under /api/v1/namespaces/{ns}/ and the Status kube-apiserver answers."""
    expected = {"code": code, "message": message}
    if reason is not None:
        expected["reason"] = reason
    if details is not ABSENT:
        expected["details"] = details
    return pytest.param(method, path, content_type, body, expected, id=case_id)


CASES = [
    case(
        'label-triple-equals', 'GET', 'secrets?labelSelector=x===1', None, None,
        400, 'BadRequest', "unable to parse requirement: found '=', expected: identifier",
    ),
    case(
        'label-unclosed-set', 'GET', 'secrets?labelSelector=x in (a', None, None,
        400, 'BadRequest', "unable to parse requirement: found '', expected: ',' or ')'",
    ),
    case(
        'label-bang-with-value', 'GET', 'secrets?labelSelector=!x=1', None, None,
        400, 'BadRequest', "found '=', expected: ',' or 'end of string'",
    ),
    case(
        'label-trailing-comma', 'GET', 'secrets?labelSelector=x,', None, None,
        400, 'BadRequest', "found '', expected: identifier after ','",
    ),
    case(
        'label-lone-comma', 'GET', 'secrets?labelSelector=,', None, None,
        400, 'BadRequest', "found ',', expected: !, identifier, or 'end of string'",
    ),
    case(
        'label-double-comma', 'GET', 'secrets?labelSelector=x=1,,y=2', None, None,
        400, 'BadRequest', "found ',', expected: identifier after ','",
    ),
    case(
        'label-two-words', 'GET', 'secrets?labelSelector=x=a b', None, None,
        400, 'BadRequest', "found 'b', expected: ',' or 'end of string'",
    ),
    case(
        'label-two-slashes', 'GET', 'secrets?labelSelector=a/b/c=1', None, None,
        400, 'BadRequest', f'unable to parse requirement: <nil>: Invalid value: "a/b/c": {LABEL_KEY}',
    ),
    case(
        'label-gt-word', 'GET', 'secrets?labelSelector=x > a', None, None,
        400, 'BadRequest', 'unable to parse requirement: values[0]: Invalid value: "a": for \'Gt\', \'Lt\' operators, the value must be an integer',
    ),
    case(
        'label-lone-bang-after-key', 'GET', 'secrets?labelSelector=x!', None, None,
        400, 'BadRequest', "unable to parse requirement: found '!', expected: in, notin, =, ==, !=, gt, lt",
    ),
    case(
        'label-leading-dash', 'GET', 'secrets?labelSelector=-x', None, None,
        400, 'BadRequest', f'unable to parse requirement: <nil>: Invalid value: "-x": {NAME_PART}',
    ),
    case(
        'label-long-value', 'GET', f'secrets?labelSelector=x={LONG}', None, None,
        400, 'BadRequest', f'unable to parse requirement: values[0][x]: Invalid value: "{LONG}": must be no more than 63 bytes',
    ),
    case(
        'label-long-key', 'GET', f'secrets?labelSelector={LONG}=1', None, None,
        400, 'BadRequest', f'unable to parse requirement: <nil>: Invalid value: "{LONG}": name part must be no more than 63 bytes',
    ),
    case(
        'label-parenthesis', 'GET', 'secrets?labelSelector=(x)', None, None,
        400, 'BadRequest', "found '(', expected: !, identifier, or 'end of string'",
    ),
    case(
        'label-in-without-set', 'GET', 'secrets?labelSelector=x in a', None, None,
        400, 'BadRequest', "unable to parse requirement: found 'a' expected: '('",
    ),
    case(
        'label-parenthesised-value', 'GET', 'secrets?labelSelector=x=(a)', None, None,
        400, 'BadRequest', "unable to parse requirement: found '(', expected: identifier",
    ),
    case(
        'label-gt-two-values', 'GET', 'secrets?labelSelector=x in (1,2),y>a', None, None,
        400, 'BadRequest', 'unable to parse requirement: values[0]: Invalid value: "a": for \'Gt\', \'Lt\' operators, the value must be an integer',
    ),
    case(
        'label-empty-prefix', 'GET', 'secrets?labelSelector=/x', None, None,
        400, 'BadRequest', 'unable to parse requirement: <nil>: Invalid value: "/x": prefix part must be non-empty',
    ),
    case(
        'label-bad-prefix', 'GET', 'secrets?labelSelector=Example.com/x', None, None,
        400, 'BadRequest', f'unable to parse requirement: <nil>: Invalid value: "Example.com/x": prefix part {SUBDOMAIN}',
    ),
    case(
        'label-bad-operator', 'GET', 'secrets?labelSelector=x<>1', None, None,
        400, 'BadRequest', "unable to parse requirement: found '>', expected: identifier",
    ),
    case(
        'label-set-then-garbage', 'GET', 'secrets?labelSelector=x in (a) b', None, None,
        400, 'BadRequest', "found 'b', expected: ',' or 'end of string'",
    ),
    case(
        'label-set-bad-member', 'GET', 'secrets?labelSelector=x in (a b)', None, None,
        400, 'BadRequest', "unable to parse requirement: found 'b', expected: ',' or ')'",
    ),
    case(
        'label-set-operator', 'GET', 'secrets?labelSelector=x in (=)', None, None,
        400, 'BadRequest', "unable to parse requirement: found '=', expected: ',', ')' or identifier",
    ),
    case(
        'label-two-errors', 'GET', 'secrets?labelSelector=x in ($)', None, None,
        400, 'BadRequest', f'unable to parse requirement: values[0][x]: Invalid value: "$": {LABEL_VALUE}',
    ),
    case(
        'field-no-operator', 'GET', 'secrets?fieldSelector=metadata.name', None, None,
        400, 'BadRequest', "invalid selector: 'metadata.name'; can't understand 'metadata.name'",
    ),
    case(
        'field-second-equals', 'GET', 'secrets?fieldSelector=metadata.name=a=b', None, None,
        400, 'BadRequest', 'invalid field selector: unescaped character in value: 61',
    ),
    case(
        'field-bad-escape', 'GET', 'secrets?fieldSelector=metadata.name=a\\b', None, None,
        400, 'BadRequest', 'invalid field selector: invalid escape sequence: \\b',
    ),
    case(
        'field-trailing-backslash', 'GET', 'secrets?fieldSelector=metadata.name=a\\', None, None,
        400, 'BadRequest', 'invalid field selector: invalid escape sequence: \\',
    ),
    case(
        'field-unsupported', 'GET', 'secrets?fieldSelector=spec.x=1', None, None,
        400, 'BadRequest', 'field label not supported: spec.x',
    ),
    case(
        'field-in', 'GET', 'secrets?fieldSelector=metadata.name in (a)', None, None,
        400, 'BadRequest', "invalid selector: 'metadata.name in (a)'; can't understand 'metadata.name in (a)'",
    ),
    case(
        'list-rv-not-a-number', 'GET', 'secrets?resourceVersion=abc', None, None,
        400, 'BadRequest', 'invalid resource version: resourceVersion: Invalid value: "abc": strconv.ParseUint: parsing "abc": invalid syntax',
    ),
    case(
        'list-rv-negative', 'GET', 'secrets?resourceVersion=-1', None, None,
        400, 'BadRequest', 'invalid resource version: resourceVersion: Invalid value: "-1": strconv.ParseUint: parsing "-1": invalid syntax',
    ),
    case(
        'list-limit-not-a-number', 'GET', 'secrets?limit=abc', None, None,
        400, 'BadRequest', 'strconv.ParseInt: parsing "abc": invalid syntax',
    ),
    case(
        'list-rv-match-without-rv', 'GET', 'secrets?resourceVersionMatch=Exact', None, None,
        422, 'Invalid', 'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided', details={"group": 'meta.k8s.io', "kind": 'ListOptions', "causes": [{"reason": 'FieldValueForbidden', "message": 'Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided', "field": 'resourceVersionMatch'}]},
    ),
    case(
        'list-rv-match-unknown', 'GET', 'secrets?resourceVersionMatch=Foo&resourceVersion=1', None, None,
        422, 'Invalid', 'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Unsupported value: "Foo": supported values: "Exact", "NotOlderThan", ""', details={"group": 'meta.k8s.io', "kind": 'ListOptions', "causes": [{"reason": 'FieldValueNotSupported', "message": 'Unsupported value: "Foo": supported values: "Exact", "NotOlderThan", ""', "field": 'resourceVersionMatch'}]},
    ),
    case(
        'list-rv-match-exact-zero', 'GET', 'secrets?resourceVersionMatch=Exact&resourceVersion=0', None, None,
        422, 'Invalid', 'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"', details={"group": 'meta.k8s.io', "kind": 'ListOptions', "causes": [{"reason": 'FieldValueForbidden', "message": 'Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"', "field": 'resourceVersionMatch'}]},
    ),
    case(
        'list-rv-match-with-continue', 'GET', 'secrets?resourceVersionMatch=NotOlderThan&resourceVersion=0&continue=abc', None, None,
        422, 'Invalid', 'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden when continue is provided', details={"group": 'meta.k8s.io', "kind": 'ListOptions', "causes": [{"reason": 'FieldValueForbidden', "message": 'Forbidden: resourceVersionMatch is forbidden when continue is provided', "field": 'resourceVersionMatch'}]},
    ),
    case(
        'get-rv-not-a-number', 'GET', 'secrets/a?resourceVersion=abc', None, None,
        500, None, 'resourceVersion: Invalid value: "abc": strconv.ParseUint: parsing "abc": invalid syntax',
    ),
    case(
        'watch-rv-not-a-number', 'GET', 'secrets?watch=true&resourceVersion=abc&timeoutSeconds=1', None, None,
        500, None, 'resourceVersion: Invalid value: "abc": strconv.ParseUint: parsing "abc": invalid syntax',
    ),
    case(
        'merge-patch-string', 'PATCH', 'secrets/a', 'application/merge-patch+json', '"x"',
        400, 'BadRequest', 'error decoding patch: json: cannot unmarshal string into Go value of type map[string]interface {}',
    ),
    case(
        'merge-patch-array', 'PATCH', 'secrets/a', 'application/merge-patch+json', '[1]',
        400, 'BadRequest', 'error decoding patch: json: cannot unmarshal array into Go value of type map[string]interface {}',
    ),
    case(
        'merge-patch-number', 'PATCH', 'secrets/a', 'application/merge-patch+json', '1',
        400, 'BadRequest', 'error decoding patch: json: cannot unmarshal number into Go value of type map[string]interface {}',
    ),
    case(
        'merge-patch-bool', 'PATCH', 'secrets/a', 'application/merge-patch+json', 'true',
        400, 'BadRequest', 'error decoding patch: json: cannot unmarshal bool into Go value of type map[string]interface {}',
    ),
    case(
        'merge-patch-null', 'PATCH', 'secrets/a', 'application/merge-patch+json', 'null',
        400, 'BadRequest', 'Invalid JSON Patch',
    ),
    case(
        'merge-patch-truncated', 'PATCH', 'secrets/a', 'application/merge-patch+json', '{',
        400, 'BadRequest', 'invalid JSON patch',
    ),
    case(
        'merge-patch-empty', 'PATCH', 'secrets/a', 'application/merge-patch+json', '',
        400, 'BadRequest', 'invalid JSON patch',
    ),
    case(
        'strategic-patch-string', 'PATCH', 'secrets/a', 'application/strategic-merge-patch+json', '"x"',
        400, 'BadRequest', 'json: cannot unmarshal string into Go value of type map[string]interface {}',
    ),
    case(
        'strategic-patch-array', 'PATCH', 'secrets/a', 'application/strategic-merge-patch+json', '[1]',
        400, 'BadRequest', 'json: cannot unmarshal array into Go value of type map[string]interface {}',
    ),
    case(
        'strategic-patch-truncated', 'PATCH', 'secrets/a', 'application/strategic-merge-patch+json', '{',
        400, 'BadRequest', 'invalid JSON patch',
    ),
    case(
        'json-patch-string', 'PATCH', 'secrets/a', 'application/json-patch+json', '"x"',
        400, 'BadRequest', 'error decoding patch: json: cannot unmarshal string into Go value of type []handlers.jsonPatchOp',
    ),
    case(
        'json-patch-object', 'PATCH', 'secrets/a', 'application/json-patch+json', '{"op": "add"}',
        400, 'BadRequest', 'error decoding patch: json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp',
    ),
    case(
        'json-patch-number-op', 'PATCH', 'secrets/a', 'application/json-patch+json', '[1]',
        400, 'BadRequest', 'error decoding patch: json: cannot unmarshal number into Go value of type handlers.jsonPatchOp',
    ),
    case(
        'json-patch-truncated', 'PATCH', 'secrets/a', 'application/json-patch+json', '[',
        400, 'BadRequest', 'invalid JSON patch',
    ),
    case(
        'json-patch-unknown-op', 'PATCH', 'secrets/a', 'application/json-patch+json', '[{"op": "frob", "path": "/data"}]',
        422, 'Invalid', f'{GENERIC_422}', details={},
    ),
    case(
        'json-patch-missing-path', 'PATCH', 'secrets/a', 'application/json-patch+json', '[{"op": "remove", "path": "/data/nope"}]',
        422, 'Invalid', f'{GENERIC_422}', details={},
    ),
    case(
        'json-patch-failed-test', 'PATCH', 'secrets/a', 'application/json-patch+json', '[{"op": "test", "path": "/data/k", "value": "no"}]',
        422, 'Invalid', f'{GENERIC_422}', details={},
    ),
    case(
        'strategic-patch-unknown-directive', 'PATCH', 'secrets/a', 'application/strategic-merge-patch+json', '{"metadata": {"labels": {"$patch": "merge", "y": "2"}}}',
        500, None, 'unknown patch type: merge in map: map[$patch:merge y:2]',
    ),
    case(
        'strategic-patch-retain-keys-not-a-list', 'PATCH', 'secrets/a', 'application/strategic-merge-patch+json', '{"metadata": {"labels": {"$retainKeys": "x"}}}',
        400, 'BadRequest', 'invalid patch format of retainKeys',
    ),
    case(
        'strategic-patch-key-outside-retain-keys', 'PATCH', 'secrets/a', 'application/strategic-merge-patch+json', '{"metadata": {"labels": {"$retainKeys": ["x"], "y": "2"}}}',
        400, 'BadRequest', 'invalid patch format of retainKeys',
    ),
    case(
        'strategic-patch-element-order-mismatch', 'PATCH', 'secrets/a', 'application/strategic-merge-patch+json', '{"metadata": {"$setElementOrder/finalizers": ["x.io/b"], "finalizers": ["x.io/c"]}}',
        500, None, 'The order in patch list:\n[x.io/c]\n doesn\'t match $setElementOrder list:\n[x.io/b]\n',
    ),
    case(
        'strategic-patch-element-order-of-a-map', 'PATCH', 'secrets/a', 'application/strategic-merge-patch+json', '{"metadata": {"$setElementOrder/labels": ["x"]}}',
        500, None, 'expected a []interface {}, but received a map[string]interface {}',
    ),
    case(
        'strategic-patch-strict-repeated-key', 'PATCH', 'secrets/a?fieldValidation=Strict', 'application/strategic-merge-patch+json', '{"metadata": {"labels": {"y": "1"}, "labels": {"z": "1"}}}',
        422, 'Invalid', ' "" is invalid: patch: Invalid value: "map[metadata:map[labels:map[z:1]]]": strict decoding error: duplicate field "metadata.labels"', details={"causes": [{"reason": 'FieldValueInvalid', "message": 'Invalid value: "map[metadata:map[labels:map[z:1]]]": strict decoding error: duplicate field "metadata.labels"', "field": 'patch'}]},
    ),
    case(
        'create-strict-repeated-key', 'POST', 'secrets?fieldValidation=Strict', 'application/json', '{"metadata": {"name": "b", "labels": {"a": "1"}, "labels": {"b": "2"}}, "data": {"k": "dg==", "k": "dg=="}}',
        400, 'BadRequest', 'Secret in version "v1" cannot be handled as a Secret: strict decoding error: duplicate field "metadata.labels", duplicate field "data.k"',
    ),
    case(
        'apply-strict-repeated-key', 'PATCH', 'secrets/b?fieldManager=m&fieldValidation=Strict', 'application/apply-patch+yaml', '{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b", "labels": {"a": "1"}, "labels": {"b": "2"}}}',
        400, 'BadRequest', 'error strict decoding patch: error converting YAML to JSON: yaml: unmarshal errors:\n  line 1: key "labels" already set in map',
    ),
    case(
        'delete-uid-precondition', 'DELETE', 'secrets/a', 'application/json', '{"preconditions": {"uid": "not-the-uid"}}',
        409, 'Conflict', 'Operation cannot be fulfilled on Secret "a": the UID in the precondition (not-the-uid) does not match the UID in record ({uid}). The object might have been deleted and then recreated', details={"name": 'a', "kind": 'Secret'},
    ),
    case(
        'delete-rv-precondition', 'DELETE', 'secrets/a', 'application/json', '{"preconditions": {"resourceVersion": "1"}}',
        409, 'Conflict', 'Operation cannot be fulfilled on Secret "a": the ResourceVersion in the precondition (1) does not match the ResourceVersion in record ({rv}). The object might have been modified', details={"name": 'a', "kind": 'Secret'},
    ),
    case(
        'object-label-long-key', 'POST', 'secrets', 'application/json', f'{{"metadata": {{"name": "b", "labels": {{"{LONG}": "v"}}}}}}',
        422, 'Invalid', f'Secret "b" is invalid: metadata.labels: Invalid value: "{LONG}": name part must be no more than 63 bytes', details={"name": 'b', "kind": 'Secret', "causes": [{"reason": 'FieldValueInvalid', "message": f'Invalid value: "{LONG}": name part must be no more than 63 bytes', "field": 'metadata.labels'}]},
    ),
    case(
        'object-label-long-value', 'POST', 'secrets', 'application/json', f'{{"metadata": {{"name": "b", "labels": {{"k": "{LONG}"}}}}}}',
        422, 'Invalid', f'Secret "b" is invalid: metadata.labels: Invalid value: "{LONG}": must be no more than 63 bytes', details={"name": 'b', "kind": 'Secret', "causes": [{"reason": 'FieldValueInvalid', "message": f'Invalid value: "{LONG}": must be no more than 63 bytes', "field": 'metadata.labels'}]},
    ),
    case(
        'object-label-two-slashes', 'POST', 'secrets', 'application/json', '{"metadata": {"name": "b", "labels": {"a/b/c": "v"}}}',
        422, 'Invalid', f'Secret "b" is invalid: metadata.labels: Invalid value: "a/b/c": {LABEL_KEY}', details={"name": 'b', "kind": 'Secret', "causes": [{"reason": 'FieldValueInvalid', "message": f'Invalid value: "a/b/c": {LABEL_KEY}', "field": 'metadata.labels'}]},
    ),
    case(
        'object-label-bad-prefix', 'POST', 'secrets', 'application/json', '{"metadata": {"name": "b", "labels": {"Example.com/x": "v"}}}',
        422, 'Invalid', f'Secret "b" is invalid: metadata.labels: Invalid value: "Example.com/x": prefix part {SUBDOMAIN}', details={"name": 'b', "kind": 'Secret', "causes": [{"reason": 'FieldValueInvalid', "message": f'Invalid value: "Example.com/x": prefix part {SUBDOMAIN}', "field": 'metadata.labels'}]},
    ),
    case(
        'object-annotation-bad-key', 'POST', 'secrets', 'application/json', '{"metadata": {"name": "b", "annotations": {"a b": "v"}}}',
        422, 'Invalid', f'Secret "b" is invalid: metadata.annotations: Invalid value: "a b": {NAME_PART}', details={"name": 'b', "kind": 'Secret', "causes": [{"reason": 'FieldValueInvalid', "message": f'Invalid value: "a b": {NAME_PART}', "field": 'metadata.annotations'}]},
    ),
    case(
        'object-long-name', 'POST', 'secrets', 'application/json', f'{{"metadata": {{"name": "{LONG_NAME}"}}}}',
        422, 'Invalid', f'Secret "{LONG_NAME}" is invalid: metadata.name: Invalid value: "{LONG_NAME}": must be no more than 253 characters', details={"name": f'{LONG_NAME}', "kind": 'Secret', "causes": [{"reason": 'FieldValueInvalid', "message": f'Invalid value: "{LONG_NAME}": must be no more than 253 characters', "field": 'metadata.name'}]},
    ),
    case(
        'object-data-key', 'POST', 'secrets', 'application/json', '{"metadata": {"name": "b"}, "data": {"a b": "dg=="}}',
        422, 'Invalid', f'Secret "b" is invalid: data[a b]: Invalid value: "a b": {CONFIG_KEY}', details={"name": 'b', "kind": 'Secret', "causes": [{"reason": 'FieldValueInvalid', "message": f'Invalid value: "a b": {CONFIG_KEY}', "field": 'data[a b]'}]},
    ),
]


@pytest.mark.parametrize("method, path, content_type, body, expected", CASES)
def test_the_error_answer_is_kube_apiservers(
    api_client, core, ns, method, path, content_type, body, expected
):
    target = core.create_namespaced_secret(
        ns,
        k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="a", labels={"x": "1"}), data={"k": "dg=="}),
    )
    resource, _, query = path.partition("?")
    url = f"{api_client.configuration.host}/api/v1/namespaces/{ns}/{resource}"
    if query:
        url += "?" + urllib.parse.urlencode(urllib.parse.parse_qsl(query, keep_blank_values=True))
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    response = api_client.rest_client.pool_manager.request(
        method, url, body=body.encode() if body is not None else None, headers=headers,
        timeout=30,
    )
    text = response.data.decode()
    text = text.replace(target.metadata.uid, "{uid}")
    text = text.replace(f"({target.metadata.resource_version})", "({rv})")
    status = json.loads(text)

    assert response.status == expected["code"], text
    assert status["kind"] == "Status", text
    assert status["apiVersion"] == "v1"
    assert status["status"] == "Failure"
    got = {"code": status["code"], "message": status["message"]}
    if "reason" in status:
        got["reason"] = status["reason"]
    if "details" in status:
        got["details"] = status["details"]
    assert got == expected
