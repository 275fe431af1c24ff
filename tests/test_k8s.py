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

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "rayscale"
JOBS = sorted((ROOT / "jobs").glob("*.yaml"))
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
CRDS = Path(os.environ.get("RAYSCALE_CRDS_DIR", ROOT.parent / "shared" / "crds"))
K8S_VERSION = "1.33.0"
CORE_GROUPS = ("v1", "apps/v1", "networking.k8s.io/v1", "rbac.authorization.k8s.io/v1", "batch/v1")
CRD_FILES = {
    ("ray.io/v1", "RayCluster"): "ray.io_rayclusters.yaml",
    ("ray.io/v1", "RayJob"): "ray.io_rayjobs.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_crd-podmonitors.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_crd-servicemonitors.yaml",
}


# -- helpers --------------------------------------------------------------------------------------


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


def render(helm: str, *values: Path, release: str = "rayscale", sets: tuple[str, ...] = ()) -> list[dict]:
    args = ["template", release, str(CHART), "--namespace", "bench"]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    out = run_helm(helm, *args)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


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
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    path = CRDS / CRD_FILES[(api_version, kind)]
    crd = yaml.safe_load(path.read_text())
    version = api_version.split("/")[1]
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]
    schema = copy.deepcopy(schema)
    # metadata is validated by the API server itself, not by the CRD schema.
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(_strict(schema))


def need_crds() -> None:
    if not all((CRDS / f).is_file() for f in CRD_FILES.values()):
        pytest.skip(f"CRDs not found in {CRDS} (set RAYSCALE_CRDS_DIR)")


def validate(doc: dict) -> None:
    key = (doc["apiVersion"], doc["kind"])
    if doc["apiVersion"] in CORE_GROUPS:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    elif key in CRD_FILES:
        errors = sorted(crd_validator(*key).iter_errors(doc), key=lambda e: list(e.absolute_path))
        assert not errors, f"{doc['kind']} {doc['metadata']['name']}: " + "; ".join(
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
    for doc in docs:
        validate(doc)


def test_at_least_four_scenarios() -> None:
    names = {p.name for p in SCENARIOS}
    assert len(names) >= 4
    assert {
        "monitoring-off-values.yaml",
        "monitoring-on-values.yaml",
        "pushgateway-values.yaml",
        "autoscaling-values.yaml",
        "pvc-values.yaml",
    } <= names


@pytest.mark.parametrize("job", JOBS, ids=lambda p: p.name)
def test_jobs_validate_against_the_rayjob_crd(job: Path) -> None:
    need_crds()
    docs = [d for d in yaml.safe_load_all(job.read_text()) if d]
    assert [d["kind"] for d in docs] == ["RayJob"]
    validate(docs[0])
    spec = docs[0]["spec"]
    assert spec["activeDeadlineSeconds"] > 0
    assert spec["entrypoint"].startswith("rayscale ")


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"worker": {"replicas": -1}}, "/worker/replicas"),
        ({"worker": {"cpu": 1.5}}, "/worker/cpu"),
        ({"head": {"cpu": 0}}, "/head/cpu"),
        ({"workers": {"replicas": 2}}, "workers"),
        ({"auth": {"mode": "password"}}, "/auth/mode"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"monitoring": {"interval": "soon"}}, "/monitoring/interval"),
        ({"head": {"memory": "lots"}}, "/head/memory"),
    ],
)
def test_values_schema_rejects_bad_values(helm: str, tmp_path: Path, values: dict, field: str) -> None:
    path = tmp_path / "bad-values.yaml"
    path.write_text(yaml.safe_dump(values))
    out = run_helm(helm, "template", "rayscale", str(CHART), "-f", str(path))
    assert out.returncode != 0
    assert field in out.stderr, out.stderr


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
    policy = one(default_docs, "NetworkPolicy")
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
    rules = one(docs, "NetworkPolicy")["spec"]["ingress"]
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
    assert (
        rule["spec"]["groups"]
        == yaml.safe_load((CHART / "files" / "rayscale-rules.yaml").read_text())["groups"]
    )


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
    policy = one(docs, "NetworkPolicy")
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


def test_scale_role_can_only_resize_this_raycluster(default_docs: list[dict]) -> None:
    role = one(default_docs, "Role")
    assert role["rules"] == [
        {
            "apiGroups": ["ray.io"],
            "resources": ["rayclusters"],
            "resourceNames": ["rayscale"],
            "verbs": ["get", "patch"],
        }
    ]
    binding = one(default_docs, "RoleBinding")
    account = one(default_docs, "ServiceAccount")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "bench"}]
    head = one(default_docs, "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]
    assert head["automountServiceAccountToken"] is True
    workers = one(default_docs, "RayCluster")["spec"]["workerGroupSpecs"][0]["template"]["spec"]
    assert "automountServiceAccountToken" not in workers  # the ServiceAccount's false applies


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
        spec = yaml.safe_load(job.read_text())["spec"]
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
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    image = f"{values['image']['repository']}:{chart['appVersion']}"
    named = [
        (job.name, line.strip())
        for job in JOBS
        for line in job.read_text().splitlines()
        if re.match(r"\s*(- )?image:", line) and "*" not in line
    ]
    assert named == [("ephemeral.yaml", "image: &image " + image)]
    # The alias resolves: every container of the self-contained job runs that image.
    spec = yaml.safe_load((ROOT / "jobs" / "ephemeral.yaml").read_text())["spec"]["rayClusterSpec"]
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


# -- Dockerfile -----------------------------------------------------------------------------------


def test_dockerfile_matches_the_pinned_ray_and_runs_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    ray_pin = next(d for d in pyproject["project"]["dependencies"] if d.startswith("ray["))
    version = ray_pin.split("==")[1]
    assert f"ARG RAY_VERSION={version}" in text
    assert re.search(r"^ARG PYTHON_TAG=py3\d+$", text, re.M)  # the Python constraints.txt was frozen with
    assert len(re.findall(r"^FROM rayproject/ray:\$\{RAY_VERSION\}-\$\{PYTHON_TAG\}-cpu", text, re.M)) == 2
    stages = re.findall(r"^FROM ", text, re.M)
    assert len(stages) == 2  # build stage for the wheel; the final image keeps no build tools
    final = text.split("\nFROM ")[-1]
    assert re.search(r"^USER ray$", final, re.M)
    assert "constraints.txt" in final  # pinned versions
    assert not re.search(r"apt-get install|build-essential|gcc", final)
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "results", ".git"} <= {line.strip("/") for line in ignore}
