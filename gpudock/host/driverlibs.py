"""NVIDIA driver libraries as the host's ld.so.cache sees them: which, where, which version.

This module owns the NVIDIA knowledge on top of :mod:`gpudock.host.ldcache` (the file format) and
:mod:`gpudock.host.root` (reading the host under ``--root``):

* which sonames are NVIDIA driver libraries (the lists nvidia-docker 1.0 and libnvidia-container
  use, plus the whole ``libnvidia-*`` family), grouped by capability;
* for each cache entry: the file its path resolves to inside the root, the driver version that
  file carries (``libnvidia-ml.so.535.129.03`` -> ``"535.129.03"``), whether the link dangles, and
  whether it is the entry the loader picks;
* the distinct driver versions, overall and per directory.

``gpudock libs``, the doctor's ``driver-library-mismatch`` / ``stray-driver-libraries`` findings and
the launcher's driver volume all build on :func:`driver_libraries`; keep it free of I/O beyond
stat/readlink and of any UI (no Textual import, ever).
"""

from __future__ import annotations

import errno
import os
import re
import stat as _stat
from collections.abc import Iterable
from dataclasses import dataclass

from gpudock.host.ldcache import (
    FLAG_ELF,
    FLAG_ELF_LIBC6,
    FLAG_REQUIRED_MASK,
    FLAG_TYPE_MASK,
    LdCache,
    LdCacheEntry,
)
from gpudock.host.root import HostRoot

__all__ = [
    "DriverLib",
    "DriverFile",
    "GROUPS",
    "SHARED_LIBRARIES",
    "driver_libraries",
    "driver_versions",
    "driver_versions_by_dir",
    "driver_files",
    "cache_directories",
    "library_group",
    "version_suffix",
]

# Library names (up to ".so") by capability group. Sources: nvidia-docker 1.0 volumes.go and
# libnvidia-container nvc_info.c (see shared/reference/nvidia-stack.md section 3).
GROUPS: dict[str, tuple[str, ...]] = {
    "utility": ("libnvidia-ml.so", "libnvidia-cfg.so", "libnvidia-nscq.so"),
    "compute": (
        "libcuda.so",
        "libcudadebugger.so",
        "libnvidia-opencl.so",
        "libnvidia-gpucomp.so",
        "libnvidia-ptxjitcompiler.so",
        "libnvidia-fatbinaryloader.so",
        "libnvidia-allocator.so",
        "libnvidia-compiler.so",
        "libnvidia-pkcs11.so",
        "libnvidia-pkcs11-openssl3.so",
        "libnvidia-nvvm.so",
        "libnvidia-tileiras.so",
    ),
    "video": (
        "libvdpau_nvidia.so",
        "libnvidia-encode.so",
        "libnvidia-opticalflow.so",
        "libnvcuvid.so",
    ),
    "graphics": (
        "libnvidia-eglcore.so",
        "libnvidia-glcore.so",
        "libnvidia-tls.so",
        "libnvidia-glsi.so",
        "libnvidia-fbc.so",
        "libnvidia-ifr.so",
        "libnvidia-rtcore.so",
        "libnvoptix.so",
        "libnvidia-egl-wayland.so",
    ),
    "glvnd": (
        "libGLX_nvidia.so",
        "libEGL_nvidia.so",
        "libGLESv2_nvidia.so",
        "libGLESv1_CM_nvidia.so",
        "libnvidia-glvkspirv.so",
        "libnvidia-cbl.so",
    ),
    "ngx": ("libnvidia-ngx.so",),
    # Loaders and ICD loaders that Mesa, GLVND and other vendors ship too: NVIDIA's only when the
    # file itself says so (see SHARED_LIBRARIES).
    "compat": (
        "libGL.so",
        "libEGL.so",
        "libGLESv1_CM.so",
        "libGLESv2.so",
        "libGLX.so",
        "libOpenGL.so",
        "libGLdispatch.so",
        "libOpenCL.so",
    ),
}
SHARED_LIBRARIES = frozenset(GROUPS["compat"])
_GROUP_OF: dict[str, str] = {name: g for g, names in GROUPS.items() for name in names}

# A driver version as NVIDIA spells it in file names: "535.129.03", "470.57.02", "375.26".
# The major has three or more digits, which is what tells it apart from the library's own ABI
# versions (libGL.so.1.7.0 from GLVND/Mesa, libnvidia-egl-wayland.so.1.1.13, libcuda.so.1).
_VERSION_RE = re.compile(r"\.so\.(\d{3,4}\.\d{1,3}(?:\.\d{1,3})?)$")
_STEM_RE = re.compile(r"^(.+?\.so)(?:\.|$)")


