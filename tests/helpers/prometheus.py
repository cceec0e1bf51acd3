"""A real Prometheus (Debian's ``prometheus`` package) and ``gpudock exporter`` processes for tests.

Everything runs on loopback with files under one directory (the test run's, when
``GPUDOCK_TEST_RUN_DIR`` is set, so scripts/test's clean-up finds what a killed run left), never
the system service; every process is stopped by its PID.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def listening(pid: int) -> list[tuple[str, int]]:
    """The (address, port) a process listens on over TCP, read from /proc (IPv4 and IPv6)."""
    import ipaddress

    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table, size in (("tcp", 4), ("tcp6", 16)):
        with open(f"/proc/{pid}/net/{table}") as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
                    continue
                hexaddr, hexport = cols[1].split(":")
                raw = bytes.fromhex(hexaddr)
                # /proc prints the address as 32-bit words in host (little-endian) order
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, size, 4))
                out.append((str(ipaddress.ip_address(raw)), int(hexport, 16)))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prometheus_binary() -> str:
    path = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None)
    if path is None:
        raise AssertionError("no prometheus binary: install Debian's prometheus package (./scripts/test does)")
    return path


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def child_env() -> dict[str, str]:
    """The environment for gpudock children: no DOCKER_HOST (a simulated host serves its own engine)."""
    env = dict(os.environ)
    env.pop("DOCKER_HOST", None)
    return env


class Exporter:
    """``gpudock exporter`` in a child process on 127.0.0.1, a free port chosen by the system."""

    def __init__(self, *args: str, log: str) -> None:
        self.args = args
        self.log_path = log
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> Exporter:
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gpudock", "exporter", "--listen", "127.0.0.1:0", *self.args],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=child_env(),
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = open(self.log_path).read()
            m = re.search(r"at http://127\.0\.0\.1:(\d+)/metrics", text)
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"gpudock exporter {' '.join(self.args)} exited: {text}")
            time.sleep(0.05)
        raise AssertionError(f"gpudock exporter {' '.join(self.args)} did not start: {open(self.log_path).read()}")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
        if getattr(self, "_log", None):
            self._log.close()


class StaticMetrics:
    """A /metrics endpoint serving a fixed text (a recorded exporter), in a thread of the test."""

    def __init__(self, text: str) -> None:
        body = text.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.target = f"127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Prometheus:
    """``prometheus`` on 127.0.0.1 scraping ``jobs`` ({job: [targets]}) every second."""

    def __init__(self, directory: str, jobs: dict[str, list[str]]) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        lines = ["global:", "  scrape_interval: 1s", "  scrape_timeout: 1s", "scrape_configs:"]
        for job, targets in jobs.items():
            lines += [f"  - job_name: {job}", "    static_configs:", f"      - targets: {targets!r}"]
        self.config = os.path.join(directory, "prometheus.yml")
        with open(self.config, "w") as f:
            f.write("\n".join(lines).replace("'", '"') + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> Prometheus:
        self._log = open(os.path.join(self.directory, "prometheus.log"), "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                prometheus_binary(),
                f"--config.file={self.config}",
                f"--storage.tsdb.path={os.path.join(self.directory, 'data')}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited: {open(self._log.name).read()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus did not get ready in {timeout:.0f} s: {open(self._log.name).read()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc, 30)
        if getattr(self, "_log", None):
            self._log.close()
