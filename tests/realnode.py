"""A one-node Kubernetes cluster whose pods really run, for the ``node`` tests and ``make cluster``.

The control plane of tests/controlplane.py (etcd, kube-apiserver, controller-manager, scheduler,
the KubeRay operator), with a real node instead of kwok's: kubelet and kube-proxy (iptables mode)
from k8s.io/kubernetes, containerd with Debian's runc and CNI plugins, CoreDNS for
``cluster.local``, and the images tools/k8s/images/build.sh built (nothing is ever pulled: every
registry host is mirrored to 127.0.0.1). All built by tools/k8s/install.sh (``make controlplane``).

Network: a bridge (``rsnode0``, 198.19.200.1/24) holds the pods; Services are 198.19.240.0/20.
Both lie in 198.19.0.0/16, whose blackhole route stays: pods get a route for 198.19.0.0/16 via the
bridge and no default route, and a FORWARD rule drops whatever comes in on the bridge for another
interface. The API server, kubelet and CoreDNS listen on the bridge address, every other listener
on loopback. Pods reach the API server through the `kubernetes` Service, each other through
kube-proxy (which masquerades Service traffic: the bridge hairpins). The KubeRay operator runs on
the host in a mount namespace whose /etc/resolv.conf names CoreDNS.

Teardown (on every exit path) leaves nothing: the pods are deleted and their sandboxes stopped by
the kubelet through containerd (CNI teardown included), what is left is killed through containerd
(``ctr``), then the processes the fixture started (by process group), the shims (by their binary
and their containerd's address), the mounts under the node's folders, the ``kubepods`` cgroups, the
iptables chains (``kube-proxy --cleanup`` and the fixture's own), the bridge and the sysctls the
kubelet changed.

``python tests/realnode.py up|down`` (``make cluster`` / ``make cluster-down``) runs the same
cluster outside pytest; its state lives in .tools/cluster/.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import controlplane  # tests/controlplane.py
from controlplane import BIN, CLUSTER_DOMAIN, NETWORK, ControlPlane, Leaf, Process

ROOT = controlplane.ROOT
NODE_NAME = "rayscale-node"
BRIDGE = "rsnode0"
POD_NET = ipaddress.ip_network("198.19.200.0/24")
NODE_IP = "198.19.200.1"  # the bridge's address: the node's InternalIP, the API server's, CoreDNS'
CHAIN = "RAYSCALE-NODE"  # the fixture's own FORWARD rules
STATE = ROOT / ".tools" / "cluster"  # make cluster's folder
BINARIES = (
    *controlplane.BINARIES[:4],
    "kuberay-operator",
    "kubelet",
    "kube-proxy",
    "kubectl",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "coredns",
)
RUNC = "/usr/sbin/runc"
CNI_BIN = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback")
# Every registry host an image name could point at; each is mirrored to a port nothing listens on.
REGISTRIES = (
    "_default",
    "docker.io",
    "registry-1.docker.io",
    "registry.k8s.io",
    "quay.io",
    "ghcr.io",
    "gcr.io",
)
# Kernel settings the kubelet sets at start (kubelet's setupKernelTunables); put back at teardown.
KUBELET_SYSCTLS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops")
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Where containerd's shims and runc keep state whatever containerd's own folders are.
RUN_DIRS = (Path("/run/containerd"),)


class Unavailable(Exception):
    """Something the node needs is missing; the message says what."""


def _run(*argv: str, check: bool = True, timeout: float = 120, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result.stdout


def missing() -> list[str]:
    """What this machine lacks for the node, as short phrases; empty when it can run one."""
    gaps = []
    if os.geteuid() != 0:
        gaps.append("root (the node manages a bridge, iptables, cgroups and mounts)")
    gaps += [f"{BIN / b} (run `make controlplane`)" for b in BINARIES if not os.access(BIN / b, os.X_OK)]
    if not (BIN / "images.txt").is_file():
        gaps.append(f"{BIN / 'images.txt'}: the node's images (run `make controlplane`)")
    if not os.access(RUNC, os.X_OK):
        gaps.append(f"{RUNC} (apt-get install runc)")
    gaps += [
        f"{CNI_BIN / p} (apt-get install containernetworking-plugins)"
        for p in CNI_PLUGINS
        if not (CNI_BIN / p).exists()
    ]
    for tool in ("iptables", "ip", "unshare", "mount", "umount"):
        if shutil.which(tool) is None:
            gaps.append(f"the `{tool}` command")
    for controller in ("cpu", "cpuacct", "cpuset", "memory", "pids"):
        if not (CGROUP_ROOT / controller).is_dir() and not (CGROUP_ROOT / "cgroup.controllers").exists():
            gaps.append(f"the cgroup controller {controller}")
    if not controlplane.CRDS.is_dir() and not (BIN / "prometheus-operator.crds").is_file():
        gaps.append("the monitoring CRDs")
    return gaps


# -- processes, whether this process started them (pytest) or an earlier one did (make cluster) --------


def _record(tmp: Path, processes: dict[str, Process]) -> None:
    """The process groups started so far, for a teardown by another process (make cluster-down)."""
    _write(tmp / "processes.json", json.dumps({n: p.popen.pid for n, p in processes.items()}))


def _recorded(tmp: Path) -> dict[str, int]:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((tmp / "processes.json").read_text(encoding="utf-8"))
    return {}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_group(pid: int, grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, the process group ``pid`` leads (every process here starts its own)."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not _alive(pid):
                return
            time.sleep(0.1)


# -- the node ------------------------------------------------------------------------------------------


@dataclass
class Node:
    """The real node's folders and files; every path the teardown needs is derived from ``root``."""

    root: Path

    @property
    def containerd_sock(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    def ctr(self, *args: str, check: bool = True, timeout: float = 600) -> str:
        return _run(
            str(BIN / "ctr"),
            "--address",
            str(self.containerd_sock),
            "-n",
            "k8s.io",
            *args,
            check=check,
            timeout=timeout,
        )


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _images() -> list[tuple[str, Path]]:
    lines = (BIN / "images.txt").read_text(encoding="utf-8").split("\n")
    return [(ref, Path(path)) for ref, path in (line.split(" ", 1) for line in lines if line.strip())]


def setup_network(node: Node) -> None:
    """The bridge with the node's address, forwarding for packets that come in on it (only), and the
    fixture's FORWARD chain: bridge to bridge allowed, bridge to anywhere else dropped."""
    controlplane.ensure_blackhole()
    _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _run("ip", "addr", "add", f"{NODE_IP}/{POD_NET.prefixlen}", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")
    _write(Path(f"/proc/sys/net/ipv4/conf/{BRIDGE}/forwarding"), "1")
    _run("iptables", "-w", "-N", CHAIN)
    _run("iptables", "-w", "-A", CHAIN, "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT")
    _run("iptables", "-w", "-A", CHAIN, "-i", BRIDGE, "-j", "DROP")
    _run("iptables", "-w", "-A", CHAIN, "-o", BRIDGE, "-j", "DROP")
    _run("iptables", "-w", "-I", "FORWARD", "1", "-j", CHAIN)


def teardown_network() -> None:
    _run("iptables", "-w", "-D", "FORWARD", "-j", CHAIN, check=False)
    _run("iptables", "-w", "-F", CHAIN, check=False)
    _run("iptables", "-w", "-X", CHAIN, check=False)
    _run("ip", "link", "del", BRIDGE, check=False)


def _kube_chains() -> dict[str, list[str]]:
    """The KUBE-* chains in iptables and ip6tables, by "<command> <table>"."""
    chains: dict[str, list[str]] = {}
    for command in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            dump = _run(f"{command}-save", "-t", table, check=False)
            names = [line[1:].split()[0] for line in dump.splitlines() if line.startswith(":KUBE-")]
            chains[f"{command} {table}"] = names
    return chains


def remove_kube_chains(before: dict[str, list[str]]) -> None:
    """Remove the KUBE-* chains the kubelet and kube-proxy made (not those in ``before``), and every
    rule that jumps to one."""
    for where, names in _kube_chains().items():
        command, table = where.split()
        ours = set(names) - set(before.get(where, []))
        if not ours:
            continue
        for line in _run(f"{command}-save", "-t", table, check=False).splitlines():
            parts = line.split()
            jumps = parts[:1] == ["-A"] and "-j" in parts and parts[parts.index("-j") + 1] in ours
            if jumps and parts[1] not in ours:  # a rule in a chain that stays (INPUT, OUTPUT, ...)
                _run(command, "-w", "-t", table, "-D", *parts[1:], check=False)
        for name in ours:
            _run(command, "-w", "-t", table, "-F", name, check=False)
        for name in ours:
            _run(command, "-w", "-t", table, "-X", name, check=False)


def _sysctls() -> dict[str, str]:
    return {k: Path(f"/proc/sys/{k}").read_text(encoding="utf-8").strip() for k in KUBELET_SYSCTLS}


def _containerd_config(node: Node, pause: str) -> Path:
    certs = node.root / "containerd" / "certs.d"
    for host in REGISTRIES:
        # A pull must fail here, never reach out: every registry's only host is a closed local port.
        _write(
            certs / host / "hosts.toml",
            'server = "https://127.0.0.1:1"\n\n[host."https://127.0.0.1:1"]\n'
            '  capabilities = ["pull", "resolve"]\n  skip_verify = false\n',
        )
    cni = {
        "cniVersion": "1.0.0",
        "name": "rayscale-node",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(POD_NET), "rangeStart": "198.19.200.10", "gateway": NODE_IP}]],
                    # 198.19.0.0/16 via the bridge, and no default route: nothing else is reachable.
                    "routes": [{"dst": str(NETWORK)}],
                    "dataDir": str(node.root / "cni-ipam"),
                },
            }
        ],
    }
    _write(node.root / "cni" / "10-rayscale.conflist", json.dumps(cni, indent=2))
    c = node.root / "containerd"
    cri_runtime = "plugins.'io.containerd.cri.v1.runtime'"
    config = f"""version = 3
root = "{c / "root"}"
state = "{c / "state"}"

[grpc]
  address = "{node.containerd_sock}"
[ttrpc]
  address = "{node.containerd_sock}.ttrpc"
[debug]
  level = "info"
[metrics]
  address = ""

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  # Images are imported, never pulled; a pull would fail (certs.d), and GC is off in the kubelet.
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{pause}"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "{certs}"

[{cri_runtime}]
  # root here lacks CAP_SYS_RESOURCE: a negative oom_score_adj cannot be set (runc would fail).
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true
  enable_cdi = false
  [{cri_runtime}.containerd]
    default_runtime_name = "runc"
    [{cri_runtime}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri_runtime}.containerd.runtimes.runc.options]
        BinaryName = "{RUNC}"
        SystemdCgroup = false
  [{cri_runtime}.cni]
    bin_dirs = ["{CNI_BIN}"]
    conf_dir = "{node.root / "cni"}"
    max_conf_num = 1

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins.'io.containerd.internal.v1.opt']
  path = "{c / "opt"}"

[plugins.'io.containerd.nri.v1.nri']
  disable = true
"""
    return _write(c / "config.toml", config)


