"""Kernel-side facts about the NVIDIA driver, read from procfs, sysfs, /dev and /lib/modules.

This module owns the parsers of the kernel's own files (the text formats in nvidia-stack.md §10
and failures.md §0): the loaded module's version, the module list, character majors, per-GPU
procfs information, device nodes, NVIDIA PCI functions, the on-disk module's modinfo version, boot
time and the cgroup hierarchy. Everything is read under a :class:`~gpudock.host.root.HostRoot`,
so a copy of a host (``--root``) reads the same as the live one.

Contract: every probe returns a value or None (absent, unreadable, unparsable) and never raises
on a missing or unreadable file; the doctor turns None into an "I could not read X" finding.
Each value keeps the host path and the raw line it came from, because the doctor shows them as
evidence. Pure ``parse_*`` functions take text so tests can feed real layouts directly.

No Textual import here.
"""

from __future__ import annotations

import gzip
import lzma
import os
import re
import stat as _stat
import struct
from dataclasses import dataclass

from gpudock.host.root import HostRoot

VERSION_FILE = "/proc/driver/nvidia/version"
SYS_MODULE_VERSION = "/sys/module/nvidia/version"
MODULES_FILE = "/proc/modules"
DEVICES_FILE = "/proc/devices"
GPUS_DIR = "/proc/driver/nvidia/gpus"
PCI_DIR = "/sys/bus/pci/devices"
STAT_FILE = "/proc/stat"
CGROUP_CONTROLLERS = "/sys/fs/cgroup/cgroup.controllers"
OSRELEASE = "/proc/sys/kernel/osrelease"
REBOOT_REQUIRED = "/var/run/reboot-required"

NVIDIA_VENDOR = 0x10DE
# Modules the doctor cares about; /proc/modules names use underscores.
INTERESTING_MODULES = ("nvidia", "nvidia_uvm", "nvidia_modeset", "nvidia_drm", "nvidia_peermem", "nouveau")

_VERSION_RE = re.compile(r"Module\b.*?\b(\d+\.\d+(?:\.\d+)?)\b")


def _read(root: HostRoot, path: str, limit: int = 1 << 20) -> str | None:
    """File text or None; permission errors, link loops and directories are None too (the
    caller reports "could not read"), because a probe must never take the doctor down."""
    try:
        return root.read_text(path, limit=limit)
    except (OSError, ValueError):
        return None


# -- /proc/driver/nvidia/version, /sys/module/nvidia/version ----------------------------------------


@dataclass(frozen=True, slots=True)
class DriverVersion:
    """The loaded kernel module as /proc/driver/nvidia/version describes it."""

    version: str
    flavor: str  # "proprietary" | "open"
    line: str  # the NVRM line verbatim
    source: str = VERSION_FILE


def parse_driver_version(text: str) -> DriverVersion | None:
    """Parse the two-line file; both layouts:

    ``NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03  Thu Oct 19 18:56:32 UTC 2023``
    ``NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  555.42.06  Release Build  (...)``
    """
    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith("NVRM version:"):
            continue
        m = _VERSION_RE.search(line)
        if not m:
            return None
        flavor = "open" if "Open Kernel Module" in line else "proprietary"
        return DriverVersion(m.group(1), flavor, line)
    return None


def driver_version(root: HostRoot) -> DriverVersion | None:
    text = _read(root, VERSION_FILE, 64 << 10)
    return parse_driver_version(text) if text else None


def sys_module_version(root: HostRoot) -> str | None:
    text = _read(root, SYS_MODULE_VERSION, 4096)
    v = text.strip() if text else ""
    return v or None


# -- /proc/modules ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KernelModule:
    name: str
    size: int | None
    refcount: int | None
    used_by: tuple[str, ...]
    state: str | None  # Live, Loading, Unloading
    line: str


def parse_modules(text: str) -> dict[str, KernelModule]:
    """``name size refcount used_by state address`` per line (used_by "-" or "a,b,")."""
    out: dict[str, KernelModule] = {}
    for raw in text.splitlines():
        parts = raw.split()
        if not parts:
            continue
        name = parts[0]

        def _int(i: int, parts: list[str] = parts) -> int | None:
            try:
                return int(parts[i])
            except (IndexError, ValueError):
                return None

        used = parts[3] if len(parts) > 3 else "-"
        used_by = tuple(u for u in used.split(",") if u and u != "-")
        out[name] = KernelModule(name, _int(1), _int(2), used_by, parts[4] if len(parts) > 4 else None, raw.strip())
    return out


