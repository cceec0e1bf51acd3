"""GPU health and the daemons a GPU host needs: Xid events in the kernel log, persistence mode
and nvidia-persistenced, NVSwitch fabric manager (failures.md §16, §17, §22)."""

from __future__ import annotations

import time

from gpudock.doctor import xid as xidmod
from gpudock.doctor.facts import (
    FABRICMANAGER,
    KERNEL_LOG_TAIL,
    KERNEL_LOGS,
    PERSISTENCED,
    PERSISTENCED_PIDFILE,
    PERSISTENCED_SOCKET,
    HostFacts,
)
from gpudock.doctor.finding import Evidence, Finding, severity_rank
from gpudock.host import procfs

MAX_EVIDENCE = 10


def _gpu_names(f: HostFacts) -> dict[tuple[int, int, int], tuple[str, str | None]]:
    """PCI (domain, bus, device) -> (label, UUID) from NVML, else /proc/driver/nvidia/gpus."""
    out: dict[tuple[int, int, int], tuple[str, str | None]] = {}
    for g in f.proc_gpus or ():
        k = xidmod.bus_key(g.bdf)
        if k:
            out[k] = (f"{g.bdf}" + (f" (/dev/nvidia{g.minor})" if g.minor is not None else ""), g.uuid)
    if f.nvml and not f.nvml.nvml_failure:
        for g in f.nvml.gpus:
            k = xidmod.bus_key(g.pci_bus_id)
            if k:
                out[k] = (_gpu_label(g), g.uuid)
    return out


def _gpu_label(g) -> str:
    """GPU N (its bus id as NVML and the dashboard's wide table write it: 00000000:86:00.0)."""
    return f"GPU {g.index} ({g.pci_bus_id or g.uuid or '?'})"


def _procs(f: HostFacts, name: str):
    """(processes named ``name``, whether /proc showed any process at all)."""
    if f.processes is None or f.proc_count == 0:
        return (), False
    return f.processes.get(name, ()), True


def _proc_ev(p) -> Evidence:
    return Evidence(f"/proc/{p.pid}/cmdline", " ".join(p.cmdline) or p.name, "running")


# -- xid ---------------------------------------------------------------------------------------------------

_FIXES = (
    (
        lambda c: c is None or c == 79,
        "For a GPU off the bus: drain its workloads and reboot (a lost GPU needs a reset), then check cooling, power "
        "cables, slot seating and firmware; record its bus id/UUID so the scheduler avoids it; RMA if it recurs.",
    ),
    (
        lambda c: c in (48, 63, 64, 92, 94, 95),
        "For ECC events: look at 'nvidia-smi -q -d ECC,ROW_REMAPPER' (PAGE_RETIREMENT on older GPUs), drain the GPU and "  # noqa: E501
        "reset it ('nvidia-smi -r -i <index>') or reboot so pending remaps apply; RMA if uncorrectable errors recur.",
    ),
    (
        lambda c: c in (119, 120),
        "For GSP errors: drain and reboot (or reset the GPU); update the driver, GSP timeouts are often fixed in later "
        "releases.",
    ),
    (
        lambda c: c == 74,
        "For NVLink errors: check 'nvidia-smi nvlink -e', reset the GPU or reboot; reseat or RMA if it recurs.",
    ),
    (
        lambda c: c in xidmod.APP_FAULTS,
        "Xid 13/31/43/45 are usually application faults (a bad memory access, a killed process): look at the process "
        "named in the line; act on the GPU only if they repeat across different applications.",
    ),
)


