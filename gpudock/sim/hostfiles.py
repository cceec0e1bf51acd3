"""The simulated host's files: a directory that the unchanged probes read as ``--root``.

This module owns laying out, for a scenario (its GPUs, ``[docker]`` and ``[host]``,
:mod:`gpudock.sim.host_spec`), every file gpudock reads on a real host, in the real layouts:

* the kernel side: ``/proc/driver/nvidia/version`` (and per-GPU ``information``), ``/proc/modules``,
  ``/proc/devices``, ``/proc/stat``, ``/proc/sys/kernel/osrelease``, ``/sys/module/nvidia/version``,
  ``/sys/bus/pci/devices/<bdf>``, ``/sys/fs/cgroup``, an ``nvidia.ko`` with a real ``.modinfo``
  section under ``/lib/modules/<kernel>``;
* ``/dev/nvidia*``: an unprivileged process cannot mknod, so each node is a placeholder file and
  the node itself is in :attr:`HostFiles.devices`, which the session hands to
  :class:`~gpudock.host.root.HostRoot` (the one place where gpudock stats ``/dev``);
* user space: the driver's libraries (small placeholder files with the real names and soname
  links) and a real ``/etc/ld.so.cache`` listing them (``ldconfig -C FILE -p`` reads it), the
  toolkit's binaries, ``config.toml`` and ``daemon.json``;
* processes under ``/proc``: the GPU processes and the containers' (:mod:`gpudock.sim.procfs`),
  dockerd (its PATH, its command line), nvidia-persistenced and nv-fabricmanager when they run;
* ``/var/log/kern.log`` with the scenario's kernel log lines.

The engine's socket belongs under ``/run`` too (``/var/run`` links there, as on Debian):
:class:`gpudock.sim.host.SimHost` starts the simulated engine at :data:`DOCKER_SOCKET`.
Nothing here touches this machine's own files outside the directory it is given.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from gpudock.host.root import DeviceSpec
from gpudock.sim.host_spec import HostSpec
from gpudock.sim.ldcache_writer import Rec, build_cache, ldconfig_order
from gpudock.sim.procfs import write_proc
from gpudock.sim.scenario import Scenario

__all__ = ["HostFiles", "write_host_files", "DOCKER_SOCKET", "modinfo_elf"]

DOCKER_SOCKET = "/run/docker.sock"
NVIDIA_MAJOR = 195
UVM_MAJOR = 511
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Host PIDs of the daemons (the GPU processes' and containers' PIDs come from the scenario).
DAEMON_PIDS = {"containerd": 1043, "dockerd": 1187, "nvidia-persistenced": 987, "nv-fabricmanager": 1012}

_PROPRIETARY = (
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  {v}  Thu Oct 19 18:56:32 UTC 2023\n"
    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14) \n"
)
_OPEN = (
    "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {v}  Release Build  "
    "(dvs-builder@U16-I3-B03-4-3)  Tue May  7 03:27:42 UTC 2024\n"
    "GCC version:  gcc version 12.3.0 (Ubuntu 12.3.0-1ubuntu1~22.04) \n"
)
_MODULE_LINES = {
    "ext4": "ext4 1003520 1 - Live 0xffffffffc0400000",
    "nvidia": "nvidia 56823808 {n} nvidia_uvm,nvidia_modeset, Live 0xffffffffc0e00000 (POE)",
    "nvidia_uvm": "nvidia_uvm 1368064 {n} - Live 0xffffffffc0c80000 (POE)",
    "nvidia_modeset": "nvidia_modeset 1249280 1 nvidia_drm, Live 0xffffffffc0b40000 (POE)",
    "nvidia_drm": "nvidia_drm 77824 0 - Live 0xffffffffc0b20000 (POE)",
    "nouveau": "nouveau 2433024 0 - Live 0xffffffffc1a00000",
}
# The toolkit's files (placeholders: a simulated host runs nothing).
_TOOLKIT_BINARIES = (
    "/usr/bin/nvidia-container-runtime-hook",
    "/usr/bin/nvidia-container-runtime",
    "/usr/bin/nvidia-ctk",
    "/usr/bin/nvidia-container-cli",
)
_LIB_DIR = "/usr/lib/x86_64-linux-gnu"
_FLAGS = {"x86-64": 0x0303, "i386": 0x0003}  # libc6,x86-64 / libc6
_BASE_LIBS = (("libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6"), ("libm.so.6", "/lib/x86_64-linux-gnu/libm.so.6"))


@dataclass(frozen=True)
class HostFiles:
    """A laid-out simulated host: ``root`` (the directory), ``devices`` (host path -> (major,
    minor, mode) of the nodes its placeholders stand for), ``proc_root`` (``root``/proc)."""

    root: str
    devices: dict[str, DeviceSpec]

    @property
    def proc_root(self) -> str:
        return os.path.join(self.root, "proc")

    @property
    def docker_socket(self) -> str:
        return self.root + DOCKER_SOCKET


def write_host_files(scenario: Scenario, directory: str | os.PathLike) -> HostFiles:
    """Lay out ``scenario``'s host under ``directory`` (created; must be empty or absent)."""
    base = Path(directory)
    base.mkdir(parents=True, exist_ok=True)
    spec = scenario.host
    if spec is None:  # a Scenario built in code without parse_scenario
        from gpudock.sim.host_spec import parse_host

        spec = parse_host(None, "[host]", name=scenario.name, driver_version=scenario.driver_version)
    w = _Writer(base)
    w.link("/var/run", "../run")
    w.text("/etc/hostname", spec.hostname + "\n")
    w.text("/proc/sys/kernel/hostname", spec.hostname + "\n")
    _kernel(w, scenario, spec)
    devices = _dev(w, scenario, spec)
    _libraries(w, spec)
    _toolkit(w, scenario, spec)
    if spec.cdi_spec:
        w.text("/etc/cdi/nvidia.yaml", cdi_spec_text(scenario, spec, devices))
    write_proc(scenario, base / "proc")
    _daemons(w, spec)
    if spec.kernel_log:
        w.text("/var/log/kern.log", "".join(line.rstrip("\n") + "\n" for line in spec.kernel_log))
    for path, text in spec.files:
        w.text(path, text)
    _installed_before_boot(base, spec.boot_time)
    return HostFiles(str(base), devices)


