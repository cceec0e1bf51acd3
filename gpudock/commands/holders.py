"""``gpudock holders [--json] [--all]``: which container holds each GPU, for scripts.

This module owns the CLI face of :mod:`gpudock.host.holders`: one snapshot of the GPUs and one
synchronous read of the Docker engine, both from the host session (:mod:`gpudock.session`), the
join, and either a readable report or the JSON shape documented in the README ("gpudock holders
--json").

Exit status: 0 all read and no conflicts; 1 conflicts found (listed); 2 NVML or the Docker engine
could not be read (the report still says what is known and what to do).

JSON shape (``--json``)::

    {
      "docker": {"state": "ok"|"connecting"|"unavailable", "base_url", "message" (what to do, or null),
                 "engine_version", "default_runtime", "nvidia_runtimes": [..], "containers": N},
      "source": "nvml" | "sim:<scenario>",   "nvml_error": null | {"code", "nvml_error", "message"},
      "gpus": [{"index", "uuid", "minor", "pci_bus_id", "name",
                "holders": [{"container_id", "name", "status",
                             "mechanisms": ["device"|"runtime-env"|"device-request"|"cdi", ..],
                             "selectors": ["/dev/nvidia3", "count=2", "all", "nvidia.com/gpu=0", ..],
                             "mig_uuids": [..]}],
                "reachable_by": [same shape as "holders", "mechanisms": ["privileged"],
                                 "selectors": ["--privileged"]: containers that can open this GPU
                                 without holding it],
                "processes": [{"pid" (host), "location": "container"|"foreign-container"|"host"|"unreadable",
                               "gpu_uuid", "gpu_index", "container_id", "container_name",
                               "container_pid" (NSpid inside the container), "used_memory_mib",
                               "type", "command", "mig_uuid",
                               "claimed": true|false|null (its container holds or can reach this GPU?),
                               "access": "claim"|"privileged"|null (which, when claimed is true)}]}],
      "containers": [{"id", "name", "image", "status", "runtime", "pid", "started_at", "error",
                      "claims": [{"mechanism", "selector", "gpu_uuid", "mig_uuid", "error"}],
                      "gpus": [{"uuid", "index", "minor", "mechanisms", "mig_uuids"}],
                      "processes": [same as above], "holds_all": bool,
                      "privileged": bool, "reachable_gpus": [same shape as "gpus": the GPUs it can
                                                             open without holding them]}],
      "conflicts": [{"kind": "shared"|"holds-all"|"no-container"|"foreign-container"|"unclaimed"|"unresolved"
                             |"privileged",
                     "message", "gpu_uuid", "gpu_index", "container_ids": [..], "pid"}]
    }

A ``--privileged`` container can open every GPU's device node. It is not a holder ("holders",
"gpus", the holder column and "holds_all" count explicit claims: devices, the runtime's
NVIDIA_VISIBLE_DEVICES, --gpus, CDI), so one that runs nothing does not hide the real holders; its
processes on any GPU are its own ("claimed": true, "access": "privileged" where no explicit claim
covers them, never an "unclaimed" conflict); every GPU it does not hold lists it in
"reachable_by" and its "reachable_gpus"; its "claims" hold one "privileged" claim per GPU
(selector "--privileged"); and while it runs it raises one "privileged" conflict (a warning like
"holds-all": it can use cards given to others; "gpu_uuid" null), so the exit status is 1. When it
does run a process on a card another running container holds, that is also a "shared" conflict on
that GPU, with the process's "pid".
"""

from __future__ import annotations

import json

from gpudock.exitcode import ExitCode
from gpudock.model import mechanism_label


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "holders",
        help="which container holds each GPU (and the processes on it)",
        description="Per GPU: the containers holding it and how (devices, nvidia runtime env, --gpus, CDI), "
        "and its processes with host PID, PID in the container and container. Per container: its GPUs. "
        "Conflicts: shared GPUs, containers holding every GPU, processes outside containers or on GPUs "
        "their container was not given.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output (shape in the README)")
    p.add_argument("--all", action="store_true", help="include stopped and created containers")
    p.set_defaults(func=cmd_holders)


