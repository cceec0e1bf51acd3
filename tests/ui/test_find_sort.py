"""Find (`/`) and sort (`.` `,` `-`) on the GPU and Containers tables, as an operator uses them."""

from __future__ import annotations

import dataclasses
import io

from rich.console import Console
from textual.widgets import Static

from gpudock.ui.app import SnapshotReady
from gpudock.ui.screens.containers import ContainerScreen
from gpudock.ui.screens.gpus import GpuScreen
from gpudock.ui.widgets.find_sort import FindBar, matches, sort_rows
from gpudock.ui.widgets.live_table import LiveTable
from helpers.dashboard import first_snapshot, make_app, refresh

# The frozen demo's GPU utilization by index: GPU 4 (burn-in) is the busiest, 3, 5 and 7 idle.
BUSIEST_FIRST = [4, 1, 0, 2, 6, 3, 5, 7]


def shown_indexes(app) -> list[int]:
    screen = app.screen
    by_key = {screen.row_key(g): g.index for g in screen._snapshot.gpus}
    return [by_key[k] for k in screen.query_one(LiveTable).row_keys]


def header(app, selector: str = "#host-header") -> str:
    return str(app.screen.query_one(selector, Static).render())


def container_names(app) -> list[str]:
    table = app.screen.query_one(LiveTable)
    return [str(table.get_row(k)[0]).removeprefix("! ") for k in table.row_keys]


async def find(pilot, text: str, enter: bool = True) -> None:
    await pilot.press("slash")
    bar = pilot.app.screen.query_one(FindBar)
    assert bar.display and bar.has_focus
    await pilot.press(*text)
    if enter:
        await pilot.press("enter")
    await pilot.pause()


async def test_slash_finds_gpus_by_any_text_of_their_row_and_escape_clears_it():
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await find(pilot, "free", enter=False)  # filtered while it is typed
        assert shown_indexes(app) == [3, 5]
        assert "/ free" in header(app) and "2 of 8 GPUs" in header(app)
        await pilot.press("escape")  # in the find bar: cleared, and back to the table
        assert shown_indexes(app) == list(range(8)) and "/ free" not in header(app)
        assert not app.screen.query_one(FindBar).display and app.screen.query_one(LiveTable).has_focus
        for text, indexes in [
            ("85:00", [4]),  # the bus id as the 80-column table shows it
            ("00000000:1e", [3]),  # as NVML writes it
            ("nvidia5", [6]),  # the device node
            ("train-llama", [0, 1]),  # the holder
            ("pytorch", [0, 1]),  # the holder's image
            ("h100 8a:00", [5]),  # every word: the model (not shown at 80 columns) and a bus id
        ]:
            await find(pilot, text)
            assert shown_indexes(app) == indexes, text
            assert not app.screen.query_one(FindBar).display  # Enter: the header says the filter
            assert f"/ {text}" in header(app)
            await pilot.press("escape")
            assert shown_indexes(app) == list(range(8))
        await find(pilot, "nothing-like-it")
        assert shown_indexes(app) == [] and "No GPU matches" in str(app.screen.query_one("#gpu-details").render())
        await pilot.press("escape", "escape")  # the second Escape does what it did before: nothing here
        assert isinstance(app.screen, GpuScreen) and shown_indexes(app) == list(range(8))


async def test_the_filter_holds_across_refreshes():
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await find(pilot, "free")
        await refresh(pilot)
        assert shown_indexes(app) == [3, 5]


async def test_the_containers_table_filters_too_and_escape_clears_before_it_goes_back():
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, ContainerScreen)
        everyone = container_names(app)
        assert len(everyone) == 8 and "(host)" in everyone
        await find(pilot, "nvcr")  # the image registry
        assert container_names(app) == ["train-llama", "triton"]
        assert "/ nvcr" in header(app, "#containers-header") and "2 of 8" in header(app, "#containers-header")
        await refresh(pilot)
        assert container_names(app) == ["train-llama", "triton"]
        await pilot.press("escape")  # clears the filter, stays
        assert isinstance(app.screen, ContainerScreen) and container_names(app) == everyone
        for text, names in [("cdi", ["eval-harness"]), ("no ctr", ["(host)"]), ("gpu_burn", ["burn-in"])]:
            await find(pilot, text)
            assert container_names(app) == names, text
            await pilot.press("escape")
        await pilot.press("escape")  # no filter now: back, as before
        assert isinstance(app.screen, GpuScreen)