def _installed_before_boot(base: Path, boot_time: int) -> None:
    """Date every file an hour before the host booted, as a host's installed files are: the
    doctor compares install times with the daemons' start times (a hook installed after dockerd
    started is not registered), and the same scenario must give the same findings every time."""
    t = boot_time - 3600
    for dirpath, dirnames, filenames in os.walk(base):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (t, t), follow_symlinks=False)


class _Writer:
    def __init__(self, base: Path) -> None:
        self.base = base

    def path(self, host: str) -> Path:
        p = self.base / host.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def mkdir(self, host: str) -> None:
        (self.base / host.lstrip("/")).mkdir(parents=True, exist_ok=True)

    def text(self, host: str, text: str, mode: int | None = None) -> None:
        p = self.path(host)
        p.write_text(text)
        if mode is not None:
            os.chmod(p, mode)

    def data(self, host: str, data: bytes) -> None:
        self.path(host).write_bytes(data)

    def link(self, host: str, target: str) -> None:
        p = self.path(host)
        if p.is_symlink() or p.exists():
            p.unlink()
        p.symlink_to(target)


def _sysfs_bdf(nvml_bus: str) -> str:
    """NVML's 00000000:05:00.0 as sysfs and procfs name it: 0000:05:00.0."""
    domain, _, rest = nvml_bus.partition(":")
    return f"{int(domain, 16):04x}:{rest}".lower()


