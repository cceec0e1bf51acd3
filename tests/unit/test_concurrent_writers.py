"""Many gpudock processes editing one file at once: every writer that exits 0 has its change in
the file (issue 16: 73 of 132 successful registrations were lost over 20 rounds).

Writers that nobody confirms (``runtime register``, ``debug --yes``) hold the file's lock from
their read to their rename, so they take turns and each merges into what the one before wrote:
all of them succeed. A writer whose plan was shown for confirmation is refused instead when the
file changed meanwhile (tests/unit/test_atomic.py, test_daemon_json.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from helpers.fstree import MEMORY_CAP

DATA = Path(__file__).resolve().parent.parent / "data" / "config-toml"
WRITERS = 12
ROUNDS = 20


def _env() -> dict:
    e = dict(os.environ)
    e["DOCKER_HOST"] = "unix:///nonexistent/gpudock-test-no-docker.sock"
    return e


def _start(argv: list[str]) -> subprocess.Popen:
    import resource

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))

    return subprocess.Popen(
        [sys.executable, "-m", "gpudock", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=_env(),
        preexec_fn=cap,
    )


def _finish(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    out = []
    for p in procs:
        _, err = p.communicate(timeout=120)
        out.append((p.returncode, err))
    return out


def test_parallel_runtime_registrations_all_land(tmp_path):
    path = tmp_path / "daemon.json"
    lost: list[str] = []
    for rnd in range(ROUNDS):
        path.write_text('{\n    "log-driver": "json-file"\n}\n')
        procs = [
            _start(["toolkit", "runtime", "register", "--name", f"rt{i}", "--daemon-json", str(path)])
            for i in range(WRITERS)
        ]
        results = _finish(procs)
        doc = json.loads(path.read_text())
        assert doc["log-driver"] == "json-file"
        runtimes = doc.get("runtimes", {})
        for i, (rc, err) in enumerate(results):
            if rc == 0:
                if runtimes.get(f"rt{i}") != {"path": "nvidia-container-runtime"}:
                    lost.append(f"round {rnd}: rt{i} exited 0 but is not in the file")
            else:
                assert "changed by someone else" in err, err
                lost.append(f"round {rnd}: rt{i} refused: {err.strip()}")  # taking turns: none should be
        assert set(runtimes) <= {f"rt{i}" for i in range(WRITERS)}
    assert lost == []
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".gpudock-tmp")]


def test_parallel_hook_and_runtime_debug_writers_both_land(tmp_path):
    path = tmp_path / "config.toml"
    original = (DATA / "toolkit-1.17-debian.toml").read_bytes()
    lost: list[str] = []
    for rnd in range(ROUNDS):
        path.write_bytes(original)
        procs = [
            _start(["toolkit", "debug", "on", "--hook", "--yes", "--config", str(path)]),
            _start(["toolkit", "debug", "on", "--runtime", "--path", "/tmp/rt.log", "--yes", "--config", str(path)]),
        ]
        results = _finish(procs)
        status = tomllib.loads(path.read_text())
        hook = status.get("nvidia-container-cli", {}).get("debug")
        runtime = status.get("nvidia-container-runtime", {}).get("debug")
        for (rc, err), (name, got, want) in zip(
            results,
            (("hook", hook, "/var/log/nvidia-container-toolkit.log"), ("runtime", runtime, "/tmp/rt.log")),
        ):
            if rc == 0 and got != want:
                lost.append(f"round {rnd}: the {name} writer exited 0 but its debug line is {got!r}")
            elif rc != 0:
                assert "changed by someone else" in err, err
                lost.append(f"round {rnd}: the {name} writer was refused")
    assert lost == []
