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

A build that lands no library of the version is refused: an empty ``/usr/local/nvidia`` is
never offered as a driver volume.

:func:`ensure_docker_volume` then creates the Docker ``local`` volume ``nvidia_driver_<version>``,
a read-only bind of that directory; :func:`ensure_driver_volume` is what a launch calls: it checks
an existing volume's files (:func:`check_volume_dir`) and builds, rebuilds or refuses. The volume
plugin (:mod:`gpudock.launch.volume_plugin`) builds with the same :func:`build_driver_volume`.
Plain Python; no Textual.
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
    "EnsuredVolume",
    "VolumeCheck",
    "VolumeFile",
    "build_driver_volume",
    "check_volume_dir",
    "ensure_docker_volume",
    "ensure_driver_volume",
    "kernel_module_version",
    "volume_version",
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
VOLUME_LABEL = "gpudock.driver-volume"
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

        if not any(f.how != "symlink" and f.name.startswith(("lib64/", "lib/")) for f in files):
            why = "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
            raise LaunchError(
                f"no library of driver {version} was found through {root.real('/etc/ld.so.cache')}"
                + (f" (skipped: {why})" if skipped else "")
                + ": a driver volume without the driver's files would give containers an empty "
                "/usr/local/nvidia; install the driver's libraries (or give --root the host's root) first"
            )
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return DriverVolume(version, final, tuple(files), tuple(skipped))


@dataclass(frozen=True, slots=True)
class VolumeCheck:
    """What a driver volume's directory holds, against the driver version its name promises."""

    ok: bool
    kind: Literal["ok", "missing", "unreadable", "empty", "bare", "other-version"]
    message: str  # "holds no library of driver 535.129.03 (only of 470.57.02)"
    other_versions: tuple[str, ...] = ()


_VOLUME_NAME = re.compile(r"nvidia_driver_([0-9]+(?:\.[0-9]+)*)")


def volume_version(volume_name: str) -> str:
    """``nvidia_driver_535.129.03`` -> ``535.129.03``; :class:`LaunchError` for any other name."""
    m = _VOLUME_NAME.fullmatch(volume_name or "")
    if not m:
        raise LaunchError(f"{volume_name!r} is not a driver volume name: expected nvidia_driver_<driver version>")
    return m.group(1)


def check_volume_dir(path: str, version: str) -> VolumeCheck:
    """Does the volume directory ``path`` (a real path on this machine) hold driver ``version``'s
    libraries, and no other driver's? ``bare`` is a directory with nothing in it at all (what
    Docker makes when ``docker run -v nvidia_driver_X:…`` names a volume that does not exist)."""
    try:
        top = os.listdir(path)
    except FileNotFoundError:
        return VolumeCheck(False, "missing", f"its directory {path} does not exist")
    except NotADirectoryError:
        return VolumeCheck(False, "missing", f"{path} is not a directory")
    except OSError as e:
        return VolumeCheck(False, "unreadable", f"its directory {path} cannot be read here ({e.strerror})")
    if not top:
        return VolumeCheck(False, "bare", f"its directory {path} is empty")
    mine = 0
    others: set[str] = set()
    for sub in ("lib64", "lib"):
        try:
            names = os.listdir(os.path.join(path, sub))
        except OSError:
            continue
        for n in names:
            v = driverlibs.version_suffix(n)
            if v == version:
                mine += 1
            elif v:
                others.add(v)
    shown = ", ".join(sorted(others))
    if not mine:
        if others:
            return VolumeCheck(
                False, "other-version", f"holds no library of driver {version}, only of {shown}", tuple(sorted(others))
            )
        return VolumeCheck(False, "empty", f"holds no driver library in {path}/lib64 or {path}/lib")
    if others:
        return VolumeCheck(
            False, "other-version", f"holds libraries of driver {shown} beside {version}'s", tuple(sorted(others))
        )
    return VolumeCheck(True, "ok", f"holds {mine} libraries of driver {version}")


def ensure_docker_volume(client, volume: DriverVolume, host_path: str | None = None):
    """The Docker ``local`` volume ``nvidia_driver_<version>``, a read-only bind of the volume
    directory (``host_path``: that directory as the Docker host names it; default ``volume.path``).
    An existing volume with that name is reused when it points at the same directory."""
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
        # ro: the files are hard links to the host's driver; a container that forgets :ro
        # must not be able to write them (Docker's local driver remounts a ro bind read-only)
        driver_opts={"type": "none", "o": "bind,ro", "device": device},
        labels={VOLUME_LABEL: volume.version},
    )


