"""The data's way to N − 1 nodes, on isolated nodes behind shaped links (root): where predict's
transfer model (N − 1 copies through the head's link) holds, and where Ray's object transfer costs
more than the link.

A 4-node isolated cluster (``--cpu-limit`` 0.2 core per node, ``--link-mbps`` 100) and an object
of ``bench/predict.py``'s transfer dataset's size (200,000 × 21 float64, 33.6 MB). For 1, 2 and 3
receiving nodes at once, interleaved, ``--rounds`` times: plain TCP from the head's namespace to
each receiver (the links alone), then Ray pulling the object from the head's store into a task
pinned to each receiver (workers already started). Each against the link's bound, receivers ×
size / rate.

    sudo python bench/transfer.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from rich.console import Console

from _results import header, write  # bench/_results.py
from rayscale.results.stats import Stats
from rayscale.work.cluster.isolated import Isolation, isolated_cluster

NODES, LIMIT, MBPS, PORT = 4, 0.2, 100.0, 9000
SHAPE = (200_000, 21)
SIZE = SHAPE[0] * SHAPE[1] * 8
RECEIVER = (
    "import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    f"s.bind(('0.0.0.0', {PORT}))\ns.listen()\nwhile True:\n    c, _ = s.accept()\n"
    "    while c.recv(1 << 20):\n        pass\n    c.close()\n"
)


def _tcp(receivers: int) -> float:
    """Seconds to send SIZE bytes to each of ``receivers`` nodes at once over plain TCP."""
    payload = b"x" * SIZE

    def send(k: int) -> None:
        with socket.create_connection((f"198.18.0.{k}", PORT)) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            s.recv(1)  # the receiver has read it all when it closes

    threads = [threading.Thread(target=send, args=(k,)) for k in range(2, 2 + receivers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    console = Console(width=140)
    report = header("transfer")
    tcp: dict[int, list[float]] = {r: [] for r in range(1, NODES)}
    ray_s: dict[int, list[float]] = {r: [] for r in range(1, NODES)}
    with isolated_cluster(NODES, 1, Isolation(LIMIT, link_mbps=MBPS), "t-7a0b01") as cluster:
        import numpy as np
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        receivers = [
            subprocess.Popen(["ip", "netns", "exec", cluster.names.netns(k), sys.executable, "-c", RECEIVER])
            for k in range(2, NODES + 1)
        ]
        ids = {n["NodeManagerAddress"]: n["NodeID"] for n in ray.nodes() if n["Alive"]}

        @ray.remote(num_cpus=1)
        def touch(a: np.ndarray) -> float:
            return float(a[0, 0])

        def on(k: int) -> Any:
            pinned = NodeAffinitySchedulingStrategy(ids[f"198.18.0.{k}"], soft=False)
            return touch.options(scheduling_strategy=pinned)

        try:
            ray.get([on(k).remote(np.zeros((1, 1))) for k in range(2, NODES + 1)])  # workers started
            time.sleep(1.0)
            rng = np.random.default_rng(0)
            for i in range(args.rounds):
                for r in range(1, NODES):
                    tcp[r].append(_tcp(r))
                    data = ray.put(rng.random(SHAPE))  # a new object: nobody has a copy yet
                    started = time.perf_counter()
                    ray.get([on(k).remote(data) for k in range(2, 2 + r)])
                    ray_s[r].append(time.perf_counter() - started)
                    del data
                    console.log(
                        f"round {i + 1}, {r} receiver(s): tcp {tcp[r][-1]:.2f}s, ray {ray_s[r][-1]:.2f}s"
                    )
        finally:
            for p in receivers:
                p.kill()
                p.wait()
    rows = []
    for r in range(1, NODES):
        bound = r * SIZE * 8 / (MBPS * 1e6)
        t, y = Stats(tcp[r]), Stats(ray_s[r])
        rows.append({"receivers": r, "link_bound_s": bound, "tcp_s": tcp[r], "ray_s": ray_s[r],
                     "tcp_over_bound": t.median / bound, "ray_over_bound": y.median / bound})  # fmt: skip
        console.print(
            f"{r} receiver(s): link bound {bound:.2f}s; tcp {t.median:.2f}s ({t.min:.2f}–{t.max:.2f}, "
            f"{t.median / bound:.2f}×); ray {y.median:.2f}s ({y.min:.2f}–{y.max:.2f}, "
            f"{y.median / bound:.2f}×)"
        )
    report |= {"nodes": NODES, "cpu_limit": LIMIT, "link_mbps": MBPS, "bytes": SIZE, "receivers": rows}
    console.print(f"written {write(report)}")


if __name__ == "__main__":
    main()