def xid(f: HostFacts) -> Finding:
    fid = "xid"
    tail_mib = KERNEL_LOG_TAIL >> 20
    readable = [t for t in f.kernel_logs if t.text is not None]
    if not readable:
        unreadable = [t for t in f.kernel_logs if t.error]
        ev = tuple(Evidence(t.path, t.error, None) for t in f.kernel_logs) or tuple(
            Evidence(p, None, None) for p in KERNEL_LOGS
        )
        if unreadable:
            return Finding(
                fid,
                "info",
                "Could not read the kernel log",
                f"{', '.join(t.path for t in unreadable)}: {unreadable[0].error}. Xid events (GPU faults) "
                f"are reported there.",
                ev,
                (
                    "Run the doctor as root (or in the 'adm' group), or look yourself: "
                    if any("ermission" in (t.error or "") for t in unreadable)
                    else "Look yourself: "
                )
                + "'journalctl -k | grep -i -e xid -e \"fallen off the bus\"'.",
            )
        return Finding(
            fid,
            "info",
            "No kernel log file to read",
            f"None of {', '.join(KERNEL_LOGS)} exists here (a journald-only host keeps the kernel log in "
            f"the journal), so Xid events were not checked.",
            ev,
            "Look at the journal: 'journalctl -k | grep -i -e xid -e \"fallen off the bus\"'.",
        )
    events: list[tuple[str, xidmod.XidEvent]] = []
    seen: set[str] = set()
    for t in readable:
        for e in xidmod.parse(t.text, t.mtime):
            # kern.log and syslog carry the same kernel lines on Debian/Ubuntu: count each once.
            if e.line in seen:
                continue
            seen.add(e.line)
            events.append((t.path, e))
    boot = f.boot_time
    current = [(p, e) for p, e in events if boot is None or e.when is None or e.when >= boot]
    old = len(events) - len(current)
    names = _gpu_names(f)
    read_ev = [
        Evidence(
            t.path,
            f"last {tail_mib} MiB read" if t.offset else f"{t.size} bytes read",
            str(sum(1 for p, _ in events if p == t.path)),
        )
        for t in readable
    ]
    if not current:
        summary = f"No Xid or 'fallen off the bus' line in {', '.join(t.path for t in readable)}"
        summary += f" since the last boot ({old} before it)." if old else "."
        return Finding(
            fid,
            "ok",
            "No GPU fault in the kernel log",
            summary,
            tuple(read_ev),
            "",
            data={"events": [], "before_boot": old},
        )
    worst = max((e.severity for _, e in current), key=severity_rank)
    groups: dict[tuple, list[xidmod.XidEvent]] = {}
    for _, e in current:
        groups.setdefault((e.bus, e.code), []).append(e)

    def who(bus) -> str:
        if bus is None:
            return "unknown GPU"
        label, _ = names.get(bus, (None, None))
        bdf = f"{bus[0]:04x}:{bus[1]:02x}:{bus[2]:02x}.0"
        return label or (f"{bdf} (not a GPU gpudock sees now)" if names else bdf)

    order = sorted(groups.items(), key=lambda kv: (-severity_rank(xidmod.severity(kv[0][1])), -len(kv[1])))
    parts = []
    for (bus, code), evs in order:
        meaning = xidmod.XIDS[code][1] if code in xidmod.XIDS else "see NVIDIA's Xid catalog"
        what = "fallen off the bus" if code is None else f"Xid {code} ({meaning})"
        last = evs[-1].when
        parts.append(
            f"{who(bus)}: {what}"
            + (f" x{len(evs)}" if len(evs) > 1 else "")
            + (f", last {time.strftime('%b %d %H:%M:%S', time.localtime(last))}" if last else "")
        )
    summary = (
        ("Since the last boot: " if boot is not None else "")
        + "; ".join(parts[:8])
        + ("; ..." if len(parts) > 8 else "")
        + "."
    )
    if old:
        summary += f" {old} older event(s) from before the boot not counted."
    # Evidence: the most severe, then the most recent lines, verbatim.
    ranked = sorted(enumerate(current), key=lambda ie: (-severity_rank(ie[1][1].severity), -ie[0]))
    ev = [
        Evidence(p, e.line[:400], "fallen off the bus" if e.code is None else f"Xid {e.code}")
        for _, (p, e) in ranked[:MAX_EVIDENCE]
    ]
    ev.extend(read_ev)
    codes = {e.code for _, e in current}
    fixes = [text for match, text in _FIXES if any(match(c) for c in codes)]
    title = {
        "error": "A GPU reported a serious fault",
        "warning": "A GPU reported a fault",
        "info": "GPU faults from applications",
    }.get(worst, "Xid events in the kernel log")
    data = {
        "before_boot": old,
        "events": [
            {
                "code": e.code,
                "bus_id": e.bus_id,
                "gpu": who(e.bus),
                "uuid": names.get(e.bus, (None, None))[1],
                "severity": e.severity,
                "when": e.when,
                "source": p,
            }
            for p, e in current[-50:]
        ],
    }
    return Finding(
        fid,
        worst,
        title,
        summary,
        tuple(ev),
        " ".join(fixes) or "Look the code up in NVIDIA's Xid catalog; drain and reset the GPU if it recurs.",
        data=data,
    )


