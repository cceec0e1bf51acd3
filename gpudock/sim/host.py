"""A simulated host, started for a scenario: its files, its engine and its NVML library together.

This module owns the lifetime of what a ``--demo``/``--sim`` session reads in place of a real
host, in one temporary directory (``gpudock-sim-*``):

* ``host/``: the host's files (:mod:`gpudock.sim.hostfiles`): /proc, /sys, /dev, /etc (ld.so.cache,
  config.toml, daemon.json), /lib/modules, /var/log; read through :attr:`SimHost.root`, a
  :class:`~gpudock.host.root.HostRoot` that presents the /dev nodes;
* the Engine API (:mod:`gpudock.sim.dockerd`) on ``host/run/docker.sock``, the socket a real host
  has at /var/run/docker.sock, when the scenario describes an engine; starting a GPU container
  there appends what the toolkit would log to the debug logs config.toml names
  (:mod:`gpudock.sim.toolkit_log`);
* the NVML library (:func:`gpudock.sim.libnvml.sim_library_loader`), for the session to load.

Only :mod:`gpudock.session` starts one (and the tests). A killed process cannot remove its
directory, so each start also removes the directories of simulated hosts whose process is gone.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile

from gpudock.host.root import HostRoot
from gpudock.sim.dockerd import SimDockerd
from gpudock.sim.hostfiles import HostFiles, write_host_files
from gpudock.sim.libnvml import sim_library_loader
from gpudock.sim.scenario import Scenario, ScenarioError
from gpudock.sim.toolkit_log import ToolkitLog

__all__ = ["SimHost", "PREFIX", "remove_stale"]

PREFIX = "gpudock-sim-"
_OWNER = "owner"  # <dir>/owner: "<pid> <process start time>" of the process that made it


class SimHost:
    """A simulated host for ``scenario``: ``start()``/``close()``, or a ``with`` block.

    Once started: ``root`` (HostRoot of its files), ``files`` (:class:`HostFiles`),
    ``docker_base_url`` and ``dockerd`` (None when the scenario has no engine), ``directory``.
    """

    def __init__(self, scenario: Scenario, directory: str | os.PathLike | None = None) -> None:
        self.scenario = scenario
        self._given_dir = os.fspath(directory) if directory is not None else None
        self.directory: str | None = None
        self.files: HostFiles | None = None
        self.root: HostRoot | None = None
        self.dockerd: SimDockerd | None = None
        self.docker_base_url: str | None = None
        self._owner: int | None = None  # the open, locked <dir>/owner: held while this host lives
        self.ended_pids: set[int] = set()  # processes of containers its engine stopped (NVML drops them)

    @property
    def proc_root(self) -> str | None:
        return self.files.proc_root if self.files else None

    def library_loader(self):
        return sim_library_loader(self.scenario, ended=self.ended_pids)

    def start(self) -> SimHost:
        if self.files is not None:
            return self
        if self._given_dir:
            self.directory = self._given_dir
        else:
            remove_stale()
            self.directory = tempfile.mkdtemp(prefix=PREFIX, dir=_short_tmp())
            self._owner = _hold_owner_lock(self.directory)
        try:
            given = self.scenario.host.root if self.scenario.host is not None else None
            if given is not None:
                # the host's files are already there: read them, lay out nothing, write nothing there
                if not os.path.isdir(given):
                    raise ScenarioError(f"scenario {self.scenario.name}: [host].root {given} is not a directory")
                self.files = HostFiles(given, {})
                self.root = HostRoot(given)
            else:
                self.files = write_host_files(self.scenario, os.path.join(self.directory, "host"))
                self.root = HostRoot(self.files.root, devices=self.files.devices)
            if self.scenario.has_docker:
                if given is not None:  # its engine's socket in our own directory, its volumes without files
                    self.dockerd = SimDockerd.start(self.scenario, self.directory)
                    then = None
                else:
                    self.dockerd = SimDockerd.start(self.scenario, os.path.dirname(self.files.docker_socket), self.root)
                    then = ToolkitLog(self.root).container_started
                self.dockerd.engine.on_start = self._started(then)
                self.dockerd.engine.on_stop = self._stopped
                self.docker_base_url = self.dockerd.base_url
        except BaseException:
            self.close()
            raise
        return self

    # A container the engine stops takes its processes with it: NVML stops listing them (and lists
    # them again when it is started again: the scenario's processes are its own).
    def _stopped(self, c) -> None:
        self.ended_pids.update(c.host_pids)

    def _started(self, then):
        def started(c) -> None:
            self.ended_pids.difference_update(c.host_pids)
            if then is not None:
                then(c)

        return started

    def close(self) -> None:
        if self.dockerd is not None:
            self.dockerd.close()
            self.dockerd = None
        if self.directory and self._given_dir is None:
            shutil.rmtree(self.directory, ignore_errors=True)
        if self._owner is not None:
            os.close(self._owner)
            self._owner = None
        self.directory = None
        self.files = None

    def __enter__(self) -> SimHost:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


# <tmp>/gpudock-sim-XXXXXXXX/host/run/docker.sock must fit a UNIX socket address (107 bytes).
_SOCKET_TAIL = len("/" + PREFIX + "XXXXXXXX/host/run/docker.sock")


def _short_tmp() -> str | None:
    """The temporary directory, unless its path is too long for the engine's socket under it;
    then /tmp."""
    tmp = tempfile.gettempdir()
    return None if len(os.fsencode(tmp)) + _SOCKET_TAIL <= 107 else "/tmp"


def _hold_owner_lock(directory: str) -> int:
    """Open and lock ``<directory>/owner`` for as long as this process lives: a lock dies with
    its process, however it ends, so a free lock means the directory is left over."""
    fd = os.open(os.path.join(directory, _OWNER), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def remove_stale(tmp: str | None = None) -> list[str]:
    """Remove the ``gpudock-sim-*`` directories whose owner process is gone (a dashboard killed
    with SIGKILL, a crashed test): those whose ``owner`` file is not locked. Returns what was
    removed. A directory without an owner file is not ours to judge and is left alone."""
    tmp = tmp or _short_tmp() or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(tmp)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(PREFIX):
            continue
        d = os.path.join(tmp, name)
        try:
            fd = os.open(os.path.join(d, _OWNER), os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # its process still runs
        finally:
            os.close(fd)
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed
