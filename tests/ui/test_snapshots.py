"""Snapshot tests: what an operator sees, at 80x24 and 120x40 (compare with screenshots/)."""

from __future__ import annotations

from helpers.dashboard import first_snapshot, make_app
from helpers.sim import gpu, scenario


def test_main_screen_80x24(snap_compare):
    async def ready(pilot):
        await first_snapshot(pilot)
        await pilot.press("down", "down")

    assert snap_compare(make_app(refresh=3600), terminal_size=(80, 24), run_before=ready)


def test_main_screen_120x40(snap_compare):
    async def ready(pilot):
        await first_snapshot(pilot)
        await pilot.press(*["down"] * 6)

    assert snap_compare(make_app(refresh=3600), terminal_size=(120, 40), run_before=ready)


def test_nvml_failure_80x24(snap_compare):
    app = make_app(scenario(init_error="driver_not_loaded"), refresh=3600)
    assert snap_compare(app, terminal_size=(80, 24), run_before=first_snapshot)


def test_lost_gpu_80x24(snap_compare):
    app = make_app(scenario([gpu(0), gpu(1, lost=True), gpu(2), gpu(3)]), refresh=3600)

    async def ready(pilot):
        await first_snapshot(pilot)
        await pilot.press("down")

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


def test_gpu_readings_80x24(snap_compare):
    """GPU 4 of the demo: held at the power cap, one NVLink down; the readings under the table."""

    async def ready(pilot):
        await first_snapshot(pilot)
        await pilot.press(*["down"] * 4, "enter", "end")

    assert snap_compare(make_app(refresh=3600), terminal_size=(80, 24), run_before=ready)


def test_topology_80x24(snap_compare):
    async def ready(pilot):
        await first_snapshot(pilot)
        await pilot.press("o")
        await pilot.pause()

    assert snap_compare(make_app(refresh=3600), terminal_size=(80, 24), run_before=ready)