# -- persistence ---------------------------------------------------------------------------------------------

PERSISTENCE_FIX = (
    "Run the daemon: 'systemctl enable --now nvidia-persistenced' (or 'nvidia-smi -pm 1', lost at "
    "reboot). After a driver upgrade, make sure the daemon's version matches the driver."
)


def _persistenced(f: HostFacts) -> tuple[bool | None, list[Evidence], str]:
    """(running: True/False/None = cannot tell, evidence, how we know)."""
    procs, visible = _procs(f, PERSISTENCED)
    ev: list[Evidence] = [_proc_ev(p) for p in procs[:2]]
    pid = None
    if f.persistenced_pidfile is not None:
        txt = f.persistenced_pidfile.strip()
        pid = int(txt) if txt.isdigit() else None
        alive = ("running" if pid in {p.pid for p in procs} else "stale") if visible and pid else None
        ev.append(Evidence(PERSISTENCED_PIDFILE, txt[:40], alive or (str(pid) if pid else None)))
    else:
        ev.append(Evidence(PERSISTENCED_PIDFILE, None, None))
    ev.append(Evidence(PERSISTENCED_SOCKET, f.persistenced_socket or None, f.persistenced_socket))
    if visible:
        if procs:
            return True, ev, f"{PERSISTENCED} runs (pid {procs[0].pid})"
        stale = [
            x
            for x, present in (
                (PERSISTENCED_SOCKET, f.persistenced_socket),
                (PERSISTENCED_PIDFILE, f.persistenced_pidfile),
            )
            if present is not None
        ]
        ev.append(Evidence("/proc", f"no process named {PERSISTENCED} among {f.proc_count}", "not running"))
        return (
            False,
            ev,
            f"no {PERSISTENCED} process runs" + (f" ({' and '.join(stale)} left from an earlier run)" if stale else ""),
        )
    if f.persistenced_socket == "socket":
        return True, ev, f"{PERSISTENCED_SOCKET} exists (no /proc here to confirm the process)"
    if f.persistenced_socket is None and f.persistenced_pidfile is None:
        return False, ev, f"neither {PERSISTENCED_SOCKET} nor its pid file exists"
    return None, ev, f"{PERSISTENCED}'s state is unclear (no /proc here)"


def persistence(f: HostFacts) -> Finding:
    fid = "persistence"
    running, daemon_ev, how = _persistenced(f)
    gpus = f.nvml.gpus if f.nvml and not f.nvml.nvml_failure else ()
    off = [g for g in gpus if g.persistence_mode is False]
    ev = [Evidence("NVML", f"{_gpu_label(g)} persistence mode: Disabled", "off") for g in off[:8]]
    on = sum(1 for g in gpus if g.persistence_mode)
    if on:
        ev.append(
            Evidence(
                "NVML",
                f"persistence mode Enabled on {on} other GPU(s)" if off else f"persistence mode Enabled on {on} GPU(s)",
                str(on),
            )
        )
    unknown = sum(1 for g in gpus if g.persistence_mode is None)
    if unknown:
        ev.append(Evidence("NVML", f"persistence mode N/A on {unknown} GPU(s)", None))
    ev.extend(daemon_ev)
    data = {"persistenced": running, "persistence_off": [g.uuid for g in off]}
    if not gpus:
        why = "NVML was not asked" if not f.nvml_checked else "NVML gave no GPUs"
        if running:
            return Finding(
                fid,
                "ok",
                f"{PERSISTENCED} runs",
                f"{how[0].upper() + how[1:]}; it keeps the GPUs "
                f"initialised. ({why}, so per-GPU persistence mode was not read.)",
                tuple(ev),
                "",
                data=data,
            )
        return Finding(
            fid,
            "info",
            f"{PERSISTENCED} does not seem to run",
            f"{how[0].upper() + how[1:]}; {why}, so per-GPU persistence mode is unknown. Without "
            f"persistence, GPU containers can fail to start with 'nvidia-container-cli: initialization "
            f"error: driver rpc error: timed out'.",
            tuple(ev),
            PERSISTENCE_FIX if running is False else "",
            data=data,
        )
    names = ", ".join(_gpu_label(g) for g in off[:8]) + (", ..." if len(off) > 8 else "")
    if not off:
        return Finding(
            fid,
            "ok",
            "Persistence mode is on",
            f"No GPU reports persistence mode off; {how}.",
            tuple(ev),
            "",
            data=data,
        )
    if running:
        return Finding(
            fid,
            "info",
            f"{PERSISTENCED} runs, {len(off)} GPU(s) in persistence mode off",
            f"{how[0].upper() + how[1:]}, but {names} report persistence mode Disabled (the daemon was "
            f"started with --no-persistence-mode, or 'nvidia-smi -pm 0' was run).",
            tuple(ev),
            "If containers fail with 'driver rpc error: timed out', run 'nvidia-smi -pm 1' or restart "
            "nvidia-persistenced without --no-persistence-mode.",
            data=data,
        )
    return Finding(
        fid,
        "warning",
        f"Persistence mode off on {len(off)} GPU(s), no {PERSISTENCED}",
        f"Persistence mode is off on {names} and {how}. The driver tears idle GPUs down, and every "
        f"container start must bring them up again within the hook's timeout: on multi-GPU hosts this "
        f"fails with 'nvidia-container-cli: initialization error: driver rpc error: timed out'.",
        tuple(ev),
        PERSISTENCE_FIX,
        data=data,
    )


