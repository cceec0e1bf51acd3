"""Device checks: nouveau, /dev/nvidia* nodes, nvidia-uvm, GPUs that stopped answering
(failures.md §6, §13, §16; nvidia-stack.md §10.1)."""

from __future__ import annotations

from gpudock.doctor.facts import HostFacts
from gpudock.doctor.finding import Evidence, Finding
from gpudock.host import procfs

NVIDIA_MAJOR = 195
CTL_MINOR = 255


def _modline(f: HostFacts, name: str) -> Evidence:
    if f.modules is None:
        return Evidence(procfs.MODULES_FILE, None, None)
    m = f.modules.get(name)
    return Evidence(procfs.MODULES_FILE, m.line if m else f"no line for {name}", "loaded" if m else "not loaded")


def _node_ev(n: procfs.DeviceNode, expect: str | None = None) -> Evidence:
    value = f"{n.major}:{n.minor}" if n.exists and n.is_char else ("missing" if not n.exists else "not a char device")
    line = n.describe() + (f" (expected {expect})" if expect else "")
    return Evidence(n.path, line, value)


def _node(f: HostFacts, path: str) -> procfs.DeviceNode:
    n = f.nodes.get(path)
    if n is None:
        # device_nodes() lists what exists; stat again to tell "missing" from "unreadable".
        n = procfs.device_node(f.root, path)
    return n


def nvidia_major(f: HostFacts) -> tuple[int, Evidence]:
    """The major of /dev/nvidia* from /proc/devices ("nvidia-frontend" before 550.40, then
    "nvidia"/"nvidiactl"); 195 when /proc/devices does not say (it is fixed)."""
    for name in ("nvidiactl", "nvidia", "nvidia-frontend"):
        if f.majors and name in f.majors:
            return f.majors[name], Evidence(procfs.DEVICES_FILE, f"{f.majors[name]} {name}", str(f.majors[name]))
    return NVIDIA_MAJOR, Evidence(
        procfs.DEVICES_FILE, None if f.majors is None else "no nvidia line", str(NVIDIA_MAJOR)
    )


# -- nouveau ------------------------------------------------------------------------------------------


def _blacklisted(f: HostFacts) -> list[Evidence]:
    ev = []
    for p in f.root.glob("/etc/modprobe.d/*.conf") + f.root.glob("/lib/modprobe.d/*.conf"):
        try:
            text = f.root.read_text(p) or ""
        except OSError:
            continue
        for line in text.splitlines():
            s = line.strip()
            if s.startswith("blacklist") and "nouveau" in s or ("nouveau" in s and "modeset=0" in s):
                ev.append(Evidence(p, s, "blacklisted"))
    try:
        cmdline = (f.root.read_text("/proc/cmdline") or "").strip()
    except OSError:
        cmdline = ""
    if "nouveau" in cmdline:
        ev.append(Evidence("/proc/cmdline", cmdline, "nouveau on the kernel command line"))
    return ev


