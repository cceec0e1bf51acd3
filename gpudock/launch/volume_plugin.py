"""nvidia-docker-plugin 1.0's Docker volume plugin: the driver volume ``nvidia_driver_<version>`` on demand.

This module owns the answers of Docker's volume plugin protocol, as nvidia-docker-plugin 1.0 gave
them on ``/run/docker/plugins/nvidia-docker.sock`` (reference notes §1.10): ``/Plugin.Activate``
(``{"Implements": ["VolumeDriver"]}``) and ``/VolumeDriver.Create|Remove|Mount|Unmount|Path|Get|
List|Capabilities``. With it, ``docker run --volume-driver=nvidia-docker
--volume=nvidia_driver_<ver>:/usr/local/nvidia:ro …`` (what ``/docker/cli`` prints) and
``docker volume create --driver=nvidia-docker --name=nvidia_driver_<ver>`` work as they did.

1.0's rules, and where gpudock is stricter:

- A name is ``<volume>_<version>``; anything else is ``bad volume format``, a volume other than
  ``nvidia_driver`` is ``unsupported volume``. The version must be digits and dots between digits
  (1.0 took ``nvidia_driver_..`` and joined ``..`` into the path it removed).
- Create builds only the running driver's version; another version is refused naming both. The
  files come from :func:`gpudock.launch.volume.build_driver_volume` (the one ld.so.cache reader,
  the version filter, hard links), into ``<volume_dir>/nvidia_driver/<version>``. A directory that
  already holds the driver's files is kept; one that does not is rebuilt; a build that finds no
  library of the version is refused.
- Mount answers a read-only bind mount of that directory (``<volume_dir>/.mounts/<name>``), made
  once and kept until Remove or the server's end, so a container that forgets ``:ro`` still
  cannot write the host's driver files (the volume hard-links them). Where mounting is not allowed
  (not root), the directory itself, with a warning in the log. Unmount keeps the mount for the
  next container (1.0 did nothing either).
- Errors are ``{"Err": "<reason>: <name>"}``; replies are ``application/vnd.docker.plugins.v1+json``
  and only the plugin API versions 1.1 and 1.2 are accepted (``Accept``), else 406, as 1.0 did.

dockerd keeps a volume plugin it has used among its drivers: once ``gpudock serve`` stops,
every ``docker volume ls`` waits about 15 s for it, until dockerd restarts (so did 1.0's).

The HTTP side (timeouts, one write per response) is :mod:`gpudock.launch.httpserve`; this
module's :meth:`DriverVolumePlugin.answer` is a plain function of the request. Plain Python; no
Textual.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import threading
from collections.abc import Callable

from gpudock.host.root import HostRoot

from .httpserve import Request, Response
from .spec import DRIVER_VOLUME, LaunchError
from .volume import DEFAULT_VOLUME_DIR, build_driver_volume, check_volume_dir, kernel_module_version

__all__ = ["DEFAULT_PLUGIN_SOCKET", "PLUGIN_NAME", "DriverVolumePlugin"]

PLUGIN_NAME = "nvidia-docker"
DEFAULT_PLUGIN_SOCKET = f"/run/docker/plugins/{PLUGIN_NAME}.sock"
CONTENT_TYPE = "application/vnd.docker.plugins.v1+json"
_ACCEPTED = ("application/vnd.docker.plugins.v1.1+json", "application/vnd.docker.plugins.v1.2+json")
_NAME = re.compile(r"([a-zA-Z0-9_.-]+)_([0-9.]+)")  # 1.0's volume name pattern
_VERSION = re.compile(r"[0-9]+(?:\.[0-9]+)*")

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REMOUNT, _MS_BIND = 1, 2, 4, 32, 4096
_MNT_DETACH = 2


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _bind_read_only(src: str, dst: str) -> None:
    """``mount --bind src dst`` then remount it read-only, nosuid, nodev (Linux's two steps)."""
    libc = _libc()
    if libc.mount(src.encode(), dst.encode(), None, _MS_BIND, None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    flags = _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV
    if libc.mount(src.encode(), dst.encode(), None, flags, None) != 0:
        e = ctypes.get_errno()
        _detach(dst)
        raise OSError(e, os.strerror(e))


def is_mount_point(path: str) -> bool:
    """Is ``path`` a mount point (``/proc/self/mountinfo``)? ``os.path.ismount`` cannot see a bind
    mount of a directory on the same filesystem."""
    want = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split(" ", 5)
                if len(fields) > 4 and _unescape(fields[4]) == want:
                    return True
    except OSError:
        return os.path.ismount(path)
    return False


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _detach(path: str) -> None:
    if _libc().umount2(path.encode(), _MNT_DETACH) != 0:
        e = ctypes.get_errno()
        if e not in (errno.EINVAL, errno.ENOENT):  # EINVAL: not a mount point (any more)
            raise OSError(e, os.strerror(e))


class _Err(Exception):
    """A refusal, sent as ``{"Err": "<reason>: <name>"}``."""

    def __init__(self, reason: str, name: str) -> None:
        super().__init__(f"{reason}: {name}")


class DriverVolumePlugin:
    """The volume plugin's state: driver volumes under ``volume_dir``, built from the driver's
    files under ``root``. ``driver_version`` gives the running driver's version (NVML's, as 1.0
    took it); when it gives None the loaded kernel module's is used. :meth:`close` undoes the
    read-only mounts.

    Like nvidia-docker-plugin, the plugin runs beside dockerd: ``volume_dir`` is a directory on
    this machine, and the mount points it answers are paths dockerd opens as they are. The
    read-only mounts need dockerd's mount namespace too, so ``gpudock serve`` makes them only
    on the live root (no ``--root``); ``read_only_mounts`` says whether to."""

    def __init__(
        self,
        root: HostRoot,
        volume_dir: str = DEFAULT_VOLUME_DIR,
        driver_version: Callable[[], str | None] | None = None,
        *,
        log: Callable[[str], None] | None = None,
        read_only_mounts: bool = True,
    ) -> None:
        self.root = root
        self.volume_dir = os.path.abspath(volume_dir)
        self._driver_version = driver_version or (lambda: None)
        self._log = log
        self._read_only = read_only_mounts
        self._lock = threading.Lock()
        self._mounted: set[str] = set()  # mount points made by this plugin, still mounted
        self._warned = False

    # -- the protocol --------------------------------------------------------------------------

    def http_answer(self, req: Request) -> Response:
        """The HTTP layer's entry: POST only, the plugin API's Accept header, a JSON body."""
        if req.header("accept") not in _ACCEPTED:
            self._say(f"unsupported plugin API {req.header('accept')!r} for {req.path}")
            return Response(406, b"", None)
        if req.method != "POST":
            return Response(404, b"404 page not found\n")
        try:
            body = json.loads(req.body) if req.body.strip() else {}
        except (ValueError, UnicodeDecodeError):
            return self._reply(400, {"Err": "the request body is not JSON"})
        if not isinstance(body, dict):
            body = {}
        answer = self.answer(req.path, body)
        if answer is None:
            return Response(404, b"404 page not found\n")
        return self._reply(200, answer)

    def answer(self, path: str, body: dict) -> dict | None:
        """The reply to one plugin call (``/Plugin.Activate``, ``/VolumeDriver.Create``, …) with
        its JSON body; None for a path the plugin does not have."""
        if path == "/Plugin.Activate":
            self._say("activated by the Docker engine")
            return {"Implements": ["VolumeDriver"]}
        if path == "/VolumeDriver.Capabilities":
            return {"Capabilities": {"Scope": "local"}}
        if path == "/VolumeDriver.List":
            return {"Volumes": self._list() or None, "Err": None}
        call = {
            "/VolumeDriver.Create": self._create,
            "/VolumeDriver.Remove": self._remove,
            "/VolumeDriver.Mount": self._mount,
            "/VolumeDriver.Unmount": self._unmount,
            "/VolumeDriver.Path": self._path,
            "/VolumeDriver.Get": self._get,
        }.get(path)
        if call is None:
            return None
        name = body.get("Name")
        name = name if isinstance(name, str) else ""
        try:
            with self._lock:
                return call(name)
        except _Err as e:
            self._say(f"{path.rpartition('.')[2].lower()} {name}: {e}")
            return {"Err": str(e)}

    def close(self) -> None:
        """Undo this plugin's read-only mounts (running containers keep their own)."""
        with self._lock:
            for mp in sorted(self._mounted):
                try:
                    _detach(mp)
                    os.rmdir(mp)
                except OSError as e:
                    self._say(f"could not unmount {mp}: {e.strerror}")
            self._mounted.clear()

    # -- the calls -----------------------------------------------------------------------------

    def _version_of(self, name: str) -> str:
        m = _NAME.fullmatch(name)
        if not m:
            raise _Err("bad volume format", name)
        if m.group(1) != DRIVER_VOLUME:
            raise _Err("unsupported volume", name)
        if not _VERSION.fullmatch(m.group(2)):
            raise _Err("bad volume format", name)
        return m.group(2)

    def _running_version(self) -> str | None:
        try:
            v = self._driver_version()
        except Exception:  # noqa: BLE001 - NVML can fail; the module's version is the fallback
            v = None
        return v or kernel_module_version(self.root)

    def _dir(self, version: str) -> str:
        return os.path.join(self.volume_dir, DRIVER_VOLUME, version)

    def _mountpoint(self, name: str) -> str:
        return os.path.join(self.volume_dir, ".mounts", name)

    def _create(self, name: str) -> dict:
        version = self._version_of(name)
        running = self._running_version()
        if running is None:
            raise _Err("no NVIDIA driver is loaded on this host, so no driver volume can be made", name)
        if version != running:
            raise _Err(
                f"invalid volume version (the running driver is {running}, so this plugin makes "
                f"{DRIVER_VOLUME}_{running}, not {version})",
                name,
            )
        if check_volume_dir(self._dir(version), version).ok:
            return {"Err": None}
        self._unmount_ro(self._mountpoint(name))  # a mount of the old directory would show it emptied
        try:
            vol = build_driver_volume(self.root, self.volume_dir, version)
        except (LaunchError, OSError) as e:
            raise _Err(f"cannot build the driver volume: {e}", name) from None
        self._say(f"built {name}: {len(vol.files)} files at {vol.path}")
        return {"Err": None}

    def _remove(self, name: str) -> dict:
        version = self._version_of(name)
        mp = self._mountpoint(name)
        self._unmount_ro(mp)
        shutil.rmtree(self._dir(version), ignore_errors=True)
        self._say(f"removed {name}")
        return {"Err": None}

    def _existing(self, name: str) -> str:
        version = self._version_of(name)
        d = self._dir(version)
        if not os.path.isdir(d):
            raise _Err("no such volume", name)
        return d

    def _mount(self, name: str) -> dict:
        d = self._existing(name)
        if not self._read_only:
            return {"Mountpoint": d, "Err": None}
        mp = self._mountpoint(name)
        if mp in self._mounted and is_mount_point(mp):
            return {"Mountpoint": mp, "Err": None}
        try:
            os.makedirs(mp, mode=0o755, exist_ok=True)
            if is_mount_point(mp):  # left by a plugin that died: it may show an older build
                _detach(mp)
            _bind_read_only(d, mp)
        except OSError as e:
            if not self._warned:
                self._warned = True
                self._say(
                    f"cannot bind-mount {d} read-only at {mp} ({e.strerror}); handing out the directory "
                    "itself: a container that mounts it without :ro can write the host's driver files"
                )
            return {"Mountpoint": d, "Err": None}
        self._mounted.add(mp)
        return {"Mountpoint": mp, "Err": None}

    def _unmount(self, name: str) -> dict:
        self._version_of(name)
        return {"Err": None}

    def _where(self, name: str, d: str) -> str:
        mp = self._mountpoint(name)
        return mp if mp in self._mounted else d

    def _path(self, name: str) -> dict:
        return {"Mountpoint": self._where(name, self._existing(name)), "Err": None}

    def _get(self, name: str) -> dict:
        d = self._existing(name)
        return {"Volume": {"Name": name, "Mountpoint": self._where(name, d), "Status": {}}, "Err": None}

    def _list(self) -> list[dict]:
        base = os.path.join(self.volume_dir, DRIVER_VOLUME)
        try:
            versions = sorted(v for v in os.listdir(base) if _VERSION.fullmatch(v) and os.path.isdir(f"{base}/{v}"))
        except OSError:
            return []
        out = []
        for v in versions:
            name = f"{DRIVER_VOLUME}_{v}"
            out.append({"Name": name, "Mountpoint": self._where(name, f"{base}/{v}")})
        return out

    def _unmount_ro(self, mp: str) -> None:
        if mp in self._mounted or is_mount_point(mp):
            try:
                _detach(mp)
                os.rmdir(mp)
            except OSError as e:
                self._say(f"could not unmount {mp}: {e.strerror}")
        self._mounted.discard(mp)

    # -- plumbing ------------------------------------------------------------------------------

    def _reply(self, status: int, obj: dict) -> Response:
        return Response(status, (json.dumps(obj) + "\n").encode(), CONTENT_TYPE)

    def _say(self, line: str) -> None:
        if self._log is not None:
            self._log(f"volume plugin: {line}")
