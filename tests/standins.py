"""Stand-ins for what a test cannot have here: the KubeRay operator behind the Kubernetes API.

:class:`RayletOperator` answers the two CustomObjectsApi calls rayscale's KubeRay scaler makes;
:func:`serve_kubernetes_api` puts it behind a real HTTP endpoint on loopback, with a kubeconfig,
so that a ``rayscale`` *process* reaches it through the real kubernetes client.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml


class RayletOperator:
    """Stands in for the KubeRay operator behind the two CustomObjectsApi calls rayscale makes: a
    patch of the worker replicas starts (or stops) real worker raylets, which register on their own
    time, so the ramp rayscale measures is a real one."""

    def __init__(self, cluster: Any) -> None:
        self.ray = cluster
        self.workers: list[Any] = []
        self.patches: list[tuple[float, list[dict]]] = []  # (wall time, the worker groups patched in)
        self.body = {
            "spec": {
                "workerGroupSpecs": [
                    {"groupName": "workers", "replicas": 0, "minReplicas": 0, "maxReplicas": 4}
                ]
            }
        }

    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> dict:
        assert (group, plural, namespace, name) == ("ray.io", "rayclusters", "bench", "rayscale")
        return copy.deepcopy(self.body)

    def patch_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: dict
    ) -> dict:
        self.body["spec"]["workerGroupSpecs"] = body["spec"]["workerGroupSpecs"]
        self.patches.append((time.time(), copy.deepcopy(body["spec"]["workerGroupSpecs"])))
        if threading.current_thread() is threading.main_thread():
            self.reconcile()
        return self.body

    def reconcile(self) -> None:
        """Start or stop worker raylets to match the patched replicas. Ray starts nodes from the
        main thread only, so a patch served over HTTP waits for the test to call this."""
        wanted = self.body["spec"]["workerGroupSpecs"][0]["replicas"]
        while len(self.workers) < wanted:
            self.workers.append(self.ray.add_node(num_cpus=1, wait=False))
        while len(self.workers) > wanted:
            self.ray.remove_node(self.workers.pop())


@contextmanager
def serve_kubernetes_api(operator: RayletOperator, folder: Path) -> Iterator[Path]:
    """The operator behind ``GET``/``PATCH /apis/ray.io/v1/namespaces/NS/rayclusters/NAME`` on
    127.0.0.1; yields the path of a kubeconfig that points at it."""

    class Handler(BaseHTTPRequestHandler):
        def _parts(self) -> list[str]:
            return self.path.split("?")[0].strip("/").split("/")

        def _answer(self, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            parts = self._parts()
            self._answer(
                operator.get_namespaced_custom_object(parts[1], parts[2], parts[4], parts[5], parts[6])
            )

        def do_PATCH(self) -> None:
            parts = self._parts()
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            answer = operator.patch_namespaced_custom_object(
                parts[1], parts[2], parts[4], parts[5], parts[6], body
            )
            self._answer(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = folder / "kubeconfig"
    server_url = f"http://127.0.0.1:{server.server_address[1]}"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "standin", "cluster": {"server": server_url}}],
                "users": [{"name": "standin", "user": {}}],
                "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "standin"}}],
                "current-context": "standin",
            }
        ),
        encoding="utf-8",
    )
    try:
        yield kubeconfig
    finally:
        server.shutdown()
        server.server_close()
