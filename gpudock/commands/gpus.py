"""``gpudock gpus [--json] [--brief]``: the GPU inventory, what the main screen shows.

Exit status 2 when NVML could not start (the report says why and what to do); the CLI never
simulates silently: without a driver it says so, and only ``--demo``/``--sim`` show a
simulated host.
"""

from __future__ import annotations

import json

from gpudock.exitcode import ExitCode
from gpudock.model import HostSnapshot


def register(sub) -> None:
    p = sub.add_parser("gpus", help="the GPU inventory (what the main screen shows)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--brief",
        dest="detail",
        action="store_false",
        help="with --json: only the table's fields, no details/processes/MIG",
    )
    p.set_defaults(func=run)


def run(args, host) -> int:
    snap = host.snapshot()
    if args.json:
        print(json.dumps(snap.to_json(detail=args.detail), indent=2))
    else:
        print(render_text(snap))
    return ExitCode.FAILED if snap.nvml_failure else ExitCode.OK


def _fmt(v, unit: str = "", nd: int | None = None) -> str:
    if v is None:
        return "N/A"
    if nd is not None and isinstance(v, float):
        return f"{v:.{nd}f}{unit}"
    return f"{v}{unit}"


def render_text(snap: HostSnapshot) -> str:
    if snap.nvml_failure:
        f = snap.nvml_failure
        return f"NVML could not start: {f.nvml_text}\n{f.message}"
    lines = [
        f"Driver {_fmt(snap.driver_version)}   CUDA {_fmt(snap.cuda_driver_version)}   "
        f"NVML {_fmt(snap.nvml_version)}   ({snap.source})",
        f"{'IDX':>3}  {'BUS ID':<16}  {'DEVICE':<12}  {'NAME':<24}  {'GPU%':>4}  {'MEM%':>4}  "
        f"{'MEMORY MiB':>13}  {'TEMP':>4}  {'POWER W':>9}",
    ]
    for g in snap.gpus:
        if g.error:
            lines.append(f"{g.index:>3}  {_fmt(g.pci_bus_id):<16}  {_fmt(g.device):<12}  ERROR: {g.error}")
            continue
        mem = f"{_fmt(g.memory_used_mib)}/{_fmt(g.memory_total_mib)}"
        pw = f"{_fmt(g.power_w, nd=0)}/{_fmt(g.power_limit_w, nd=0)}"
        lines.append(
            f"{g.index:>3}  {_fmt(g.pci_bus_id):<16}  {_fmt(g.device):<12}  {_fmt(g.name)[:24]:<24}  "
            f"{_fmt(g.utilization_gpu):>4}  {_fmt(g.utilization_memory):>4}  {mem:>13}  "
            f"{_fmt(g.temperature_c, 'C'):>4}  {pw:>9}"
        )
    return "\n".join(lines)
