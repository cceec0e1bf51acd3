"""The driver volume for ``legacy`` launches, built the way nvidia-docker 1.0 built it.

This module owns the volume's contents and layout (reference notes §3.1):
``<dir>/nvidia_driver/<version>/{bin,lib,lib64}``, mounted read-only at ``/usr/local/nvidia``.

- Libraries come from the host's ld.so.cache through :func:`gpudock.host.driverlibs.driver_libraries`
  (which already drops Mesa's or GLVND's libGL/libEGL and keeps NVIDIA's), restricted to the
  groups the 1.0 volume carried (NVML and the other utility libraries, CUDA and compute, video,
  graphics, GLVND vendor libraries). Only files whose version suffix is the running kernel
  module's version land (libnvidia-container's rule; 1.0 took whatever the cache said, which is how
  stale leftovers caused "Driver/library version mismatch"). 64-bit entries go to ``lib64/``,
  32-bit (i386, x32) to ``lib/``.
- Binaries: ``nvidia-smi``, ``nvidia-debugdump``, ``nvidia-persistenced``,
  ``nvidia-cuda-mps-control``, ``nvidia-cuda-mps-server``, the first found along the PATH
  directories under the root, links followed inside the root.
- Each file is hard-linked under its own name; when the volume directory is on another
  filesystem (EXDEV) or the kernel refuses the link (EPERM, protected hardlinks), it is copied
  with its mode. Soname symlinks are recreated (``libcuda.so.1 -> libcuda.so.535.129.03``), plus
  1.0's two extras: ``libcuda.so`` and ``libGLX_indirect.so.0``.
- Every host path is read under a :class:`~gpudock.host.root.HostRoot` (``--root``).

Not done from 1.0's rules: the ``libnvidia-tls`` ABI-note check (drivers since the 2010s ship one
TLS library). The volume is rebuilt from scratch in a temporary directory and renamed into place,
so a half-built volume is never mounted.

:func:`ensure_docker_volume` then creates the Docker ``local`` volume ``nvidia_driver_<version>``
bound to that directory. Plain Python; no Textual.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from dataclasses import dataclass
from typing import Literal

from gpudock.host import driverlibs, ldcache, procfs
from gpudock.host.ldcache import ARCH_AARCH64_LIB64, ARCH_NONE, ARCH_POWERPC_LIB64, ARCH_X8664_LIB64, ARCH_X8664_LIBX32
from gpudock.host.root import HostRoot

from .spec import LaunchError, driver_volume_name

__all__ = [
    "BINARIES",
    "DEFAULT_VOLUME_DIR",
    "DriverVolume",
    "VolumeFile",
    "build_driver_volume",
    "ensure_docker_volume",
    "ensure_driver_volume",
    "kernel_module_version",
]

BINARIES = (
    "nvidia-cuda-mps-control",
    "nvidia-cuda-mps-server",
    "nvidia-debugdump",
    "nvidia-persistenced",
    "nvidia-smi",
)
VOLUME_GROUPS = frozenset({"utility", "compute", "video", "graphics", "glvnd", "compat"})
DEFAULT_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
DEFAULT_VOLUME_DIR = "/var/lib/gpudock/volumes"
_LIB64 = {ARCH_X8664_LIB64, ARCH_POWERPC_LIB64, ARCH_AARCH64_LIB64}
_LIB32 = {ARCH_NONE, ARCH_X8664_LIBX32}


@dataclass(frozen=True, slots=True)
class VolumeFile:
    """One entry of the volume: ``name`` relative to the version directory."""

    name: str  # "lib64/libcuda.so.535.129.03", "lib64/libcuda.so.1", "bin/nvidia-smi"
    how: Literal["link", "copy", "symlink"]
    source: str  # the host path it came from, or the symlink's target

    def to_json(self) -> dict:
        return {"name": self.name, "how": self.how, "source": self.source}


@dataclass(frozen=True, slots=True)
class DriverVolume:
    version: str
    path: str  # the real directory on this machine: <dir>/nvidia_driver/<version>
    files: tuple[VolumeFile, ...]
    skipped: tuple[str, ...]  # "<path>: why", for the files the cache named that did not land

    @property
    def name(self) -> str:
        return driver_volume_name(self.version)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "path": self.path,
            "files": [f.to_json() for f in self.files],
            "skipped": list(self.skipped),
        }


def kernel_module_version(root: HostRoot) -> str | None:
    """The loaded NVIDIA kernel module's version (``/sys/module/nvidia/version``, else
    ``/proc/driver/nvidia/version``), or None when no module is loaded."""
    v = procfs.sys_module_version(root)
    if v:
        return v
    dv = procfs.driver_version(root)
    return dv.version if dv else None


def _place(src: str, dst: str) -> Literal["link", "copy"]:
    try:
        os.link(src, dst)
        return "link"
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
    shutil.copy2(src, dst)
    return "copy"


def build_driver_volume(
    root: HostRoot,
    volume_dir: str,
    version: str | None = None,
    *,
    cache: ldcache.LdCache | None = None,
    path_dirs: tuple[str, ...] = DEFAULT_PATH,
) -> DriverVolume:
    """Build ``<volume_dir>/nvidia_driver/<version>`` (``volume_dir`` is a real directory on this
    machine) from the driver files under ``root``. ``version`` defaults to the running kernel
    module's; ``cache`` defaults to the root's ``/etc/ld.so.cache``."""
    version = version or kernel_module_version(root)
    if not version:
        raise LaunchError(
            "no NVIDIA kernel module is loaded (no /sys/module/nvidia/version or /proc/driver/nvidia/version "
            f"under {root.root}), so there is no driver version to build the volume for"
        )
    if not re.fullmatch(r"[0-9.]+", version):
        raise LaunchError(f"driver version {version!r} is not a version number")
    if cache is None:
        try:
            cache = ldcache.read(root)
        except (OSError, ldcache.LdCacheError) as e:
            raise LaunchError(f"cannot read the ld.so.cache under {root.root}: {e}") from None

    final = os.path.join(volume_dir, "nvidia_driver", version)
    tmp = f"{final}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ("bin", "lib", "lib64"):
        os.makedirs(os.path.join(tmp, sub), mode=0o755)

    files: list[VolumeFile] = []
    skipped: list[str] = []
    placed: set[str] = set()  # "lib64/<basename>"

    def add_symlink(sub: str, name: str, target: str) -> None:
        rel = f"{sub}/{name}"
        if name == target or rel in placed:
            return
        os.symlink(target, os.path.join(tmp, sub, name))
        placed.add(rel)
        files.append(VolumeFile(rel, "symlink", target))

    try:
        for lib in driverlibs.driver_libraries(cache, root):
            if lib.group not in VOLUME_GROUPS:
                continue
            arch = lib.arch
            sub = "lib64" if arch in _LIB64 else "lib" if arch in _LIB32 else None
            if sub is None:
                continue
            if lib.dangling or not lib.resolved:
                skipped.append(f"{lib.path}: {lib.error or 'dangling link'}")
                continue
            if lib.version != version:
                skipped.append(f"{lib.resolved}: version {lib.version or 'none'}, the kernel module is {version}")
                continue
            base = os.path.basename(lib.resolved)
            rel = f"{sub}/{base}"
            if rel not in placed:
                how = _place(root.real(lib.resolved), os.path.join(tmp, sub, base))
                placed.add(rel)
                files.append(VolumeFile(rel, how, lib.resolved))
            add_symlink(sub, lib.soname, base)
            if lib.soname.startswith("libcuda.so"):
                add_symlink(sub, "libcuda.so", base)
            if lib.soname.startswith("libGLX_nvidia.so"):
                add_symlink(sub, lib.soname.replace("GLX_nvidia", "GLX_indirect"), base)

        for name in BINARIES:
            for d in path_dirs:
                host = f"{d.rstrip('/')}/{name}"
                if not root.exists(host):
                    continue
                resolved = root.resolve(host)
                how = _place(root.real(host), os.path.join(tmp, "bin", name))
                files.append(VolumeFile(f"bin/{name}", how, resolved))
                break

        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return DriverVolume(version, final, tuple(files), tuple(skipped))


def ensure_docker_volume(client, volume: DriverVolume, host_path: str | None = None):
    """The Docker ``local`` volume ``nvidia_driver_<version>`` bound to the volume directory
    (``host_path``: that directory as the Docker host names it; default ``volume.path``). An
    existing volume with that name is reused when it points at the same directory."""
    import docker.errors

    device = host_path or volume.path
    try:
        existing = client.volumes.get(volume.name)
    except docker.errors.NotFound:
        existing = None
    if existing is not None:
        opts = existing.attrs.get("Options") or {}
        if existing.attrs.get("Driver") == "local" and opts.get("device") == device:
            return existing
        raise LaunchError(
            f"a Docker volume named {volume.name} already exists and is not gpudock's bind of {device} "
            f"(driver {existing.attrs.get('Driver')}, options {opts}); remove it with 'docker volume rm {volume.name}'"
        )
    return client.volumes.create(
        name=volume.name,
        driver="local",
        driver_opts={"type": "none", "o": "bind", "device": device},
        labels={"gpudock.driver-volume": volume.version},
    )


def ensure_driver_volume(client, root: HostRoot, volume_name: str, volume_dir: str = DEFAULT_VOLUME_DIR):
    """Make sure the Docker volume ``volume_name`` (``nvidia_driver_<version>``) exists, building it
    on first use as the plugin did: the files under ``root.path(volume_dir)``, the volume bound to
    ``volume_dir`` as the Docker host names it. Returns the :class:`DriverVolume` built, or None
    when the volume was already there."""
    import docker.errors

    try:
        client.volumes.get(volume_name)
        return None
    except docker.errors.NotFound:
        pass
    version = volume_name.rpartition("_")[2]
    vol = build_driver_volume(root, root.path(volume_dir), version)
    ensure_docker_volume(client, vol, host_path=f"{volume_dir.rstrip('/')}/nvidia_driver/{vol.version}")
    return vol