def loaded_modules(root: HostRoot) -> dict[str, KernelModule] | None:
    text = _read(root, MODULES_FILE, 4 << 20)
    return None if text is None else parse_modules(text)


# -- /proc/devices ----------------------------------------------------------------------------------


def parse_devices(text: str) -> dict[str, int]:
    """Character majors by name from the ``Character devices:`` section (exact names)."""
    out: dict[str, int] = {}
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.endswith(":") and not line[0].isdigit():
            section = line[:-1].strip().lower()
            continue
        if section != "character devices":
            continue
        num, _, name = line.partition(" ")
        try:
            major = int(num)
        except ValueError:
            continue
        name = name.strip()
        # A name can appear on several majors (rare); the first one is the one nvidia tools use.
        out.setdefault(name, major)
    return out


def char_majors(root: HostRoot) -> dict[str, int] | None:
    text = _read(root, DEVICES_FILE, 1 << 20)
    return None if text is None else parse_devices(text)


# -- /proc/driver/nvidia/gpus/<bdf>/information -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcGpu:
    bdf: str  # directory name, "0000:3b:00.0"
    model: str | None
    uuid: str | None
    bus_location: str | None
    minor: int | None
    excluded: bool | None
    source: str  # host path of the information file
    minor_line: str | None = None  # "Device Minor: \t 0", verbatim, for evidence


def parse_gpu_information(text: str, bdf: str = "", source: str = "") -> ProcGpu:
    fields: dict[str, str] = {}
    lines: dict[str, str] = {}
    for raw in text.splitlines():
        key, sep, value = raw.partition(":")  # values contain colons (Bus Location): split once
        if not sep:
            continue
        k = key.strip()
        fields[k] = value.strip()
        lines[k] = raw.strip()
    minor: int | None
    try:
        minor = int(fields["Device Minor"])
    except (KeyError, ValueError):
        minor = None
    excl = fields.get("GPU Excluded")
    uuid = fields.get("GPU UUID")
    return ProcGpu(
        bdf=bdf,
        model=fields.get("Model"),
        uuid=None if uuid in (None, "", "?") else uuid,
        bus_location=fields.get("Bus Location"),
        minor=minor,
        excluded=None if excl is None else excl.lower().startswith("y"),
        source=source,
        minor_line=lines.get("Device Minor"),
    )


def proc_gpus(root: HostRoot) -> tuple[ProcGpu, ...] | None:
    """One entry per GPU the loaded module drives; None when the directory is absent."""
    if not root.is_dir(GPUS_DIR):
        return None
    out = []
    for bdf in root.listdir(GPUS_DIR):
        src = f"{GPUS_DIR}/{bdf}/information"
        text = _read(root, src, 64 << 10)
        if text is None:
            out.append(ProcGpu(bdf, None, None, None, None, None, src))
        else:
            out.append(parse_gpu_information(text, bdf, src))
    return tuple(out)


# -- /dev/nvidia* -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceNode:
    path: str
    exists: bool
    is_char: bool = False
    major: int | None = None
    minor: int | None = None
    mode: int | None = None  # permission bits
    error: str | None = None  # stat failed for another reason than absence

    def describe(self) -> str:
        if not self.exists:
            return f"{self.path}: missing" + (f" ({self.error})" if self.error else "")
        kind = "char" if self.is_char else "not a character device"
        return f"{self.path}: {kind} {self.major}:{self.minor} mode {oct(self.mode or 0)[2:].zfill(4)}"


def device_node(root: HostRoot, path: str) -> DeviceNode:
    """stat() of a device node (links followed inside the root, as udev links would be)."""
    try:
        st = root.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return DeviceNode(path, False)
    except OSError as e:
        return DeviceNode(path, False, error=e.strerror or str(e))
    is_char = _stat.S_ISCHR(st.st_mode)
    return DeviceNode(
        path,
        True,
        is_char,
        os.major(st.st_rdev) if is_char else None,
        os.minor(st.st_rdev) if is_char else None,
        _stat.S_IMODE(st.st_mode),
    )


def device_nodes(root: HostRoot) -> dict[str, DeviceNode]:
    """Every /dev/nvidia* node (and /dev/nvidia-caps/*) that exists, by host path."""
    paths = root.glob("/dev/nvidia*") + root.glob("/dev/nvidia-caps/*")
    return {p: device_node(root, p) for p in paths if not root.is_dir(p)}


