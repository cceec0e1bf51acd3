"""LiveTable: keyed rows updated in place; only changed rows re-rendered, only changed cells repainted."""

from __future__ import annotations

from rich.text import Text
from textual.app import App

from gpudock.ui.widgets.live_table import Column, LiveTable

COLUMNS = [Column("id", "#"), Column("name", "NAME"), Column("val", "VALUE", 5), Column("note", "NOTE", 6, fill=True)]


class TableApp(App):
    def __init__(self, rows: int = 6) -> None:
        super().__init__()
        self.rows = rows
        self.highlighted: list[tuple[str | None, int]] = []

    def compose(self):
        yield LiveTable(id="t")

    def on_mount(self) -> None:
        t = self.query_one(LiveTable)
        t.set_columns(COLUMNS)
        for i in range(self.rows):
            t.set_row(f"k{i}", {"id": str(i), "name": f"row{i}", "val": str(i * 10), "note": ""})
        t.focus()

    def on_live_table_row_highlighted(self, event: LiveTable.RowHighlighted) -> None:
        self.highlighted.append((event.row_key, event.cursor_row))


def count_renders(table: LiveTable) -> list[str]:
    rendered: list[str] = []
    real = table._line

    def spy(cells, style, plain, *marker):
        rendered.append(str(cells[0]))
        return real(cells, style, plain, *marker)

    table._line = spy
    return rendered


async def test_a_changed_cell_re_renders_only_its_row():
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.pause()
        t = app.query_one(LiveTable)
        rendered = count_renders(t)
        repainted = []
        real_refresh = t.refresh
        t.refresh = lambda *regions, **kw: (repainted.append(regions), real_refresh(*regions, **kw))[1]
        assert t.set_row("k3", {"id": "3", "name": "row3", "val": "99", "note": ""}) is True
        await pilot.pause()
        assert rendered == ["3"]
        # only the changed characters are repainted: "30" -> "99" at x 10-11 of line 4 (the header is line 0)
        assert [[(r.x, r.y, r.width, r.height) for r in regions] for regions in repainted] == [[(10, 4, 2, 1)]]
        # and the other rows keep their rendered lines: a full repaint renders nothing anew
        real_refresh()
        await pilot.pause()
        assert rendered == ["3"]
        rendered.clear()
        # the same cells again: nothing changes, nothing is rendered
        assert t.set_row("k3", {"id": "3", "name": "row3", "val": "99", "note": ""}) is False
        await pilot.pause()
        assert rendered == []
        assert [str(c) for c in t.get_row_at(3)] == ["3", "row3", "99", ""]
        assert " 3  row3  99 " in t.render_line(4).text


async def test_the_cursor_keeps_its_row_when_rows_come_and_go():
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.pause()
        t = app.query_one(LiveTable)
        await pilot.press("down", "down", "down")
        assert (t.cursor_row, t.cursor_row_key) == (3, "k3")
        t.remove_row("k0")
        assert (t.cursor_row, t.cursor_row_key) == (2, "k3")
        t.remove_row("k3")  # the row under the cursor goes: the cursor stays at its place
        assert (t.cursor_row, t.cursor_row_key) == (2, "k4")
        await pilot.pause()
        assert app.highlighted[-1] == ("k4", 2)
        assert t.row_keys == ["k1", "k2", "k4", "k5"]


async def test_rows_laid_out_again_keep_the_cursor_on_its_row():
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.pause()
        t = app.query_one(LiveTable)
        await pilot.press("down")
        t.set_order(["k5", "k4", "k3", "k2", "k1", "k0"])
        assert (t.cursor_row, t.cursor_row_key) == (4, "k1")
        await pilot.pause()
        assert t.render_line(1).text.startswith(" 5 ")
        assert app.highlighted[-1] == ("k1", 4)
        try:
            t.set_order(["k5", "k4"])
        except ValueError:
            pass
        else:
            raise AssertionError("set_order took a list that is not the rows shown")


async def test_keys_move_the_cursor_and_scroll_it_into_view():
    app = TableApp(rows=30)
    async with app.run_test(size=(60, 8)) as pilot:
        await pilot.pause()
        t = app.query_one(LiveTable)
        await pilot.press("end")
        assert t.cursor_row == 29
        await pilot.pause()
        # the last row is on screen (the header stays on top)
        lines = [t.render_line(y).text for y in range(t.size.height)]
        assert lines[0].lstrip().startswith("#")
        assert any(line.startswith(" 29 ") for line in lines)
        await pilot.press("home")
        assert t.cursor_row == 0
        await pilot.press("pagedown")
        assert 0 < t.cursor_row < 29
        await pilot.press("up")
        assert app.highlighted[-1][0] == t.cursor_row_key