async def test_sort_by_a_column_is_kept_across_refreshes_and_the_cursor_stays_on_its_gpu():
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        screen = app.screen
        table = screen.query_one(LiveTable)
        # rows are laid out again, never rebuilt: a rebuilt table drops the operator's cursor
        table.set_columns = lambda *a, **k: (_ for _ in ()).throw(AssertionError("live table rebuilt"))
        await pilot.press("down", "down")
        gpu2 = screen.current_gpu_key()
        await pilot.press("full_stop", "full_stop", "full_stop")  # BUS, DEV, then GPU%
        assert screen.sort_column == "util" and table.sort_marker == ("util", True)
        assert "GPU%▼" in table.render_line(0).text
        assert shown_indexes(app) == BUSIEST_FIRST
        assert screen.current_gpu_key() == gpu2 and table.cursor_row == BUSIEST_FIRST.index(2)
        # the next refresh reads other numbers: the rows follow them, the sort stays
        snap = app.snapshot
        busy = {3: 99, 4: 1}
        changed = dataclasses.replace(
            snap,
            gpus=tuple(dataclasses.replace(g, utilization_gpu=busy.get(g.index, g.utilization_gpu)) for g in snap.gpus),
        )
        app.post_message(SnapshotReady(changed, app.holders))
        await pilot.pause()
        assert shown_indexes(app) == [3, 1, 0, 2, 6, 4, 5, 7]
        assert screen.current_gpu_key() == gpu2 and table.cursor_row == 3
        await refresh(pilot)  # and a real refresh from the host
        assert shown_indexes(app) == BUSIEST_FIRST and screen.sort_column == "util"
        await pilot.press("minus")  # idle first; equal readings keep their order
        assert shown_indexes(app) == [3, 5, 7, 6, 2, 0, 1, 4] and table.sort_marker == ("util", False)
        await refresh(pilot)
        assert shown_indexes(app) == [3, 5, 7, 6, 2, 0, 1, 4]
        await pilot.press("comma")  # back to DEV (minor numbers), in its own direction
        assert screen.sort_column == "dev" and shown_indexes(app) == [1, 2, 3, 0, 5, 6, 7, 4]
        await pilot.press("comma", "comma")  # BUS, then the natural order: no mark
        assert screen.sort_column == "idx" and shown_indexes(app) == list(range(8))
        assert table.sort_marker == (None, False)
        assert screen.current_gpu_key() == gpu2 and table.cursor_row == 2


async def test_every_column_sorts_and_a_sort_by_a_column_the_layout_drops_is_kept_and_said():
    app = make_app(refresh=3600)
    async with app.run_test(size=(130, 40)) as pilot:
        await first_snapshot(pilot)
        screen = app.screen
        seen = []
        for _ in range(len(screen.sort_columns())):
            await pilot.press("full_stop")
            seen.append(screen.sort_column)
        assert seen == ["bus", "dev", "name", "util", "hist", "mem%", "mem", "temp", "power", "holder", "idx"]
        await pilot.press("comma")  # the holder column: burn-in, embedder +1, eval-harness, ...; free cards last
        assert shown_indexes(app)[:4] == [4, 2, 7, 6] and set(shown_indexes(app)[-2:]) == {3, 5}
        await pilot.press("comma", "comma")  # temperature, hottest first
        temps = {g.index: g.temperature_c for g in app.snapshot.gpus}
        assert [temps[i] for i in shown_indexes(app)] == sorted(temps.values(), reverse=True)
        for _ in range(5):  # MEMORY, MEM%, GPU% 5 MIN, GPU%, NAME: a column of the wide layout only
            await pilot.press("comma")
        assert screen.sort_column == "name"
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert screen.sort_column == "name" and "sorted by NAME ▲" in header(app)


