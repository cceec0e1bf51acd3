"""Host PID → container: which container a process runs in, and its PID inside that container.

This module owns reading ``/proc/<pid>/cgroup`` and ``/proc/<pid>/status`` (``NSpid``) under a
proc root (``proc_root``, default ``"/proc"``; tests and ``--root`` point it at a fake tree).
NVML reports host PIDs; this is how gpudock turns them into containers.

Cgroup forms recognised (cgroup v1 ``N:controllers:/path`` lines and the v2 ``0::/path`` line):

* cgroupfs driver: ``/docker/<id>``, nested ``/docker/<outer>/docker/<inner>``,
  ``/kubepods/<qos>/pod<uid>/<id>``, ``/containerd/<id>``, anything ending in a 64-hex component;
* systemd driver: ``/system.slice/docker-<id>.scope``, ``…/cri-containerd-<id>.scope``,
  ``…/crio-<id>.scope``, ``…/libpod-<id>.scope`` (podman), with anything below the scope
  (``…/docker-<id>.scope/init.scope`` when the container runs systemd).
  ``crio-conmon-<id>.scope`` is CRI-O's monitor process, not the container: not matched.

All container ids found in the path are returned outermost first (``ContainerPid.ids``), since a
Docker-in-Docker process is in the host engine's *outer* container: the caller matches them
against the containers it knows. An unreadable or vanished pid gives ``None``, never an error.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

__all__ = ["ContainerPid", "parse_cgroup", "parse_nspid", "container_of", "PidMapper"]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SCOPE = re.compile(r"^(docker|cri-containerd|crio|libpod)-([0-9a-f]{64})\.scope$")


@dataclass(frozen=True, slots=True)
class ContainerPid:
    """Where a host PID lives. ``ids`` are container ids in its cgroup path, outermost first;
    ``nspid`` is the ``NSpid`` line (host PID first, then each nested PID namespace's view)."""

    pid: int
    ids: tuple[str, ...]
    nspid: tuple[int, ...] = ()
    runtime: str | None = None  # "docker", "cri-containerd", "crio", "libpod", "kubepods", ...

    @property
    def container_id(self) -> str | None:
        """The outermost container id (the one the host's engine knows), or None (host process)."""
        return self.ids[0] if self.ids else None

    def container_pid(self, depth: int = 0) -> int | None:
        """The PID as seen inside the container at ``depth`` (0: outermost). A container that shares
        the host's PID namespace (``--pid=host``) sees the host PID."""
        if not self.nspid:
            return None
        return self.nspid[min(depth + 1, len(self.nspid) - 1)]


def _ids_in_path(path: str) -> tuple[list[str], str | None]:
    ids: list[str] = []
    runtime: str | None = None
    parts = [p for p in path.split("/") if p]
    for i, comp in enumerate(parts):
        m = _SCOPE.match(comp)
        if m:
            ids.append(m.group(2))
            runtime = runtime or m.group(1)
            continue
        if _HEX64.match(comp):
            ids.append(comp)
            if runtime is None:
                prev = parts[i - 1] if i else ""
                if prev == "docker":
                    runtime = "docker"
                elif any(p.startswith("kubepods") for p in parts[:i]):
                    runtime = "kubepods"
                elif prev:
                    runtime = prev
    return ids, runtime


def parse_cgroup(text: str) -> tuple[tuple[str, ...], str | None]:
    """Container ids (outermost first) and the runtime kind from a ``/proc/<pid>/cgroup`` text.

    The v2 line (``0::``) is preferred when it names a container; else the first v1 line that does
    (hybrid hosts have both; v1 lines for ``name=systemd``, ``devices``, ``memory``… agree).
    ``((), None)`` for a host process.
    """
    best: tuple[list[str], str | None] | None = None
    for line in text.splitlines():
        hid, sep, rest = line.partition(":")
        if not sep:
            continue
        controllers, sep, path = rest.partition(":")
        if not sep:
            continue
        ids, rt = _ids_in_path(path.strip())
        if not ids:
            continue
        if hid == "0" and controllers == "":
            return tuple(ids), rt
        if best is None:
            best = (ids, rt)
    if best is None:
        return (), None
    return tuple(best[0]), best[1]


def parse_nspid(status_text: str) -> tuple[int, ...]:
    """The ``NSpid:`` values from a ``/proc/<pid>/status`` text (host first); () if absent."""
    for line in status_text.splitlines():
        if line.startswith("NSpid:"):
            try:
                return tuple(int(x) for x in line[6:].split())
            except ValueError:
                return ()
    return ()


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(65536).decode("utf-8", "replace")
    except OSError:
        return None


def container_of(pid: int, proc_root: str = "/proc") -> ContainerPid | None:
    """Where host ``pid`` lives, read from ``<proc_root>/<pid>/{cgroup,status}``.

    None when the process is gone or its cgroup file cannot be read. A process in no container
    gives a ContainerPid with ``ids == ()``.
    """
    base = os.path.join(proc_root, str(int(pid)))
    cg = _read(os.path.join(base, "cgroup"))
    if cg is None:
        return None
    ids, rt = parse_cgroup(cg)
    st = _read(os.path.join(base, "status"))
    nspid = parse_nspid(st) if st is not None else ()
    return ContainerPid(pid=int(pid), ids=ids, nspid=nspid, runtime=rt)


class PidMapper:
    """:func:`container_of` with a small per-refresh cache (the same PID on several GPUs is read
    once per :meth:`begin`)."""

    def __init__(self, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root
        self._cache: dict[int, ContainerPid | None] = {}

    def begin(self) -> None:
        """Start a refresh: forget what the last one read (PIDs are reused)."""
        self._cache.clear()

    def __call__(self, pid: int) -> ContainerPid | None:
        try:
            return self._cache[pid]
        except KeyError:
            r = self._cache[pid] = container_of(pid, self.proc_root)
            return r