def version_suffix(filename: str) -> str | None:
    """The driver version a library file name ends with, or None.

    >>> version_suffix("libnvidia-ml.so.535.129.03")
    '535.129.03'
    >>> version_suffix("libnvidia-ml.so.1") is None
    True
    """
    m = _VERSION_RE.search(filename.rpartition("/")[2])
    return m.group(1) if m else None


def _stem(name: str) -> str | None:
    m = _STEM_RE.match(name.rpartition("/")[2])
    return m.group(1) if m else None


def library_group(soname: str) -> str | None:
    """The capability group of an NVIDIA library soname ("compute", "utility", ...), "compat" for
    a vendor-neutral loader name (libGL, libEGL, libOpenCL ...), "other" for any other
    ``libnvidia-*``; None when the name is not a driver library name at all."""
    stem = _stem(soname)
    if stem is None:
        return None
    g = _GROUP_OF.get(stem)
    if g is not None:
        return g
    if stem.startswith("libnvidia-"):
        return "other"
    return None


def _nvidia_file_name(name: str) -> bool:
    # A file that only NVIDIA ships: the libnvidia-* family or a *_nvidia vendor library.
    stem = _stem(name)
    if stem is None:
        return False
    g = _GROUP_OF.get(stem)
    return (g is not None and g != "compat") or stem.startswith("libnvidia-")