def _kubelet_config(node: Node, pki: controlplane.Pki, healthz_port: int) -> Path:
    cert, key = pki.leaves["kubelet-serving"]
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(cert),
        "tlsPrivateKeyFile": str(key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki.ca)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{node.containerd_sock}",
        # kubelet 1.36 refuses cgroup v1 unless told; PID 1 is not systemd here.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "clusterDNS": [NODE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(_write(node.root / "pod-resolv.conf", "")),
        # An image imported here cannot be pulled again: never collect one.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "podLogsDir": str(node.root / "pod-logs"),
        "serializeImagePulls": False,
        "registerNode": True,
        "maxPods": 30,
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "nodeStatusUpdateFrequency": "5s",
        "shutdownGracePeriod": "0s",
        "localStorageCapacityIsolation": True,
    }
    return _write(node.root / "kubelet-config.yaml", yaml.safe_dump(config))


def _corefile(node: Node, kubeconfig: Path, health_port: int, ready_port: int) -> Path:
    return _write(
        node.root / "Corefile",
        f""". {{
    bind {NODE_IP}
    errors
    health 127.0.0.1:{health_port}
    ready 127.0.0.1:{ready_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} controlplane
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
}}
""",
    )


def _persistent_volume(node: Node) -> dict[str, Any]:
    """A hostPath PersistentVolume owned by the Ray pods' user, for ``results.persistence.enabled``."""
    path = node.volumes / "results"
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, 1000, 100)
    path.chmod(0o2775)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "rayscale-node-results", "labels": {"rayscale.io/node": "local"}},
        "spec": {
            "capacity": {"storage": "20Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": str(path), "type": "Directory"},
        },
    }


