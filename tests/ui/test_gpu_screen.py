"""Pilot tests of the main screen: what an operator does with the keyboard alone."""

from __future__ import annotations

import pynvml
from textual.widgets import Static

from gpudock.ui.app import SnapshotReady
from gpudock.ui.widgets.live_table import LiveTable
from helpers.dashboard import first_snapshot, make_app
from helpers.sim import gpu, scenario


def details_text(app) -> str:
    return str(app.screen.query_one("#gpu-details", Static).render())


async def test_the_table_lists_every_gpu_with_bus_id_and_device_node():
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await first_snapshot(pilot)
        table = app.screen.query_one(LiveTable)
        assert table.row_count == 8
        row0 = [str(c) for c in table.get_row_at(0)]
        # the model without the "NVIDIA " of every card's name (the details pane has it whole)
        assert row0[:4] == ["0", "00000000:05:00.0", "/dev/nvidia3", "H100 80GB HBM3"]
        assert "NVIDIA H100 80GB HBM3" in details_text(app)
        header = str(app.screen.query_one("#host-header", Static).render())
        assert "535.129.03" in header and "12.2" in header and "12.535.129.03" in header


async def test_arrow_keys_move_and_the_details_follow():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await pilot.press("down", "down")
        text = details_text(app)
        assert "GPU-1d2e3f40-5a6b-4c7d-8e9f-a0b1c2d3e403" in text
        assert "minor 1" in text and "tritonserver" in text
        await pilot.press("down", "down", "down", "down")
        text = details_text(app)
        assert "MIG on" in text and "3g.40gb" in text and "MIG-5d1e6f2a" in text


async def test_the_cursor_stays_on_its_gpu_across_refreshes():
    messages = []
    app = make_app(refresh=0.2)
    async with app.run_test(size=(80, 24), message_hook=messages.append) as pilot:
        await first_snapshot(pilot)
        table = app.screen.query_one(LiveTable)
        # a live table must never be rebuilt: that drops the operator's cursor
        table.set_columns = lambda *a, **k: (_ for _ in ()).throw(AssertionError("live table rebuilt"))
        await pilot.press("down", "down", "down", "down", "down")
        key_before = app.screen.current_gpu_key()
        n = sum(isinstance(m, SnapshotReady) for m in messages)
        while sum(isinstance(m, SnapshotReady) for m in messages) < n + 3:
            await pilot.pause(0.1)
        assert table.cursor_row == 5
        assert app.screen.current_gpu_key() == key_before == "GPU-9e8d7c6b-5a49-4382-9170-6f5e4d3c2b06"


async def test_the_cursor_stays_on_its_gpu_when_the_terminal_widens():
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await pilot.press("down", "down", "down", "down", "down")
        key = app.screen.current_gpu_key()
        await pilot.resize_terminal(130, 40)  # the wide columns: the table is laid out anew
        await pilot.pause()
        table = app.screen.query_one(LiveTable)
        assert [c.key for c in table.columns][3] == "name"
        assert app.screen.current_gpu_key() == key and table.cursor_row == 5
        assert key in details_text(app)


async def test_changed_values_are_written_in_place():
    app = make_app(refresh=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        table = app.screen.query_one(LiveTable)
        written = []
        real = table.set_row
        table.set_row = lambda r, cells: (changed := real(r, cells)) and written.append(r) or changed
        pynvml.nvmlLib.lose_gpu(3)
        app.poll()
        await first_snapshot(pilot)
        while not written:
            await pilot.pause(0.1)
        row = [str(c) for c in table.get_row(written[0])]
        assert "lost" in row  # a short word where the numbers were; the details have the error
        assert set(written) == {"GPU-77c0ffee-0b1c-4d2e-8f3a-4b5c6d7e8f04"}


async def test_nvml_failure_is_said_in_words_an_operator_can_act_on():
    app = make_app(scenario(init_error="lib_rm_version_mismatch"))
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        header = str(app.screen.query_one("#host-header", Static).render())
        assert "Driver/library version mismatch" in header and "Reboot" in header
        assert app.screen.query_one(LiveTable).row_count == 0


async def test_a_lost_gpu_row_shows_the_error_and_others_update():
    app = make_app(scenario([gpu(0), gpu(1, lost=True), gpu(2)]))
    async with app.run_test(size=(120, 30)) as pilot:
        await first_snapshot(pilot)
        table = app.screen.query_one(LiveTable)
        assert "lost" in [str(c) for c in table.get_row_at(1)]
        assert [str(c) for c in table.get_row_at(2)][4].strip() == "20"
        await pilot.press("down")  # its details say what happened and what to do
        assert "GPU is lost" in details_text(app) and "reboot" in details_text(app)


async def test_quit_with_q():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await pilot.press("q")
    assert app.return_code == 0


async def test_the_details_show_the_readings_operators_compare_cards_by():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await pilot.press("down", "down")  # GPU 2: triton, an ECC history, a remapped row
        text = details_text(app)
        assert "P0" in text and "Throttle    none" in text
        assert "ECC         on  volatile 3/0  aggregate 12/0" in text
        assert "rows remapped 1/0" in text
        assert "gen 5/5  x16/16" in text and "BAR1 36/131072 MiB" in text
        assert "NVLink      18/18 up  NUMA 0  CPUs 0-55,112-167" in text
        assert "sm 28%" in text and "sm 6%" in text  # each process's SM share
        await pilot.press("down", "down")  # GPU 4: burn-in at the power cap, a link down
        text = details_text(app)
        assert "Throttle    SW Power Cap" in text and "17/18 up" in text
        assert all(len(line) <= 78 for line in text.splitlines() if not line.lstrip().startswith(("3", "!")))


async def test_o_opens_the_topology_and_escape_goes_back():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await pilot.press("o")
        await pilot.pause()
        from gpudock.ui.screens.topology import TopologyScreen

        assert isinstance(app.screen, TopologyScreen)
        text = str(app.screen.query_one("#topology", Static).render())
        lines = text.splitlines()
        row0 = next(line for line in lines if line.startswith("GPU0"))
        assert row0.split() == [
            "GPU0",
            "X",
            "NV18",
            "NV18",
            "NV18",
            "NV17",
            "NV18",
            "NV18",
            "NV18",
            "0-55,112-167",
            "0",
        ]
        assert "NV#  a bonded set of # NVLinks" in text
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen.query_one(LiveTable).row_count == 8
