"""LiveTable: a keyed table that re-renders only the rows whose cells changed.

Why not Textual's DataTable: any ``update_cell`` there bumps one table-wide counter that is part of
every render cache key, so a refresh that changes one number re-renders every visible cell, each
through Rich's padding and styling machinery. On the GPU screen, where a few numbers move every
second, that was nearly all of the dashboard's idle CPU and it repainted the whole table over the
SSH link each second. Here each row is one ``Text`` rendered into one cached ``Strip``; a changed
row is rendered again at once, compared cell by cell with its last strip, and only the spans of
cells that differ are repainted (``Widget.refresh(Region)``), so an unchanged row costs nothing and
a number that moves in its last digit repaints that digit. On a :class:`gpudock.ui.updates.LiveScreen`
the terminal then receives those cells only (Textual's own update would write the line from its
left edge up to the last changed cell).

The table keeps rows in insertion order, keyed by a string; cells are ``str`` or ``rich.text.Text``
and are single-line. Columns have a fixed width or size themselves to their widest label or cell
(they grow, never shrink, so the layout does not jump between refreshes); one column may fill the
width the others leave, so the table fits an 80-column terminal without a horizontal scrollbar. It has a row cursor that
stays on its row's key when other rows come and go, the keyboard and mouse bindings an operator
expects, a fixed header, zebra stripes and scrolling both ways. Row highlight and selection are
posted as :class:`LiveTable.RowHighlighted` and :class:`LiveTable.RowSelected`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from gpudock.ui.updates import changed_spans


class Fit:
    """A cell whose text is made for the width its column gets, e.g. "embedder +1" rather than a
    name cut mid-word. ``make(width)`` makes it; ``key`` is what it is made of: two Fit cells with
    equal keys are the same cell (so ``make`` must depend on nothing else). For fixed and fill
    columns (an auto column's width would depend on the text made for it)."""

    __slots__ = ("make", "key")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, make: Callable[[int], str | Text], key: Hashable) -> None:
        self.make = make
        self.key = key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fit) and self.key == other.key

    def __repr__(self) -> str:
        return f"Fit(key={self.key!r})"


Cell = str | Text | Fit


@dataclass(frozen=True, slots=True)
class Column:
    """``width``: fixed, or None for as wide as the widest label or cell seen so far. ``fill``: the
    column takes the width the others leave (at least ``width``), so a table fits its widget."""

    key: str
    label: str
    width: int | None = None
    fill: bool = False
    right: bool = False  # numbers: right-aligned, label and cells alike