@dataclass
class RealNode:
    """A running one-node cluster: the control plane's handle plus the node's own."""

    cp: ControlPlane
    node: Node
    timings: dict[str, float]

    def pod_ip(self, namespace: str, name: str) -> str:
        return self.cp.get("pod", name, "-n", namespace)["status"]["podIP"]

    def reclaim_volumes(self) -> list[str]:
        """Make the node's Released PersistentVolumes Available again (an uninstalled release's
        claim is gone; Retain keeps the data and the old claimRef): what an admin does by hand,
        `kubectl patch pv NAME -p '{"spec":{"claimRef":null}}'`. Returns the volumes reclaimed."""
        reclaimed = []
        for pv in self.cp.items("pv", "-l", "rayscale.io/node=local"):
            if pv.get("status", {}).get("phase") == "Released":
                name = pv["metadata"]["name"]
                self.cp.kubectl("patch", "pv", name, "--type=merge", "-p", '{"spec":{"claimRef":null}}')
                reclaimed.append(name)
        return reclaimed

    def exec(self, namespace: str, pod: str, *argv: str, check: bool = True, timeout: float = 120):
        return self.cp.kubectl("exec", "-n", namespace, pod, "--", *argv, check=check, timeout=timeout)


def build_images() -> None:
    """tools/k8s/images/build.sh: the images of the source tree as it is now (an unchanged input is
    never rebuilt: seconds), so that the pods run the code under test, not an earlier build's."""
    if os.geteuid() != 0 or shutil.which("buildah") is None or not (BIN / "kubelet").exists():
        return  # missing() names what is needed
    result = subprocess.run(
        ["bash", str(ROOT / "tools" / "k8s" / "images" / "build.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith(("error:", "Error:"))]
        raise RuntimeError(f"building the node's images failed: {(errors or [result.stderr[-500:]])[-1]}")


def start(tmp: Path, *, keep: bool = False) -> Iterator[RealNode]:
    """Start the one-node cluster in ``tmp``; yield it; tear everything down (unless ``keep``: the
    processes then outlive this one, and ``teardown(tmp)`` ends them, as make cluster-down does)."""
    build_images()
    gaps = missing()
    if gaps:
        raise Unavailable("the real node needs " + "; ".join(gaps))
    controlplane.check_prerequisites(BINARIES)
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        raise Unavailable(f"the bridge {BRIDGE} exists: a real node runs here (make cluster-down stops one)")
    tmp.mkdir(parents=True, exist_ok=True)
    node = Node(tmp)
    logs = tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    processes: dict[str, Process] = {}
    # What the node changes on the host, as it was: put back by teardown().
    _write(tmp / "sysctls.json", json.dumps(_sysctls()))
    _write(tmp / "iptables.json", json.dumps(_kube_chains()))
    _write(tmp / "run-dirs.json", json.dumps([str(d) for d in RUN_DIRS if d.exists()]))
    started = time.monotonic()
    up = False
    try:
        setup_network(node)
        node_dns = (NODE_NAME,)
        pki = controlplane.make_pki(
            tmp / "pki",
            server_ips=(NODE_IP,),
            leaves={
                "kubelet-client": Leaf(f"system:node:{NODE_NAME}", "system:nodes"),
                "kubelet-serving": Leaf(
                    f"system:node:{NODE_NAME}", None, server=True, ips=(NODE_IP,), dns=node_dns
                ),
                "apiserver-kubelet-client": Leaf("kube-apiserver-kubelet-client", "system:masters"),
                "kube-proxy": Leaf("system:kube-proxy", None),
            },
        )
        kc_cert, kc_key = pki.leaves["apiserver-kubelet-client"]
        cp = controlplane.start_control_plane(
            tmp,
            processes,
            pki,
            address=NODE_IP,
            apiserver_args=(
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                f"--kubelet-client-certificate={kc_cert}",
                f"--kubelet-client-key={kc_key}",
                f"--kubelet-certificate-authority={pki.ca}",
                "--kubelet-preferred-address-types=InternalIP",
                "--allow-privileged=false",
            ),
            kubectl_bin=str(BIN / "kubectl"),
        )
        timings["control plane"] = time.monotonic() - started
        _record(tmp, processes)

        # containerd, and the images imported under the names the chart and jobs use.
        pause = (BIN / "pause-image").read_text(encoding="utf-8").strip()
        config = _containerd_config(node, pause)
        env = controlplane._clean_env(
            PATH=f"{BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        )
        processes["containerd"] = containerd = controlplane._start(
            "containerd", [str(BIN / "containerd"), "--config", str(config)], logs, env
        )
        controlplane._wait_up(containerd, "its socket", node.containerd_sock.exists, 60)
        _record(tmp, processes)
        t = time.monotonic()
        for _name, archive in _images():  # each archive names its image (docker-archive RepoTags)
            node.ctr("images", "import", str(archive))  # unpacked for the CRI's snapshotter
        timings["images imported"] = time.monotonic() - t

        # CoreDNS for cluster.local (and the reverse zones), on the bridge; nothing else.
        corefile = _corefile(
            node, cp.kubeconfig, (dns_health := controlplane._free_port()), controlplane._free_port()
        )
        processes["coredns"] = coredns = controlplane._start(
            "coredns",
            [str(BIN / "coredns"), "-conf", str(corefile), "-dns.port", "53"],
            logs,
            controlplane._clean_env(),
        )
        controlplane._wait_up(
            coredns, "health", lambda: controlplane._ready(f"http://127.0.0.1:{dns_health}/health"), 60
        )

        # kubelet (its own client certificate: the Node authorizer), then kube-proxy.
        kubelet_kubeconfig = controlplane.write_kubeconfig(
            tmp / "kubelet.kubeconfig", cp.server, pki, pki.leaves["kubelet-client"]
        )
        kubelet_health = controlplane._free_port()
        processes["kubelet"] = kubelet = controlplane._start(
            "kubelet",
            [
                str(BIN / "kubelet"),
                f"--config={_kubelet_config(node, pki, kubelet_health)}",
                f"--kubeconfig={kubelet_kubeconfig}",
                f"--root-dir={node.kubelet_dir}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                f"--cert-dir={tmp / 'kubelet-certs'}",
                "--v=1",
            ],
            logs,
            env,
        )
        _record(tmp, processes)
        proxy_kubeconfig = controlplane.write_kubeconfig(
            tmp / "kube-proxy.kubeconfig", cp.server, pki, pki.leaves["kube-proxy"]
        )
        cp.kubectl(
            "create",
            "clusterrolebinding",
            "rayscale-node-proxier",
            "--clusterrole=system:node-proxier",
            "--user=system:kube-proxy",
        )
        processes["kube-proxy"] = proxy = controlplane._start(
            "kube-proxy",
            [
                str(BIN / "kube-proxy"),
                f"--kubeconfig={proxy_kubeconfig}",
                "--proxy-mode=iptables",
                f"--hostname-override={NODE_NAME}",
                f"--cluster-cidr={POD_NET}",
                # The pods share one bridge: a Service's reply must come back through the host.
                "--masquerade-all=true",
                f"--nodeport-addresses={NODE_IP}/32",
                f"--healthz-bind-address=127.0.0.1:{(proxy_health := controlplane._free_port())}",
                f"--metrics-bind-address=127.0.0.1:{controlplane._free_port()}",
                "--conntrack-max-per-core=0",
                "--conntrack-tcp-timeout-established=0",
                "--conntrack-tcp-timeout-close-wait=0",
                "--v=1",
            ],
            logs,
            env,
        )
        _record(tmp, processes)

        def node_ready() -> bool:
            found = cp.get("node", NODE_NAME)
            conditions = {c["type"]: c["status"] for c in found.get("status", {}).get("conditions", [])}
            return conditions.get("Ready") == "True"

        cp.wait("the node to be Ready", node_ready, timeout=120)
        controlplane._wait_up(
            proxy, "healthz", lambda: controlplane._ready(f"http://127.0.0.1:{proxy_health}/healthz"), 60
        )
        controlplane._wait_up(
            kubelet, "healthz", lambda: controlplane._ready(f"http://127.0.0.1:{kubelet_health}/healthz"), 30
        )
        timings["node ready"] = time.monotonic() - started

        # The operator resolves cluster names through CoreDNS and reaches pods over the bridge.
        resolv = _write(tmp / "operator-resolv.conf", f"nameserver {NODE_IP}\noptions timeout:1 attempts:2\n")
        hosts = _write(tmp / "operator-hosts", "127.0.0.1 localhost\n")
        controlplane.start_operator(cp, resolv, hosts)
        _record(tmp, processes)
        cp.kubectl("apply", "-f", "-", input=json.dumps(_persistent_volume(node)))
        cp.wait(
            "the default ServiceAccount (controller-manager)",
            lambda: cp.get("sa", "default", "-n", "default"),
        )
        timings["cluster ready"] = time.monotonic() - started
        up = True
        yield RealNode(cp, node, timings)
    finally:
        # A half-started node is always taken down; a started one unless it is to be kept.
        if not up or not keep:
            teardown(tmp, {n: p.popen for n, p in processes.items()})


def teardown(tmp: Path, popens: dict[str, subprocess.Popen[bytes]] | None = None) -> list[str]:
    """Stop everything a node in ``tmp`` started; return what had to be forced (for the log)."""
    node = Node(tmp)
    forced: list[str] = []
    pids = _recorded(tmp)
    if popens:
        pids.update({n: p.pid for n, p in popens.items()})
    live = {n: pid for n, pid in pids.items() if _alive(pid)}
    kubeconfig = tmp / "kubeconfig"

    # 1. No controller may make new pods; then the kubelet stops every pod through containerd (CRI:
    #    the sandbox's CNI teardown runs), as a node drain would.
    for name in ("kuberay-operator", "kube-controller-manager", "kube-scheduler"):
        if name in live:
            stop_group(live.pop(name))
    if {"kube-apiserver", "kubelet", "containerd"} <= live.keys():
        env = controlplane._clean_env(KUBECONFIG=str(kubeconfig))
        subprocess.run(
            [
                str(BIN / "kubectl"),
                "delete",
                "pods",
                "--all",
                "--all-namespaces",
                "--grace-period=5",
                "--wait=false",
            ],
            capture_output=True,
            env=env,
            timeout=60,
            check=False,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _tasks(node):
            time.sleep(1)
    # 2. Whatever is still running: killed and removed through containerd itself.
    if "containerd" in live:
        for task in _tasks(node):
            forced.append(f"task {task}")
            node.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _tasks(node, running_only=True):
            time.sleep(0.5)
        for task in _tasks(node):
            node.ctr("tasks", "delete", "--force", task, check=False)
        containers = node.ctr("containers", "ls", "-q", check=False).split()
        if containers:
            node.ctr("containers", "delete", *containers, check=False)
    # 3. The processes, by process group, the cluster's servers last.
    order = [
        "kube-proxy",
        "kubelet",
        "coredns",
        "containerd",
        "kube-scheduler",
        "kube-controller-manager",
        "kube-apiserver",
        "etcd",
    ]
    for name in sorted(live, key=lambda n: order.index(n) if n in order else -1):
        stop_group(live[name])
    # 4. The shims setsid away from containerd's group: found by their binary and their containerd.
    address = str(node.containerd_sock)
    for pid in _pids_of(BIN / "containerd-shim-runc-v2", address):
        forced.append(f"shim {pid}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # 5. iptables: kube-proxy's chains, then the fixture's; mounts; cgroups; the bridge; sysctls.
    if (BIN / "kube-proxy").exists():
        _run(str(BIN / "kube-proxy"), "--cleanup", "--proxy-mode=iptables", check=False)
    with contextlib.suppress(OSError, ValueError):
        remove_kube_chains(json.loads((tmp / "iptables.json").read_text(encoding="utf-8")))
    teardown_network()
    # The kubelet bind-mounts its root folder onto itself (shared, for mount propagation) and
    # leaves that mount when it stops: expected, not something the orderly path missed.
    forced += [m for m in _unmount_under(tmp) if m != f"mount {node.kubelet_dir.resolve()}"]
    forced += _remove_cgroups("kubepods")
    with contextlib.suppress(OSError, ValueError):
        for key, value in json.loads((tmp / "sysctls.json").read_text(encoding="utf-8")).items():
            _write(Path(f"/proc/sys/{key}"), value)
    # containerd's fixed runtime folders (the shims' sockets, runc's state), where it made them.
    with contextlib.suppress(OSError, ValueError):
        existed = set(json.loads((tmp / "run-dirs.json").read_text(encoding="utf-8")))
        for folder in RUN_DIRS:
            if str(folder) not in existed and folder.is_dir() and not _rmdir_tree(folder):
                forced.append(f"{folder} not empty")
    if popens:
        for popen in popens.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(1)
    return forced


def _tasks(node: Node, running_only: bool = False) -> list[str]:
    if not node.containerd_sock.exists():
        return []
    out = node.ctr("tasks", "ls", check=False, timeout=30)
    rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
    return [row[0] for row in rows if not running_only or (len(row) > 2 and row[2] == "RUNNING")]


def _pids_of(binary: Path, argument: str) -> list[int]:
    """Processes running ``binary`` with ``argument`` on their command line."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            exe = os.readlink(proc / "exe")
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if exe == str(binary) and argument.encode() in cmdline:
            found.append(int(proc.name))
    return found


def _unmount_under(folder: Path) -> list[str]:
    """Unmount everything mounted at or under ``folder``, deepest first."""
    prefix = str(folder.resolve())
    left = []
    for _ in range(5):
        with open("/proc/self/mountinfo", encoding="utf-8") as info:
            points = [line.split()[4] for line in info]
        mine = sorted({p for p in points if p == prefix or p.startswith(prefix + "/")}, key=len, reverse=True)
        if not mine:
            break
        for point in mine:
            left.append(f"mount {point}")
            subprocess.run(["umount", point], capture_output=True, check=False)
        for point in mine:
            if os.path.ismount(point):
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    return left


def _remove_cgroups(name: str) -> list[str]:
    """rmdir every cgroup ``name`` (and below) in every v1 hierarchy, deepest first."""
    removed = []
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / name
        if top.is_dir() and not _rmdir_tree(top):
            removed.append(f"cgroup {top} (busy)")
    return removed


def _rmdir_tree(top: Path) -> bool:
    """rmdir ``top`` and the folders below it, deepest first (a cgroup's files go with its folder;
    anything else keeps a folder); True when ``top`` is gone."""
    for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            path.rmdir()
    with contextlib.suppress(OSError):
        top.rmdir()
    return not top.exists()


def leftovers(tmp: Path) -> list[str]:
    """What a node in ``tmp`` would have left behind: processes, mounts, bridge, chains, cgroups."""
    left = []
    node = Node(tmp)
    for name, pid in _recorded(tmp).items():
        if _alive(pid):
            left.append(f"process {name} ({pid})")
    left += [f"shim {pid}" for pid in _pids_of(BIN / "containerd-shim-runc-v2", str(node.containerd_sock))]
    prefix = str(tmp.resolve())
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        left += [f"mount {p}" for p in (line.split()[4] for line in info) if p.startswith(prefix)]
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        left.append(f"bridge {BRIDGE}")
    rules = _run("iptables-save", check=False)
    left += [f"iptables {line}" for line in rules.splitlines() if CHAIN in line]
    left += [f"cgroup {h / 'kubepods'}" for h in CGROUP_ROOT.iterdir() if (h / "kubepods").exists()]
    netns = Path("/var/run/netns")
    left += [f"netns {p}" for p in netns.glob("cni-*")] if netns.is_dir() else []
    with contextlib.suppress(OSError, ValueError):
        before = json.loads((tmp / "iptables.json").read_text(encoding="utf-8"))
        for where, names in _kube_chains().items():
            left += [f"{where} chain {n}" for n in set(names) - set(before.get(where, []))]
        existed = set(json.loads((tmp / "run-dirs.json").read_text(encoding="utf-8")))
        left += [f"folder {d}" for d in RUN_DIRS if d.exists() and str(d) not in existed]
    return left


# -- make cluster / make cluster-down -------------------------------------------------------------------


def _up() -> int:
    if any(_alive(pid) for pid in _recorded(STATE).values()):
        print(f"error: a cluster from {STATE} is running: `make cluster-down` first", file=sys.stderr)
        return 2
    shutil.rmtree(STATE, ignore_errors=True)
    cluster = start(STATE, keep=True)
    try:
        real = next(cluster)
    except Unavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # start() took the half-started cluster down before this
        reason = str(exc).strip().splitlines()
        print(
            f"error: the cluster did not start: {reason[0] if reason else type(exc).__name__} "
            f"(logs: {STATE / 'logs'})",
            file=sys.stderr,
        )
        return 2
    for part, seconds in real.timings.items():
        print(f"  {part}: {seconds:.1f} s")
    # kubectl (within a minor version of the API server: the one built with it) and helm find the
    # cluster through this kubeconfig.
    print(f"kubectl for this cluster: {BIN / 'kubectl'}")
    print(f"helm: {real.cp.helm_bin}")
    print(f"export KUBECONFIG={real.cp.kubeconfig}")
    return 0


def _down(state: Path) -> int:
    if not (state / "processes.json").exists():
        print(f"no cluster state in {state}: nothing to stop")
        return 0
    forced = teardown(state)
    left = leftovers(state)
    if left:
        print("error: left behind: " + "; ".join(left), file=sys.stderr)
        return 1
    # What the orderly path (pods deleted, the kubelet stopping them) had left for the forced one.
    print("cluster stopped" + (f"; forced: {', '.join(forced)}" if forced else ""))
    if state == STATE:
        shutil.rmtree(STATE, ignore_errors=True)
    return 0


if __name__ == "__main__":
    # down [FOLDER]: also a node a killed pytest left (its folder, e.g. /tmp/pytest-of-root/pytest-N/node0).
    command, *rest = sys.argv[1:] or [""]
    if command not in ("up", "down") or (rest and command == "up") or len(rest) > 1:
        print("error: usage: python tests/realnode.py up | down [FOLDER]", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(_up() if command == "up" else _down(Path(rest[0]) if rest else STATE))