@dataclass(frozen=True, slots=True)
class EnsuredVolume:
    """What :func:`ensure_driver_volume` found or did; ``message`` says it in one line."""

    name: str
    action: Literal["ok", "unchecked", "built", "rebuilt", "replaced"]
    message: str
    volume: DriverVolume | None = None  # the files gpudock built, when it built them


def _volume_users(client, name: str) -> list[str]:
    try:
        return sorted(c.name for c in client.containers.list(all=True, filters={"volume": name}))
    except Exception:  # noqa: BLE001 - an engine without the filter: assume nobody
        return []


def ensure_driver_volume(client, root: HostRoot, volume_name: str, volume_dir: str = DEFAULT_VOLUME_DIR):
    """Make sure the Docker volume ``volume_name`` (``nvidia_driver_<version>``) exists and holds
    that driver's files, as the plugin did on first use: the files under ``root.real(volume_dir)``,
    the volume a read-only bind of ``volume_dir`` as the Docker host names it.

    An existing volume is checked (:func:`check_volume_dir`, on its bind directory or mountpoint
    under ``root``). When it lacks the driver's files and no container uses it: gpudock's own bind
    is rebuilt in place, and a local volume with nothing in it (``docker run -v`` made it) is
    replaced; anything else is refused, saying what to remove. A volume whose directory is not on
    this machine (a remote engine) is reported ``unchecked``. Returns an :class:`EnsuredVolume`;
    raises :class:`LaunchError` on a refusal."""
    import docker.errors

    version = volume_version(volume_name)
    try:
        existing = client.volumes.get(volume_name)
    except docker.errors.NotFound:
        existing = None
    host_dir = f"{volume_dir.rstrip('/')}/nvidia_driver/{version}"
    if existing is None:
        vol = build_driver_volume(root, root.real(volume_dir), version)
        ensure_docker_volume(client, vol, host_path=host_dir)
        return EnsuredVolume(
            volume_name, "built", f"built driver volume {volume_name} ({len(vol.files)} files) at {vol.path}", vol
        )

    attrs = existing.attrs or {}
    driver = attrs.get("Driver") or "local"
    opts = attrs.get("Options") or {}
    device = opts.get("device") if driver == "local" else None
    where = device or attrs.get("Mountpoint") or ""
    check = check_volume_dir(root.real(where), version) if where.startswith("/") else None
    if check is not None and check.ok:
        return EnsuredVolume(volume_name, "ok", f"driver volume {volume_name} {check.message}")
    if check is None or check.kind == "unreadable":
        why = check.message if check else "the engine gives no directory for it"
        return EnsuredVolume(
            volume_name, "unchecked", f"driver volume {volume_name} was not checked: {why} (a remote engine?)"
        )

    users = _volume_users(client, volume_name)
    ours = (
        driver == "local"
        and bool(device)
        and ((attrs.get("Labels") or {}).get(VOLUME_LABEL) is not None or device == host_dir)
    )
    problem = f"driver volume {volume_name} ({driver}{', ' + where if where else ''}) {check.message}"
    if users:
        raise LaunchError(
            f"{problem}, and containers use it ({', '.join(users)}): remove them, then "
            f"'docker volume rm {volume_name}', and launch again (gpudock builds it afresh)"
        )
    if ours:
        # gpudock's own bind: build its files again where it points
        vdir = os.path.dirname(os.path.dirname(device.rstrip("/")))
        vol = build_driver_volume(root, root.real(vdir), version)
        return EnsuredVolume(
            volume_name, "rebuilt", f"{problem}: rebuilt its files ({len(vol.files)}) at {vol.path}", vol
        )
    if driver == "local" and not device and check.kind == "bare":
        existing.remove()
        vol = build_driver_volume(root, root.real(volume_dir), version)
        ensure_docker_volume(client, vol, host_path=host_dir)
        return EnsuredVolume(
            volume_name,
            "replaced",
            f"{problem} (made by 'docker run -v' naming it before it existed?): replaced it with gpudock's "
            f"driver volume ({len(vol.files)} files) at {vol.path}",
            vol,
        )
    raise LaunchError(
        f"{problem}; gpudock does not delete a volume it did not make: check it, remove it with "
        f"'docker volume rm {volume_name}', and launch again"
    )
