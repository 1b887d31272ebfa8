"""A real ``router serve`` process for the benchmarks: started on a free port with its own state, timed to ready,
its resident memory read from /proc."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    port: int
    ready_seconds: float
    log_file: Path

    def rss_mib(self) -> tuple[float, float]:
        """(resident now, peak resident) of the server process, in MiB."""
        fields = self._status()
        return fields["VmRSS"], fields["VmHWM"]

    def anonymous_mib(self) -> float:
        """Resident memory that is the process's own (heap, stacks), in MiB: resident memory less the pages of
        mapped files such as the native libraries, which are shared and can be dropped and read again."""
        return self._status()["RssAnon"]

    def _status(self) -> dict[str, float]:
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if value.strip().endswith(" kB"):
                fields[name] = int(value.split()[0]) / 1024
        return fields

    def cpu_seconds(self) -> float:
        """CPU time (user + system, all threads) the server process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def serve(env: Mapping[str, str] | None = None, *, timeout: float = 120.0) -> Iterator[Service]:
    """Starts the service with temporary thresholds and routing-log stores (and ``env`` on top); yields once
    ``GET /ready`` answers 200. ``ready_seconds`` counts from process start."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="router-bench-") as tmp:
        environment = os.environ | {
            "ROUTER_SERVER__PORT": str(port),
            "ROUTER_THRESHOLDS__URI": f"{tmp}/thresholds",
            "ROUTER_ROUTING_LOG__URI": f"{tmp}/routing-log",
            "ROUTER_RETRIEVAL__URI": f"{tmp}/lancedb",
            "ROUTER_LOG__FORMAT": "json",
            "HF_HUB_OFFLINE": "1",
        }
        environment.update(env or {})
        log_file = Path(tmp) / "service.log"
        with log_file.open("wb") as out:
            start = time.perf_counter()
            process = subprocess.Popen(
                [sys.executable, "-m", "router", "serve"], cwd=ROOT, env=environment, stdout=out, stderr=out
            )
            try:
                ready = _wait_ready(process, port, start + timeout, log_file)
                yield Service(process, port, ready - start, log_file)
            finally:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


def _wait_ready(process: subprocess.Popen[bytes], port: int, deadline: float, log_file: Path) -> float:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2.0) as client:
        while time.perf_counter() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the service exited with {process.returncode}:\n{log_file.read_text()[-3000:]}")
            try:
                if client.get("/ready").status_code == 200:
                    return time.perf_counter()
            except httpx.TransportError:
                pass
            time.sleep(0.01)
    raise TimeoutError(f"the service was not ready in time:\n{log_file.read_text()[-3000:]}")