def _kernel(w: _Writer, sc: Scenario, spec: HostSpec) -> None:
    w.text("/proc/sys/kernel/osrelease", spec.kernel + "\n")
    w.text("/proc/stat", f"cpu  4705 356 584 3699176 23 23 0 0 0 0\nbtime {spec.boot_time}\nprocesses 5312\n")
    modules = ["ext4"]
    chars = ["  1 mem", "  4 /dev/vc/0", "  4 tty", "  5 /dev/tty", " 10 misc"]
    users = len(sc.gpus)
    if spec.module:
        modules += ["nvidia", "nvidia_modeset", "nvidia_drm"] + (["nvidia_uvm"] if spec.uvm else [])
        chars += [f"{NVIDIA_MAJOR} nvidia", f"{NVIDIA_MAJOR} nvidia-modeset", f"{NVIDIA_MAJOR} nvidiactl"]
        if spec.uvm:
            chars.append(f"{UVM_MAJOR} nvidia-uvm")
        if spec.nvswitch:
            chars.append("509 nvidia-nvswitch")
        w.text(
            "/proc/driver/nvidia/version",
            (_OPEN if spec.module_flavor == "open" else _PROPRIETARY).format(v=spec.module),
        )
        w.text("/sys/module/nvidia/version", spec.module + "\n")
    if spec.nouveau:
        modules.append("nouveau")
    w.text("/proc/modules", "".join(_MODULE_LINES[m].format(n=users) + "\n" for m in modules))
    w.text("/proc/devices", "Character devices:\n" + "\n".join(chars) + "\n\nBlock devices:\n  8 sd\n")
    if spec.cgroup == 2:
        w.text("/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n")
    else:
        for ctl in ("cpu", "devices", "memory", "pids"):
            w.path(f"/sys/fs/cgroup/{ctl}/tasks").write_text("")
    if spec.module_on_disk:
        info = {
            "version": spec.module_on_disk,
            "license": "Dual MIT/GPL" if spec.module_flavor == "open" else "NVIDIA",
            "vermagic": f"{spec.kernel} SMP preempt mod_unload modversions",
        }
        w.data(f"/lib/modules/{spec.kernel}/updates/dkms/nvidia.ko", modinfo_elf(info))
    for g in sc.gpus:
        bdf = _sysfs_bdf(g.pci_bus_id)
        if spec.module:
            w.text(
                f"/proc/driver/nvidia/gpus/{bdf}/information",
                f"Model: \t\t {g.name}\nIRQ:   \t\t 150\nGPU UUID: \t {g.uuid}\nVideo BIOS: \t 96.00.74.00.0d\n"
                f"Bus Type: \t PCIe\nDMA Size: \t 52 bits\nDMA Mask: \t 0xfffffffffffff\nBus Location: \t {bdf}\n"
                f"Device Minor: \t {g.minor if g.minor is not None else '?'}\nGPU Excluded:\t No\n",
            )
        _pci(w, bdf, 0x030200, "nvidia" if spec.module else None, lost=g.lost)
    if spec.nvswitch:
        for i in range(4):
            _pci(w, f"0000:{0x85 + i:02x}:00.0", 0x068000, "nvidia-nvswitch" if spec.module else None)


def _pci(w: _Writer, bdf: str, cls: int, driver: str | None, *, lost: bool = False) -> None:
    real = f"/sys/devices/pci0000:00/{bdf}"
    w.text(f"{real}/vendor", "0x10de\n")
    w.text(f"{real}/device", "0x2330\n" if cls >> 16 == 0x03 else "0x22a3\n")
    w.text(f"{real}/class", f"0x{cls:06x}\n")
    # A GPU that fell off the bus answers config reads with all ones.
    w.data(f"{real}/config", (b"\xff\xff\xff\xff" if lost else b"\xde\x10\x30\x23") + b"\0" * 60)
    if driver:
        w.mkdir(f"/sys/bus/pci/drivers/{driver}")
        w.link(f"{real}/driver", f"../../../bus/pci/drivers/{driver}")
    w.link(f"/sys/bus/pci/devices/{bdf}", f"../../../devices/pci0000:00/{bdf}")


def _dev(w: _Writer, sc: Scenario, spec: HostSpec) -> dict[str, DeviceSpec]:
    nodes: dict[str, DeviceSpec] = {}
    if spec.module:
        nodes["/dev/nvidiactl"] = (NVIDIA_MAJOR, 255, 0o666)
        nodes["/dev/nvidia-modeset"] = (NVIDIA_MAJOR, 254, 0o666)
        for g in sc.gpus:
            if g.minor is not None:
                nodes[f"/dev/nvidia{g.minor}"] = (NVIDIA_MAJOR, g.minor, 0o666)
        if spec.uvm:
            nodes["/dev/nvidia-uvm"] = (UVM_MAJOR, 0, 0o666)
            nodes["/dev/nvidia-uvm-tools"] = (UVM_MAJOR, 1, 0o666)
    for missing in spec.missing_nodes:
        nodes.pop(missing, None)
    w.mkdir("/dev")
    w.mkdir("/var/log")
    for path, (major, minor, _mode) in nodes.items():
        w.path(path).write_text("")  # the placeholder the root's device table stands behind
        if spec.dev_char_links:  # udev makes them; runc resolves device rules through them
            w.link(f"/dev/char/{major}:{minor}", f"..{path[len('/dev') :]}")
    return nodes


