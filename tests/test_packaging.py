"""What users install: the wheel holds every module of src/rayscale and works in a venv of its own, away
from the source tree; and the CLI starts light: Ray and the ML libraries are imported only by the work."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "rayscale"
HEAVY = ["ray", "ray.tune", "sklearn", "xgboost", "lightgbm", "matplotlib"]

# Imports every module of the rayscale it finds (__main__ only located: it runs the CLI), says where each is.
IMPORT_ALL = """
import importlib, importlib.util, json, pkgutil, rayscale
def onerror(name):
    raise
names = ["rayscale", *(m.name for m in pkgutil.walk_packages(rayscale.__path__, "rayscale.", onerror))]
for name in names:
    if name != "rayscale.__main__":
        importlib.import_module(name)
print(json.dumps({name: importlib.util.find_spec(name).origin for name in names}))
"""
# Runs an import and says which of HEAVY came with it, through which lines of rayscale.
IMPORTED_WITH = """
import json, sys, traceback
class Watch:
    chains = {}
    def find_spec(self, name, path=None, target=None):
        if name in HEAVY and name not in self.chains:
            stack = traceback.extract_stack()[:-1]
            lines = [f"{f.filename}:{f.lineno}: {f.line}" for f in stack if "/rayscale/" in f.filename]
            self.chains[name] = lines
sys.meta_path.insert(0, Watch())
IMPORT
print(json.dumps({name: Watch.chains.get(name) for name in HEAVY if name in sys.modules}))
"""


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def build_wheel(tmp_path: Path) -> Path:
    # Built from a copy: setuptools would leave build/ and an egg-info in the checkout, and reuse a stale
    # build/lib, whose leftover modules would end up in the wheel.
    source = tmp_path / "source"
    shutil.copytree(
        PACKAGE.parent, source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    for pattern in ["pyproject.toml", "README*", "LICEN[CS]E*", "MANIFEST.in", "setup.py", "setup.cfg"]:
        for path in ROOT.glob(pattern):
            shutil.copy2(path, source)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", "dist", source]
    built = run(*build, "--no-build-isolation", cwd=tmp_path)  # offline, with this venv's setuptools
    if built.returncode:  # too old, or missing: pip fetches pyproject.toml's build requirements
        built = run(*build, cwd=tmp_path)
        if built.returncode and "No matching distribution" in built.stdout + built.stderr:
            pytest.skip(
                "this venv lacks the build requirements, and no index serves them: " + built.stderr[-500:]
            )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("rayscale-*.whl")
    return wheel


@pytest.mark.slow
def test_the_wheel_holds_every_module_and_works_from_its_own_venv(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    tree = {f"rayscale/{p.relative_to(PACKAGE).as_posix()}" for p in PACKAGE.rglob("*.py")}
    folders = {str(Path(name).parent) for name in tree}
    assert len(tree) >= 40, tree
    assert {f"{folder}/__init__.py" for folder in folders} <= names
    packed = {name for name in names if name.startswith("rayscale/") and name.endswith(".py")}
    assert packed == tree, f"missing: {sorted(tree - packed)}, extra: {sorted(packed - tree)}"
    assert "rayscale/py.typed" in names

    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path).returncode == 0
    python = venv / "bin" / "python"
    installed = run(
        sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", wheel, cwd=tmp_path
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    site = Path(
        run(
            python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path
        ).stdout.strip()
    )
    # The dependencies: this venv's site-packages, after the new venv's own (written after the install, so
    # pip saw an empty venv). A path in a .pth is no site dir: the .pth files there, the editable install's
    # (src/ on the path) among them, are not read.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    probe = run(python, "-c", IMPORT_ALL, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr[-3000:]
    origins = {name: Path(origin) for name, origin in json.loads(probe.stdout.splitlines()[-1]).items()}
    assert origins["rayscale"] == site / "rayscale" / "__init__.py"
    assert sorted(origins) == sorted(
        ".".join(Path(name).with_suffix("").parts).removesuffix(".__init__") for name in tree
    )
    assert not {name: origin for name, origin in origins.items() if not origin.is_relative_to(site)}
    for command in [[venv / "bin" / "rayscale"], [python, "-m", "rayscale"]]:
        version = run(*command, "--version", cwd=tmp_path)
        assert version.stdout.strip() == f"rayscale {wheel.name.split('-')[1]}", version.stderr[-2000:]


def imported_with(statement: str, tmp_path: Path) -> dict[str, list[str]]:
    script = IMPORTED_WITH.replace("HEAVY", repr(HEAVY)).replace("IMPORT", statement)
    probe = run(sys.executable, "-c", script, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr[-3000:]
    found: dict[str, list[str]] = json.loads(probe.stdout.splitlines()[-1])
    return found


def test_the_cli_starts_without_ray_or_the_ml_libraries(tmp_path: Path) -> None:
    heavy = imported_with("import rayscale.cli", tmp_path)
    assert not heavy, "\n".join(f"{name} via:\n  " + "\n  ".join(chain) for name, chain in heavy.items())


def test_the_probe_names_the_line_that_imports_a_heavy_library(tmp_path: Path) -> None:
    (tmp_path / "rayscale").mkdir()
    (tmp_path / "rayscale" / "heavy.py").write_text("import sklearn\n", encoding="utf-8")
    chain = imported_with("sys.path.insert(0, 'rayscale'); import heavy", tmp_path)["sklearn"]
    assert chain[-1].endswith("rayscale/heavy.py:1: import sklearn"), chain
