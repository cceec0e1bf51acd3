"""The ``[host]`` part of a scenario: the host's files, as the doctor, ``libs``, the toolkit and
the launcher read them.

A simulated host is whole only when its files match its GPUs: the loaded kernel module, the
driver's libraries in ld.so.cache, the /dev nodes, config.toml, daemon.json, the kernel log.
This module turns ``[host]`` into a :class:`HostSpec` (every key checked, with sensible
defaults from ``[driver]`` and the GPUs), and :mod:`gpudock.sim.hostfiles` lays it out as a
directory that the unchanged probes read as ``--root``::

    [host]
    hostname = "gpu-demo-01"           # the host's name (default: the scenario's name)
    root = "/srv/copies/gpu-node-07"   # or: these GPUs on a host whose files are already in this
                                       # directory (a customer's copy, a test's driver root); nothing is
                                       # laid out or written there, and no other key below may be given
    kernel = "6.1.0-13-amd64"          # /proc/sys/kernel/osrelease
    boot_time = 1795161480             # /proc/stat btime, seconds since the epoch (2026-11-20 07:58 UTC)
    cgroup = 2                         # 1 or 2: the cgroup hierarchy (/sys/fs/cgroup)
    module = "535.129.03"              # the loaded nvidia.ko; default [driver].version; "" = none loaded
    module_flavor = "proprietary"      # or "open" (the first line of /proc/driver/nvidia/version)
    module_on_disk = "535.129.03"      # nvidia.ko under /lib/modules/<kernel>/updates/dkms; default: module
    uvm = true                         # nvidia_uvm loaded, /dev/nvidia-uvm and -tools present
    nouveau = false                    # the nouveau module is loaded too
    missing_nodes = ["/dev/nvidia5"]   # device nodes that are not there (default: all present)
    dev_char_links = true              # udev's /dev/char/MAJ:MIN links to them (runc looks there)
    cdi_spec = false                   # /etc/cdi/nvidia.yaml as 'nvidia-ctk cdi generate' writes it
    persistenced = true                # nvidia-persistenced runs (process, pid file, socket)
    fabricmanager = false              # nv-fabricmanager runs
    nvswitch = false                   # NVSwitch chips on the PCI bus (HGX: needs the fabric manager)
    toolkit = "1.17.3"                 # NVIDIA Container Toolkit installed (libnvidia-container, the hook,
                                       # nvidia-container-runtime); "" = not installed
    config_toml = "..."                # /etc/nvidia-container-runtime/config.toml (default: the toolkit's
                                       # defaults when a toolkit is installed)
    daemon_json = "..."                # /etc/docker/daemon.json (default: [docker]'s runtimes)
    kernel_log = ["<syslog line>", ]   # /var/log/kern.log (Xid lines and the like)

    [[host.libraries]]                 # the driver's libraries, in the loader's search order
    version = "535.129.03"             # default: [driver].version
    dir = "/usr/lib/x86_64-linux-gnu"
    arch = "x86-64"                    # or "i386"
    sonames = ["libcuda.so.1"]         # default: the driver's usual set

    [host.files]                       # any other file, verbatim
    "/etc/modprobe.d/nvidia.conf" = "options nvidia NVreg_DeviceFileMode=0660\\n"

Bad keys are refused with the file, the key and what is expected, as for the rest of the scenario.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gpudock.sim.keys import SpecError, shown
from gpudock.sim.keys import get as _get
from gpudock.sim.keys import strings as _strings
from gpudock.sim.keys import unknown as _unknown

__all__ = ["HostSpec", "LibrarySet", "DRIVER_SONAMES", "parse_host", "HostSpecError"]

# What a driver install puts in each library directory (the sonames the loader's cache lists).
DRIVER_SONAMES = (
    "libnvidia-ml.so.1",
    "libcuda.so.1",
    "libnvidia-ptxjitcompiler.so.1",
    "libnvidia-nvvm.so.4",
    "libnvidia-cfg.so.1",
    "libnvidia-encode.so.1",
    "libnvcuvid.so.1",
    "libnvidia-opencl.so.1",
    "libnvidia-allocator.so.1",
    "libGLX_nvidia.so.0",
    "libEGL_nvidia.so.0",
    "libGLESv2_nvidia.so.2",
)
ARCHES = ("x86-64", "i386")
_VERSION = re.compile(r"^\d+\.\d+(\.\d+)?$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


# A ``[host]`` key that cannot be used: the message starts with the place the loader gave.
HostSpecError = SpecError


@dataclass(frozen=True)
class LibrarySet:
    version: str
    dir: str
    arch: str = "x86-64"
    sonames: tuple[str, ...] = DRIVER_SONAMES


@dataclass(frozen=True)
class HostSpec:
    hostname: str
    root: str | None = None  # an existing directory holding the host's files (nothing is laid out)
    kernel: str = "6.1.0-13-amd64"
    boot_time: int = 1795161480  # 2026-11-20 07:58:00 UTC, before the demo containers were created
    cgroup: int = 2
    module: str = ""  # "" : no nvidia module loaded
    module_flavor: str = "proprietary"
    module_on_disk: str = ""
    uvm: bool = True
    nouveau: bool = False
    missing_nodes: tuple[str, ...] = ()
    dev_char_links: bool = True
    cdi_spec: bool = False
    persistenced: bool = True
    fabricmanager: bool = False
    nvswitch: bool = False
    toolkit: str = "1.17.3"
    config_toml: str | None = None  # None: the toolkit's defaults (when installed)
    daemon_json: str | None = None  # None: from [docker]
    kernel_log: tuple[str, ...] = ()
    libraries: tuple[LibrarySet, ...] = ()
    files: tuple[tuple[str, str], ...] = ()


_KEYS = {
    "hostname": str,
    "root": str,
    "kernel": str,
    "boot_time": int,
    "cgroup": int,
    "module": str,
    "module_flavor": str,
    "module_on_disk": str,
    "uvm": bool,
    "nouveau": bool,
    "missing_nodes": list,
    "dev_char_links": bool,
    "cdi_spec": bool,
    "persistenced": bool,
    "fabricmanager": bool,
    "nvswitch": bool,
    "toolkit": str,
    "config_toml": str,
    "daemon_json": str,
    "kernel_log": list,
    "libraries": list,
    "files": dict,
}
_LIB_KEYS = {"version": str, "dir": str, "arch": str, "sonames": list}


def _abs_path(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value or "/../" in value + "/":
        raise HostSpecError(
            f"{where}: expected an absolute host path such as /usr/lib/x86_64-linux-gnu, got {shown(value)}"
        )
    return value


def _version(value: str, where: str, *, empty_ok: bool = True) -> str:
    if value == "" and empty_ok:
        return value
    if not _VERSION.match(value):
        raise HostSpecError(f"{where}: expected a driver version such as 535.129.03, got {shown(value)}")
    return value


def parse_host(raw: Any, where: str, *, name: str, driver_version: str) -> HostSpec:
    """``[host]`` (``raw`` None when the scenario has none) with defaults from ``[driver]``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise HostSpecError(f"{where}: expected a table [host]")
    _unknown(raw, _KEYS, where)
    hostname = _get(raw, "hostname", where, str, re.sub(r"[^A-Za-z0-9.-]", "-", name).strip("-.") or "sim")
    if not _HOSTNAME.match(hostname):
        raise HostSpecError(f"{where}.hostname: {shown(hostname)} is not a host name (letters, digits, '-' and '.')")
    if "root" in raw:
        root = _abs_path(_get(raw, "root", where, str, None), f"{where}.root")
        others = sorted(set(raw) - {"root", "hostname"})
        if others:
            raise HostSpecError(
                f"{where}.root: the host's files are in {root}, so {', '.join(others)} describe(s) nothing: "
                "leave them out, or leave out root"
            )
        return HostSpec(hostname=hostname, root=root)
    kernel = _get(raw, "kernel", where, str, HostSpec.kernel)
    if not kernel or "/" in kernel or kernel in (".", ".."):
        raise HostSpecError(f"{where}.kernel: expected a kernel release such as 6.1.0-13-amd64, got {shown(kernel)}")
    boot_time = _get(raw, "boot_time", where, int, HostSpec.boot_time)
    if not 0 < boot_time < 1 << 40:
        raise HostSpecError(f"{where}.boot_time: expected seconds since the epoch, got {shown(boot_time)}")
    cgroup = _get(raw, "cgroup", where, int, 2)
    if cgroup not in (1, 2):
        raise HostSpecError(f"{where}.cgroup: expected 1 or 2, got {shown(cgroup)}")
    module = _version(_get(raw, "module", where, str, driver_version), f"{where}.module")
    flavor = _get(raw, "module_flavor", where, str, "proprietary")
    if flavor not in ("proprietary", "open"):
        raise HostSpecError(f"{where}.module_flavor: expected 'proprietary' or 'open', got {shown(flavor)}")
    on_disk = _version(_get(raw, "module_on_disk", where, str, module), f"{where}.module_on_disk")
    toolkit = _version(_get(raw, "toolkit", where, str, HostSpec.toolkit), f"{where}.toolkit")
    missing = tuple(
        _abs_path(p, f"{where}.missing_nodes[{i}]")
        for i, p in enumerate(_strings(_get(raw, "missing_nodes", where, list, []), f"{where}.missing_nodes"))
    )
    for i, p in enumerate(missing):
        if not p.startswith("/dev/"):
            raise HostSpecError(f"{where}.missing_nodes[{i}]: expected a /dev path, got {shown(p)}")
    libraries = []
    for i, lib in enumerate(_get(raw, "libraries", where, list, [])):
        lw = f"{where}.libraries[{i}]"
        if not isinstance(lib, dict):
            raise HostSpecError(f"{lw}: expected a table [[host.libraries]]")
        _unknown(lib, _LIB_KEYS, lw)
        arch = _get(lib, "arch", lw, str, "x86-64")
        if arch not in ARCHES:
            raise HostSpecError(f"{lw}.arch: expected one of {', '.join(ARCHES)}, got {shown(arch)}")
        sonames = _strings(_get(lib, "sonames", lw, list, list(DRIVER_SONAMES)), f"{lw}.sonames")
        for j, so in enumerate(sonames):
            if not re.match(r"^lib[A-Za-z0-9_+-]+\.so\.\d+$", so):
                raise HostSpecError(f"{lw}.sonames[{j}]: expected a soname such as libcuda.so.1, got {shown(so)}")
        libraries.append(
            LibrarySet(
                version=_version(_get(lib, "version", lw, str, driver_version), f"{lw}.version", empty_ok=False),
                dir=_abs_path(_get(lib, "dir", lw, str, "/usr/lib/x86_64-linux-gnu"), f"{lw}.dir"),
                arch=arch,
                sonames=sonames,
            )
        )
    if "libraries" not in raw:
        libraries = [
            LibrarySet(
                version=_version(driver_version, f"{where} ([driver].version)", empty_ok=False),
                dir="/usr/lib/x86_64-linux-gnu",
            )
        ]
    files = []
    for path, text in _get(raw, "files", where, dict, {}).items():
        _abs_path(path, f"{where}.files key")
        if not isinstance(text, str):
            raise HostSpecError(f"{where}.files.{shown(path)}: expected the file's text as a string, got {shown(text)}")
        files.append((path, text))
    return HostSpec(
        hostname=hostname,
        kernel=kernel,
        boot_time=boot_time,
        cgroup=cgroup,
        module=module,
        module_flavor=flavor,
        module_on_disk=on_disk,
        uvm=_get(raw, "uvm", where, bool, True),
        nouveau=_get(raw, "nouveau", where, bool, False),
        missing_nodes=missing,
        dev_char_links=_get(raw, "dev_char_links", where, bool, True),
        cdi_spec=_get(raw, "cdi_spec", where, bool, False),
        persistenced=_get(raw, "persistenced", where, bool, True),
        fabricmanager=_get(raw, "fabricmanager", where, bool, False),
        nvswitch=_get(raw, "nvswitch", where, bool, False),
        toolkit=toolkit,
        config_toml=_get(raw, "config_toml", where, str, None),
        daemon_json=_get(raw, "daemon_json", where, str, None),
        kernel_log=_strings(_get(raw, "kernel_log", where, list, []), f"{where}.kernel_log"),
        libraries=tuple(libraries),
        files=tuple(files),
    )