def nouveau(f: HostFacts) -> Finding:
    fid = "nouveau"
    fix = (
        "Blacklist nouveau: create /etc/modprobe.d/blacklist-nouveau.conf with 'blacklist nouveau' and "
        "'options nouveau modeset=0', regenerate the initramfs ('update-initramfs -u' or 'dracut -f'), "
        "reboot, and check that /sys/bus/pci/devices/<bdf>/driver points to nvidia."
    )
    loaded = f.modules is not None and "nouveau" in f.modules
    bound = [d for d in (f.pci or ()) if d.driver == "nouveau"]
    if f.modules is None and f.pci is None:
        return Finding(
            fid,
            "info",
            "Could not check for nouveau",
            f"{procfs.MODULES_FILE} and {procfs.PCI_DIR} are not readable here.",
            (_modline(f, "nouveau"), Evidence(procfs.PCI_DIR, None, None)),
            "Run the doctor on the host (or with --root pointing at a copy that includes /proc and /sys).",
        )
    if not loaded and not bound and f.modules is None:
        return Finding(
            fid,
            "info",
            "Could not read the module list",
            f"{procfs.MODULES_FILE} is not readable here; no NVIDIA PCI device is bound to nouveau.",
            (_modline(f, "nouveau"),),
            "Run the doctor on the host (or with --root including /proc).",
        )
    if not loaded and not bound:
        ev = [_modline(f, "nouveau")]
        for d in (f.pci or ())[:8]:
            ev.append(Evidence(f"{procfs.PCI_DIR}/{d.bdf}/driver", d.driver or "(no driver bound)", d.driver))
        return Finding(
            fid,
            "ok",
            "nouveau is not loaded",
            "The open-source nouveau driver is not loaded and no NVIDIA device is bound to it.",
            tuple(ev),
            "",
        )
    ev = [_modline(f, "nouveau")]
    for d in bound:
        ev.append(Evidence(f"{procfs.PCI_DIR}/{d.bdf}/driver", "-> .../drivers/nouveau", "nouveau"))
    bl = _blacklisted(f)
    ev += bl
    who = ", ".join(d.bdf for d in bound)
    summary = (
        "nouveau is loaded"
        + (f" and drives {who}" if bound else "")
        + ": the NVIDIA driver cannot bind those GPUs (dmesg: 'NVRM: The NVIDIA probe routine was not "
        "called'), so NVML reports 'Driver Not Loaded' or no devices."
    )
    if bl:
        summary += " A blacklist exists on disk, so the initramfs probably still loads nouveau."
    return Finding(
        fid,
        "error",
        "nouveau owns the GPU" if bound else "nouveau is loaded",
        summary,
        tuple(ev),
        fix,
        data={"bound": [d.bdf for d in bound]},
    )


# -- device-nodes -------------------------------------------------------------------------------------


def _gpu_minors(f: HostFacts) -> list[tuple[str, int, Evidence]]:
    """(bus id, minor, evidence) per GPU: procfs first (no NVML needed), else NVML."""
    out = []
    for g in f.proc_gpus or ():
        if g.minor is not None:
            out.append((g.bdf, g.minor, Evidence(g.source, g.minor_line or f"Device Minor: {g.minor}", str(g.minor))))
    if not out and f.nvml and not f.nvml.nvml_failure:
        for g in f.nvml.gpus:
            if g.minor is not None:
                out.append(
                    (
                        g.sysfs_bus_id or str(g.index),
                        g.minor,
                        Evidence(
                            "NVML",
                            f"GPU {g.index} {g.pci_bus_id}: nvmlDeviceGetMinorNumber() = {g.minor}",
                            str(g.minor),
                        ),
                    )
                )
    return out


def device_nodes(f: HostFacts) -> Finding:
    fid = "device-nodes"
    major, major_ev = nvidia_major(f)
    gpus = _gpu_minors(f)
    ev: list[Evidence] = [major_ev]
    problems: list[str] = []
    loaded = f.module_loaded or f.driver is not None
    if not loaded and not gpus:
        present = sorted(p for p in f.nodes if p.startswith("/dev/nvidia"))
        ev.append(Evidence(procfs.VERSION_FILE, None, None))
        for p in present[:6]:
            ev.append(_node_ev(f.nodes[p]))
        return Finding(
            fid,
            "info",
            "No NVIDIA kernel module loaded: device nodes not checked",
            "Without the nvidia module there is nothing to compare /dev/nvidia* with"
            + (f"; {len(present)} stale node(s) exist." if present else "."),
            tuple(ev),
            "Load the driver first (see 'nvml-init').",
        )
    expected = [("/dev/nvidiactl", CTL_MINOR, None)] + [(f"/dev/nvidia{m}", m, (bdf, gev)) for bdf, m, gev in gpus]
    for path, minor, gpu in expected:
        n = _node(f, path)
        want = f"char {major}:{minor}"
        if gpu:
            ev.append(gpu[1])
        ev.append(_node_ev(n, want))
        if not n.exists:
            problems.append(f"{path} is missing" + (f" (GPU {gpu[0]})" if gpu else ""))
        elif not n.is_char:
            problems.append(f"{path} is not a character device")
        elif (n.major, n.minor) != (major, minor):
            problems.append(
                f"{path} is {n.major}:{n.minor}, expected {major}:{minor}" + (f" (GPU {gpu[0]})" if gpu else "")
            )
    known = {p for p, _, _ in expected}
    for p, n in sorted(f.nodes.items()):
        tail = p[len("/dev/nvidia") :]
        if p.startswith("/dev/nvidia") and tail.isdigit() and p not in known and gpus:
            ev.append(_node_ev(n))
            problems.append(f"{p} exists but no GPU has minor {tail} (a stale node, or a GPU the driver lost)")
    if not gpus:
        problems.append(
            "no GPU is listed in /proc/driver/nvidia/gpus (and NVML gave none), so no /dev/nvidiaN could be checked"
        )
    if not problems:
        return Finding(
            fid,
            "ok",
            f"Device nodes are right ({len(gpus)} GPU(s))",
            f"/dev/nvidiactl and /dev/nvidiaN for every GPU exist with major {major} and the right minors.",
            tuple(ev),
            "",
        )
    severity = (
        "error" if any("missing" in p or "expected" in p or "not a character" in p for p in problems) else "warning"
    )
    return Finding(
        fid,
        severity,
        "Device nodes are missing or wrong",
        "; ".join(problems) + ".",
        tuple(ev),
        "Recreate the nodes: 'nvidia-modprobe -c <minor>' for each GPU (it also creates /dev/nvidiactl), "
        "or 'rm' the wrong node and reload the driver so udev recreates it; then recreate GPU containers "
        "(they copied the old nodes). Never mknod by hand with guessed numbers: the minor is 'Device "
        "Minor' in /proc/driver/nvidia/gpus/<bdf>/information.",
        data={"problems": problems},
    )


