"""The simulated host's Docker side, started for a scenario: engine socket and ``/proc`` together.

This module owns the lifetime of what a ``--demo``/``--sim FILE`` session needs beside the
simulated NVML (:mod:`gpudock.sim.libnvml`): the Engine API server (:mod:`gpudock.sim.dockerd`)
and the ``/proc`` tree for the scenario's PIDs (:mod:`gpudock.sim.procfs`), in one temporary
directory. Callers hand ``docker_base_url`` to :class:`gpudock.host.docker.DockerWatcher` (or
``docker.DockerClient``) and ``proc_root`` to ``build_holders``/``PidMapper``; the probes run
unchanged.

Use::

    with SimHost(scenario) as sim:
        DockerWatcher(sim.docker_base_url) ...
        build_holders(snap, containers, proc_root=sim.proc_root)

    with sim_host_for(args) as sim:    # None unless the options ask for a simulated engine
        ...
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from contextlib import AbstractContextManager as ContextManager

from gpudock.sim.dockerd import SimDockerd
from gpudock.sim.procfs import write_proc
from gpudock.sim.scenario import Scenario, builtin_scenario, load_scenario

__all__ = ["SimHost", "sim_host_for", "scenario_for_args"]


class SimHost:
    """A started simulated engine and ``/proc`` for ``scenario``. ``start()``/``close()`` or a
    ``with`` block (which starts it). Attributes once started: ``docker_base_url``,
    ``proc_root``, ``dockerd`` (:class:`~gpudock.sim.dockerd.SimDockerd`; ``dockerd.engine``
    changes containers, with events), ``directory``."""

    def __init__(self, scenario: Scenario, directory: str | os.PathLike | None = None) -> None:
        self.scenario = scenario
        self._given_dir = os.fspath(directory) if directory is not None else None
        self.directory: str | None = None
        self.dockerd: SimDockerd | None = None
        self.proc_root: str | None = None
        self.docker_base_url: str | None = None

    def start(self) -> SimHost:
        if self.dockerd is not None:
            return self
        self.directory = self._given_dir or tempfile.mkdtemp(prefix="gpudock-sim-")
        try:
            self.proc_root = write_proc(self.scenario, os.path.join(self.directory, "proc"))
            self.dockerd = SimDockerd.start(self.scenario, self.directory)
        except BaseException:
            self._remove_dir()
            raise
        self.docker_base_url = self.dockerd.base_url
        return self

    def close(self) -> None:
        if self.dockerd is not None:
            self.dockerd.close()
            self.dockerd = None
        self._remove_dir()

    def _remove_dir(self) -> None:
        if self.directory and self._given_dir is None:
            shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None

    def __enter__(self) -> SimHost:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def scenario_for_args(args) -> Scenario | None:
    """The scenario ``--sim FILE`` or ``--demo`` names (as ``gpudock.cli.open_nvml`` chooses), or None."""
    if getattr(args, "sim", None):
        return load_scenario(args.sim)
    if getattr(args, "demo", False):
        return builtin_scenario("demo")
    return None


def sim_host_for(args, scenario: Scenario | None = None) -> ContextManager[SimHost | None]:
    """A :class:`SimHost` when the options ask for a simulated host whose scenario describes a
    Docker engine, and no engine is named explicitly (``--docker-host`` or ``DOCKER_HOST``);
    else a context that yields None (use the engine the options name)."""
    if getattr(args, "docker_host", None) or os.environ.get("DOCKER_HOST"):
        return contextlib.nullcontext(None)
    sc = scenario if scenario is not None else scenario_for_args(args)
    if sc is None or not sc.has_docker:
        return contextlib.nullcontext(None)
    return SimHost(sc)