async def test_marks_for_the_launch_form_are_kept_under_a_filter():
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        screen = app.screen
        await pilot.press("space", "down", "down", "space")  # GPU 0, then GPU 2
        await find(pilot, "free")
        assert shown_indexes(app) == [3, 5]
        assert "2 marked GPUs hidden by the filter" in header(app)
        await pilot.press("end", "space")  # GPU 5, third
        assert [g.index for g in screen.marked_gpus()] == [0, 2, 5]  # what the launch form gets
        table = screen.query_one(LiveTable)
        assert str(table.get_row(screen.row_key(app.snapshot.gpus[5]))[0]) == "5 [3]"
        await refresh(pilot)
        await pilot.press("escape")
        assert [str(table.get_row_at(i)[0]) for i in (0, 2, 5)] == ["0 [1]", "2 [2]", "5 [3]"]
        assert [g.index for g in screen.marked_gpus()] == [0, 2, 5]
        assert "hidden" not in header(app)


async def test_the_containers_table_sorts_and_keeps_the_sort_across_refreshes():
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await pilot.press("c")
        await pilot.pause()
        natural = container_names(app)
        assert natural[-1] == "(host)"  # the engine's order: running by name, processes outside Docker last
        await pilot.press("full_stop")  # NAME, A to Z
        assert container_names(app) == sorted(natural, key=str.lower)
        await pilot.press("minus")
        assert container_names(app) == sorted(natural, key=str.lower, reverse=True)
        await refresh(pilot)
        assert container_names(app) == sorted(natural, key=str.lower, reverse=True)
        await pilot.press(*["full_stop"] * 5)  # STATUS, IMAGE, GPUS, HOW, PROCS: most processes first
        table = app.screen.query_one(LiveTable)
        procs = [str(table.get_row(k)[-1]) for k in table.row_keys]
        assert procs[0] == "2" and procs[-1] == "-"
        await pilot.press("full_stop")  # after the last column: the engine's order again
        assert app.screen.sort_column is None and container_names(app) == natural


async def test_the_help_and_ctrl_p_list_the_find_and_sort_keys():
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        console = Console(width=100, file=io.StringIO(), color_system=None)
        console.print(app.screen.query_one("#help-text", Static).content)
        text = "\n".join(line.strip() for line in console.file.getvalue().splitlines())
        for line in ["/             Find", ".             Sort by the next column", "-             Reverse the sort"]:
            assert text.count(line) == 2, line  # the GPU and the Containers screens
        await pilot.press("escape")
        commands = [c.title for c in app.get_system_commands(app.screen)]
        assert {"Find", "Sort by the next column", "Sort by the previous column", "Reverse the sort"} <= set(commands)
        assert "Clear the filter" not in commands  # there is none to clear
        await find(pilot, "free")
        assert "Clear the filter" in [c.title for c in app.get_system_commands(app.screen)]


def test_gpus_found_and_sorted_80x24(snap_compare):
    """The cards train-llama holds, busiest first: the filter in the header, the sort in the column's label."""

    async def ready(pilot):
        await first_snapshot(pilot)
        await find(pilot, "train")
        await pilot.press("full_stop", "full_stop", "full_stop")

    assert snap_compare(make_app(refresh=3600), terminal_size=(80, 24), run_before=ready)


def test_gpus_sorted_by_power_120x40(snap_compare):
    async def ready(pilot):
        await first_snapshot(pilot)
        await pilot.press(*["full_stop"] * 9)

    assert snap_compare(make_app(refresh=3600), terminal_size=(120, 40), run_before=ready)


def test_containers_found_and_sorted_80x24(snap_compare):
    async def ready(pilot):
        await first_snapshot(pilot)
        await pilot.press("c")
        await pilot.pause()
        await find(pilot, "running")
        await pilot.press(*["full_stop"] * 4, "minus")  # GPUS, highest index first

    assert snap_compare(make_app(refresh=3600), terminal_size=(80, 24), run_before=ready)


def test_sort_rows_puts_unknown_values_last_either_way_and_keeps_ties_in_order():
    values = {"a": 3, "b": None, "c": 3, "d": 7, "e": None}
    assert sort_rows(list(values), values.get, descending=True) == ["d", "a", "c", "b", "e"]
    assert sort_rows(list(values), values.get, descending=False) == ["a", "c", "d", "b", "e"]
    assert matches("TRAIN 05:00", "0 00000000:05:00.0 train-llama") and not matches("train 0a", "train 05")