# -- uvm ---------------------------------------------------------------------------------------------


def uvm(f: HostFacts) -> Finding:
    fid = "uvm"
    fix_load = (
        "Load it and create its nodes: 'modprobe nvidia-uvm && nvidia-modprobe -u -c=0'; make it "
        "persistent with 'nvidia-uvm' in /etc/modules-load.d/nvidia.conf (headless hosts do not load it "
        "on their own); then recreate GPU containers (CUDA in them fails with error 999 / 'CUDA unknown "
        "error' while nvidia-smi still works)."
    )
    ev = [_modline(f, "nvidia_uvm")]
    if f.modules is None:
        return Finding(
            fid,
            "info",
            "Could not read the module list",
            f"{procfs.MODULES_FILE} is not readable here.",
            tuple(ev),
            "Run the doctor on the host (or with --root including /proc).",
        )
    if "nvidia" not in f.modules:
        return Finding(
            fid,
            "info",
            "nvidia module not loaded: uvm not checked",
            "nvidia_uvm depends on the nvidia module, which is not loaded.",
            tuple(ev + [_modline(f, "nvidia")]),
            "Load the driver first (see 'nvml-init').",
        )
    if "nvidia_uvm" not in f.modules:
        return Finding(
            fid,
            "error",
            "nvidia_uvm is not loaded",
            "The nvidia module is loaded but nvidia_uvm is not: CUDA cannot start (cuInit returns 999, "
            "PyTorch 'CUDA unknown error') although nvidia-smi works.",
            tuple(ev),
            fix_load,
        )
    uvm_major = (f.majors or {}).get("nvidia-uvm")
    ev.append(
        Evidence(
            procfs.DEVICES_FILE,
            f"{uvm_major} nvidia-uvm"
            if uvm_major is not None
            else (None if f.majors is None else "no nvidia-uvm line"),
            str(uvm_major) if uvm_major is not None else None,
        )
    )
    problems = []
    if uvm_major is None:
        problems.append("/proc/devices has no nvidia-uvm major")
    for path, minor in (("/dev/nvidia-uvm", 0), ("/dev/nvidia-uvm-tools", 1)):
        n = _node(f, path)
        ev.append(_node_ev(n, f"char {uvm_major}:{minor}" if uvm_major is not None else None))
        if not n.exists:
            problems.append(f"{path} is missing")
        elif not n.is_char:
            problems.append(f"{path} is not a character device")
        elif uvm_major is not None and (n.major, n.minor) != (uvm_major, minor):
            problems.append(
                f"{path} is {n.major}:{n.minor} but /proc/devices gives nvidia-uvm major {uvm_major} "
                f"(the major is dynamic; the node is from an earlier boot)"
            )
    if not problems:
        return Finding(
            fid,
            "ok",
            "nvidia_uvm loaded, nodes right",
            f"nvidia_uvm is loaded and /dev/nvidia-uvm, /dev/nvidia-uvm-tools have major {uvm_major}.",
            tuple(ev),
            "",
        )
    sev = (
        "error"
        if any("nvidia-uvm is" in p or "/dev/nvidia-uvm is missing" in p or "major" in p for p in problems)
        else "warning"
    )
    return Finding(
        fid,
        sev,
        "nvidia-uvm device nodes are missing or wrong",
        "; ".join(problems) + ".",
        tuple(ev),
        "Recreate the nodes with 'nvidia-modprobe -u -c=0' (after 'rm' of a wrong node); regenerate the "
        "CDI spec if you use CDI ('nvidia-ctk cdi generate'); recreate GPU containers.",
        data={"problems": problems},
    )


