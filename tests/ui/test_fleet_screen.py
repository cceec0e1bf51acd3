"""The fleet screen (gpudock fleet): hosts from Prometheus, Enter on a host, sort and filter."""

from __future__ import annotations

import dataclasses

from gpudock.ui.screens.fleet import FleetApp, FleetHostScreen, FleetScreen
from gpudock.ui.widgets.live_table import LiveTable
from helpers.fleet import FakeReader, demo_fleet_view


async def _first_view(pilot) -> None:
    app = pilot.app
    for _ in range(200):
        await app.workers.wait_for_complete()
        await pilot.pause()
        if app.view is not None and isinstance(app.screen, FleetScreen):
            return
    raise AssertionError("the fleet screen never got a view")


def _cells(table: LiveTable, key: str) -> list[str]:
    return [str(c) for c in table.get_row(key)]


async def test_one_row_per_host_with_its_numbers_and_the_stale_one_marked():
    app = FleetApp(FakeReader(demo_fleet_view()), interval=3600)
    async with app.run_test(size=(120, 30)) as pilot:
        await _first_view(pilot)
        table = app.screen.query_one(LiveTable)
        assert table.row_keys == ["dgx-legacy", "gpu-a01", "gpu-a02", "gpu-b07"]
        a01 = dict(zip([c.key for c in table.columns], _cells(table, "gpu-a01")))
        assert a01["gpus"] == "3/8" and a01["util"] == " 84" and a01["state"] == "ok"
        assert a01["holders"].startswith("train-llama +1")
        assert dict(zip([c.key for c in table.columns], _cells(table, "gpu-b07")))["state"] == "stale"
        assert dict(zip([c.key for c in table.columns], _cells(table, "gpu-a02")))["errors"] == "1"
        legacy = dict(zip([c.key for c in table.columns], _cells(table, "dgx-legacy")))
        assert legacy["errors"] == "1"  # the Xid 79 from dcgm-exporter


async def test_enter_on_a_host_shows_its_gpus_holders_and_the_ssh_line():
    reader = FakeReader(demo_fleet_view())
    app = FleetApp(reader, interval=3600)
    async with app.run_test(size=(120, 30)) as pilot:
        await _first_view(pilot)
        table = app.screen.query_one(LiveTable)
        table.move_cursor_to_key("gpu-a01")
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, FleetHostScreen) and screen.hostname == "gpu-a01"
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert reader.host_reads == ["gpu-a01"]  # its GPUs: a read of that host alone
        gt = screen.query_one(LiveTable)
        assert len(gt.row_keys) == 8
        first = dict(zip([c.key for c in gt.columns], [str(c) for c in gt.get_row_at(0)]))
        assert first["holders"] == "train-llama" and first["idx"] == "0" and first["util"] == " 80"
        assert str(dict(zip([c.key for c in gt.columns], gt.get_row_at(3)))["holders"]) == "free"
        header = str(screen.query_one("#fleet-host-header").render())
        assert "ssh -t gpu-a01 gpudock" in header
        details = str(screen.query_one("#fleet-gpu-details").render())
        assert "held by train-llama" in details and "nvcr.io/nvidia/pytorch:24.01-py3" in details
        await pilot.press("y")
        assert app.clipboard == "ssh -t gpu-a01 gpudock"
        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)


async def test_sort_and_filter_keep_the_cursor_on_its_host():
    app = FleetApp(FakeReader(demo_fleet_view()), interval=3600)
    async with app.run_test(size=(120, 30)) as pilot:
        await _first_view(pilot)
        table = app.screen.query_one(LiveTable)
        table.move_cursor_to_key("gpu-a02")
        await pilot.press("s")  # by GPU%: the busiest first
        assert table.row_keys == ["gpu-a01", "gpu-b07", "dgx-legacy", "gpu-a02"]
        assert table.cursor_row_key == "gpu-a02"
        await pilot.press("S")
        assert table.row_keys == ["gpu-a02", "dgx-legacy", "gpu-b07", "gpu-a01"]
        # the keys every other table sorts with: "-" reverses, "," goes back a column, "." on
        await pilot.press("minus")
        assert table.row_keys == ["gpu-a01", "gpu-b07", "dgx-legacy", "gpu-a02"]
        await pilot.press("comma")
        assert app.screen.sort_key == "host" and table.row_keys == ["dgx-legacy", "gpu-a01", "gpu-a02", "gpu-b07"]
        await pilot.press("full_stop")
        assert table.row_keys == ["gpu-a01", "gpu-b07", "dgx-legacy", "gpu-a02"]
        await pilot.press("slash", *"is:stale")
        await pilot.pause()
        assert table.row_keys == ["gpu-b07"]
        await pilot.press("escape")
        await pilot.pause()
        assert len(table.row_keys) == 4


async def test_a_failed_read_keeps_the_hosts_marked_stale_and_says_why():
    good = demo_fleet_view()
    bad = dataclasses.replace(
        good,
        ok=False,
        stale=True,
        error="Prometheus at http://prometheus:9090 does not answer (connection refused): is it running?",
        hosts=tuple(dataclasses.replace(h, stale=True) for h in good.hosts),
    )
    reader = FakeReader(good, bad)
    app = FleetApp(reader, interval=3600)
    async with app.run_test(size=(120, 30)) as pilot:
        await _first_view(pilot)
        await pilot.press("r")
        for _ in range(50):
            await app.workers.wait_for_complete()
            await pilot.pause()
            if reader.reads == 2 and app.view is bad:
                break
        table = app.screen.query_one(LiveTable)
        assert len(table.row_keys) == 4
        assert all(str(table.get_cell(k, "state")) == "stale" for k in table.row_keys)
        header = str(app.screen.query_one("#fleet-header").render())
        assert "does not answer (connection refused)" in header and "showing the last good read" in header


def test_fleet_screen_80x24(snap_compare):
    app = FleetApp(FakeReader(demo_fleet_view()), interval=3600)
    assert snap_compare(app, terminal_size=(80, 24), run_before=_first_view)


def test_fleet_host_screen_80x24(snap_compare):
    app = FleetApp(FakeReader(demo_fleet_view()), interval=3600)

    async def ready(pilot):
        await _first_view(pilot)
        app.screen.query_one(LiveTable).move_cursor_to_key("gpu-a01")
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)