def _lib_file(so: str, version: str) -> str:
    """libcuda.so.1 -> libcuda.so.535.129.03 (the file a driver install puts beside the link)."""
    stem = so.split(".so", 1)[0]
    return f"{stem}.so.{version}"


def _libraries(w: _Writer, spec: HostSpec) -> None:
    recs = [Rec(so, path) for so, path in _BASE_LIBS]
    for _so, path in _BASE_LIBS:
        w.text(path, "simulated by gpudock\n")
    dirs: list[str] = []
    for lib in spec.libraries:
        if lib.dir not in dirs:
            dirs.append(lib.dir)
        for so in lib.sonames:
            name = _lib_file(so, lib.version)
            w.text(f"{lib.dir}/{name}", f"simulated by gpudock: {name} (NVIDIA driver {lib.version})\n")
            w.link(f"{lib.dir}/{so}", name)
            recs.append(Rec(so, f"{lib.dir}/{so}", flags=_FLAGS[lib.arch]))
    if spec.toolkit:
        name = f"libnvidia-container.so.{spec.toolkit}"
        w.text(f"{_LIB_DIR}/{name}", f"simulated by gpudock: {name}\n")
        w.link(f"{_LIB_DIR}/libnvidia-container.so.1", name)
        recs.append(Rec("libnvidia-container.so.1", f"{_LIB_DIR}/libnvidia-container.so.1"))
    conf = "".join(f"{d}\n" for d in dirs if d not in ("/lib/x86_64-linux-gnu", _LIB_DIR))
    w.text("/etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf\n")
    w.text(
        "/etc/ld.so.conf.d/x86_64-linux-gnu.conf",
        f"{conf}/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n{_LIB_DIR}\n",
    )
    w.data("/etc/ld.so.cache", build_cache(ldconfig_order(recs), "new"))


def _toolkit(w: _Writer, sc: Scenario, spec: HostSpec) -> None:
    if spec.toolkit:
        for b in _TOOLKIT_BINARIES:
            w.text(b, "#!/bin/sh\necho 'simulated by gpudock: nothing runs here' >&2\nexit 1\n", mode=0o755)
        text = spec.config_toml
        if text is None:
            from gpudock.toolkit.config import default_config_text

            text = default_config_text(ldconfig="@/sbin/ldconfig")
        w.text("/etc/nvidia-container-runtime/config.toml", text)
    elif spec.config_toml is not None:
        w.text("/etc/nvidia-container-runtime/config.toml", spec.config_toml)
    daemon = spec.daemon_json
    if daemon is None and sc.docker is not None:
        runtimes = {
            n: {"path": p, "runtimeArgs": []}
            for n, p in sc.docker.runtimes
            if n not in ("runc", "io.containerd.runc.v2")
        }
        doc: dict = {}
        if runtimes:
            doc["runtimes"] = runtimes
        if sc.docker.default_runtime != "runc":
            doc["default-runtime"] = sc.docker.default_runtime
        daemon = json.dumps(doc, indent=4) + "\n" if doc else None
    if daemon is not None:
        w.text("/etc/docker/daemon.json", daemon)


