"""Building the dashboard for pilot and snapshot tests on simulated hosts."""

from __future__ import annotations

import dataclasses

from textual.worker import WorkerCancelled, WorkerError

from gpudock.sim.host import SimHost
from gpudock.sim.scenario import Scenario
from gpudock.ui.app import GpudockApp, HostChoice
from helpers.sim import frozen_demo, session

# The Docker engine a test dashboard watches unless it names one: a socket that never exists, so
# that what the screens show (the Docker banner) is the same on every machine, with or without a
# Docker engine of its own.
NO_DOCKER = "unix:///nonexistent/gpudock-test/docker.sock"


def make_app(
    sc: Scenario | None = None,
    refresh: float = 0.2,
    banner: str | None = None,
    docker_base_url: str | None = None,
    proc_root: str | None = None,
) -> GpudockApp:
    """The dashboard on a simulated NVML host (default: the frozen demo).

    Its Docker engine: ``docker_base_url`` (a real engine, e.g. the ``engine`` fixture's; GPU
    processes mapped through ``proc_root``, default the real /proc); else the scenario's simulated
    engine and /proc (gpudock.sim.host.SimHost, closed when the app exits) when it describes one,
    as ``--demo`` does; else :data:`NO_DOCKER`."""
    sc = sc or frozen_demo()
    host = HostChoice(session(sc), banner)
    if docker_base_url is not None:
        host = dataclasses.replace(host, docker_base_url=docker_base_url, proc_root=proc_root)
    elif sc.has_docker:  # not through sim_host_for: a DOCKER_HOST in the tests' environment must not matter
        sim = SimHost(sc).start()
        host = dataclasses.replace(host, docker_base_url=sim.docker_base_url, proc_root=sim.proc_root, sim_host=sim)
    else:
        host = dataclasses.replace(host, docker_base_url=NO_DOCKER, proc_root=proc_root)
    return GpudockApp(host, refresh=refresh)


def docker_settled(app) -> bool:
    """The app's holders map says where it stands with its Docker engine (not still connecting)."""
    watcher = getattr(app, "docker_watcher", None)
    if watcher is None:
        return True
    hmap = getattr(app, "holders", None)
    return hmap is not None and hmap.docker is not None and hmap.docker.state != "connecting"


async def settle_workers(app) -> None:
    """Await the app's workers. A refresh may start (PENDING) or be replaced while we wait: that
    is not a failure, the caller looks again."""
    try:
        await app.workers.wait_for_complete()
    except WorkerCancelled:
        pass
    except WorkerError as e:
        if type(e) is not WorkerError:  # WorkerFailed, DeadlockError: real errors
            raise


async def first_snapshot(pilot) -> None:
    """Wait until the first refresh has been painted, and the first attempt to reach the Docker
    engine with it (workers awaited, not slept on)."""
    app = pilot.app
    for _ in range(200):
        await settle_workers(app)
        await pilot.pause()
        if app.snapshot is not None and docker_settled(app):
            return
    raise AssertionError("the dashboard never received a snapshot")