# -- gpu-lost ------------------------------------------------------------------------------------------


def gpu_lost(f: HostFacts) -> Finding:
    fid = "gpu-lost"
    ev: list[Evidence] = []
    problems = []
    gpus_pci = [d for d in (f.pci or ()) if d.is_nvidia_gpu]
    for d in gpus_pci:
        if d.config_vendor == 0xFFFF:
            ev.append(Evidence(f"{procfs.PCI_DIR}/{d.bdf}/config", "vendor id 0xffff", "0xffff"))
            problems.append(f"{d.bdf} does not answer on the PCI bus (config space reads 0xffff, lspci 'rev ff')")
    if f.nvml and not f.nvml.nvml_failure:
        for g in f.nvml.gpus:
            if g.error:
                ev.append(Evidence("NVML", f"GPU {g.index} {g.pci_bus_id or ''}: {g.error}", g.uuid))
                problems.append(f"GPU {g.index} ({g.pci_bus_id or g.uuid or '?'}): {g.error}")
    driven = f.proc_gpus
    if driven is not None and gpus_pci and (f.module_loaded or f.driver):
        bound = [d for d in gpus_pci if d.driver == "nvidia"]
        missing = [d.bdf for d in bound if d.bdf not in {g.bdf for g in driven}]
        if missing:
            problems.append(f"bound to nvidia but absent from /proc/driver/nvidia/gpus: {', '.join(missing)}")
            ev.append(Evidence(procfs.GPUS_DIR, " ".join(g.bdf for g in driven) or "(empty)", str(len(driven))))
    if not gpus_pci and f.pci is None and not (f.nvml and f.nvml.gpus):
        return Finding(
            fid,
            "info",
            "Could not check GPU health",
            f"{procfs.PCI_DIR} is not readable here and NVML gave no GPUs.",
            (Evidence(procfs.PCI_DIR, None, None),),
            "",
        )
    if not problems and not gpus_pci and not (f.nvml and f.nvml.gpus):
        return Finding(
            fid,
            "info",
            "No NVIDIA GPU found",
            f"No NVIDIA display device in {procfs.PCI_DIR} and no GPU from NVML.",
            (Evidence(procfs.PCI_DIR, "no device with vendor 0x10de, class 0x03xxxx", "0"),),
            "",
        )
    if not problems:
        for d in gpus_pci[:8]:
            ev.append(
                Evidence(
                    f"{procfs.PCI_DIR}/{d.bdf}",
                    f"vendor 0x{d.vendor:04x} class 0x{(d.pci_class or 0):06x} driver {d.driver}",
                    d.driver,
                )
            )
        n = len(gpus_pci) or (len(f.nvml.gpus) if f.nvml else 0)
        return Finding(
            fid, "ok", f"Every GPU answers ({n})", "No GPU reads 0xffff on the bus or fails in NVML.", tuple(ev), ""
        )
    return Finding(
        fid,
        "error",
        "A GPU stopped answering",
        "; ".join(problems) + ".",
        tuple(ev),
        "Drain the workloads on that GPU and reboot (a lost GPU needs a reset; 'nvidia-smi -r' rarely "
        "works after Xid 79); check 'dmesg | grep -i xid', cooling, power cables, slot seating and "
        "firmware; record the bus id/UUID so the scheduler avoids it; RMA if it recurs.",
        data={"problems": problems},
    )
