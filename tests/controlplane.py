"""A real Kubernetes control plane on loopback, for the ``controlplane`` tests.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler (built from k8s.io/kubernetes),
kwok (fake nodes whose pods it moves to Running/Ready) and the KubeRay operator, all as host
processes that tools/k8s/install.sh builds into .tools/k8s/bin (``make controlplane``). Nothing
listens anywhere but 127.0.0.0/8, and nothing addressed to a pod or a Service can leave the
machine: the pod and service ranges lie inside 198.19.0.0/16, which has a blackhole route
(added when absent; :func:`assert_unreachable` checks it).

The operator runs in its own mount namespace whose /etc/resolv.conf names 127.0.0.1 (nothing
answers DNS there) and whose /etc/hosts the fixture writes: its calls to Ray dashboards
(``<cluster>-head-svc.<ns>.svc.cluster.local:8265``) fail at once, except for the names a test
maps with :meth:`ControlPlane.fake_dashboard` to a fake Ray job API on 127.0.0.42.

Used from tests/k8s/test_controlplane.py as tests/tooling.py is used (``import controlplane``).
Where a binary is missing the tests skip with the reason; in CI (env CI set) that is a failure.
"""

from __future__ import annotations

import datetime
import errno
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

import tooling  # tests/tooling.py

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("RAYSCALE_K8S_BIN", ROOT / ".tools" / "k8s" / "bin"))
CRDS = Path(os.environ.get("RAYSCALE_CRDS_DIR", ROOT.parent / "shared" / "crds"))
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kuberay-operator")

# Every pod and Service address lies in NETWORK, which a blackhole route keeps on this machine.
NETWORK = ipaddress.ip_network("198.19.0.0/16")
POD_CIDR = "198.19.0.0/18"  # kwok hands out pod IPs from here
NODE_IP = "198.19.64.1"  # the fake nodes' InternalIP
SERVICE_CIDR = "198.19.240.0/20"  # ClusterIPs; the first one is the `kubernetes` Service
NODES = 4
NODE_CPU = 8
NODE_MEMORY = "32Gi"
# Fake Ray dashboards (fake_dashboard) listen here, on the dashboard port KubeRay's URLs name.
DASHBOARD_HOST = "127.0.0.42"
DASHBOARD_PORT = 8265
CLUSTER_DOMAIN = "cluster.local"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}
T = TypeVar("T")


# -- prerequisites ----------------------------------------------------------------------------------


