"""Fixtures of the sandbox fidelity suite.

The suite judges `secret-relay sandbox` with real clients: every kubectl found
(env KUBECTL_BINARIES, colon-separated) and the official Python client. It
builds nothing: the binary comes from env SECRET_RELAY_BIN (default
target/debug/secret-relay, relative to the repository root).
"""

import os
import pathlib
import shutil
import subprocess
import time
import uuid

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from webhook_server import SERVER_NAME as WEBHOOK_SERVER_NAME
from webhook_server import FidelityWebhook

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
START_DEADLINE_SECONDS = 60
HISTORY_LIMIT = 50


class Sandbox:
    """A running `secret-relay sandbox` process."""

    def __init__(self, process, directory, log_path):
        self.process = process
        self.directory = directory
        self.log_path = log_path
        self.kubeconfig = directory / "admin.kubeconfig"
        config = yaml.safe_load(self.kubeconfig.read_text())
        self.url = config["clusters"][0]["cluster"]["server"]

    def log(self):
        return self.log_path.read_text(errors="replace")


def _binary():
    path = pathlib.Path(os.environ.get("SECRET_RELAY_BIN", "target/debug/secret-relay"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_file():
        pytest.fail(
            f"secret-relay binary not found at {path}: run `cargo build -p secret-relay` "
            "or set SECRET_RELAY_BIN",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def fidelity_webhook():
    """The suite's own admission webhook (see webhook_server.py)."""
    webhook = FidelityWebhook()
    yield webhook
    webhook.close()


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory, fidelity_webhook):
    """Starts the sandbox on a free port and stops it after the session.

    Its config maps the fidelity webhook's service name to the webhook's address.
    """
    directory = tmp_path_factory.mktemp("sandbox")
    log_path = directory / "sandbox.log"
    config_path = directory / "sandbox.yaml"
    config_path.write_text(
        yaml.safe_dump({
            "services": {f"{WEBHOOK_SERVER_NAME}:443": f"127.0.0.1:{fidelity_webhook.port}"},
            # Small enough that a test can outrun it and see 410 Expired.
            "historyLimit": HISTORY_LIMIT,
        })
    )
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                str(_binary()), "sandbox", "--addr", "127.0.0.1:0",
                "--dir", str(directory), "--config", str(config_path),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    kubeconfig = directory / "admin.kubeconfig"
    # A process boundary: the kubeconfig appearing is the only readiness signal, so poll it.
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    while not kubeconfig.exists():
        if process.poll() is not None:
            pytest.fail(
                f"the sandbox exited with {process.returncode} before serving:\n"
                + log_path.read_text(errors="replace"),
                pytrace=False,
            )
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(
                f"the sandbox wrote no {kubeconfig} within {START_DEADLINE_SECONDS}s:\n"
                + log_path.read_text(errors="replace"),
                pytrace=False,
            )
        time.sleep(0.05)
    # The file may be in the middle of being written: wait until it parses.
    while True:
        try:
            running = Sandbox(process, directory, log_path)
            break
        except (yaml.YAMLError, KeyError, IndexError, TypeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield running
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def api_client(sandbox):
    """The official Python client, configured from the admin kubeconfig."""
    api = k8s_config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    yield api
    api.close()


@pytest.fixture(scope="session")
def core(api_client):
    return k8s.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def admission_webhooks(api_client, fidelity_webhook):
    """The fidelity webhook's configurations, registered through the API for the session.

    They only match Secrets labelled `fidelity-mutate` or `fidelity-deny`, so no other
    test is affected.
    """
    registration = k8s.AdmissionregistrationV1Api(api_client)
    mutating, validating = fidelity_webhook.configurations(uuid.uuid4().hex[:8])
    registration.create_mutating_webhook_configuration(mutating)
    registration.create_validating_webhook_configuration(validating)
    yield fidelity_webhook
    registration.delete_mutating_webhook_configuration(mutating["metadata"]["name"])
    registration.delete_validating_webhook_configuration(validating["metadata"]["name"])


@pytest.fixture
def ns(core):
    """A fresh namespace for one test, so tests never see each other's objects."""
    name = "fid-" + uuid.uuid4().hex[:10]
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    return name


def kubectl_binaries():
    """Every kubectl to judge with: KUBECTL_BINARIES, else the one on PATH."""
    listed = os.environ.get("KUBECTL_BINARIES")
    if listed is None:
        found = shutil.which("kubectl")
        candidates = [found] if found else []
    else:
        candidates = [p for p in listed.split(":") if p]
    return [p for p in candidates if os.path.isfile(p) and os.access(p, os.X_OK)]


def pytest_generate_tests(metafunc):
    if "kubectl_binary" in metafunc.fixturenames:
        binaries = kubectl_binaries()
        if binaries:
            metafunc.parametrize(
                "kubectl_binary", binaries, ids=[os.path.basename(b) for b in binaries]
            )
        else:
            metafunc.parametrize("kubectl_binary", [None], ids=["no-kubectl"])


class Kubectl:
    """One kubectl binary with its own HOME (its own discovery cache)."""

    def __init__(self, binary, kubeconfig, home):
        self.binary = binary
        self.env = {
            "HOME": str(home),
            "KUBECONFIG": str(kubeconfig),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
        }

    def run(self, *args, input=None, timeout=60):
        return subprocess.run(
            [self.binary, *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )

    def popen(self, *args):
        return subprocess.Popen(
            [self.binary, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env,
        )


@pytest.fixture
def kubectl(kubectl_binary, sandbox, tmp_path):
    if kubectl_binary is None:
        pytest.skip(
            "!!! NO kubectl FOUND: every kubectl fidelity check is SKIPPED. "
            "Set KUBECTL_BINARIES to colon-separated kubectl paths (1.27 or newer). !!!"
        )
    home = tmp_path / "home"
    home.mkdir()
    return Kubectl(kubectl_binary, sandbox.kubeconfig, home)
