"""Benchmark: the exporter's CPU per scrape, and the fleet view on 1,000 hosts x 8 GPUs in a real Prometheus.

``bench_fleet() -> dict`` needs Debian's ``prometheus`` package (``prometheus`` and ``promtool``).

* exporter: ``gpudock exporter --demo`` (8 GPUs, its simulated engine and holders) in a child
  process; its CPU (user+system, from ``/proc``) over 300 scrapes over HTTP, less its CPU over an idle
  stretch as long (its background poll runs in both), per scrape. Reference, same run and method:
  a bare ``prometheus_client`` server in a child process serving the same samples from a static
  collector (what any Python exporter of this size costs). Target (issue 14): under 5 ms.
* fleet: 1,000 gpudock hosts x 8 GPUs (six of eight held), 200 of them also with dcgm-exporter's
  series for the same GPUs (joined on UUID), backfilled into a fresh TSDB with ``promtool tsdb
  create-blocks-from openmetrics`` (three samples a minute apart, ending now), served by
  ``prometheus`` on loopback. Timed, medians of 5: the fleet screen's read (the per-host summary:
  its two queries sent together, Prometheus's evaluation, the transfer, JSON and the join); from
  asking for a read to the fleet screen painted with every host (headless Textual, 120x40), and
  the first paint of a cold app; the per-GPU read of ``gpudock fleet --json``; one host's read
  (Enter). Reference, same run: the summary's two POSTs with the bodies read and not parsed
  (Prometheus's part alone). Target (issue 14): painted under 1 s.

    python bench/bench_fleet.py
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (ROOT, os.path.join(ROOT, "tests")):
    if p not in sys.path:
        sys.path.insert(0, p)

from gpudock.fleet import metrics as m  # noqa: E402
from gpudock.fleet.reader import FleetReader  # noqa: E402
from helpers.prometheus import Exporter, Prometheus, child_env, cpu_seconds  # noqa: E402

HOSTS, GPUS, DCGM_HOSTS = 1000, 8, 200
SCRAPES = 300

REFERENCE_SERVER = r"""
import sys, time
from prometheus_client import start_http_server
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
families = list(text_string_to_metric_families(open(sys.argv[1]).read()))
class Static:
    def collect(self):
        return families