def cmd_holders(args, host) -> int:
    snap = host.snapshot()
    hmap = host.holders(snap, all=bool(args.all))
    status = hmap.docker
    if args.json:
        out = hmap.to_json()
        out["nvml_error"] = snap.nvml_failure.to_json() if snap.nvml_failure else None
        out["source"] = snap.source
        print(json.dumps(out, indent=2))
    else:
        print(render_holders_text(hmap, snap))
    if snap.nvml_failure or status is None or not status.ok:
        return ExitCode.FAILED
    return ExitCode.FINDINGS if hmap.conflicts else ExitCode.OK


def _mib(v) -> str:
    return "N/A" if v is None else f"{v} MiB"


def render_holders_text(hmap, snap) -> str:
    lines: list[str] = []
    st = hmap.docker
    if st is not None:
        if st.ok:
            rts = ", ".join(st.nvidia_runtimes) or "none"
            lines.append(
                f"Docker {st.engine_version or '?'} at {st.base_url}: {st.containers} containers, "
                f"NVIDIA runtimes: {rts}, default runtime: {st.default_runtime}"
            )
        else:
            lines.append(f"Docker unavailable: {st.message}")
    if snap.nvml_failure:
        lines.append(f"NVML could not start: {snap.nvml_failure.nvml_text}\n{snap.nvml_failure.message}")
    lines.append("")
    for g in hmap.gpus:
        dev = f"/dev/nvidia{g.minor}" if g.minor is not None else "/dev/nvidia?"
        head = f"GPU {g.index}  {g.uuid or 'UUID N/A'}  {dev}"
        if not g.holders and not g.processes:
            lines.append(f"{head}  free")
            continue
        lines.append(head)
        for h in g.holders:
            how = ", ".join(mechanism_label(m) for m in h.mechanisms)
            sel = " ".join(h.selectors)
            mig = f" MIG {' '.join(h.mig_uuids)}" if h.mig_uuids else ""
            lines.append(f"    held by {h.name} ({h.short_id}, {h.status}) via {how}: {sel}{mig}")
        for p in g.processes:
            if p.container_name:
                where = f"in {p.container_name} as PID {p.container_pid if p.container_pid is not None else '?'}"
            elif p.container_id:
                where = f"in container {p.container_id[:12]} (not known to this Docker engine)"
            elif p.location == "host":
                where = "on the host (no container)"
            else:
                where = "(/proc entry unreadable: gone, or not visible from here)"
            flag = "  [not given this GPU]" if p.claimed is False else ""
            if p.access == "privileged":
                flag = "  [not given this GPU: reached through --privileged]"
            cmd = p.command or "?"
            lines.append(f"    process PID {p.pid} {where}: {cmd}, {_mib(p.used_memory_mib)}{flag}")
    if hmap.containers:
        lines.append("")
        w = max(4, max(len(c.name) for c in hmap.containers))
        lines.append(f"{'CONTAINER':<12}  {'NAME':<{w}}  {'STATUS':<10}  {'GPUS':<10}  HOW")
        for c in hmap.containers:
            mechs = [m for g in c.gpus for m in g.mechanisms] + (["privileged"] if c.privileged else [])
            how = ", ".join(dict.fromkeys(mechs)) or "-"
            gp = c.label() or "-"
            if c.reachable:
                gp += f" (+{len(c.reachable)} reachable)"
            if c.unresolved:
                gp += f" ({len(c.unresolved)} unresolved)"
            lines.append(f"{c.container.short_id:<12}  {c.name:<{w}}  {c.container.status:<10}  {gp:<10}  {how}")
    if hmap.conflicts:
        lines.append("")
        lines.append("Conflicts:")
        for c in hmap.conflicts:
            lines.append(f"  ! [{c.kind}] {c.message}")
    return "\n".join(lines)
