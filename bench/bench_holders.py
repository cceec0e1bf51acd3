"""Benchmark: building the holders map cold, and a steady refresh, with 50 and 500 containers.

``bench_holders(engine_base_url) -> dict`` runs against a real Docker engine (the containers are
*created*, a few started; a mix of every mechanism the engine supports: device nodes, runtime
nvidia + NVIDIA_VISIBLE_DEVICES, --gpus ids/count/all). It removes what it created.

* cold: wall time (and process CPU) of a new DockerWatcher's connect() — list, inspect every
  container, parse — plus resolving claims against 8 GPUs and the join (``build_holders``).
* steady: process CPU (``time.process_time``) of one refresh with the event-following watcher
  running and nothing changed in Docker: a new HostSnapshot (telemetry moved), ``snapshot()`` and
  ``build_holders()`` including the /proc reads for 8 GPU processes. Measured for the running
  containers (the default view) and for all containers (``--all``); and (median of 5) a refresh
  right after one container changed (a rename seen through the event stream).

Targets (issue 4): steady with 500 containers under 5 ms CPU; cold under 2 s.

    python bench/bench_holders.py            # starts its own engine (tests/helpers/engine.py)
    python bench/bench_holders.py unix:///var/run/docker.sock
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid as _uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import docker  # noqa: E402

from gpudock.host.docker import DockerWatcher  # noqa: E402
from gpudock.host.holders import build_holders  # noqa: E402
from gpudock.model import Gpu, GpuProcess, HostSnapshot  # noqa: E402

IMAGE = "gpudock-test/busybox:latest"
LABEL = "gpudock.bench"


def _gpus(tick: int, pids: list[int]) -> tuple[Gpu, ...]:
    return tuple(
        Gpu(
            index=i,
            uuid=f"GPU-{i:08x}-b000-4000-8000-00000000000{i}",
            name="Bench H100",
            minor=7 - i,
            pci_bus_id=f"00000000:{0x10 + i:02X}:00.0",
            utilization_gpu=(tick * 7 + i) % 100,
            temperature_c=40 + (tick + i) % 30,
            memory_used_mib=1000 + tick % 50,
            processes=(GpuProcess(pids[i % len(pids)], 500, command="bench"),) if pids else (),
        )
        for i in range(8)
    )


def _snap(tick: int, pids: list[int]) -> HostSnapshot:
    return HostSnapshot("550.54.15", "12.4", "12.550", _gpus(tick, pids), source="bench")


def _create(client, n: int, start: set[int], dev_dir: str | None, tag: str) -> list[str]:
    api = client.api
    ids = []
    for i in range(n):
        kind = i % 6
        hc_kw: dict = {}
        env = None
        if kind == 0 and dev_dir:
            hc_kw["devices"] = [f"{dev_dir}/nvidia{i % 8}:/dev/nvidia{i % 8}:rwm"]
        elif kind == 1:
            hc_kw["runtime"] = "nvidia"
            env = [f"NVIDIA_VISIBLE_DEVICES={i % 8},{(i + 3) % 8}"]
        elif kind == 2:
            hc_kw["device_requests"] = [docker.types.DeviceRequest(count=1 + i % 4, capabilities=[["gpu"]])]
        elif kind == 3:
            hc_kw["device_requests"] = [docker.types.DeviceRequest(device_ids=[str(i % 8)], capabilities=[["gpu"]])]
        elif kind == 4:
            hc_kw["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
        # kind 5: no GPU at all
        hc = api.create_host_config(**hc_kw)
        c = api.create_container(
            IMAGE,
            ["sleep", "3600"],
            name=f"bench-{tag}-{i}",
            environment=env,
            host_config=hc,
            labels={LABEL: tag},
        )
        ids.append(c["Id"])
        if i in start:
            api.start(c["Id"])
    return ids


def _cleanup(client, tag: str) -> None:
    for c in client.api.containers(all=True, filters={"label": f"{LABEL}={tag}"}):
        try:
            client.api.remove_container(c["Id"], force=True)
        except docker.errors.APIError:
            pass


def _measure(base_url: str, client, pids: list[int], refreshes: int = 300) -> dict:
    out: dict = {}
    # cold: a fresh watcher, synchronous build, first resolution and join
    t0, c0 = time.perf_counter(), time.process_time()
    w = DockerWatcher(base_url)
    st = w.connect()
    assert st.ok, st.message
    snap = _snap(0, pids)
    hm = build_holders(snap, w.snapshot(snap.gpus, all=True))
    out["cold_wall_s"] = round(time.perf_counter() - t0, 4)
    out["cold_cpu_s"] = round(time.process_time() - c0, 4)
    out["containers"] = len(hm.containers)

    # steady: the event-following watcher, nothing changing in Docker
    w = DockerWatcher(base_url)
    w.start()
    assert w.wait_ready(60), w.status.message
    for all_ in (False, True):
        snaps = [_snap(t, pids) for t in range(refreshes)]
        w.snapshot(snaps[0].gpus, all=all_)  # first resolution is not steady state
        c0 = time.process_time()
        for s in snaps:
            build_holders(s, w.snapshot(s.gpus, all=all_), docker_status=w.status)
        per = (time.process_time() - c0) / refreshes
        out["steady_cpu_ms_all" if all_ else "steady_cpu_ms_running"] = round(per * 1000, 3)
    out["running"] = len(w.snapshot(snaps[0].gpus))

    # a refresh right after one container changed (renamed via the API, seen through the event
    # stream): re-resolves that container, rebuilds the sorted list and the join
    victim = next(c for c in client.api.containers(all=True, filters={"label": LABEL}, limit=1))
    costs = []
    for i in range(5):
        gen = w.generation
        client.api.rename(victim["Id"], f"bench-renamed-{_uuid.uuid4().hex[:8]}")
        assert w.wait_for(lambda w, gen=gen: w.generation != gen, 10)
        s = _snap(i, pids)
        c0 = time.process_time()
        build_holders(s, w.snapshot(s.gpus, all=True), docker_status=w.status)
        costs.append(time.process_time() - c0)
    out["changed_refresh_cpu_ms_all"] = round(1000 * sorted(costs)[len(costs) // 2], 3)
    w.stop()
    return out


def bench_holders(engine_base_url: str, sizes=(50, 500), dev_dir: str | None = None) -> dict:
    """Create ``sizes`` containers (cumulatively), measure cold and steady; remove them."""
    client = docker.DockerClient(base_url=engine_base_url, version="auto", timeout=120)
    tag = _uuid.uuid4().hex[:8]
    if dev_dir is None:
        dev_dir = os.environ.get("GPUDOCK_BENCH_DEV_DIR")
    results: dict = {"engine": engine_base_url, "sizes": {}}
    try:
        made = 0
        running_pids: list[int] = []
        for n in sizes:
            t0 = time.perf_counter()
            # start 8 of the first batch so that the GPU processes are real PIDs in real containers
            start = set(range(0, 48, 6)) | set(range(2, 48, 6)) if made == 0 else set()
            start = set(sorted(start)[:8])
            ids = _create(client, n - made, start, dev_dir, f"{tag}-{n}")
            if made == 0:
                for i in sorted(start):
                    ins = client.api.inspect_container(ids[i])
                    if ins["State"]["Pid"]:
                        running_pids.append(ins["State"]["Pid"])
            made = n
            r = _measure(engine_base_url, client, running_pids)
            r["create_s"] = round(time.perf_counter() - t0, 2)
            results["sizes"][n] = r
    finally:
        for n in sizes:
            _cleanup(client, f"{tag}-{n}")
        client.close()
    big = results["sizes"].get(max(sizes), {})
    results["targets"] = {
        "steady_under_5ms_cpu": big.get("steady_cpu_ms_all", 1e9) < 5.0,
        "cold_under_2s": big.get("cold_wall_s", 1e9) < 2.0,
    }
    return results


def _main(argv: list[str]) -> int:
    if argv:
        print(json.dumps(bench_holders(argv[0]), indent=2))
        return 0
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from helpers.engine import Engine

    parent = os.environ.get("GPUDOCK_TEST_RUN_DIR") or "/tmp"
    work = tempfile.mkdtemp(prefix="gpb-", dir=parent)
    eng = Engine.start(work)
    try:
        print(json.dumps(bench_holders(eng.base_url, dev_dir=str(eng.dev_dir)), indent=2))
    finally:
        eng.close()
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
