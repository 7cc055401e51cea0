"""A small HTTPS admission webhook for the fidelity suite.

It serves `/mutate` and `/validate` over TLS with a certificate for its service name,
signed by its own CA, and answers AdmissionReview v1 the way a real webhook does.
Secrets labelled `fidelity-mutate: "true"` get a `fidelity-mutated: "yes"` label;
Secrets labelled `fidelity-deny: "true"` are denied with 403, those labelled
`fidelity-undeletable: "true"` cannot be deleted, and those labelled `fidelity-warn: "true"`
are admitted with two warnings. Three more webhooks cannot succeed: two registered with
another CA's bundle, of the same name (label `fidelity-bad-ca`) and of another name (label
`fidelity-foreign-ca`), and one that never answers (label `fidelity-slow`, timeoutSeconds 1). Every review received is kept, so tests can assert
what the API server sent.
"""

import base64
import datetime
import http.server
import json
import ssl
import tempfile
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SERVICE_NAME = "fidelity-hook"
SERVICE_NAMESPACE = "webhooks"
SERVER_NAME = f"{SERVICE_NAME}.{SERVICE_NAMESPACE}.svc"
DENIAL_MESSAGE = "denied by the fidelity webhook"
UNDELETABLE_MESSAGE = "this secret cannot be deleted"
WARNINGS = ["fidelity says hello", "and says it twice"]


CA_NAME = "fidelity webhook CA"
FOREIGN_CA_NAME = "foreign CA"


def _certificates(ca_common_name=CA_NAME):
    """A CA and a serving certificate for SERVER_NAME, as PEM."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_common_name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return (
        ca.public_bytes(pem),
        leaf.public_bytes(pem),
        key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


class FidelityWebhook:
    """The running webhook: its address, its CA bundle and the reviews it received."""

    def __init__(self):
        ca_pem, cert_pem, key_pem = _certificates()
        self.ca_bundle = base64.b64encode(ca_pem).decode()
        # Another CA of the same name (what a replaced CA looks like), and one of another name.
        self.other_ca_bundle = base64.b64encode(_certificates()[0]).decode()
        self.foreign_ca_bundle = base64.b64encode(_certificates(FOREIGN_CA_NAME)[0]).decode()
        # Released on close, so a handler holding back its answer ends with the server.
        self._closing = threading.Event()
        self.reviews = []
        self.server_names = []
        self._lock = threading.Lock()
        webhook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                review = json.loads(self.rfile.read(length))
                with webhook._lock:
                    webhook.reviews.append({"path": self.path, "review": review})
                if self.path.startswith("/slow"):
                    # Never answer in time: the API server's timeoutSeconds must end the call.
                    webhook._closing.wait()
                    return
                body = json.dumps(webhook.answer(self.path, review)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.NamedTemporaryFile("wb", suffix=".pem") as cert_file, \
                tempfile.NamedTemporaryFile("wb", suffix=".pem") as key_file:
            cert_file.write(cert_pem)
            cert_file.flush()
            key_file.write(key_pem)
            key_file.flush()
            context.load_cert_chain(cert_file.name, key_file.name)

        def remember_server_name(_socket, server_name, _context):
            with self._lock:
                self.server_names.append(server_name)

        context.sni_callback = remember_server_name
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @staticmethod
    def answer(path, review):
        request = review["request"]
        labels = ((request.get("object") or {}).get("metadata") or {}).get("labels") or {}
        response = {"uid": request["uid"], "allowed": True}
        if path.startswith("/mutate") and labels.get("fidelity-mutate") == "true":
            ops = [{"op": "add", "path": "/metadata/labels/fidelity-mutated", "value": "yes"}]
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
        if path.startswith("/validate") and labels.get("fidelity-deny") == "true":
            response["allowed"] = False
            response["status"] = {"code": 403, "reason": "Forbidden", "message": DENIAL_MESSAGE}
        if path.startswith("/undeletable") and request["operation"] == "DELETE":
            response["allowed"] = False
            response["status"] = {
                "code": 403, "reason": "Forbidden", "message": UNDELETABLE_MESSAGE,
            }
        if path.startswith("/warn"):
            response["warnings"] = WARNINGS
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}

    def reviews_for(self, namespace, name):
        """The reviews received for object `namespace/name`, oldest first."""
        with self._lock:
            return [
                r for r in self.reviews
                if r["review"]["request"].get("namespace") == namespace
                and r["review"]["request"].get("name") == name
            ]

    def configurations(self, suffix):
        """Mutating and validating configurations that call this webhook for labelled Secrets."""

        def webhook(name, path, label, operations=("CREATE", "UPDATE"), ca_bundle=None):
            return {
                "name": name,
                "clientConfig": {
                    "service": {
                        "name": SERVICE_NAME,
                        "namespace": SERVICE_NAMESPACE,
                        "path": path,
                        # The real port: the sandbox's service map and the real server's
                        # ExternalName Service (conftest.py) both dial 127.0.0.1 at it.
                        "port": self.port,
                    },
                    "caBundle": ca_bundle or self.ca_bundle,
                },
                "rules": [{
                    "operations": list(operations),
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": ["secrets"],
                }],
                "objectSelector": {"matchLabels": {label: "true"}},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
            }

        mutating = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": f"fidelity-mutate-{suffix}"},
            "webhooks": [webhook("mutate.fidelity.example.com", "/mutate", "fidelity-mutate")],
        }
        validating = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": f"fidelity-validate-{suffix}"},
            "webhooks": [
                webhook("deny.fidelity.example.com", "/validate", "fidelity-deny"),
                webhook(
                    "undeletable.fidelity.example.com", "/undeletable", "fidelity-undeletable",
                    operations=("DELETE",),
                ),
                webhook("warn.fidelity.example.com", "/warn", "fidelity-warn"),
                webhook(
                    "bad-ca.fidelity.example.com", "/validate", "fidelity-bad-ca",
                    ca_bundle=self.other_ca_bundle,
                ),
                webhook(
                    "foreign-ca.fidelity.example.com", "/validate", "fidelity-foreign-ca",
                    ca_bundle=self.foreign_ca_bundle,
                ),
                dict(
                    webhook("slow.fidelity.example.com", "/slow", "fidelity-slow"),
                    timeoutSeconds=1,
                ),
            ],
        }
        return mutating, validating

    def close(self):
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