reg = CollectorRegistry()
reg.register(Static())
server, _ = start_http_server(0, addr="127.0.0.1", registry=reg)
print(server.server_port, flush=True)
time.sleep(3600)
"""


def _cpu(pid: int) -> float:
    return cpu_seconds(pid)


def _scrape_cost(pid: int, url: str) -> dict:
    for _ in range(20):  # warm up
        urllib.request.urlopen(url).read()
    t0, c0 = time.monotonic(), _cpu(pid)
    for _ in range(SCRAPES):
        urllib.request.urlopen(url).read()
    wall, busy = time.monotonic() - t0, _cpu(pid) - c0
    c1 = _cpu(pid)
    time.sleep(wall)
    idle = _cpu(pid) - c1
    size = len(urllib.request.urlopen(url).read())
    return {"cpu_per_scrape_ms": round(max(0.0, busy - idle) / SCRAPES * 1000, 3), "bytes": size,
            "idle_cpu_ms_over_same_time": round(idle * 1000, 1)}  # fmt: skip


def bench_exporter(work: str) -> dict:
    exp = Exporter("--demo", "--interval", "5", "--doctor-every", "0", log=os.path.join(work, "exporter.log")).start()
    ref = None
    try:
        url = f"http://{exp.target}/metrics"
        text = urllib.request.urlopen(url).read().decode()
        samples = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        ours = _scrape_cost(exp.proc.pid, url)
        page = os.path.join(work, "page.txt")
        with open(page, "w") as f:
            f.write(text)
        ref = subprocess.Popen([sys.executable, "-c", REFERENCE_SERVER, page], stdout=subprocess.PIPE, text=True,
                               env=child_env())  # fmt: skip
        port = int(ref.stdout.readline())
        theirs = _scrape_cost(ref.pid, f"http://127.0.0.1:{port}/metrics")
    finally:
        exp.stop()
        if ref is not None:
            ref.terminate()
            ref.wait(10)
    r = ours["cpu_per_scrape_ms"] / theirs["cpu_per_scrape_ms"] if theirs["cpu_per_scrape_ms"] else None
    return {
        "samples_per_scrape": samples,
        "gpudock_exporter": ours,
        "reference_static_prometheus_client": theirs,
        "ratio": round(r, 2) if r else None,
        "target_ms": 5.0,
        "met": ours["cpu_per_scrape_ms"] < 5.0,
    }


# ---------------------------------------------------------------------------------------- the fleet


def _labels(d: dict) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in d.items()) + "}"


def write_openmetrics(path: str, end: float) -> int:
    """1,000 hosts x 8 GPUs as OpenMetrics text with three samples each; returns the series count."""
    stamps = [end - 120, end - 60, end]
    families: dict[str, list[str]] = {}

    def add(name: str, labels: dict, value) -> None:
        lab = _labels(labels)
        families.setdefault(name, []).extend(f"{name}{lab} {value} {t:.3f}" for t in stamps)

    for h in range(HOSTS):
        host = f"gpu-{h:04d}"
        add(m.DRIVER, {"hostname": host, "driver_version": "535.129.03", "cuda_driver_version": "12.2",
                       "nvml_version": "12.535.129.03", "source": "nvml"}, 1)  # fmt: skip
        add(m.LAST_POLL, {"hostname": host, "instance": f"{host}:10940", "job": "gpudock"}, end)
        add(m.DOCKER_UP, {"hostname": host}, 1)
        if h % 10 == 0:
            add(m.DOCTOR_FINDING, {"hostname": host, "id": "xid", "severity": "error", "title": "Xid 79"}, 1)
        for i in range(GPUS):
            uuid = f"GPU-{h:08x}-0000-4000-8000-{i:012x}"
            g = {"hostname": host, "gpu": str(i), "UUID": uuid, "pci_bus_id": f"00000000:{0x10 + i:02X}:00.0",
                 "device": f"nvidia{i}", "modelName": "NVIDIA H100 80GB HBM3"}  # fmt: skip
            add(m.GPU_INFO, {**g, "minor": str(i)}, 1)
            add(m.UTILIZATION, g, (h + i) % 100)
            add(m.MEMORY_USED, g, (10 + i) * 1024**3)
            add(m.MEMORY_TOTAL, g, 80 * 1024**3)
            add(m.TEMPERATURE, g, 40 + i)
            add(m.POWER, g, 200 + i)
            add(m.POWER_LIMIT, g, 700)
            if i < 6:
                add(m.HOLDER, {**g, "minor": str(i), "container": f"job-{h}-{i // 2}", "container_id": f"{h:064x}",
                               "image": "nvcr.io/nvidia/pytorch:24.01-py3", "mechanism": "device-request",
                               "mig_uuids": ""}, 1)  # fmt: skip
            if h < DCGM_HOSTS:
                d = {"gpu": str(i), "UUID": uuid, "pci_bus_id": g["pci_bus_id"], "device": f"nvidia{i}",
                     "modelName": "NVIDIA H100 80GB HBM3", "Hostname": host, "instance": f"{host}:9400",
                     "job": "dcgm"}  # fmt: skip
                for name, v in ((m.DCGM_UTIL, 50), (m.DCGM_FB_USED, 1024), (m.DCGM_FB_FREE, 80000),
                                (m.DCGM_TEMP, 45), (m.DCGM_POWER, 250), (m.DCGM_XID, 0)):  # fmt: skip
                    add(name, d, v)
    series = 0
    with open(path, "w") as f:
        for name, lines in families.items():
            f.write(f"# TYPE {name} gauge\n")
            f.write("\n".join(lines))
            f.write("\n")
            series += len(lines) // len(stamps)
        f.write("# EOF\n")
    return series


def _raw_post(url: str, query: str) -> tuple[float, int]:
    body = urllib.parse.urlencode({"query": query}).encode()
    t0 = time.monotonic()
    with urllib.request.urlopen(urllib.request.Request(f"{url}/api/v1/query", data=body)) as r:
        n = len(r.read())
    return time.monotonic() - t0, n


async def _paint_times(reader: FleetReader, runs: int = 5) -> dict:
    from gpudock.ui.screens.fleet import FleetApp
    from gpudock.ui.widgets.live_table import LiveTable

    app = FleetApp(reader, interval=3600)
    t0 = time.monotonic()
    first = None
    steady = []
    async with app.run_test(size=(120, 40)) as pilot:
        while app.view is None or len(app.screen.query_one(LiveTable).row_keys) < HOSTS:
            await pilot.pause(0.01)
        await pilot.pause()
        first = time.monotonic() - t0
        for _ in range(runs):
            before = app.view
            t1 = time.monotonic()
            app.read()
            while app.view is before:
                await pilot.pause(0.005)
            await pilot.pause()  # the repaint of what changed
            steady.append(time.monotonic() - t1)
    return {"first_paint_s": round(first, 3), "read_to_painted_s": round(statistics.median(steady), 3),
            "read_to_painted_all_s": [round(s, 3) for s in steady]}  # fmt: skip


def bench_fleet_view(work: str) -> dict:
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    om = os.path.join(work, "fleet.om")
    t = time.monotonic()
    series = write_openmetrics(om, time.time())
    gen = time.monotonic() - t
    prom = Prometheus(work, {})
    t = time.monotonic()
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", om, os.path.join(work, "data")],
                   check=True, capture_output=True)  # fmt: skip
    backfill = time.monotonic() - t
    os.unlink(om)
    prom.start()
    try:
        reader = FleetReader(prom.url, timeout=60, stale_after=3600)
        view = reader.read()  # per GPU, as gpudock fleet --json; also warms Prometheus's caches
        assert view.ok, view.error
        assert len(view.hosts) == HOSTS and sum(len(h.gpus) for h in view.hosts) == HOSTS * GPUS, len(view.hosts)
        assert sum(1 for h in view.hosts for g in h.gpus if "dcgm-exporter" in g.sources) == DCGM_HOSTS * GPUS
        assert not any(h.stale for h in view.hosts)
        summary = reader.read(detailed=False)
        assert summary.ok and len(summary.hosts) == HOSTS and summary.queries == 2, summary.error
        reads, details, raws = [], [], []
        for _ in range(5):
            t0 = time.monotonic()
            reader.read(detailed=False)
            reads.append(time.monotonic() - t0)
            t0 = time.monotonic()
            reader.read(detailed=True)
            details.append(time.monotonic() - t0)
            t0 = time.monotonic()
            with ThreadPoolExecutor(2) as pool:
                sizes = list(pool.map(lambda q: _raw_post(prom.url, q)[1], reader.queries_for(detailed=False)))
            raws.append(time.monotonic() - t0)
        t0 = time.monotonic()
        one = reader.read(detailed=True, only="gpu-0500")
        one_host = time.monotonic() - t0
        assert len(one.hosts) == 1 and len(one.hosts[0].gpus) == GPUS
        paint = asyncio.run(_paint_times(reader))
    finally:
        prom.stop()
    size = sum(sizes)
    read = statistics.median(reads)
    raw = statistics.median(raws)
    return {
        "hosts": HOSTS,
        "gpus": HOSTS * GPUS,
        "hosts_with_dcgm_exporter_too": DCGM_HOSTS,
        "series": series,
        "queries_per_read": summary.queries,
        "summary_response_bytes": size,
        "generate_s": round(gen, 1),
        "backfill_s": round(backfill, 1),
        "summary_read_s": round(read, 3),
        "reference_prometheus_answer_s": round(raw, 3),
        "ratio_read_to_prometheus": round(read / raw, 2),
        "per_gpu_read_s": round(statistics.median(details), 3),
        "one_host_read_s": round(one_host, 3),
        **paint,
        "target_s": 1.0,
        "met": paint["read_to_painted_s"] < 1.0,
    }


def bench_fleet() -> dict:
    work = tempfile.mkdtemp(prefix="gpb-fleet-", dir=os.environ.get("GPUDOCK_TEST_RUN_DIR") or "/tmp")
    try:
        return {"exporter": bench_exporter(work), "fleet_view": bench_fleet_view(work)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(bench_fleet(), indent=2))
