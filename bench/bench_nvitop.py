"""Benchmark: one refresh of the 8-GPU demo host, gpudock against nvitop, like for like.

Both read the same simulated library in the same process and run (the built-in demo scenario,
bound under pynvml once): nvitop 1.7.2 unchanged, through its own API, exactly as its main screen
refreshes (``DevicePanel.take_snapshots``: ``as_snapshot()`` of every GPU and MIG device, its 40
``SNAPSHOT_KEYS``; and ``ProcessPanel.take_snapshots``: every leaf device's processes with their
utilization samples, then ``GpuProcess.take_snapshots``), against one ``NvmlSession.snapshot()``
that reads at least the same fields (memory, utilization, encoder/decoder, clocks, fan,
temperature, power and limit, PCIe throughput, persistence, P-state, volatile ECC, compute mode,
MIG mode and devices, processes and their SM share; plus BAR1, throttle reasons, PCIe link,
retired pages/remapped rows and NVLinks).

Three gpudock figures: ``slow_interval=0`` reads every field nvitop's main screen reads (ECC
counts and PCIe throughput included) on every refresh, as nvitop does: the like-for-like figure
and the one the target is for; ``health_interval=0`` as well reads every field gpudock has on every
refresh (18 NVLink states, retired pages, remapped rows per card: more than nvitop reads); and the
default cadence (slow fields every 5 s, health every 30 s).
Target: gpudock at least 3x cheaper in CPU than nvitop, like for like.

Usage: ``python bench/bench_nvitop.py``; ``bench_nvitop()`` returns a dict.
"""

from __future__ import annotations

import itertools
import json
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpudock.host.nvml import NvmlSession  # noqa: E402
from gpudock.sim import exec as sim_exec  # noqa: E402
from gpudock.sim.scenario import builtin_scenario  # noqa: E402

TARGET_RATIO = 3.0


def _nvitop_refresh_fn():
    """nvitop's main-screen refresh over the library already bound under pynvml."""
    from nvitop.api import Device, GpuProcess

    devices = Device.all()
    all_devices, leaves = [], []
    for d in devices:  # as nvitop.tui's DevicePanel and ProcessPanel build their lists
        migs = d.mig_devices()
        all_devices.append(d)
        all_devices.extend(migs)
        leaves.extend(migs or [d])

    def refresh():
        snaps = [d.as_snapshot() for d in all_devices]
        processes = list(itertools.chain.from_iterable(d.processes().values() for d in leaves))
        return snaps, GpuProcess.take_snapshots(processes, failsafe=True)

    return refresh, len(all_devices)


def bench_nvitop(rounds: int = 7, per_round: int = 50) -> dict:
    scenario = builtin_scenario("demo")
    lib = sim_exec.bind(scenario)
    # Both sides on the one library object: gpudock's session is handed the same one.
    sessions = {
        "like_for_like": NvmlSession(lambda: lib, source="sim:demo", slow_interval=0.0),
        "every_field": NvmlSession(lambda: lib, source="sim:demo", slow_interval=0.0, health_interval=0.0),
        "default_cadence": NvmlSession(lambda: lib, source="sim:demo"),
    }
    for s in sessions.values():
        snap = s.snapshot()
    nvitop_refresh, nvitop_devices = _nvitop_refresh_fn()
    nvitop_refresh()
    ours: dict[str, list[float]] = {k: [] for k in sessions}
    theirs: list[float] = []
    for _ in range(rounds):
        for name, s in sessions.items():
            t = time.process_time()
            for _ in range(per_round):
                s.snapshot()
            ours[name].append((time.process_time() - t) / per_round * 1000)
        t = time.process_time()
        for _ in range(per_round):
            nvitop_refresh()
        theirs.append((time.process_time() - t) / per_round * 1000)
    n = statistics.median(theirs)
    med = {k: statistics.median(v) for k, v in ours.items()}
    return {
        "gpus": len(snap.gpus),
        "nvitop_devices_incl_mig": nvitop_devices,
        "nvitop_refresh_cpu_ms": round(n, 3),
        **{f"refresh_{k}_cpu_ms": round(v, 3) for k, v in med.items()},
        **{f"ratio_nvitop_vs_{k}": round(n / v, 2) for k, v in med.items()},
        "target_ratio": TARGET_RATIO,
        "meets_target": n / med["like_for_like"] >= TARGET_RATIO,
    }


if __name__ == "__main__":
    print(json.dumps(bench_nvitop(), indent=2))