def dev_char_link(root: HostRoot, major: int, minor: int) -> str | None:
    """Target of /dev/char/MAJ:MIN (runc's lookup path), or None when the link is absent."""
    try:
        return root.readlink(f"/dev/char/{major}:{minor}")
    except OSError:
        return None


# -- /sys/bus/pci/devices ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PciDevice:
    bdf: str
    vendor: int | None
    device: int | None
    pci_class: int | None  # 24-bit class code, 0x030000 = VGA, 0x030200 = 3D controller
    driver: str | None  # basename of the driver symlink; None when no driver is bound
    config_vendor: int | None = None  # first two bytes of config space; 0xffff = not answering

    @property
    def is_display(self) -> bool:
        return self.pci_class is not None and (self.pci_class >> 16) == 0x03

    @property
    def is_nvidia_gpu(self) -> bool:
        return self.vendor == NVIDIA_VENDOR and self.is_display


def _hex(text: str | None) -> int | None:
    try:
        return int(text.strip(), 16) if text else None
    except ValueError:
        return None


def pci_devices(root: HostRoot, vendor: int | None = NVIDIA_VENDOR) -> tuple[PciDevice, ...] | None:
    """PCI functions (of ``vendor``; all when None); None when sysfs is absent under the root."""
    if not root.is_dir(PCI_DIR):
        return None
    out = []
    for bdf in root.listdir(PCI_DIR):
        base = f"{PCI_DIR}/{bdf}"
        ven = _hex(_read(root, f"{base}/vendor", 64))
        if vendor is not None and ven != vendor:
            continue
        drv: str | None
        try:
            drv = os.path.basename(root.readlink(f"{base}/driver").rstrip("/")) or None
        except OSError:
            drv = None
        cfg_vendor = None
        try:
            data = root.read_bytes(f"{base}/config", 2)
            if data and len(data) == 2:
                cfg_vendor = struct.unpack("<H", data)[0]
        except OSError:
            pass
        out.append(
            PciDevice(
                bdf,
                ven,
                _hex(_read(root, f"{base}/device", 64)),
                _hex(_read(root, f"{base}/class", 64)),
                drv,
                cfg_vendor,
            )
        )
    return tuple(out)


# -- the module on disk for the running kernel ------------------------------------------------------


def kernel_release(root: HostRoot) -> str | None:
    """``uname -r`` of the host: /proc/sys/kernel/osrelease under the root (the live one on /)."""
    text = _read(root, OSRELEASE, 256)
    if text and text.strip():
        return text.strip()
    if root.is_live:
        return os.uname().release
    return None


@dataclass(frozen=True, slots=True)
class OnDiskModule:
    path: str  # host path of the .ko file
    version: str | None  # modinfo "version"; None when it could not be read
    compressed: str | None = None  # "xz", "zst", "gz" when the file is compressed
    note: str | None = None  # why version is None ("compressed (zstd)", "no .modinfo section")
    vermagic: str | None = None


_MODULE_NAMES = ("nvidia.ko", "nvidia.ko.xz", "nvidia.ko.zst", "nvidia.ko.gz")
_MODULE_MAX = 256 << 20  # nvidia.ko is ~60-100 MB uncompressed; refuse anything absurd


def parse_modinfo(elf: bytes) -> dict[str, str] | None:
    """The ``.modinfo`` section's ``key=value`` strings from an ELF object (32/64-bit, LE/BE).

    Returns None when the data is not ELF or has no .modinfo section; bounds are checked so a
    truncated file gives None, not an exception.
    """
    try:
        if elf[:4] != b"\x7fELF":
            return None
        is64 = elf[4] == 2
        end = "<" if elf[5] == 1 else ">"
        if is64:
            shoff = struct.unpack_from(end + "Q", elf, 0x28)[0]
            shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", elf, 0x3A)
        else:
            shoff = struct.unpack_from(end + "I", elf, 0x20)[0]
            shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", elf, 0x2E)
        if shoff == 0 or shnum == 0 or shstrndx >= shnum or shoff + shnum * shentsize > len(elf):
            return None

        def section(i: int) -> tuple[int, int, int]:
            o = shoff + i * shentsize
            if is64:
                name, _t, _f, _a, off, size = struct.unpack_from(end + "IIQQQQ", elf, o)
            else:
                name, _t, _f, _a, off, size = struct.unpack_from(end + "IIIIII", elf, o)
            return name, off, size

        _, stroff, strsize = section(shstrndx)
        names = elf[stroff : stroff + strsize]
        for i in range(shnum):
            name_off, off, size = section(i)
            nul = names.find(b"\0", name_off)
            if names[name_off : nul if nul >= 0 else None] != b".modinfo":
                continue
            if off + size > len(elf):
                return None
            info: dict[str, str] = {}
            for item in elf[off : off + size].split(b"\0"):
                k, sep, v = item.partition(b"=")
                if sep and k:
                    info.setdefault(k.decode("ascii", "replace"), v.decode("utf-8", "replace"))
            return info
        return None
    except (struct.error, IndexError):
        return None


