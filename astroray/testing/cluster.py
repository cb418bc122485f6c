"""A real multi-node Ray cluster on one machine: a head and worker nodes as separate ``ray start`` processes.

Each node is its own ``ray start --block`` process group with its own ports
and resources, so killing one (:meth:`LocalCluster.kill_worker`) is what a
lost machine looks like to Ray: its raylet, object store and workers vanish
at once.  Used by ``benchmarks/bench_node_loss.py`` to check that the batch
jobs finish with every input in their outputs exactly once after a node dies.

    with LocalCluster(n_workers=2, cpus_per_worker=2) as cluster:
        env = cluster.client_env()            # RAY_ADDRESS for a driver
        ...
        cluster.kill_worker(0)

Nothing here imports Ray in this process: the nodes are subprocesses, and a
driver joins through ``RAY_ADDRESS``.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from astroray.errors import AstrorayError

__all__ = ["LocalCluster", "ClusterError"]


class ClusterError(AstrorayError):
    """A node of the local cluster did not start or stop as asked."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class _Node:
    name: str
    process: subprocess.Popen
    log: Path
    alive: bool = True


@dataclass
class LocalCluster:
    """A head (no CPUs of its own, as on KubeRay) and ``n_workers`` worker nodes on this machine.

    Parameters
    ----------
    n_workers : int
        Worker nodes, each a separate ``ray start`` process group.
    cpus_per_worker : int
        Logical CPUs each worker node declares.
    object_store_mb : int
        Object store of each node.
    head_cpus : int
        Logical CPUs of the head (0: drivers' tasks run on the workers only).
    health_check_s : float
        How soon the head declares a silent node dead (Ray's default is about 30 s).
    """

    n_workers: int = 2
    cpus_per_worker: int = 2
    object_store_mb: int = 300
    head_cpus: int = 0
    health_check_s: float = 5.0
    nodes: list[_Node] = field(default_factory=list, init=False)
    gcs_port: int = field(default=0, init=False)
    temp_dir: Path | None = field(default=None, init=False)

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()  # a node that did start must not outlive a failed start
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    def _ray(self) -> str:
        return str(Path(sys.executable).parent / "ray")

    def _env(self) -> dict:
        # a node runs the drivers' code with this interpreter: the venv first on PATH, no auth on loopback
        env = dict(os.environ, RAY_AUTH_MODE="disabled",
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        period_ms = max(500, int(self.health_check_s * 1000 / 5))
        env.update(RAY_health_check_period_ms=str(period_ms), RAY_health_check_failure_threshold="5",
                   RAY_health_check_timeout_ms=str(2 * period_ms))
        env.pop("RAY_ADDRESS", None)
        env.pop("MLFLOW_TRACKING_URI", None)
        return env

    def _ports(self) -> list[str]:
        # every listening port chosen here: the defaults would collide between nodes on one machine
        names = ("node-manager-port", "object-manager-port", "metrics-export-port", "dashboard-agent-listen-port",
                 "dashboard-agent-grpc-port", "runtime-env-agent-port")
        return [f"--{name}={_free_port()}" for name in names]

    def _launch(self, name: str, args: list[str]) -> _Node:
        log = self.temp_dir / f"{name}.log"
        with open(log, "wb") as sink:
            proc = subprocess.Popen([self._ray(), "start", "--block", "--disable-usage-stats", *args],
                                    env=self._env(), stdout=sink, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        node = _Node(name, proc, log)
        self.nodes.append(node)
        return node

    def start(self, *, timeout_s: float = 120.0) -> None:
        """Start the head, then the workers; return when all of them are alive in the cluster."""
        # a short path: Ray's unix sockets live under the temp dir and their paths are length-limited
        self.temp_dir = Path(tempfile.mkdtemp(prefix="arc-", dir="/tmp"))
        self.gcs_port = _free_port()
        self._launch("head", ["--head", f"--port={self.gcs_port}", f"--num-cpus={self.head_cpus}",
                              f"--object-store-memory={self.object_store_mb * 2**20}",
                              f"--temp-dir={self.temp_dir}", "--include-dashboard=false",
                              f"--ray-client-server-port={_free_port()}", *self._ports()])
        self._wait_for_nodes(1, timeout_s)
        for i in range(self.n_workers):
            self._start_worker(i, timeout_s)

    def _start_worker(self, i: int, timeout_s: float, attempts: int = 3) -> None:
        # one at a time, and again when `ray start` gives up: it allows a raylet 30 s to register, which a busy
        # small machine can miss
        resources = json.dumps({f"astroray_worker_{i}": 1})
        for attempt in range(attempts):
            node = self._launch(f"worker{i}", [f"--address={self.address}", f"--num-cpus={self.cpus_per_worker}",
                                               f"--object-store-memory={self.object_store_mb * 2**20}",
                                               f"--resources={resources}", *self._ports()])
            try:
                self._wait_for_nodes(2 + i, timeout_s)
                return
            except ClusterError:
                if attempt == attempts - 1 or node.process.poll() is None:
                    raise
                try:  # whatever that attempt started goes with it
                    os.killpg(node.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.nodes.remove(node)

    def alive_nodes(self) -> int:
        """Nodes the head's GCS reports alive (asked from a subprocess, so no Ray enters this process)."""
        code = ("from ray._raylet import GcsClient; "
                "info = GcsClient(address=%r).get_all_node_info(timeout=20); "
                "print(sum(1 for n in info.values() if n.state == 0))" % self.address)  # 0: ALIVE
        try:
            proc = subprocess.run([sys.executable, "-c", code], env=self._env(), capture_output=True, text=True,
                                  timeout=90)
        except subprocess.TimeoutExpired:
            return 0
        if proc.returncode != 0:
            return 0
        return int(proc.stdout.strip().splitlines()[-1])

    def _wait_for_nodes(self, n: int, timeout_s: float) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            for node in self.nodes:
                if node.process.poll() is not None:
                    raise ClusterError(f"{node.name} exited early: {node.log.read_text()[-2000:]}")
            if self.alive_nodes() >= n:
                return
            time.sleep(1.0)
        raise ClusterError(f"fewer than {n} nodes alive after {timeout_s:.0f} s; logs in {self.temp_dir}")

    def client_env(self) -> dict:
        """Environment for a driver (a job's ``python jobs/...``) that joins this cluster."""
        return dict(self._env(), RAY_ADDRESS=self.address)

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker node ``index`` and everything it started, as a lost machine."""
        node = self.nodes[1 + index]
        os.killpg(node.process.pid, signal.SIGKILL)
        node.process.wait(timeout=30)
        # `ray start --block` children (raylet, workers) share its session: killpg took them all
        node.alive = False

    def stop(self) -> None:
        """Stop every node (workers first), then remove the temp folder."""
        for node in reversed(self.nodes):
            if node.process.poll() is None:
                try:
                    os.killpg(node.process.pid, signal.SIGTERM)
                    node.process.wait(timeout=30)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(node.process.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            node.alive = False
        self.nodes.clear()
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
