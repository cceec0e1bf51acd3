"""The readings' history on the GPU screen: sparklines in the details pane and, from 120 columns,
a column of the table; filled by the refreshes, bounded, shown as text."""

from __future__ import annotations

import dataclasses
import itertools
import math

from textual.widgets import Static

from gpudock.host.history import BLOCKS, History, history_key
from gpudock.ui.widgets.live_table import LiveTable
from helpers.dashboard import first_snapshot, make_app, refresh, settle_workers


def stepping(step: float):
    counter = itertools.count()
    return lambda: next(counter) * step


def details_lines(app) -> dict[str, str]:
    """The details pane's rows by label (the text after the 12-column label)."""
    text = str(app.screen.query_one("#gpu-details", Static).render())
    return {line[:12].strip(): line[12:] for line in text.splitlines() if line[:12].strip()}


def blocks(s: str) -> str:
    return "".join(ch for ch in s if ch in BLOCKS)


async def test_the_sparklines_fill_from_the_readings_each_refresh_takes():
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        # one reading a cell: at 80 columns a sparkline has 48 cells of 300/48 = 6.25 s
        app.history = History(clock=stepping(6.25))
        await refresh(pilot)
        gpu0 = app.snapshot.gpus[0]
        key = history_key(gpu0)
        rows = details_lines(app)
        assert blocks(rows["GPU% 5 min"]) == BLOCKS[round(gpu0.utilization_gpu / 100 * 7)]
        assert rows["GPU% 5 min"].rstrip().endswith(f"  max {gpu0.utilization_gpu}%")
        for n in range(2, 6):
            await refresh(pilot)
            assert app.history.samples(key, "util") == n
            rows = details_lines(app)
            assert len(blocks(rows["GPU% 5 min"])) == n  # one block more each refresh, newest on the right
            assert len(blocks(rows["Mem 5 min"])) == n and len(blocks(rows["Power 5 min"])) == n
            spark = rows["GPU% 5 min"][:48]
            assert spark == " " * (48 - n) + blocks(spark)  # it fills from the right
        assert f"max {gpu0.memory_used_mib / 1024:.1f} GiB" in rows["Mem 5 min"]
        # the demo's MIG card: each MIG device's memory, under the card's own
        await pilot.press(*["down"] * 6)
        rows = details_lines(app)
        assert {"MIG 0 mem", "MIG 1 mem", "MIG 2 mem"} <= set(rows)
        assert len(blocks(rows["MIG 0 mem"])) == 5 and "max 22.0 GiB" in rows["MIG 0 mem"]


async def test_the_wide_table_has_a_history_column():
    app = make_app(refresh=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        await first_snapshot(pilot)
        app.history = History(clock=stepping(30.0))  # 10 cells of 30 s: a reading a cell
        for _ in range(3):
            await refresh(pilot)
        table = app.screen.query_one(LiveTable)
        assert [c.key for c in table.columns][4:6] == ["util", "hist"] and table.column_width("hist") == 10
        assert table.columns[-1].key == "holder" and table.virtual_size.width <= 120  # no sideways scroll
        for g in app.snapshot.gpus:
            cell = str(table.get_cell(app.screen.row_key(g), "hist"))
            assert cell == " " * 7 + BLOCKS[round(g.utilization_gpu / 100 * 7)] * 3


async def test_the_history_is_bounded_while_the_dashboard_runs():
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        app.history = History(window=20, clock=stepping(1.0))  # 20 s, to keep the test short
        for _ in range(30):
            await refresh(pilot)
        key = history_key(app.snapshot.gpus[0])
        assert app.history.samples(key, "util") == 21 and app.history.samples(key, "power") == 21
        series = app.history.series(key, "util")
        assert series.times[-1] - series.times[0] == 20


def test_history_120x40(snap_compare):
    """Five minutes of readings: GPU 6, the MIG card, with its MIG devices' memory, and the column."""

    async def ready(pilot):
        app = pilot.app
        await first_snapshot(pilot)
        await settle_workers(app)
        await pilot.pause()
        app.history = History(clock=stepping(1.0))
        snap = app.snapshot
        for t in range(300):
            wave = (math.sin(t / 20) + 1) / 2  # 0..1 over about two minutes

            def moved(g, wave=wave):
                migs = tuple(
                    dataclasses.replace(m, memory_used_mib=int(m.memory_total_mib * wave)) for m in g.mig_devices
                )
                return dataclasses.replace(
                    g,
                    utilization_gpu=round(100 * wave),
                    memory_used_mib=int(g.memory_total_mib * (0.5 + wave / 2)),
                    power_w=g.power_limit_w * (0.1 + 0.9 * wave),
                    mig_devices=migs,
                )

            app.history.add(dataclasses.replace(snap, gpus=tuple(moved(g) for g in snap.gpus)))
        app.screen.show_snapshot(snap)
        await pilot.press(*["down"] * 6)
        await pilot.pause()

    assert snap_compare(make_app(refresh=3600), terminal_size=(120, 40), run_before=ready)
