"""Build the Grafana dashboard JSON from queries.yaml (the PromQL kept as data).

    python deploy/grafana/build.py          # write rayscale-scaling.json
    python deploy/grafana/build.py --check  # exit 1 if the committed JSON is out of date

The Helm chart ships the generated JSON through .Files.Get, so there is one source.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
QUERIES = HERE / "queries.yaml"
# The chart ships the dashboard with .Files.Get, which reads only inside the chart: it lives there.
DASHBOARD = HERE.parent / "helm" / "rayscale" / "files" / "rayscale-scaling.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_W, PANEL_W, PANEL_H = 24, 12, 8


def _variable(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": spec["name"],
        "label": spec["name"],
        "type": "query",
        "datasource": DATASOURCE,
        "definition": spec["query"],
        "query": {"query": spec["query"], "refId": f"var_{spec['name']}"},
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def _panel(index: int, spec: dict[str, Any]) -> dict[str, Any]:
    instant = spec["type"] != "timeseries"
    panel: dict[str, Any] = {
        "id": index + 1,
        "title": spec["title"],
        "type": spec["type"],
        "datasource": DATASOURCE,
        "gridPos": {"h": PANEL_H, "w": PANEL_W, "x": (index % 2) * PANEL_W, "y": (index // 2) * PANEL_H},
        "fieldConfig": {"defaults": {"unit": spec.get("unit", "none")}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": target["expr"],
                "legendFormat": target.get("legend", ""),
                "instant": instant,
                "range": not instant,
                "format": "table" if instant else "time_series",
            }
            for i, target in enumerate(spec["targets"])
        ],
    }
    if instant:  # one bar per series: join the instant results and label the bars by series
        panel["transformations"] = [{"id": "merge", "options": {}}]
        panel["options"].update({"xTickLabelRotation": -30, "showValue": "auto", "orientation": "auto"})
    if "description" in spec:
        panel["description"] = spec["description"]
    return panel


def build(queries: dict[str, Any]) -> dict[str, Any]:
    datasource = {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
    }
    return {
        "title": queries["title"],
        "uid": queries["uid"],
        "tags": ["rayscale", "ray", "scaling"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-24h", "to": "now"},
        "refresh": "",
        "templating": {"list": [datasource, *(_variable(v) for v in queries["variables"])]},
        "panels": [_panel(i, p) for i, p in enumerate(queries["panels"])],
        "annotations": {"list": []},
    }


def render() -> str:
    return json.dumps(build(yaml.safe_load(QUERIES.read_text())), indent=2) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not DASHBOARD.is_file() or DASHBOARD.read_text() != text:
            print(f"{DASHBOARD.name} is out of date: run python deploy/grafana/build.py", file=sys.stderr)
            return 1
        return 0
    DASHBOARD.write_text(text)
    print(f"written {DASHBOARD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