@dataclass(frozen=True, slots=True)
class DriverLib:
    """One ld.so.cache entry for an NVIDIA driver library, checked against the files."""

    soname: str  # "libnvidia-ml.so.1"
    group: str  # "utility", "compute", "video", "graphics", "glvnd", "ngx", "compat", "other"
    path: str  # the path in the cache (usually the soname symlink)
    resolved: str | None  # the host path it leads to inside the root; None on a link loop
    version: str | None  # driver version of the resolved file name; None when it carries none
    dangling: bool  # the path does not lead to an existing file
    flags: int
    flag_text: str  # "libc6,x86-64", as ldconfig -p prints it
    hwcap: int = 0
    loader_pick: bool = False  # the entry the loader uses for this soname and arch
    error: str | None = None  # why it could not be resolved (a symlink loop, permissions)

    @property
    def arch(self) -> int:
        """The arch bits of the flags: 0x0300 x86-64, 0x0000 i386, 0x0800 x32, 0x0a00 aarch64 ..."""
        return self.flags & FLAG_REQUIRED_MASK

    @property
    def directory(self) -> str:
        """The directory the cache lists it in (an ld.so.conf directory)."""
        return os.path.dirname(self.path)

    def to_json(self) -> dict:
        return {
            "soname": self.soname,
            "group": self.group,
            "path": self.path,
            "resolved": self.resolved,
            "version": self.version,
            "dangling": self.dangling,
            "flags": self.flags,
            "flag_text": self.flag_text,
            "hwcap": self.hwcap,
            "loader_pick": self.loader_pick,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class DriverFile:
    """A driver-versioned library file found in a library directory (in the cache or not)."""

    path: str  # host path
    version: str
    in_cache: bool  # the cache has an entry resolving to this file

    @property
    def directory(self) -> str:
        return os.path.dirname(self.path)

    def to_json(self) -> dict:
        return {"path": self.path, "version": self.version, "in_cache": self.in_cache}


def _loader_accepts(e: LdCacheEntry) -> bool:
    # Same rule as LdCache.lookup: plain entries only (hwcap 0), and the flag types glibc's
    # _dl_cache_check_flags takes (libc6; plain ELF only without an arch flag).
    t = e.flags & FLAG_TYPE_MASK
    return e.hwcap == 0 and (t == FLAG_ELF_LIBC6 or (t == FLAG_ELF and not e.flags & FLAG_REQUIRED_MASK))


def _resolve(root: HostRoot, path: str) -> tuple[str | None, bool, str | None]:
    """(resolved host path, dangling, error) for a cache path."""
    try:
        resolved = root.resolve(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None, True, f"symlink loop resolving {path}"
        return None, True, f"cannot resolve {path}: {e.strerror or e}"
    except ValueError as e:  # a relative path in a corrupt cache
        return None, True, str(e)
    try:
        st = os.stat(root.path(resolved))
    except FileNotFoundError:
        return resolved, True, None
    except OSError as e:
        return resolved, True, f"cannot stat {resolved}: {e.strerror or e}"
    if not _stat.S_ISREG(st.st_mode):
        return resolved, True, f"{resolved} is not a regular file"
    return resolved, False, None


def driver_libraries(cache: LdCache, root: HostRoot | None = None) -> tuple[DriverLib, ...]:
    """Every NVIDIA driver library entry of ``cache``, in file order, resolved under ``root``.

    Vendor-neutral loaders (libGL, libEGL, libGLES*, libGLX, libOpenGL, libGLdispatch, libOpenCL)
    are included only when the file they resolve to is NVIDIA's: its name carries a driver version
    (``libGL.so.1`` -> ``libGL.so.535.129.03``, the pre-GLVND driver) or is an NVIDIA file name.
    """
    root = root or HostRoot("/")
    out: list[DriverLib] = []
    picked: set[tuple[str, int]] = set()
    resolved_cache: dict[str, tuple[str | None, bool, str | None]] = {}
    groups: dict[str, str | None] = {}

    def wanted(soname: str) -> bool:
        g = groups[soname] = library_group(soname)
        return g is not None

    for e in cache.select(wanted):
        group = groups[e.soname]
        assert group is not None
        # The loader takes the first acceptable entry per (soname, arch) in file order.
        key = (e.soname, e.flags & FLAG_REQUIRED_MASK)
        pick = False
        if key not in picked and _loader_accepts(e):
            picked.add(key)
            pick = True
        r = resolved_cache.get(e.path)
        if r is None:
            r = resolved_cache[e.path] = _resolve(root, e.path)
        resolved, dangling, error = r
        version = version_suffix(resolved) if resolved else None
        if group == "compat" and not (version or (resolved and _nvidia_file_name(resolved))):
            continue  # Mesa's or GLVND's, not the driver's
        out.append(
            DriverLib(
                soname=e.soname,
                group=group,
                path=e.path,
                resolved=resolved,
                version=version,
                dangling=dangling,
                flags=e.flags,
                flag_text=e.flag_text,
                hwcap=e.hwcap,
                loader_pick=pick,
                error=error,
            )
        )
    return tuple(out)


def driver_versions(libs: Iterable[DriverLib], *, include_dangling: bool = False) -> frozenset[str]:
    """The distinct driver versions the libraries' files carry (dangling links left out unless
    asked for: a file that is not there loads nothing)."""
    return frozenset(lib.version for lib in libs if lib.version is not None and (include_dangling or not lib.dangling))


def driver_versions_by_dir(libs: Iterable[DriverLib], *, include_dangling: bool = False) -> dict[str, frozenset[str]]:
    """Distinct driver versions per cache directory (the ld.so.conf directory an entry is listed
    in), sorted by directory. Two versions in one directory, or different versions in two
    directories, is the "stray libraries" situation (failures.md 1B)."""
    acc: dict[str, set[str]] = {}
    for lib in libs:
        if lib.version is None or (lib.dangling and not include_dangling):
            continue
        acc.setdefault(lib.directory, set()).add(lib.version)
    return {d: frozenset(acc[d]) for d in sorted(acc)}


def driver_files(root: HostRoot, directories: Iterable[str], libs: Iterable[DriverLib] = ()) -> tuple[DriverFile, ...]:
    """Driver-versioned NVIDIA library files (``libnvidia-*.so.<ver>``, ``libcuda.so.<ver>`` ...)
    present in ``directories``, whether or not the cache lists them: the cache keeps one entry
    per soname and directory, so leftovers of another driver install hide next to the current
    files. ``libs`` (from :func:`driver_libraries`) marks which files the cache reaches. Paths
    are the files' resolved host paths (directory links followed inside the root), each once."""
    reached = {lib.resolved for lib in libs if lib.resolved and not lib.dangling}
    out: list[DriverFile] = []
    seen: set[str] = set()
    for d in directories:
        try:
            # Merged-/usr hosts list /lib/x86_64-linux-gnu, a link to /usr/lib/...: name files by
            # where they really are, so they compare with DriverLib.resolved and are listed once.
            rd = root.resolve(d)
        except (OSError, ValueError):
            continue
        for name in root.listdir(rd):
            version = version_suffix(name)
            if version is None or not (_nvidia_file_name(name) or _stem(name) in SHARED_LIBRARIES):
                continue
            p = (rd.rstrip("/") or "") + "/" + name
            try:
                st = root.lstat(p)
            except OSError:
                continue
            if not _stat.S_ISREG(st.st_mode) or p in seen:
                continue  # links are the cache's business; we want the files
            seen.add(p)
            out.append(DriverFile(path=p, version=version, in_cache=p in reached))
    return tuple(out)


def cache_directories(cache: LdCache) -> tuple[str, ...]:
    """The directories the cache lists libraries in, in first-seen order."""
    seen: dict[str, None] = {}
    for e in cache.entries:
        seen.setdefault(os.path.dirname(e.path), None)
    return tuple(seen)