def _unavailable(reason: str) -> None:
    """Skip, or fail in CI (where .ci/run installed everything and a gap is a bug)."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _has_blackhole() -> bool:
    out = subprocess.run(["ip", "route", "show", str(NETWORK)], capture_output=True, text=True).stdout
    return any(line.split()[:2] == ["blackhole", str(NETWORK)] for line in out.splitlines())


def ensure_blackhole() -> None:
    """The blackhole route for NETWORK: added when absent (needs root), else the tests cannot run."""
    if shutil.which("ip") is None:
        _unavailable("the `ip` command (iproute2) is needed to check the blackhole route")
    if _has_blackhole():
        return
    added = subprocess.run(["ip", "route", "add", "blackhole", str(NETWORK)], capture_output=True, text=True)
    if added.returncode != 0 and not _has_blackhole():
        _unavailable(
            f"no blackhole route for {NETWORK} and adding one failed ({added.stderr.strip()}): "
            f"run `ip route add blackhole {NETWORK}` as root"
        )


def assert_unreachable(address: str, port: int = 80) -> None:
    """A pod or Service address is never reached from this host: connect fails at once, locally."""
    ip = ipaddress.ip_address(address)
    assert ip in NETWORK, f"{address} is outside {NETWORK}: a pod or Service address could leave the machine"
    assert _has_blackhole(), f"the blackhole route for {NETWORK} is gone"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(2)
    try:
        sock.connect((address, port))
    except OSError as exc:
        # EINVAL (gVisor), ENETUNREACH/EHOSTUNREACH (Linux blackhole): refused before any packet left.
        assert exc.errno in (errno.EINVAL, errno.ENETUNREACH, errno.EHOSTUNREACH), (
            f"connect to {address}:{port} failed with {exc!r}, not the blackhole's immediate refusal"
        )
    else:
        raise AssertionError(f"connected to {address}:{port}: pod/Service traffic is not blackholed")
    finally:
        sock.close()


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment for every child: no proxy (a Go client would send cluster URLs to it)."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.pop("KUBECONFIG", None)
    env.update(extra)
    return env


# -- certificates ------------------------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path
    # Further certificates by name (make_pki's ``leaves``): (certificate, key).
    leaves: dict[str, tuple[Path, Path]] = field(default_factory=dict)


@dataclass(frozen=True)
class Leaf:
    """A certificate make_pki also issues: a client (``org`` is its group) or a server (``sans``)."""

    cn: str
    org: str | None = None
    server: bool = False
    ips: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()


def make_pki(folder: Path, server_ips: tuple[str, ...] = (), leaves: dict[str, Leaf] | None = None) -> Pki:
    """A CA, the API server's serving certificate (127.0.0.1, the `kubernetes` Service IP and
    ``server_ips``), an admin client (system:masters), an SA key, and ``leaves``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str, org: str | None = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        path.chmod(0o600)
        return path

    def write_cert(path: Path, cert: x509.Certificate) -> Path:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def builder(
        subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("rayscale-controlplane-test-ca")
    usage = {k: False for k in ("content_commitment", "data_encipherment", "key_agreement")}
    ca = (
        builder(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
                **usage,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        cn: str, org: str | None, server: bool, ips: tuple[str, ...] = (), dns: tuple[str, ...] = ()
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        b = (
            builder(name(cn, org), ca_name, key)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_encipherment=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                    **usage,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        )
        if server:
            sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
            sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(ca_key, hashes.SHA256()), key

    service_ip = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
    api_dns = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
    server, server_key = leaf(
        "kube-apiserver",
        None,
        server=True,
        ips=("127.0.0.1", service_ip, *server_ips),
        dns=(*api_dns, f"kubernetes.default.svc.{CLUSTER_DOMAIN}"),
    )
    issued = {}
    for short, spec in (leaves or {}).items():
        cert, key = leaf(spec.cn, spec.org, spec.server, spec.ips, spec.dns)
        issued[short] = (write_cert(folder / f"{short}.crt", cert), write_key(folder / f"{short}.key", key))
    admin, admin_key = leaf("rayscale-test-admin", "system:masters", server=False)
    sa_key = ec.generate_private_key(ec.SECP256R1())
    sa_pub = folder / "sa.pub"
    sa_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return Pki(
        ca=write_cert(folder / "ca.crt", ca),
        server_cert=write_cert(folder / "apiserver.crt", server),
        server_key=write_key(folder / "apiserver.key", server_key),
        admin_cert=write_cert(folder / "admin.crt", admin),
        admin_key=write_key(folder / "admin.key", admin_key),
        sa_key=write_key(folder / "sa.key", sa_key),
        sa_pub=sa_pub,
        leaves=issued,
    )


def write_kubeconfig(path: Path, server: str, pki: Pki, client: tuple[Path, Path] | None = None) -> Path:
    """A kubeconfig for ``server`` as the admin, or as ``client`` (a certificate and its key)."""
    cert, key = client or (pki.admin_cert, pki.admin_key)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "controlplane", "cluster": {"server": server, "certificate-authority": str(pki.ca)}}
        ],
        "users": [{"name": "admin", "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "controlplane", "context": {"cluster": "controlplane", "user": "admin"}}],
        "current-context": "controlplane",
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    path.chmod(0o600)
    return path


# -- processes ---------------------------------------------------------------------------------------


@dataclass
class Process:
    """A host process in its own process group, stopped by that group (never by name)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace_s: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        pgid = self.popen.pid  # start_new_session: the child leads its own group
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            try:
                self.popen.wait(wait_s)
                return
            except subprocess.TimeoutExpired:
                continue


def _start(name: str, argv: list[str], logs: Path, env: dict[str, str]) -> Process:
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    return Process(name, popen, log)


# -- a fake Ray job API, for the operator's HTTPMode calls --------------------------------------------


@dataclass
class FakeDashboards:
    """Ray's job REST API (/api/jobs/) as KubeRay's dashboard client uses it, per Host header.

    Every job submitted to a host gets that host's status (FAILED by default), so that a RayJob's
    failure path runs in the real operator without a real Ray.
    """

    hosts_file: Path
    statuses: dict[str, str] = field(default_factory=dict)
    jobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, host: str, status: str) -> None:
        with self.lock:
            self.statuses[host] = status
            # Appending keeps the inode that the operator's bind mount shows; Go re-reads on change.
            with self.hosts_file.open("a", encoding="utf-8") as hosts:
                hosts.write(f"{DASHBOARD_HOST} {host}\n")
        if self.server is None:
            self._serve()

    def requests_for(self, host: str) -> list[tuple[str, str]]:
        with self.lock:
            return [(method, path) for h, method, path in self.requests if h == host]

    def _serve(self) -> None:
        dashboards = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _host(self) -> str:
                return (self.headers.get("Host") or "").rsplit(":", 1)[0]

            def _handle(self, method: str) -> None:
                host, path = self._host(), self.path.split("?", 1)[0]
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                with dashboards.lock:
                    dashboards.requests.append((host, method, path))
                    status = dashboards.statuses.get(host)
                    if status is None:
                        return self._reply(404, {"error": f"no fake dashboard for {host}"})
                    rest = path.removeprefix("/api/jobs/").strip("/")
                    if method == "POST" and not rest:
                        job_id = body.get("submission_id") or f"raysubmit_{uuid.uuid4().hex[:12]}"
                        dashboards.jobs[(host, job_id)] = {
                            "job_id": job_id,
                            "submission_id": job_id,
                            "entrypoint": body.get("entrypoint", ""),
                            "status": status,
                            "message": f"fake Ray dashboard: job {status.lower()}",
                            "start_time": int(time.time() * 1000),
                            "end_time": int(time.time() * 1000),
                        }
                        return self._reply(200, {"job_id": job_id, "submission_id": job_id})
                    job = dashboards.jobs.get((host, rest.split("/", 1)[0]))
                    if method == "GET" and job and "/" not in rest:
                        return self._reply(200, job)
                    if method == "GET" and not rest:
                        return self._reply(200, [j for (h, _), j in dashboards.jobs.items() if h == host])
                    if job and method == "POST" and rest.endswith("/stop"):
                        return self._reply(200, {"stopped": True})
                    if job and method == "DELETE":
                        return self._reply(200, {"deleted": True})
                    return self._reply(404, {"error": f"no job {rest}"})

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        self.server = ThreadingHTTPServer((DASHBOARD_HOST, DASHBOARD_PORT), Handler)
        threading.Thread(target=self.server.serve_forever, name="fake-ray-dashboard", daemon=True).start()

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


# -- the control plane -------------------------------------------------------------------------------


def operator_crds() -> Path:
    """The KubeRay CRDs of the operator that was built (its module in the Go module cache)."""
    return Path((BIN / "kuberay-operator.crds").read_text(encoding="utf-8").strip())


def operator_version() -> str:
    return (BIN / "kuberay-operator.version").read_text(encoding="utf-8").strip().removeprefix("v")


def monitoring_crds() -> list[Path]:
    """PodMonitor and ServiceMonitor from shared/crds where present, PrometheusRule (and any gap) from
    the Prometheus operator module tools/k8s/crds pins (the same v0.93.1 files)."""
    module = Path((BIN / "prometheus-operator.crds").read_text(encoding="utf-8").strip())
    files = []
    for kind in ("podmonitors", "servicemonitors", "prometheusrules"):
        shared = CRDS / f"monitoring.coreos.com_crd-{kind}.yaml"
        files.append(shared if shared.is_file() else module / f"monitoring.coreos.com_{kind}.yaml")
    return files


def _kwok_stages() -> str:
    """kwok's own "fast" stages (what kwokctl runs by default), read from its module."""
    module = Path((BIN / "kwok.module").read_text(encoding="utf-8").strip()) / "kustomize" / "stage"
    files = [
        "node/fast/node-initialize.yaml",
        "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
        "pod/fast/pod-ready.yaml",
        "pod/fast/pod-complete.yaml",
        "pod/fast/pod-delete.yaml",
    ]
    return "\n---\n".join((module / f).read_text(encoding="utf-8").strip().removeprefix("---") for f in files)


def _node(index: int) -> dict[str, Any]:
    name = f"kwok-node-{index}"
    resources = {"cpu": str(NODE_CPU), "memory": NODE_MEMORY, "pods": "110", "ephemeral-storage": "100Gi"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {
            "allocatable": resources,
            "capacity": resources,
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "fake"},
        },
    }


@dataclass
class ControlPlane:
    tmp: Path
    server: str
    kubeconfig: Path
    pki: Pki
    processes: dict[str, Process]
    dashboards: FakeDashboards
    kubectl_bin: str
    helm_bin: str
    env: dict[str, str]
    kuberay_version: str
    _http: urllib.request.OpenerDirector | None = None
    _resources: dict[str, tuple[str, str, bool]] = field(default_factory=dict)

    # -- commands --
    def run(self, argv: list[str], *, input: str | None = None, check: bool = True, timeout: float = 120):
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {result.returncode}\nstdout: {result.stdout[-3000:]}\n"
                f"stderr: {result.stderr[-3000:]}"
            )
        return result

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120):
        return self.run([self.kubectl_bin, *args], input=input, check=check, timeout=timeout)

    def helm(self, *args: str, check: bool = True, timeout: float = 180):
        return self.run([self.helm_bin, *args], check=check, timeout=timeout)

    def request(self, path: str, query: dict[str, str] | None = None) -> dict[str, Any]:
        """GET an API path as the admin, in-process (polling through kubectl costs a CPU); {} on 404."""
        url = self.server + path + ("?" + urllib.parse.urlencode(query) if query else "")
        try:
            with self._opener().open(url, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return {}
            raise AssertionError(f"GET {path}: {exc.code} {exc.read()[:500]!r}") from None

    def _opener(self) -> urllib.request.OpenerDirector:
        if self._http is None:
            context = ssl.create_default_context(cafile=str(self.pki.ca))
            context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
            self._http = urllib.request.build_opener(
                urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
            )
        return self._http

    def _resource(self, alias: str) -> tuple[str, str, bool]:
        """(API path prefix, plural, namespaced) for a kind as kubectl takes it (plural, singular, Kind,
        short name), from the API server's discovery; the core group wins a name two groups share."""
        alias = alias.lower()
        if alias not in self._resources:
            self._resources.clear()
            versions = [("/api/v1", "v1")] + [
                (f"/apis/{g['preferredVersion']['groupVersion']}", g["preferredVersion"]["groupVersion"])
                for g in self.request("/apis")["groups"]
            ]
            for prefix, _ in versions:
                for r in self.request(prefix).get("resources", []):
                    if "/" in r["name"]:
                        continue
                    for name in {
                        r["name"],
                        r.get("singularName", ""),
                        r["kind"].lower(),
                        *r.get("shortNames", []),
                    }:
                        if name:
                            self._resources.setdefault(name, (prefix, r["name"], r["namespaced"]))
        if alias not in self._resources:
            raise AssertionError(f"the API server serves no resource {alias!r}")
        return self._resources[alias]

    def get(self, kind: str, *args: str) -> dict[str, Any]:
        """``kubectl get KIND [NAME] [-n NS] [-l SELECTOR] -o json``, parsed; {} when not found."""
        rest = list(args)
        namespace = selector = None
        for flag in ("-n", "-l"):
            if flag in rest:
                i = rest.index(flag)
                value = rest[i + 1]
                del rest[i : i + 2]
                namespace, selector = (value, selector) if flag == "-n" else (namespace, value)
        prefix, plural, namespaced = self._resource(kind)
        path = prefix + (f"/namespaces/{namespace or 'default'}" if namespaced else "") + f"/{plural}"
        if rest:
            path += f"/{rest[0]}"
        return self.request(path, {"labelSelector": selector} if selector else None)

    def items(self, kind: str, *args: str) -> list[dict[str, Any]]:
        return self.get(kind, *args).get("items", [])

    def wait(self, what: str, check: Callable[[], T], timeout: float = 90, interval: float = 0.5) -> T:
        """Poll ``check`` until it returns something truthy; fail with the processes' state if not."""
        started = time.monotonic()
        last: Any = None
        while time.monotonic() < started + timeout:
            self.assert_running()
            last = check()
            if last:
                # Shown with a failing test's captured output: where the time went.
                print(f"[controlplane] {what}: {time.monotonic() - started:.1f} s")
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")

    def assert_running(self) -> None:
        dead = [p for p in self.processes.values() if not p.alive()]
        if dead:
            raise AssertionError(
                "control plane process(es) exited: "
                + "; ".join(f"{p.name} rc={p.popen.returncode}:\n{p.tail()}" for p in dead)
            )

    # -- objects --
    def namespace(self, name: str, *, restricted: bool = True) -> str:
        """A fresh namespace, labelled for Pod Security `restricted` unless told otherwise."""
        labels = RESTRICTED if restricted else {}
        manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        self.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(manifest))
        return name

    def delete_namespace(self, name: str, wait: bool = False) -> None:
        self.kubectl("delete", "namespace", name, "--ignore-not-found", f"--wait={str(wait).lower()}")

    def token(self, namespace: str, service_account: str) -> str:
        """A ServiceAccount token from the TokenRequest API (`kubectl create token`)."""
        return self.kubectl(
            "create", "token", service_account, "-n", namespace, "--duration=1h"
        ).stdout.strip()

    def api_client(self, token: str | None = None) -> Any:
        """A `kubernetes` ApiClient: the admin's certificate, or a bearer token."""
        from kubernetes import client

        conf = client.Configuration()
        conf.host = self.server
        conf.ssl_ca_cert = str(self.pki.ca)
        conf.proxy = None
        if token is None:
            conf.cert_file, conf.key_file = str(self.pki.admin_cert), str(self.pki.admin_key)
        else:
            conf.api_key = {"authorization": f"Bearer {token}"}
        return client.ApiClient(conf)

    def fake_dashboard(self, cluster: str, namespace: str, status: str = "FAILED") -> str:
        """Answer the operator's Ray job API calls for ``cluster``'s head Service: jobs end ``status``."""
        host = f"{cluster}-head-svc.{namespace}.svc.{CLUSTER_DOMAIN}"
        self.dashboards.add(host, status)
        return host


