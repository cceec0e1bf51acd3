"""The doctor's view of the NVIDIA libraries in ld.so.cache, over ``gpudock.host.driverlibs``.

This module owns only the doctor's questions about those libraries (the loader's pick for a
soname, the libraries of a given version, evidence lines); reading the cache is
``gpudock.host.ldcache`` and classifying entries is ``gpudock.host.driverlibs``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpudock.doctor.finding import Evidence

CACHE = "/etc/ld.so.cache"
# Toolkit libraries live among libnvidia-* but carry their own versions (1.13.5), not the driver's.
_NOT_DRIVER = (
    "libnvidia-container",
    "libnvidia-egl-wayland",
    "libnvidia-egl-gbm",
    "libnvidia-egl-xcb",
    "libnvidia-egl-xlib",
    "libnvidia-vulkan-producer",
)


@dataclass(frozen=True, slots=True)
class LibScan:
    cache_path: str
    libs: tuple = ()  # driverlibs.DriverLib, file order
    error: str | None = None
    cache_format: str | None = None


def scan(root) -> LibScan:
    from gpudock.host import driverlibs, ldcache

    try:
        cache = ldcache.read(root, CACHE)
    except ldcache.LdCacheError as e:
        return LibScan(CACHE, (), str(e))
    return LibScan(CACHE, driverlibs.driver_libraries(cache, root), None, getattr(cache, "format", None))


def error(f) -> str | None:
    if f.libs is None:
        return f.errors.get("libs", "the loader's cache was not read")
    return f.libs.error


def is_driver_lib(soname: str) -> bool:
    return not soname.startswith(_NOT_DRIVER)


def records(f) -> tuple:
    if f.libs is None or f.libs.error:
        return ()
    return tuple(r for r in f.libs.libs if is_driver_lib(r.soname))


def _native(r) -> bool:
    from gpudock.host.ldcache import native_arch

    return r.arch == native_arch()


def pick(f, soname: str):
    """The entry the loader picks for ``soname`` on this machine's architecture, or None."""
    return pick_in(f.libs, soname)


def pick_in(libs: LibScan | None, soname: str):
    """:func:`pick` over a :func:`scan` (before there are facts: the session loading a root's NVML)."""
    if libs is None or libs.error:
        return None
    for r in libs.libs:
        if r.soname == soname and r.loader_pick and _native(r):
            return r
    return None


def pick_evidence(f, soname: str) -> Evidence:
    err = error(f)
    if err:
        return Evidence(CACHE, err, None)
    r = pick(f, soname)
    if r is None:
        return Evidence(CACHE, f"no {soname} entry for this architecture", None)
    target = r.resolved + (" (missing)" if r.dangling else "")
    return Evidence(CACHE, f"{r.soname} ({r.flag_text}) => {r.path} -> {target}", r.version)


def paths_with_version(f, version: str) -> list[str]:
    """Resolved files of NVIDIA driver libraries with ``version`` that the loader does NOT pick."""
    found = {
        r.resolved for r in records(f) if r.version == version and not r.loader_pick and not r.dangling and r.resolved
    }
    # libnvidia-ml and libcuda first: they are what NVML and CUDA load.
    return sorted(found, key=lambda p: (not p.rsplit("/", 1)[-1].startswith(("libnvidia-ml.", "libcuda.")), p))


def resolve_soname(f, soname: str) -> tuple[str, str, str | None] | None:
    """(cache path, resolved file, the file's own version "1.13.5") for any NVIDIA soname."""
    r = pick(f, soname)
    if r is None or not r.resolved:
        return None
    m = re.search(r"\.so\.(\d+(?:\.\d+)+)$", r.resolved)
    return r.path, r.resolved, m.group(1) if m else None
