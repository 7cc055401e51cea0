"""Fixtures of the fidelity suite.

The suite judges an API server with real clients: every kubectl found (env
KUBECTL_BINARIES, colon-separated) and the official Python client. Every test that
judges the server runs twice, through the session fixture `backend`:

- `sandbox`: `secret-relay sandbox`, from env SECRET_RELAY_BIN (default
  target/debug/secret-relay, relative to the repository root); the suite builds nothing;
- `real`: etcd, kube-apiserver and kube-controller-manager started by
  `scripts/control-plane.sh up` (binaries built from Go modules, cached per machine).
  When it cannot start, the `real` tests fail with the script's message; env
  SECRET_RELAY_SKIP_REAL_CONTROL_PLANE=1 skips them instead (it is not even tried).

Both must pass the same assertions. Where the sandbox knowingly differs (listed in
sandbox/src/lib.rs), the test keeps the real server's behaviour and carries
`@pytest.mark.sandbox_differs(reason)`: its sandbox variant is a strict xfail.
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
from webhook_server import SERVICE_NAME as WEBHOOK_SERVICE_NAME
from webhook_server import SERVICE_NAMESPACE as WEBHOOK_SERVICE_NAMESPACE
from webhook_server import FidelityWebhook

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
CONTROL_PLANE_SCRIPT = REPO_ROOT / "scripts" / "control-plane.sh"
SKIP_REAL_ENV = "SECRET_RELAY_SKIP_REAL_CONTROL_PLANE"
START_DEADLINE_SECONDS = 60
# Generous: a machine's first `up` builds the binaries from Go modules.
CONTROL_PLANE_UP_SECONDS = 1800
# The sandbox keeps this many events per kind (config historyLimit).
SANDBOX_HISTORY_LIMIT = 50
# kube-apiserver's watch cache keeps every event younger than this (the cacher's
# eventFreshDuration: storagebackend.DefaultEventsHistoryWindow, 75s, or the request
# timeout + 15s when larger) and grows its buffer rather than drop one; older events
# are dropped once the buffer is full.
REAL_HISTORY_WINDOW_SECONDS = 75
HISTORY_NAMESPACE = "fidelity-history"
HISTORY_SECRET = "first"

BACKENDS = ["sandbox", "real"]


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "sandbox_differs(reason): the sandbox knowingly differs from kube-apiserver here "
        "(listed in sandbox/src/lib.rs); its variant is a strict xfail",
    )


def pytest_collection_modifyitems(items):
    for item in items:
        marker = item.get_closest_marker("sandbox_differs")
        callspec = getattr(item, "callspec", None)
        if marker is None or callspec is None or callspec.params.get("backend") != "sandbox":
            continue
        reason = marker.args[0] if marker.args else marker.kwargs.get("reason", "")
        item.add_marker(pytest.mark.xfail(strict=True, reason=f"sandbox differs: {reason}"))


class Backend:
    """An API server under judgement: its kubeconfig and its history hooks."""

    name = ""

    def __init__(self, directory, kubeconfig):
        self.directory = directory
        self.kubeconfig = kubeconfig
        config = yaml.safe_load(self.kubeconfig.read_text())
        self.url = config["clusters"][0]["cluster"]["server"]
        # Set by the `backend` fixture: a Secret written when the server started, and when.
        self.first_resource_version = None
        self.first_written_at = None

    def log(self):
        raise NotImplementedError

    def history_min_age_seconds(self):
        """How long an event is kept at least, whatever happens after it."""
        raise NotImplementedError

    def history_capacity(self, api_client):
        """How many Secret events the server keeps right now, once its minimum age is over."""
        raise NotImplementedError


class Sandbox(Backend):
    """A running `secret-relay sandbox` process."""

    name = "sandbox"

    def __init__(self, process, directory, log_path):
        super().__init__(directory, directory / "admin.kubeconfig")
        self.process = process
        self.log_path = log_path

    def log(self):
        return self.log_path.read_text(errors="replace")

    def history_min_age_seconds(self):
        return 0

    def history_capacity(self, api_client):
        return SANDBOX_HISTORY_LIMIT

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class RealControlPlane(Backend):
    """etcd, kube-apiserver and kube-controller-manager from `scripts/control-plane.sh`."""

    name = "real"

    def __init__(self, directory):
        super().__init__(directory, directory / "admin.kubeconfig")
        self.env = dict(
            line.split("=", 1)
            for line in (directory / "env").read_text().splitlines()
            if "=" in line
        )

    def log(self):
        path = self.directory / "kube-apiserver.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def history_min_age_seconds(self):
        return REAL_HISTORY_WINDOW_SECONDS

    def history_capacity(self, api_client):
        # The size of the Secrets watch cache's event buffer; it only grows while every
        # event in it is younger than the window.
        metrics = api_client.call_api(
            "/metrics", "GET", auth_settings=["BearerToken"], _preload_content=False,
            _return_http_data_only=True,
        ).data.decode()
        for line in metrics.splitlines():
            if line.startswith("watch_cache_capacity{") and 'resource="secrets"' in line \
                    and 'group=""' in line:
                return int(float(line.rsplit(" ", 1)[1]))
        raise AssertionError("kube-apiserver reports no watch_cache_capacity for secrets")

    def stop(self):
        subprocess.run(
            [str(CONTROL_PLANE_SCRIPT), "down", str(self.directory)],
            capture_output=True, timeout=120,
        )


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


def _start_sandbox(directory, webhook):
    """Starts the sandbox on a free port.

    Its config maps the fidelity webhook's service name, at the webhook's real port (the
    port the webhook configurations name), to the webhook's address.
    """
    log_path = directory / "sandbox.log"
    config_path = directory / "sandbox.yaml"
    config_path.write_text(
        yaml.safe_dump({
            "services": {
                f"{WEBHOOK_SERVER_NAME}:{webhook.port}": f"127.0.0.1:{webhook.port}",
            },
            # Small enough that a test can outrun it and see 410 Expired.
            "historyLimit": SANDBOX_HISTORY_LIMIT,
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
            return Sandbox(process, directory, log_path)
        except (yaml.YAMLError, KeyError, IndexError, TypeError):
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)


def _start_real_control_plane(directory, webhook):
    """`scripts/control-plane.sh up`, then the Service the webhook configurations name.

    kube-apiserver resolves a webhook's `clientConfig.service` through the Service: an
    ExternalName Service for 127.0.0.1 makes it dial 127.0.0.1 at the configuration's
    port, with SNI `<name>.<namespace>.svc`.
    """
    if os.environ.get(SKIP_REAL_ENV, "") not in ("", "0"):
        pytest.skip(f"{SKIP_REAL_ENV}={os.environ[SKIP_REAL_ENV]}: the real control plane is not started")
    # The watchdog stops the control plane when this process exits, however it exits.
    env = dict(os.environ, CONTROL_PLANE_OWNER_PID=str(os.getpid()))
    try:
        result = subprocess.run(
            [str(CONTROL_PLANE_SCRIPT), "up", str(directory)],
            capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
            timeout=CONTROL_PLANE_UP_SECONDS,
        )
    except subprocess.TimeoutExpired as timeout:
        subprocess.run([str(CONTROL_PLANE_SCRIPT), "down", str(directory)], capture_output=True)
        pytest.fail(
            f"scripts/control-plane.sh up did not finish within {CONTROL_PLANE_UP_SECONDS}s:\n"
            f"{timeout.stderr}",
            pytrace=False,
        )
    if result.returncode != 0:
        pytest.fail(
            f"the real control plane did not start: scripts/control-plane.sh up {directory} "
            f"exited with {result.returncode}:\n{result.stderr.strip()}\n"
            f"(set {SKIP_REAL_ENV}=1 to skip the real-server tests)",
            pytrace=False,
        )
    real = RealControlPlane(directory)
    api = k8s_config.new_client_from_config(config_file=str(real.kubeconfig))
    try:
        core = k8s.CoreV1Api(api)
        core.create_namespace(
            k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=WEBHOOK_SERVICE_NAMESPACE))
        )
        core.create_namespaced_service(
            WEBHOOK_SERVICE_NAMESPACE,
            k8s.V1Service(
                metadata=k8s.V1ObjectMeta(name=WEBHOOK_SERVICE_NAME),
                spec=k8s.V1ServiceSpec(
                    type="ExternalName",
                    external_name="127.0.0.1",
                    ports=[k8s.V1ServicePort(name="https", port=webhook.port)],
                ),
            ),
        )
    except Exception:
        real.stop()
        raise
    finally:
        api.close()
    return real


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request, tmp_path_factory, fidelity_webhook):
    """The API server under judgement, once per backend: `sandbox` and `real`."""
    directory = tmp_path_factory.mktemp(request.param)
    if request.param == "sandbox":
        running = _start_sandbox(directory, fidelity_webhook)
    else:
        running = _start_real_control_plane(directory, fidelity_webhook)
    try:
        # A Secret written now: the watch-history test needs a resourceVersion as old as
        # this server (test_watch_from_a_resource_version_older_than_the_history_is_410_expired).
        api = k8s_config.new_client_from_config(config_file=str(running.kubeconfig))
        try:
            core = k8s.CoreV1Api(api)
            core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=HISTORY_NAMESPACE)))
            first = core.create_namespaced_secret(
                HISTORY_NAMESPACE, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name=HISTORY_SECRET))
            )
            # Takes the next resourceVersion, so no later Secret event is `first`'s RV + 1:
            # once `first` is dropped from the history, the watch cache's window
            # (`oldest - 1`) is past it.
            core.create_namespaced_config_map(
                HISTORY_NAMESPACE, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=HISTORY_SECRET))
            )
        finally:
            api.close()
        running.first_resource_version = first.metadata.resource_version
        running.first_written_at = time.monotonic()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def api_client(backend):
    """The official Python client, configured from the admin kubeconfig."""
    api = k8s_config.new_client_from_config(config_file=str(backend.kubeconfig))
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
def kubectl(kubectl_binary, backend, tmp_path):
    if kubectl_binary is None:
        pytest.skip(
            "!!! NO kubectl FOUND: every kubectl fidelity check is SKIPPED. "
            "Set KUBECTL_BINARIES to colon-separated kubectl paths (1.27 or newer). !!!"
        )
    home = tmp_path / "home"
    home.mkdir()
    return Kubectl(kubectl_binary, backend.kubeconfig, home)