async def test_the_fill_column_fits_the_table_to_its_widget():
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.pause()
        t = app.query_one(LiveTable)
        assert t.virtual_size.width == t.size.width == 60
        before = t.column_width("note")
        t.update_cell("k1", "name", "a much longer name")  # an auto column grows...
        await pilot.pause()
        assert t.column_width("note") == before - len("a much longer name") + len("row0")  # ...the fill one gives way
        assert t.virtual_size.width == 60
        t.update_cell("k1", "name", "x" * 70)  # never below its least width: then the table scrolls
        assert t.column_width("note") == 6
        assert t.virtual_size.width > 60


async def test_a_cell_wider_than_a_fixed_column_is_cut_with_an_ellipsis():
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.pause()
        t = app.query_one(LiveTable)
        t.update_cell("k2", "val", Text("1234567890", style="bold red"))
        await pilot.pause()
        line = t.render_line(3)
        assert "1234…" in line.text
        assert any(seg.style and seg.style.bold and "1234" in seg.text for seg in line)


async def test_the_cursor_row_has_the_cursor_style_and_others_stripes():
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.pause()
        t = app.query_one(LiveTable)
        bg = [t.render_line(y)._segments[0].style.bgcolor for y in (1, 2, 3)]
        assert bg[0] == t.get_component_rich_style("live-table--cursor").bgcolor
        assert bg[1] != bg[2]  # zebra
        await pilot.press("down")
        await pilot.pause()
        assert t.render_line(2)._segments[0].style.bgcolor == t.get_component_rich_style("live-table--cursor").bgcolor
        assert t.render_line(1)._segments[0].style.bgcolor != bg[0]


async def test_a_click_moves_the_cursor_and_a_second_click_selects():
    selected = []

    class ClickApp(TableApp):
        def on_live_table_row_selected(self, event: LiveTable.RowSelected) -> None:
            selected.append(event.row_key)

    app = ClickApp()
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.pause()
        t = app.query_one(LiveTable)
        await pilot.click(LiveTable, offset=(2, 3))  # line 3 = the third row (the header is line 0)
        assert t.cursor_row_key == "k2" and selected == []
        await pilot.click(LiveTable, offset=(2, 3))
        await pilot.pause()
        assert selected == ["k2"]


async def test_a_new_theme_re_renders_the_cached_rows():
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.pause()
        t = app.query_one(LiveTable)
        before = [t.render_line(y)._segments[0].style.bgcolor for y in (1, 2, 3)]
        app.theme = "textual-light" if app.theme != "textual-light" else "textual-dark"
        await pilot.pause()
        after = [t.render_line(y)._segments[0].style.bgcolor for y in (1, 2, 3)]
        assert after[0] == t.get_component_rich_style("live-table--cursor").bgcolor
        assert all(a != b for a, b in zip(before, after))


async def test_blur_gives_the_cursor_its_blurred_style():
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.pause()
        t = app.query_one(LiveTable)
        focused = t.render_line(1)._segments[0].style.bgcolor
        t.blur()
        await pilot.pause()
        assert not t.has_focus
        blurred = t.render_line(1)._segments[0].style.bgcolor
        assert blurred != focused
        assert blurred == t.get_component_rich_style("live-table--cursor").bgcolor


async def test_new_columns_keep_the_cursor_on_its_row_when_it_comes_back():
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.pause()
        t = app.query_one(LiveTable)
        await pilot.press("down", "down", "down")
        t.set_columns(COLUMNS[:2])
        for i in range(6):
            t.set_row(f"k{i}", {"id": str(i), "name": f"row{i}"})
        assert (t.cursor_row, t.cursor_row_key) == (3, "k3")
        # once the operator moves, a row coming back no longer takes the cursor
        t.set_columns(COLUMNS[:2])
        t.set_row("k0", {"id": "0", "name": "row0"})
        t.move_cursor(0)
        t.set_row("k3", {"id": "3", "name": "row3"})
        assert t.cursor_row_key == "k0"


async def test_the_sort_marker_marks_its_column_and_moves_no_column():
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.pause()
        t = app.query_one(LiveTable)
        before = t.render_line(0).text
        widths = [t.column_width(c.key) for c in COLUMNS]
        rendered = count_renders(t)
        repainted = []
        real_refresh = t.refresh
        t.refresh = lambda *regions, **kw: (repainted.append(regions), real_refresh(*regions, **kw))[1]
        t.set_sort_marker("name", descending=False)  # a label with room after it: the mark follows it
        await pilot.pause()
        assert t.render_line(0).text.startswith(" #  NAME▲ ")
        assert [r.y for regions in repainted for r in regions] == [0]  # the header line alone
        assert rendered == ["#"]  # no row rendered again
        t.set_sort_marker("val", descending=True)  # a fixed column its label fills: in the gap after it
        await pilot.pause()
        assert " NAME  VALUE▼ NOTE " in t.render_line(0).text
        assert [t.column_width(c.key) for c in COLUMNS] == widths
        t.set_sort_marker(None)
        await pilot.pause()
        assert t.render_line(0).text == before