class LiveTable(ScrollView, can_focus=True):
    """A table of keyed rows, updated in place, repainting only what changed."""

    DEFAULT_CSS = """
    LiveTable {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;
        &:focus {
            background-tint: $foreground 5%;
            & > .live-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
        }
        & > .live-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .live-table--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .live-table--odd-row {
        }
        & > .live-table--even-row {
            background: $surface-lighten-1 50%;
        }
        &:dark > .live-table--even-row {
            background: $surface-darken-1 40%;
        }
        & > .live-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """

    COMPONENT_CLASSES = {
        "live-table--header",
        "live-table--cursor",
        "live-table--even-row",
        "live-table--odd-row",
    }

    BINDINGS = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
    ]

    class RowHighlighted(Message):
        """The cursor moved to another row (or the row under it changed key)."""

        def __init__(self, table: LiveTable, row_key: str | None, cursor_row: int) -> None:
            super().__init__()
            self.table = table
            self.row_key = row_key
            self.cursor_row = cursor_row

        @property
        def control(self) -> LiveTable:
            return self.table

    class RowSelected(RowHighlighted):
        """The operator clicked the row under the cursor."""

    def __init__(
        self, *, zebra_stripes: bool = True, name: str | None = None, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.zebra_stripes = zebra_stripes
        self._columns: list[Column] = []
        self._natural: list[int] = []  # fixed, or widest seen (a fill column: its minimum)
        self._widths: list[int] = []  # as rendered
        self._rows: dict[str, dict[str, Cell]] = {}
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        self._cursor = 0
        self._cursor_key: str | None = None
        self._pending_key: str | None = None  # the cursor's row across set_columns, until it is back
        # Rendered lines: row key -> (state the strip was made for, strip); the header apart.
        self._strips: dict[str, tuple[tuple, Strip]] = {}
        self._header: Strip | None = None
        self._styles: dict[str, Style] | None = None
        self._sort_marker: tuple[str | None, bool] = (None, False)  # (column key, descending)

    # -- data ----------------------------------------------------------------------------------------

    @property
    def columns(self) -> list[Column]:
        return list(self._columns)

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def row_keys(self) -> list[str]:
        return list(self._order)

    def set_columns(self, columns: list[Column]) -> None:
        """Replace the columns; the rows are dropped (they were cut to the old columns). The cursor
        goes back to its row when a row with that key is set again (unless the operator moved it)."""
        self._pending_key = self._cursor_key or self._pending_key
        self._cursor, self._cursor_key = 0, None
        self._columns = list(columns)
        self._rows.clear()
        self._order.clear()
        self._index.clear()
        self._natural = [c.width if c.width is not None else Text(c.label).cell_len for c in self._columns]
        self._widths = []
        self._layout()
        self._invalidate_all()

    def set_row(self, key: str, cells: dict[str, Cell]) -> bool:
        """Add the row, or update the cells that differ. True when anything changed.

        ``cells`` maps column keys to values; a column left out is blank.
        """
        cells = {c.key: cells.get(c.key, "") for c in self._columns}
        old = self._rows.get(key)
        if old == cells:
            return False
        self._rows[key] = cells
        if old is None:
            self._index[key] = len(self._order)
            self._order.append(key)
        if self._grow_widths(cells) and self._layout():
            self._invalidate_all()
        elif old is None:
            self._strips.pop(key, None)
            self._resize()
            self.refresh_line(self._index[key] + 1)
        else:
            self._repaint_changes(key)
        if old is None and key == self._pending_key:  # the cursor's row is back after set_columns
            self._pending_key = None
            self._set_cursor(self._index[key])
        elif old is None and self._cursor_key is None:
            self._set_cursor(self._cursor)
        return True

    def update_cell(self, key: str, column: str, value: Cell) -> bool:
        """Change one cell of an existing row. True when it changed."""
        row = dict(self._rows[key])
        if column not in row:
            raise KeyError(f"no column {column!r}")
        row[column] = value
        return self.set_row(key, row)

    def remove_row(self, key: str) -> None:
        if key not in self._rows:
            return
        del self._rows[key]
        self._order.remove(key)
        self._index = {k: i for i, k in enumerate(self._order)}
        self._strips.clear()  # rows below moved up a line (and changed stripe)
        self._resize()
        self.refresh()
        if self._cursor_key == key:
            self._cursor_key = None
            self._set_cursor(min(self._cursor, len(self._order) - 1))
        elif self._cursor_key is not None:
            self._cursor = self._index[self._cursor_key]

    def set_order(self, keys: list[str]) -> None:
        """Lay the rows out in this order (the same keys as now); the cursor stays on its row."""
        if sorted(keys) != sorted(self._order):
            raise ValueError("set_order needs exactly the keys of the rows shown")
        if keys == self._order:
            return
        self._order = list(keys)
        self._index = {k: i for i, k in enumerate(self._order)}
        self._strips.clear()  # rows moved: their stripes changed
        self.refresh()
        if self._cursor_key is not None:
            self._set_cursor(self._index[self._cursor_key])

    def set_sort_marker(self, column: str | None, descending: bool = False) -> None:
        """Mark the column the rows are sorted by in the header: ▼ highest first, ▲ lowest first
        (None: no mark). Only the header line is repainted; no column changes width."""
        if (column, descending) == self._sort_marker:
            return
        self._sort_marker = (column, descending)
        self._header = None
        self.refresh_line(0)

    @property
    def sort_marker(self) -> tuple[str | None, bool]:
        return self._sort_marker

    def get_row(self, key: str) -> list[str | Text]:
        """The row's cells in column order, as shown (a :class:`Fit` cell made for its width)."""
        row = self._rows[key]
        return [_made(row[c.key], w) for c, w in zip(self._columns, self._widths)]

    def get_row_at(self, index: int) -> list[str | Text]:
        return self.get_row(self._order[index])

    def get_cell(self, key: str, column: str) -> str | Text:
        return self.get_row(key)[[c.key for c in self._columns].index(column)]

    def column_width(self, key: str) -> int | None:
        """The width a column's cells are cut to now (None before the columns are set)."""
        for c, w in zip(self._columns, self._widths):
            if c.key == key:
                return w
        return None

    # -- the cursor ------------------------------------------------------------------------------

    @property
    def cursor_row(self) -> int:
        return self._cursor

    @property
    def cursor_row_key(self) -> str | None:
        return self._cursor_key

    def move_cursor(self, row: int) -> None:
        self._pending_key = None
        self._set_cursor(row)

    def move_cursor_to_key(self, key: str) -> bool:
        """Put the cursor on the row with this key; False when there is none."""
        if key not in self._index:
            return False
        self.move_cursor(self._index[key])
        return True

    def _set_cursor(self, row: int) -> None:
        if not self._order:
            self._cursor, self._cursor_key = 0, None
            return
        row = max(0, min(row, len(self._order) - 1))
        old_row, old_key = self._cursor, self._cursor_key
        self._cursor, self._cursor_key = row, self._order[row]
        if old_key in self._index:
            self.refresh_line(self._index[old_key] + 1)
        self.refresh_line(row + 1)
        self._scroll_cursor_into_view()
        if (old_row, old_key) != (self._cursor, self._cursor_key):
            self.post_message(self.RowHighlighted(self, self._cursor_key, self._cursor))

    def _visible_rows(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)  # less the header line

    def _scroll_cursor_into_view(self) -> None:
        top = round(self.scroll_y)
        if self._cursor < top:
            self.scroll_to(y=self._cursor, animate=False, force=True, immediate=True)
        elif self._cursor >= top + self._visible_rows():
            self.scroll_to(y=self._cursor - self._visible_rows() + 1, animate=False, force=True, immediate=True)

    def action_cursor_up(self) -> None:
        self.move_cursor(self._cursor - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self._cursor + 1)

    def action_page_up(self) -> None:
        self.move_cursor(self._cursor - self._visible_rows())

    def action_page_down(self) -> None:
        self.move_cursor(self._cursor + self._visible_rows())

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor(len(self._order) - 1)

    def _on_click(self, event: events.Click) -> None:
        if event.y < 1:
            return
        row = round(self.scroll_y) + event.y - 1
        if 0 <= row < len(self._order):
            again = row == self._cursor
            self.move_cursor(row)
            if again:
                self.post_message(self.RowSelected(self, self._cursor_key, self._cursor))

    # -- rendering ---------------------------------------------------------------------------------

    def _grow_widths(self, cells: dict[str, Cell]) -> bool:
        grew = False
        for i, c in enumerate(self._columns):
            v = cells[c.key]
            if c.width is None and not isinstance(v, Fit):
                n = v.cell_len if isinstance(v, Text) else Text(v).cell_len
                if n > self._natural[i]:
                    self._natural[i] = n
                    grew = True
        return grew

    def _layout(self) -> bool:
        """Work out the rendered widths (a fill column gets what the others leave). True on a change."""
        widths = list(self._natural)
        available = self.scrollable_content_region.width if self.is_mounted else 0
        for i, c in enumerate(self._columns):
            if c.fill and available:
                rest = available - sum(w + 2 for j, w in enumerate(widths) if j != i) - 2
                widths[i] = max(self._natural[i], rest)
        if widths == self._widths:
            return False
        self._widths = widths
        return True

    def on_resize(self, event: events.Resize) -> None:
        if self._layout():
            self._invalidate_all()

    def _resize(self) -> None:
        width = sum(w + 2 for w in self._widths)
        self.virtual_size = Size(width, len(self._order) + 1)

    def _repaint_changes(self, key: str) -> None:
        """Render the changed row now and repaint only the cells that differ from its last line: a
        power reading going from 543 to 504 repaints "04", not the line."""
        index = self._index[key]
        cached = self._strips.pop(key, None)
        if cached is None:  # never rendered, or its look changed since: the whole line
            self.refresh_line(index + 1)
            return
        # (when the cursor came or went meanwhile, every cell differs in style: the whole line)
        strip = self.render_row_strip(key, index)
        y = index + 1 - round(self.scroll_y)
        scroll_x = round(self.scroll_x)
        regions = [Region(a - scroll_x, y, b - a, 1) for a, b in changed_spans(cached[1], strip)]
        if regions:
            self.refresh(*regions)

    def _invalidate_all(self) -> None:
        self._strips.clear()
        self._header = None
        self._resize()
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = None  # theme, focus or dark mode changed the component styles
        self._strips.clear()
        self._header = None

    def _on_focus(self, event: events.Focus) -> None:
        self._styles = None
        self.refresh_line(self._cursor + 1)

    def _on_blur(self, event: events.Blur) -> None:
        self._styles = None
        self.refresh_line(self._cursor + 1)

    def _style(self, name: str) -> Style:
        if self._styles is None:
            self._styles = {
                n: self.get_component_rich_style(f"live-table--{n}")
                for n in ("header", "cursor", "even-row", "odd-row")
            }
        return self._styles[name]

    def _line(self, cells: list[str | Text], style: Style, plain: bool, marker: str | None = None) -> Strip:
        parts: list[Text] = []
        for value, width, column in zip(cells, self._widths, self._columns):
            t = value.copy() if isinstance(value, Text) else Text(str(value))
            if plain:
                t = Text(t.plain)
            after = " "
            if marker is not None and column.key == self._sort_marker[0]:
                # after the label: inside the column when it has room, else in the gap after it
                if not column.right and t.cell_len < width:
                    t.append(marker)
                else:
                    after = marker
            if column.right and t.cell_len < width:
                t.pad_left(width - t.cell_len)
            t.truncate(width, overflow="ellipsis", pad=True)
            parts.append(Text(" "))
            parts.append(t)
            parts.append(Text(after))
        text = Text.assemble(*parts, style=style, no_wrap=True, end="")
        # Text.render leaves the base style off a text without spans: apply it under the spans.
        strip = Strip(list(text.render(self.app.console, end=""))).apply_style(style)
        return strip.extend_cell_length(self.virtual_size.width, style)

    def render_row_strip(self, key: str, index: int) -> Strip:
        """The full-width line of one row (made only when the row, the cursor or the style changed)."""
        cursor = key == self._cursor_key
        style_name = "cursor" if cursor else ("even-row" if self.zebra_stripes and index % 2 else "odd-row")
        state = (style_name, self.has_focus, self.virtual_size.width)
        cached = self._strips.get(key)
        if cached is not None and cached[0] == state:
            return cached[1]
        strip = self._line(self.get_row(key), self._style(style_name), plain=cursor)
        self._strips[key] = (state, strip)
        return strip

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        scroll_x, scroll_y = round(self.scroll_x), round(self.scroll_y)
        blank = self.rich_style
        if y == 0:
            if self._header is None:
                marker = "▼" if self._sort_marker[1] else "▲"
                self._header = self._line([c.label for c in self._columns], self._style("header"), True, marker)
            strip = self._header
        else:
            index = scroll_y + y - 1
            if not 0 <= index < len(self._order):
                return Strip.blank(width, blank)
            strip = self.render_row_strip(self._order[index], index)
        return strip.crop(scroll_x, scroll_x + width).extend_cell_length(width, blank)


def _made(value: Cell, width: int) -> str | Text:
    return value.make(width) if isinstance(value, Fit) else value
