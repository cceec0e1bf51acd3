"""Building the dashboard for pilot and snapshot tests on simulated hosts."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.worker import WorkerCancelled, WorkerError

from gpudock.host.history import History
from gpudock.session import open_scenario
from gpudock.sim.scenario import Scenario
from gpudock.ui.app import GpudockApp
from helpers.sim import frozen_demo

# The Docker engine a test dashboard watches unless it names one: a socket that never exists, so
# that what the screens show (the Docker banner) is the same on every machine, with or without a
# Docker engine of its own.
NO_DOCKER = "unix:///nonexistent/gpudock-test/docker.sock"


def still_clock() -> float:
    """A clock that never moves: every reading of a test lands in the history's first cell, so a
    sparkline is one block whatever the number of refreshes before the picture is taken."""
    return 0.0


def make_app(
    sc: Scenario | None = None,
    refresh: float = 0.2,
    banner: str | None = None,
    docker_base_url: str | None = None,
    proc_root: str | None = None,
    history_clock: Callable[[], float] = still_clock,
) -> GpudockApp:
    """The dashboard on a simulated host (default: the frozen demo), closed when the app exits.

    Its Docker engine: ``docker_base_url`` (a real engine, e.g. the ``engine`` fixture's; GPU
    processes mapped through ``proc_root``, default this machine's /proc); else the
    scenario's simulated engine when it describes one, as ``--demo`` does; else
    :data:`NO_DOCKER`, so the banner reads the same on every machine. The readings' history is
    stamped by ``history_clock`` (default :func:`still_clock`)."""
    sc = sc or frozen_demo()
    url = docker_base_url or (None if sc.has_docker else NO_DOCKER)
    if docker_base_url is not None and proc_root is None:
        proc_root = "/proc"  # a real engine's containers: their processes are this machine's
    host = open_scenario(sc, docker_url=url, proc_root=proc_root)
    host.banner = banner
    app = GpudockApp(host, refresh=refresh)
    app.history = History(period=app.refresh_period, clock=history_clock)
    return app


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


async def until(pilot, cond, what: str, timeout: float = 20.0) -> None:
    """Let the app run (its workers awaited, its messages handled) until ``cond()`` holds."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await settle_workers(pilot.app)
        await pilot.pause(0.05)


async def refresh(pilot) -> None:
    """One real refresh from the host, as the timer would do it."""
    app = pilot.app
    before = app.snapshot
    app.poll_soon()
    for _ in range(100):
        await settle_workers(app)
        await pilot.pause()
        if app.snapshot is not before:
            return
    raise AssertionError("no refresh came")


def screen_text(app) -> str:
    """What the terminal shows now: the composed screen, line by line."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())