def cdi_spec_text(sc: Scenario, spec: HostSpec, devices: dict[str, DeviceSpec]) -> str:
    """/etc/cdi/nvidia.yaml for this host, in the layout ``nvidia-ctk cdi generate`` writes: one
    device per GPU by index and by UUID, and "all"; the control nodes and the driver's libraries
    (the loader's picks for this host's driver) in the common edits."""
    import yaml

    def node(path: str) -> dict:
        return {"path": path}

    gpus = [g for g in sc.gpus if g.minor is not None and f"/dev/nvidia{g.minor}" in devices]
    entries = []
    for i, g in enumerate(sc.gpus):
        if g in gpus:
            edits = {"deviceNodes": [node(f"/dev/nvidia{g.minor}")]}
            entries.append({"name": str(i), "containerEdits": edits})
            entries.append({"name": g.uuid, "containerEdits": edits})
    entries.append({"name": "all", "containerEdits": {"deviceNodes": [node(f"/dev/nvidia{g.minor}") for g in gpus]}})
    control = [
        p for p in ("/dev/nvidia-modeset", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidiactl") if p in devices
    ]
    mounts = []
    version = spec.module or sc.driver_version
    for lib in spec.libraries:
        if lib.version == version and lib.arch == "x86-64":
            for so in lib.sonames:
                path = f"{lib.dir}/{_lib_file(so, lib.version)}"
                mounts.append({"hostPath": path, "containerPath": path, "options": ["ro", "nosuid", "nodev", "bind"]})
    doc = {
        "cdiVersion": "0.5.0",
        "kind": "nvidia.com/gpu",
        "devices": entries,
        "containerEdits": {
            "env": ["NVIDIA_VISIBLE_DEVICES=void"],
            "deviceNodes": [node(p) for p in control],
            "hooks": [
                {
                    "hookName": "createContainer",
                    "path": "/usr/bin/nvidia-ctk",
                    "args": ["nvidia-ctk", "hook", "update-ldcache", "--folder", _LIB_DIR],
                }
            ],
            "mounts": mounts,
        },
    }
    head = f"# generated by gpudock's simulated host (as 'nvidia-ctk cdi generate' would for driver {version})\n"
    return head + yaml.safe_dump(doc, sort_keys=False)


def _process(w: _Writer, pid: int, argv: list[str], boot_ticks: int = 1200) -> None:
    name = os.path.basename(argv[0])
    w.text(f"/proc/{pid}/comm", name[:15] + "\n")
    w.data(f"/proc/{pid}/cmdline", b"".join(a.encode() + b"\0" for a in argv))
    w.data(f"/proc/{pid}/environ", f"PATH={PATH}\0LANG=C.UTF-8\0".encode())
    w.text(
        f"/proc/{pid}/stat",
        f"{pid} ({name[:15]}) S 1 {pid} {pid} 0 -1 4194560 10452 0 12 0 305 146 0 0 20 0 24 0 {boot_ticks} "
        "2318651392 21470 18446744073709551615 1 1 0 0 0 0 1002060288 0 2143420159 0 0 0 17 1 0 0 0 0 0\n",
    )
    w.text(f"/proc/{pid}/cgroup", "0::/system.slice\n")


def _daemons(w: _Writer, spec: HostSpec) -> None:
    _process(w, DAEMON_PIDS["containerd"], ["/usr/bin/containerd"])
    _process(
        w, DAEMON_PIDS["dockerd"], ["/usr/sbin/dockerd", "-H", "fd://", "--containerd=/run/containerd/containerd.sock"]
    )
    if spec.persistenced:
        pid = DAEMON_PIDS["nvidia-persistenced"]
        _process(w, pid, ["/usr/bin/nvidia-persistenced", "--user", "nvidia-persistenced"])
        w.text("/run/nvidia-persistenced/nvidia-persistenced.pid", f"{pid}\n")
        _unix_socket(w.path("/run/nvidia-persistenced/socket"))
    if spec.fabricmanager:
        _process(
            w,
            DAEMON_PIDS["nv-fabricmanager"],
            ["/usr/bin/nv-fabricmanager", "-c", "/usr/share/nvidia/nvswitch/fabricmanager.cfg"],
        )


def _unix_socket(path: Path) -> None:
    """A UNIX socket file (bound, then closed: the file stays, as a dead daemon's would; the
    doctor only looks at the file's type)."""
    if len(os.fsencode(path)) >= 108:
        return  # too long for sun_path: the check then reports no socket, which is what it sees
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(os.fspath(path))
    finally:
        s.close()


def modinfo_elf(info: dict[str, str]) -> bytes:
    """A minimal ELF64 relocatable object whose ``.modinfo`` section holds ``key=value`` strings,
    as kbuild writes a kernel module's (what ``modinfo -F version`` and the doctor read)."""
    modinfo = b"".join(f"{k}={v}".encode() + b"\0" for k, v in info.items())
    shstrtab = b"\0.modinfo\0.shstrtab\0"
    ehdr_size, shdr_size = 64, 64
    data = modinfo + shstrtab
    shoff = ehdr_size + len(data)
    shoff += (-shoff) % 8
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, ehdr_size, 0, 0, shdr_size, 3, 2)
    body = ehdr + data
    body += b"\0" * (shoff - len(body))

    def shdr(name: int, kind: int, flags: int, off: int, size: int) -> bytes:
        return struct.pack("<IIQQQQIIQQ", name, kind, flags, 0, off, size, 0, 0, 1, 0)

    body += shdr(0, 0, 0, 0, 0)
    body += shdr(1, 1, 2, ehdr_size, len(modinfo))  # .modinfo: PROGBITS, SHF_ALLOC
    body += shdr(10, 3, 0, ehdr_size + len(modinfo), len(shstrtab))  # .shstrtab: STRTAB
    return body