def module_on_disk(root: HostRoot, release: str | None = None) -> OnDiskModule | None:
    """The nvidia.ko* that ``modprobe nvidia`` would load for the running kernel, with its version.

    Searches /lib/modules/<release>/ (updates/dkms/, kernel/drivers/video/, extra/, ...),
    preferring updates/ like depmod does. xz and gz are decompressed with the standard library;
    zstd is reported as compressed (no stdlib decoder on Python 3.11).
    """
    release = release or kernel_release(root)
    if not release:
        return None
    base = f"/lib/modules/{release}"
    if not root.is_dir(base):
        return None
    found: list[str] = []
    try:
        real_base = root.real(base)
        for dirpath, _dirs, files in os.walk(real_base):
            for f in files:
                if f in _MODULE_NAMES:
                    host = root.to_host(os.path.join(dirpath, f))
                    if host:
                        found.append(host)
    except OSError:
        return None
    if not found:
        return None
    # depmod's default search order puts updates/ (DKMS) first, then the rest.
    found.sort(key=lambda p: (0 if "/updates/" in p else 1 if "/extra/" in p else 2, p))
    path = found[0]
    comp = {"xz": "xz", "zst": "zst", "gz": "gz"}.get(path.rsplit(".", 1)[-1])
    try:
        data = root.read_bytes(path, _MODULE_MAX)
    except OSError as e:
        return OnDiskModule(path, None, comp, f"unreadable: {e.strerror or e}")
    if data is None:
        return OnDiskModule(path, None, comp, "unreadable (dangling link)")
    try:
        if comp == "xz":
            data = lzma.decompress(data)
        elif comp == "gz":
            data = gzip.decompress(data)
        elif comp == "zst":
            return OnDiskModule(path, None, comp, "compressed (zstd); run 'modinfo -F version nvidia' on the host")
    except (lzma.LZMAError, OSError, EOFError) as e:
        return OnDiskModule(path, None, comp, f"could not decompress: {e}")
    info = parse_modinfo(data)
    if info is None:
        return OnDiskModule(path, None, comp, "no .modinfo section (not an ELF kernel module?)")
    return OnDiskModule(
        path,
        info.get("version"),
        comp,
        None if info.get("version") else "no version= in .modinfo",
        info.get("vermagic"),
    )


# -- boot time, cgroups, reboot-required ------------------------------------------------------------


def boot_time(root: HostRoot) -> int | None:
    """``btime`` from /proc/stat (seconds since the epoch)."""
    text = _read(root, STAT_FILE, 1 << 20)
    for line in (text or "").splitlines():
        if line.startswith("btime "):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def cgroup_controllers(root: HostRoot) -> tuple[str, ...] | None:
    """Controllers of the unified hierarchy; None when the file is absent (cgroup v1 or unknown)."""
    text = _read(root, CGROUP_CONTROLLERS, 4096)
    return None if text is None else tuple(text.split())


def reboot_required(root: HostRoot) -> tuple[str, tuple[str, ...]] | None:
    """Debian/Ubuntu's /var/run/reboot-required: (its text, packages from .pkgs); None if absent."""
    text = _read(root, REBOOT_REQUIRED, 64 << 10)
    if text is None:
        return None
    pkgs = _read(root, REBOOT_REQUIRED + ".pkgs", 64 << 10) or ""
    return text.strip(), tuple(p.strip() for p in pkgs.splitlines() if p.strip())


def mtime(root: HostRoot, path: str) -> float | None:
    try:
        return root.stat(path).st_mtime
    except OSError:
        return None