# -- fabric-manager ------------------------------------------------------------------------------------------

NVSWITCH = "nvidia-nvswitch"


def fabric_manager(f: HostFacts) -> Finding:
    fid = "fabric-manager"
    if f.majors is None:
        return Finding(
            fid,
            "info",
            "Could not check for NVSwitch",
            f"{procfs.DEVICES_FILE} is not readable here.",
            (Evidence(procfs.DEVICES_FILE, None, None),),
            "",
        )
    ev: list[Evidence] = []
    major = f.majors.get(NVSWITCH)
    ev.append(
        Evidence(
            procfs.DEVICES_FILE,
            f"{major} {NVSWITCH}" if major is not None else f"no {NVSWITCH} line",
            str(major) if major is not None else None,
        )
    )
    # NVSwitch chips are PCI bridges (class 0x0680) of vendor 0x10de.
    switches = [
        d
        for d in f.pci or ()
        if d.vendor == procfs.NVIDIA_VENDOR and d.pci_class is not None and d.pci_class >> 8 == 0x0680
    ]
    for d in switches[:4]:
        ev.append(
            Evidence(f"{procfs.PCI_DIR}/{d.bdf}", f"vendor 0x{d.vendor:04x} class 0x{d.pci_class:06x}", "NVSwitch")
        )
    if major is None and not switches:
        return Finding(
            fid,
            "ok",
            "No NVSwitch: fabric manager not needed",
            f"No {NVSWITCH} in {procfs.DEVICES_FILE} and no NVSwitch on the PCI bus.",
            tuple(ev),
            "",
        )
    procs, visible = _procs(f, FABRICMANAGER)
    ev.extend(_proc_ev(p) for p in procs[:2])
    kv = f.kernel_version
    fix = (
        f"Install nvidia-fabricmanager for exactly the driver's version ({kv or 'the loaded module'}) and run "
        f"'systemctl enable --now nvidia-fabricmanager'; restart it after every driver upgrade; on NVLink5 systems "
        f"(B200) load the InfiniBand modules it needs first. Check 'journalctl -u nvidia-fabricmanager' for why it "
        f"stopped."
    )
    where = (
        "NVSwitch present ("
        + (f"{NVSWITCH} major {major}" if major is not None else f"{len(switches)} NVSwitch PCI device(s)")
        + ")"
    )
    if procs:
        return Finding(
            fid, "ok", "Fabric manager runs", f"{where}; {FABRICMANAGER} runs (pid {procs[0].pid}).", tuple(ev), ""
        )
    if not visible:
        ev.append(Evidence("/proc", "no processes visible", None))
        return Finding(
            fid,
            "warning",
            "NVSwitch present; fabric manager state unknown",
            f"{where}, but no processes are visible under /proc here, so whether {FABRICMANAGER} runs "
            f"could not be told. Without it CUDA fails with 'system not yet initialized' (error 802).",
            tuple(ev),
            fix,
        )
    ev.append(Evidence("/proc", f"no process named {FABRICMANAGER} among {f.proc_count}", "not running"))
    return Finding(
        fid,
        "error",
        "NVSwitch system without fabric manager",
        f"{where}, but {FABRICMANAGER} is not running. nvidia-smi looks healthy, yet CUDA fails in every "
        f"container and on the host with 'system not yet initialized' (error 802).",
        tuple(ev),
        fix,
    )
