"""What a live table writes to the terminal: the characters that changed, and the same picture a full
repaint would give (gpudock.ui.updates, gpudock.ui.widgets.live_table)."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import App
from textual.widgets import Input

from gpudock.ui.app import SnapshotReady
from gpudock.ui.updates import DEFAULT, CellUpdate, LiveScreen, transition
from gpudock.ui.widgets.live_table import Column, LiveTable
from gpudock.ui.widgets.live_text import LiveText
from helpers import vt
from helpers.dashboard import first_snapshot, make_app

COLUMNS = [Column("id", "#"), Column("name", "NAME"), Column("val", "VALUE", 5), Column("note", "NOTE", 6, fill=True)]


class TableScreen(LiveScreen):
    def __init__(self, rows: int) -> None:
        super().__init__()
        self.rows = rows

    def compose(self):
        yield LiveTable(id="t")
        yield Input(id="other")

    def on_mount(self) -> None:
        t = self.query_one(LiveTable)
        t.set_columns(COLUMNS)
        for i in range(self.rows):
            t.set_row(f"k{i}", {"id": str(i), "name": f"row{i}", "val": str(i * 10), "note": ""})
        t.focus()


class TableApp(App):
    CSS = "LiveTable { height: 1fr; }"

    def __init__(self, rows: int = 6) -> None:
        super().__init__()
        self.rows = rows
        self.writes = vt.record(self)

    def on_mount(self) -> None:
        self.push_screen(TableScreen(self.rows))


def table(app) -> LiveTable:
    return app.screen.query_one(LiveTable)


def row(i: int, val: str, note: str | Text = "") -> dict:
    return {"id": str(i), "name": f"row{i}", "val": val, "note": note}


async def test_one_changed_number_writes_its_changed_characters_only():
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.pause()
        app.writes.clear()
        table(app).set_row("k3", row(3, "99"))
        await pilot.pause()
        out = "".join(app.writes)
        # neither the line ("3  row3" before it) nor the rest of the cell: "30" -> "99", one cursor move
        assert vt.visible_text(out) == "99"
        assert vt.cursor_moves(out) == 1
        app.writes.clear()
        table(app).set_row("k3", row(3, "98"))  # the last digit moves: that digit is written
        await pilot.pause()
        assert vt.visible_text("".join(app.writes)) == "8"


async def test_changes_in_two_rows_write_two_short_pieces():
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.pause()
        app.writes.clear()
        table(app).set_row("k1", row(1, "11"))
        table(app).set_row("k4", row(4, "41"))
        await pilot.pause()
        out = "".join(app.writes)
        assert vt.visible_text(out) == "11"  # "10" -> "11", "40" -> "41": each last digit
        assert len(out.encode()) < 60


async def test_the_regions_refreshed_are_the_changed_cells():
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.pause()
        t = table(app)
        refreshed = []
        real = t.refresh
        t.refresh = lambda *regions, **kw: (refreshed.extend(regions), real(*regions, **kw))[1]
        t.set_row("k2", row(2, "27", note="n"))  # "20" -> "27", note "" -> "n"
        x_val = 11  # " 2 " " row2 " " 2|0": the "0" of "20"
        assert [(r.x, r.y, r.width, r.height) for r in refreshed] == [(x_val, 3, 1, 1), (x_val + 6, 3, 1, 1)]


async def test_the_picture_stays_what_a_full_repaint_shows():
    """Cell changes, styled cells, the cursor, blur and focus, a theme change, scrolling, a click and
    a resize: after each, the terminal fed every update shows what a full repaint shows."""
    app = TableApp(rows=30)
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.pause()
        screen = vt.Screen(60, 12)
        t = table(app)

        async def same_picture(step: str) -> None:
            await pilot.pause()
            for w in app.writes:
                screen.feed(w)
            app.writes.clear()
            # what the table shows rendered afresh (its cache of lines put back after)
            strips, header = dict(t._strips), t._header
            t._strips.clear()
            t._header = None
            full = vt.full_repaint(app)
            t._strips, t._header = strips, header
            assert (screen.width, screen.height) == (full.width, full.height), step
            assert screen.cells == full.cells, f"after {step}:\n" + "\n".join(screen.lines())

        t.set_row("k3", row(3, "99"))
        await same_picture("a changed cell")
        t.set_row("k2", row(2, Text("1234", style="bold red"), note=Text("hot", style="reverse")))
        t.set_row("k5", row(5, Text("7", style="dim italic underline")))
        await same_picture("styled cells")
        t.set_row("k2", row(2, Text("1235", style="bold yellow"), note="warm"))
        t.set_row("k5", row(5, "7"))
        await same_picture("styles taken off")
        await pilot.press("down", "down")
        t.set_row("k2", row(2, "5"))  # under the cursor
        await same_picture("the cursor moved, a change under it")
        app.screen.query_one("#other", Input).focus()
        t.set_row("k1", row(1, "6"))
        await same_picture("blurred")
        t.focus()
        await same_picture("focused")
        app.theme = "textual-light"
        t.set_row("k4", row(4, "44"))
        await same_picture("theme changed")
        await pilot.press("end")
        await same_picture("scrolled to the end")
        t.set_row("k27", row(27, "270!"))
        t.set_row("k29", row(29, "291"))
        t.set_row("k0", row(0, "off screen"))
        await same_picture("changes after scrolling down")
        t.set_row("k26", {**row(26, "2"), "name": "a name long enough to scroll the table sideways, past the edge"})
        await same_picture("wider than the screen")
        t.scroll_to(x=3, animate=False, immediate=True)
        await same_picture("scrolled sideways")
        t.set_row("k27", {**row(27, "271"), "name": "row2Z"})
        await same_picture("changes after scrolling sideways")
        await pilot.click(LiveTable, offset=(2, 3))
        await same_picture("clicked")
        await pilot.resize_terminal(50, 10)
        screen = vt.Screen(50, 10)
        await same_picture("resized")
        t.set_row("k28", row(28, "x"))
        await same_picture("a change after the resize")


async def test_on_the_dashboard_one_changed_reading_writes_its_digits():
    """The GPU screen at 80x24: a refresh where one GPU's power moved by 1 W writes that digit (not
    its line, not the details pane under the table)."""
    app = make_app(refresh=3600)
    writes = vt.record(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await pilot.pause()
        snap = app.snapshot
        gpus = list(snap.gpus)
        watts = round(gpus[0].power_w)
        watts += 1 if watts % 10 != 9 else -1
        gpus[0] = dataclasses.replace(gpus[0], power_w=float(watts))
        writes.clear()
        app.post_message(SnapshotReady(dataclasses.replace(snap, gpus=tuple(gpus)), app.holders))
        await pilot.pause()
        await pilot.pause()
        assert vt.visible_text("".join(writes)) == str(watts)[-1]


async def test_on_the_dashboard_a_changed_clock_writes_its_digits_in_the_details():
    """The details pane under the table keeps its lines when a clock moves: the digits that changed
    are written, not the pane."""
    app = make_app(refresh=3600)
    writes = vt.record(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await pilot.pause()
        snap = app.snapshot
        gpus = list(snap.gpus)
        assert app.screen.current_gpu_key() == gpus[0].uuid
        assert f"SM {gpus[0].clock_sm_mhz}/" in str(app.screen.query_one("#gpu-details", LiveText).render())
        gpus[0] = dataclasses.replace(gpus[0], clock_sm_mhz=1234)
        writes.clear()
        app.post_message(SnapshotReady(dataclasses.replace(snap, gpus=tuple(gpus)), app.holders))
        await pilot.pause()
        await pilot.pause()
        assert "SM 1234/" in str(app.screen.query_one("#gpu-details", LiveText).render())
        changed = "".join(n for o, n in zip(str(snap.gpus[0].clock_sm_mhz), "1234") if o != n)
        assert vt.visible_text("".join(writes)) == changed


class TextScreen(LiveScreen):
    CSS = "LiveText { padding: 0 2; background: $panel; }"

    def compose(self):
        yield LiveText("", id="text")
        yield Input(id="other")


class TextApp(App):
    def __init__(self) -> None:
        super().__init__()
        self.writes = vt.record(self)

    def on_mount(self) -> None:
        self.push_screen(TextScreen())


def details(sm: int, lines: int = 3) -> Text:
    t = Text()
    t.append("Clocks      ", style="bold")
    t.append(f"SM {sm}/1980 MHz\n")
    for i in range(lines - 1):
        t.append(f"Line {i}      ", style="bold")
        t.append("a long line of text that wraps at forty columns, each time the same\n", style="cyan")
    return t


async def test_a_live_text_writes_the_changed_characters_of_its_lines():
    app = TextApp()
    async with app.run_test(size=(40, 12)) as pilot:
        text = app.screen.query_one(LiveText)
        text.show(details(1410))
        await pilot.pause()
        screen = vt.Screen(40, 12)

        async def same_picture(step: str) -> None:
            await pilot.pause()
            for w in app.writes:
                screen.feed(w)
            app.writes.clear()
            full = vt.full_repaint(app)
            assert screen.cells == full.cells, f"after {step}:\n" + "\n".join(screen.lines())

        await same_picture("shown")
        text.show(details(1455))
        await pilot.pause()
        assert vt.visible_text("".join(app.writes)) == "55"
        await same_picture("a clock moved")
        text.show(details(1455, lines=4))  # a line more: laid out again, the input below moves down
        await same_picture("grown")
        text.show(details(990, lines=4))
        await same_picture("a digit fewer")
        app.theme = "textual-light"
        await same_picture("theme changed")
        text.show(details(991, lines=4))
        await same_picture("a change after the theme")
        await pilot.resize_terminal(30, 12)
        screen = vt.Screen(30, 12)
        text.show(details(992, lines=4))
        await same_picture("resized")
        text.show(details(993, lines=2))
        await same_picture("shrunk")


def test_a_wide_character_is_never_cut_in_half():
    style = Style(color="red")
    from textual.strip import Strip

    strip = Strip([Segment("ab", style), Segment("漢字", style), Segment("cd", style)])
    # a span from the second half of 漢 (cells 2-3) to the first half of 字 (cells 4-5)
    update = CellUpdate([{0: strip}], [(0, 3, 5)], [[8]])
    from rich.console import Console

    out = update.render_segments(Console(color_system="256", force_terminal=True))
    assert vt.visible_text(out) == "漢字"
    assert out.startswith("\x1b[1;3H")


_CODES = st.builds(
    lambda attrs, fg, bg: (frozenset(attrs), fg, bg),
    st.sets(st.sampled_from(["1", "2", "3", "4", "5", "7", "9", "21", "51"])),
    st.sampled_from([None, "31", "97", "38;5;197", "38;5;0", "38;2;10;0;255"]),
    st.sampled_from([None, "41", "107", "48;5;234", "48;5;0", "48;2;0;0;0"]),
)


def _codes(sgr) -> str:
    attrs, fg, bg = sgr
    return ";".join([*sorted(attrs, key=int), *(c for c in (fg, bg) if c)])


@given(_CODES, _CODES)
def test_an_sgr_transition_leaves_the_terminal_with_the_new_attributes(a, b):
    screen = vt.Screen(4, 1)
    screen.feed(f"\x1b[0;{_codes(a)}m" if a != DEFAULT else "\x1b[0m")
    assert screen.sgr == a
    step = transition(a, b)
    screen.feed(step)
    assert screen.sgr == b
    assert len(step) <= len(f"\x1b[0;{_codes(b)}m")  # never longer than a reset and the whole style