def _ready(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        ).open(url, timeout=3) as response:
            return response.status == 200
    except OSError:
        return False


def _wait_up(proc: Process, what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(
                f"{proc.name} exited (rc={proc.popen.returncode}) before {what}:\n{proc.tail()}"
            )
        if check():
            return
        time.sleep(0.3)
    raise RuntimeError(f"{proc.name}: no {what} after {timeout:.0f}s:\n{proc.tail()}")


def check_prerequisites(binaries: tuple[str, ...] = BINARIES) -> None:
    """Skip (fail in CI) unless the binaries, the blackhole route and `unshare -m` are there."""
    missing = [name for name in binaries if not os.access(BIN / name, os.X_OK)]
    if missing:
        _unavailable(
            f"control-plane binaries missing from {BIN}: {', '.join(missing)} "
            "(run tools/k8s/install.sh, or `make controlplane`)"
        )
    ensure_blackhole()
    if not os.access("/etc/resolv.conf", os.R_OK) or shutil.which("unshare") is None:
        _unavailable("unshare(1) is needed to give the KubeRay operator a resolver of the fixture's own")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        _unavailable(f"`unshare -m` failed ({probe.stderr.strip()}): the operator's DNS cannot be kept local")


def start_control_plane(
    tmp: Path,
    processes: dict[str, Process],
    pki: Pki,
    *,
    address: str = "127.0.0.1",
    apiserver_args: tuple[str, ...] = (),
    kubectl_bin: str | None = None,
) -> ControlPlane:
    """etcd, kube-apiserver (on ``address``), controller-manager and scheduler, each in its own
    process group recorded in ``processes``; then the CRDs. The caller stops the processes."""
    logs = tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    etcd_client, etcd_peer, api_port = _free_port(), _free_port(), _free_port(address)
    server = f"https://{address}:{api_port}"
    kubeconfig = write_kubeconfig(tmp / "kubeconfig", server, pki)
    helm_home = tmp / "helm"
    env = _clean_env(
        KUBECONFIG=str(kubeconfig),
        HELM_CACHE_HOME=str(helm_home / "cache"),
        HELM_CONFIG_HOME=str(helm_home / "config"),
        HELM_DATA_HOME=str(helm_home / "data"),
    )
    processes["etcd"] = etcd = _start(
        "etcd",
        [
            str(BIN / "etcd"),
            "--name=controlplane",
            f"--data-dir={tmp / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=controlplane=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
        logs,
        _clean_env(),
    )
    _wait_up(etcd, "health", lambda: _ready(f"http://127.0.0.1:{etcd_client}/health"), 30)

    issuer = f"https://kubernetes.default.svc.{CLUSTER_DOMAIN}"
    processes["kube-apiserver"] = apiserver = _start(
        "kube-apiserver",
        [
            str(BIN / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            f"--bind-address={address}",
            f"--advertise-address={address}",
            f"--secure-port={api_port}",
            f"--cert-dir={tmp / 'apiserver-certs'}",
            f"--tls-cert-file={pki.server_cert}",
            f"--tls-private-key-file={pki.server_key}",
            f"--client-ca-file={pki.ca}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--service-account-issuer={issuer}",
            f"--api-audiences={issuer}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--anonymous-auth=false",
            "--profiling=false",
            "--enable-priority-and-fairness=false",
            *(apiserver_args or ("--authorization-mode=RBAC",)),
        ],
        logs,
        _clean_env(),
    )
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    _wait_up(apiserver, "/readyz", lambda: _ready(f"{server}/readyz", context), 120)

    component_kubeconfig = ["--kubeconfig", str(kubeconfig)]
    processes["kube-controller-manager"] = _start(
        "kube-controller-manager",
        [
            str(BIN / "kube-controller-manager"),
            *component_kubeconfig,
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={_free_port()}",
            f"--cert-dir={tmp / 'kcm-certs'}",
            "--leader-elect=false",
            # kwok renews the fake nodes' leases; never let a slow moment on 2 cores evict pods.
            "--node-monitor-grace-period=600s",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
        ],
        logs,
        _clean_env(),
    )
    processes["kube-scheduler"] = _start(
        "kube-scheduler",
        [
            str(BIN / "kube-scheduler"),
            *component_kubeconfig,
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={_free_port()}",
            f"--cert-dir={tmp / 'scheduler-certs'}",
            "--leader-elect=false",
        ],
        logs,
        _clean_env(),
    )

    cp = ControlPlane(
        tmp=tmp,
        server=server,
        kubeconfig=kubeconfig,
        pki=pki,
        processes=processes,
        dashboards=FakeDashboards(hosts_file=tmp / "operator-hosts"),
        kubectl_bin=kubectl_bin or tooling.kubectl(),
        helm_bin=tooling.helm(),
        env=env,
        kuberay_version=operator_version(),
    )

    # CRDs: KubeRay's (RayCluster, RayJob, RayService) of the operator built, and the monitoring ones.
    crds = sorted(operator_crds().glob("ray.io_*.yaml")) + monitoring_crds()
    for crd in crds:
        cp.kubectl("apply", "--server-side", "-f", str(crd))

    def established() -> bool:
        found = cp.items("crd")
        ok = [
            c
            for c in found
            if any(
                x["type"] == "Established" and x["status"] == "True"
                for x in c.get("status", {}).get("conditions") or []
            )
        ]
        return len(ok) == len(crds) == len(found)

    cp.wait("the CRDs to be established", established, timeout=60)
    return cp


def start_operator(cp: ControlPlane, resolv: Path, hosts: Path) -> Process:
    """The KubeRay operator as a host process, in a mount namespace whose /etc/resolv.conf and
    /etc/hosts are the given files; returns once it is ready."""
    cp.processes["kuberay-operator"] = operator = _start(
        "kuberay-operator",
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            'mount --bind "$1" /etc/resolv.conf && mount --bind "$2" /etc/hosts && shift 2 && exec "$@"',
            "sh",
            str(resolv),
            str(hosts),
            str(BIN / "kuberay-operator"),
            f"--metrics-addr=127.0.0.1:{_free_port()}",
            f"--health-probe-bind-address=127.0.0.1:{(probe_port := _free_port())}",
            "--enable-leader-election=false",
            "--use-kubernetes-proxy=false",
            "--log-stdout-encoder=console",
        ],
        cp.tmp / "logs",
        _clean_env(KUBECONFIG=str(cp.kubeconfig), ENABLE_WEBHOOKS="false"),
    )
    _wait_up(operator, "readyz", lambda: _ready(f"http://127.0.0.1:{probe_port}/readyz"), 60)
    return operator


def start(tmp: Path) -> Iterator[ControlPlane]:
    """Start the whole control plane with kwok's nodes in ``tmp``; yield it; stop every process it started."""
    check_prerequisites()
    processes: dict[str, Process] = {}
    cp: ControlPlane | None = None
    try:
        cp = start_control_plane(
            tmp,
            processes,
            make_pki(tmp / "pki"),
            # The `kubernetes` Service's endpoints may not be a loopback address: keep none.
            apiserver_args=("--authorization-mode=RBAC", "--endpoint-reconciler-type=none"),
        )
        logs = tmp / "logs"

        # kwok's fake nodes, then kwok.
        nodes = "\n---\n".join(json.dumps(_node(i)) for i in range(NODES))
        cp.kubectl("apply", "-f", "-", input=nodes)
        stages = tmp / "kwok-stages.yaml"
        stages.write_text(_kwok_stages(), encoding="utf-8")
        processes["kwok"] = _start(
            "kwok",
            [
                str(BIN / "kwok"),
                f"--config={stages}",
                f"--kubeconfig={cp.kubeconfig}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                f"--cidr={POD_CIDR}",
                f"--node-ip={NODE_IP}",
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{_free_port()}",
            ],
            logs,
            _clean_env(),
        )

        # The operator, with a resolver that answers nothing and an /etc/hosts of the fixture's own.
        resolv = tmp / "operator-resolv.conf"
        resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n", encoding="utf-8")
        cp.dashboards.hosts_file.write_text("127.0.0.1 localhost\n", encoding="utf-8")
        start_operator(cp, resolv, cp.dashboards.hosts_file)

        def nodes_ready() -> bool:
            ready = 0
            for node in cp.items("nodes"):
                conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
                ready += conditions.get("Ready") == "True"
            return ready == NODES

        cp.wait("kwok's nodes to be Ready", nodes_ready, timeout=60)
        cp.wait(
            "the default ServiceAccount (controller-manager)",
            lambda: cp.get("sa", "default", "-n", "default"),
        )

        # Nothing addressed to the pod or service ranges may leave: the blackhole refuses it at once.
        assert_unreachable(next(ipaddress.ip_network(SERVICE_CIDR).hosts()).exploded, 443)
        assert_unreachable(next(ipaddress.ip_network(POD_CIDR).hosts()).exploded, 8265)
        assert_unreachable(NODE_IP, 10250)
        yield cp
    finally:
        if cp is not None:
            cp.dashboards.close()
        for proc in reversed(list(processes.values())):
            proc.stop()
