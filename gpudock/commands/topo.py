"""``gpudock topo [--json]``: how the GPUs reach each other, as ``nvidia-smi topo -m`` shows it.

The matrix (``X``, ``NV#``, ``PIX``, ``PXB``, ``PHB``, ``NODE``, ``SYS``) comes from NVML's
topology calls (PCIe common ancestor, NVLink state and remote end), and each GPU's CPU and NUMA
affinity from ``nvmlDeviceGetCpuAffinity``/``nvmlDeviceGetMemoryAffinity``. Exit status 2 when
NVML cannot start.
"""

from __future__ import annotations

import json

from gpudock.exitcode import ExitCode
from gpudock.model import TOPOLOGY_LEGEND


def register(subparsers) -> None:
    p = subparsers.add_parser("topo", help="the GPU-to-GPU topology matrix and CPU/NUMA affinity (nvidia-smi topo -m)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args, host) -> int:
    snap = host.nvml.snapshot(processes=False)
    topo = snap.topology
    if args.json:
        out = {"source": snap.source, "nvml_error": snap.nvml_failure.to_json() if snap.nvml_failure else None}
        out.update(topo.to_json() if topo is not None else {"gpus": [], "matrix": []})
        print(json.dumps(out, indent=2))
        return ExitCode.FAILED if snap.nvml_failure else ExitCode.OK
    if snap.nvml_failure:
        f = snap.nvml_failure
        print(f"NVML could not start: {f.nvml_text}\n{f.message}")
        return ExitCode.FAILED
    print(render_topology_text(topo))
    return ExitCode.OK


def render_topology_text(topo) -> str:
    if topo is None or not topo.gpus:
        return "No GPUs."
    lines = topo.table_lines()
    lines.append("")
    lines.append("Legend:")
    lines.append("")
    lines += [f"  {key:<4} = {words}" for key, words in TOPOLOGY_LEGEND]
    return "\n".join(lines)
