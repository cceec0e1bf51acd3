"""Building the dashboard for pilot and snapshot tests on simulated hosts."""

from __future__ import annotations

from gpudock.sim.scenario import Scenario
from gpudock.ui.app import GpudockApp, HostChoice
from helpers.sim import frozen_demo, session


def make_app(sc: Scenario | None = None, refresh: float = 0.2, banner: str | None = None) -> GpudockApp:
    return GpudockApp(HostChoice(session(sc or frozen_demo()), banner), refresh=refresh)


async def first_snapshot(pilot) -> None:
    """Wait until the first refresh has been painted (workers awaited, not slept on)."""
    app = pilot.app
    for _ in range(100):
        await app.workers.wait_for_complete()
        await pilot.pause()
        if app.snapshot is not None:
            return
    raise AssertionError("the dashboard never received a snapshot")
