"""A simulated ``/proc`` for the scenario's processes: what :mod:`gpudock.host.procmap` reads.

This module owns writing, under a directory that stands for ``/proc``, for every GPU process of
the scenario and every running container's PID 1:

* ``<dir>/<pid>/cgroup`` — cgroup v2: ``0::/system.slice/docker-<id>.scope`` (systemd cgroup
  driver, the default) or ``0::/docker/<id>`` (cgroupfs) for a PID in a container;
  ``0::/user.slice/user-1000.slice/session-3.scope`` for a host process;
* ``<dir>/<pid>/status`` — ``Name``, ``Pid``, ``PPid`` and ``NSpid:\\t<host>\\t<in container>``
  (``NSpid:\\t<host>`` for a host process), ``NStgid`` alike;
* ``<dir>/<pid>/comm`` and ``cmdline`` (NUL-separated), from the scenario's command.

The directory is then handed to the unchanged probes as their proc root
(``build_holders(..., proc_root=...)``, ``PidMapper(proc_root)``). Nothing here touches the real
``/proc``.
"""

from __future__ import annotations

import os
from pathlib import Path

from gpudock.sim.scenario import Scenario

__all__ = ["HOST_CGROUP", "container_cgroup", "write_proc"]

HOST_CGROUP = "/user.slice/user-1000.slice/session-3.scope"


def container_cgroup(container_id: str, cgroup_driver: str = "systemd") -> str:
    """The cgroup v2 path dockerd gives a container's processes."""
    if cgroup_driver == "cgroupfs":
        return f"/docker/{container_id}"
    return f"/system.slice/docker-{container_id}.scope"


def _status(name: str, pid: int, ppid: int, nspid: tuple[int, ...]) -> str:
    ns = "\t".join(str(p) for p in nspid)
    return (
        f"Name:\t{name[:15]}\n"
        "Umask:\t0022\n"
        "State:\tS (sleeping)\n"
        f"Tgid:\t{pid}\n"
        "Ngid:\t0\n"
        f"Pid:\t{pid}\n"
        f"PPid:\t{ppid}\n"
        "TracerPid:\t0\n"
        "Uid:\t1000\t1000\t1000\t1000\n"
        "Gid:\t1000\t1000\t1000\t1000\n"
        f"NStgid:\t{ns}\n"
        f"NSpid:\t{ns}\n"
        f"NSpgid:\t{ns}\n"
        f"NSsid:\t{ns}\n"
        "Threads:\t1\n"
    )


def _write(base: Path, pid: int, cgroup: str, command: str, ppid: int, nspid: tuple[int, ...]) -> None:
    d = base / str(pid)
    d.mkdir(parents=True, exist_ok=True)
    argv = command.split() or ["?"]
    name = os.path.basename(argv[0])
    (d / "cgroup").write_text(f"0::{cgroup}\n")
    (d / "status").write_text(_status(name, pid, ppid, nspid))
    (d / "comm").write_text(name[:15] + "\n")
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")


def write_proc(scenario: Scenario, directory: str | os.PathLike) -> str:
    """Write the scenario's processes under ``directory`` (created if needed); return its path."""
    base = Path(directory)
    base.mkdir(parents=True, exist_ok=True)
    driver = scenario.docker.cgroup_driver if scenario.docker else "systemd"
    commands = {p.pid: p.command for g in scenario.gpus for p in g.processes}
    in_container: dict[int, tuple[str, int, int]] = {}  # host pid -> (cgroup, pid inside, host ppid)
    for c in scenario.containers:
        if c.pid is None:
            continue  # not running: no processes
        cg = container_cgroup(c.id, driver)
        _write(base, c.pid, cg, c.command or commands.get(c.pid, ""), 1, (c.pid, 1))
        for host_pid, inner in c.pids:
            in_container[host_pid] = (cg, inner, c.pid if host_pid != c.pid else 1)
    for pid, command in commands.items():
        if pid in in_container:
            cg, inner, ppid = in_container[pid]
            _write(base, pid, cg, command, ppid, (pid, inner))
        else:
            _write(base, pid, HOST_CGROUP, command, 1, (pid,))
    return str(base)
