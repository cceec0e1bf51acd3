"""Find and sort for the live tables: one scheme for every table, the keys in FIND_SORT_BINDINGS.

* ``/`` opens the find bar (:class:`FindBar`, one line over the table): the rows shown are those
  whose text holds every word typed, as it is typed; Enter goes back to the table with the filter
  kept (the screen's header says it); Escape clears it, and the next Escape does what it did before
  (goes back).
* ``.`` and ``,`` sort by the next and the previous column (nvitop's keys for the sort column),
  ``-`` reverses. Names and ids sort A to Z, readings highest first (an operator sorts by a number
  to find the top of it); a value not known sorts last either way; ties keep the natural order.
  After the last column comes the natural order again.

Why these keys: ``/`` is find in less, vim, k9s and gpudock's fleet screen. The sort keys are
punctuation because the letters are taken or asked for on these screens: ``s`` is the shell on
the Containers screen (k9s's key), ``o`` the topology, capitals nvitop's process signals (``K``,
``T``, ``I``); nvitop's own key for reversing, ``/``, is find here, so ``-`` reverses. They are in
the help screen and ctrl+p: the GPU screen's 80-column footer has no room left for them.

The screen keeps the state (:class:`FindSort`, mixed into the screen): the filter and the sort
survive every refresh, because the screen applies them to each snapshot before it sets the rows.
Rows are removed and put back by key and laid out with ``LiveTable.set_order``, never cleared, so
the cursor stays on its row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from rich.text import Text
from textual.actions import SkipAction
from textual.binding import Binding
from textual.widgets import Input

from gpudock.ui.widgets.live_table import LiveTable

FIND_SORT_BINDINGS = [
    # before a screen's own Escape (Back): disabled while there is no filter (FindSort.check_action)
    Binding("escape", "clear_find", "Clear the filter", id="clear-find", show=False),
    Binding("slash", "find", "Find", id="find", show=False),
    Binding("full_stop", "sort_next", "Sort by the next column", id="sort-next", show=False),
    Binding("comma", "sort_previous", "Sort by the previous column", id="sort-previous", show=False),
    Binding("minus", "sort_reverse", "Reverse the sort", id="sort-reverse", show=False),
]


class FindBar(Input):
    """The one-line find bar of a table; hidden until ``/``."""

    class Changed(Input.Changed):
        """The filter's text changed (handled as ``on_find_bar_changed``)."""

    class Submitted(Input.Submitted):
        """Enter in the find bar (``on_find_bar_submitted``)."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(placeholder="find: any text of a row (Enter keeps it, Escape clears it)", id=id, compact=True)
        self.display = False


def matches(query: str, haystack: str) -> bool:
    """Every word of the query is in the text (case does not matter)."""
    text = haystack.lower()
    return all(word in text for word in query.lower().split())


def find_status(find_text: str, shown: int, total: int, noun: str, note: str = "") -> Text:
    """The header's line for the filter: what it is and how many rows it leaves ("" without one)."""
    t = Text()
    if find_text:
        t.append(f"/ {find_text}", style="bold cyan")
        t.append(f"  {shown} of {total} {noun}", style="cyan")
        t.append("  (escape clears it)", style="dim")
    if note:
        t.append(("  " if t else "") + note, style="yellow")
    return t


def sort_rows(keys: Sequence[str], value: Callable[[str], object], descending: bool) -> list[str]:
    """``keys`` (in their natural order) by ``value(key)``; None last whichever the direction,
    equal values in their natural order."""
    values = {k: value(k) for k in keys}
    known = [k for k in keys if values[k] is not None]
    unknown = [k for k in keys if values[k] is None]
    return sorted(known, key=values.__getitem__, reverse=descending) + unknown  # stable both ways


class FindSort:
    """Find and sort state and keys for a screen with one LiveTable and one :class:`FindBar`.

    The screen names its sortable columns (``sort_columns()``, in table order, with whether each
    sorts highest first) and re-renders its rows from the last data in ``find_sort_changed()``.
    """

    find_text: str = ""
    # The column whose order is the rows' natural order (the GPU table's index), or None when the
    # natural order is no column's (the engine's order of containers). Not marked in the header.
    natural_sort: str | None = None
    sort_column: str | None = None  # None: the natural order
    sort_reversed: bool = False

    # -- what the screen provides ----------------------------------------------------------------

    def sort_columns(self) -> list[tuple[str, str, bool]]:
        """(column key, label, sorts highest first) of the columns the rows can be sorted by."""
        raise NotImplementedError

    def known_sort_columns(self) -> list[tuple[str, str, bool]]:
        """Every column the rows may be sorted by, in any layout (default: ``sort_columns()``): a sort
        chosen on a wide terminal is kept when it narrows."""
        return self.sort_columns()

    def find_sort_changed(self) -> None:
        """Show the rows again with the filter and sort as they are now."""
        raise NotImplementedError

    # -- applying them ---------------------------------------------------------------------------

    def descending(self) -> bool:
        """Whether the rows go highest (or Z) first now."""
        first = next((d for k, _, d in self.known_sort_columns() if k == self.sort_column), False)
        return first != self.sort_reversed

    def sort_label(self) -> str:
        return next(
            (label for k, label, _ in self.known_sort_columns() if k == self.sort_column), self.sort_column or ""
        )

    def arrange_rows(
        self, keys: Iterable[str], text: Callable[[str], str], value: Callable[[str, str], object]
    ) -> list[str]:
        """The keys to show, in the order to show them: those matching the filter, sorted."""
        shown = [k for k in keys if not self.find_text or matches(self.find_text, text(k))]
        if self.sort_column is None:
            return shown[::-1] if self.sort_reversed else shown
        column = self.sort_column
        return sort_rows(shown, lambda k: value(k, column), self.descending())

    def show_rows(self, table: LiveTable, rows: dict[str, dict], order: list[str]) -> None:
        """Set the table to these rows (``order``: the keys of ``rows`` to show): the others are
        removed by key, new ones added, and all laid out in order; the cursor stays on its row."""
        wanted = set(order)
        for key in [k for k in table.row_keys if k not in wanted]:
            table.remove_row(key)
        for key in order:
            table.set_row(key, rows[key])  # repaints the row only when a cell differs
        table.set_order(order)
        natural = self.sort_column == self.natural_sort and not self.sort_reversed
        column = self.sort_column if self.sort_column in {c.key for c in table.columns} and not natural else None
        table.set_sort_marker(column, self.descending())

    def sort_note(self, table: LiveTable) -> str:
        """For the header: the column the rows are sorted by when the table does not show it (the
        terminal narrowed since), else ""; a shown column has its mark in the table's header."""
        if self.sort_column in (None, self.natural_sort) or self.sort_column in {c.key for c in table.columns}:
            return ""
        return f"sorted by {self.sort_label()} {'▼' if self.descending() else '▲'}"

    # -- the keys --------------------------------------------------------------------------------

    def _find_bar(self) -> FindBar:
        return self.query_one(FindBar)  # type: ignore[attr-defined]

    def _finding(self) -> bool:
        """A filter is set, or being typed: Escape clears it."""
        if self.find_text:
            return True
        bars = self.query(FindBar)  # type: ignore[attr-defined]
        return bool(bars) and bars.first().display

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Escape clears the filter only when there is one; else the screen's own Escape (Back)
        # takes the key, in the footer too (it shows the first enabled binding of a key).
        if action == "clear_find":
            return self._finding()
        return super().check_action(action, parameters)  # type: ignore[misc]

    def action_find(self) -> None:
        bar = self._find_bar()
        bar.display = True
        bar.value = self.find_text
        bar.focus()

    def action_clear_find(self) -> None:
        if not self._finding():
            raise SkipAction()  # nothing to clear (from ctrl+p): Escape does what the screen binds it to
        bar = self._find_bar()
        bar.value = ""
        bar.display = False
        self.find_text = ""
        self.query_one(LiveTable).focus()  # type: ignore[attr-defined]
        self.find_sort_changed()

    def on_find_bar_changed(self, event: FindBar.Changed) -> None:
        event.stop()
        if event.value.strip() != self.find_text:
            self.find_text = event.value.strip()
            self.find_sort_changed()

    def on_find_bar_submitted(self, event: FindBar.Submitted) -> None:
        event.stop()
        self._find_bar().display = False  # the header says the filter; the table gets the line back
        self.query_one(LiveTable).focus()  # type: ignore[attr-defined]

    def action_sort_next(self) -> None:
        self._step_sort(+1)

    def action_sort_previous(self) -> None:
        self._step_sort(-1)

    def _step_sort(self, step: int) -> None:
        columns = [k for k, _, _ in self.sort_columns()]
        cycle: list[str | None] = [*columns] if self.natural_sort in columns else [None, *columns]
        at = cycle.index(self.sort_column) if self.sort_column in cycle else 0
        self.sort_column = cycle[(at + step) % len(cycle)]
        self.sort_reversed = False
        self.find_sort_changed()

    def action_sort_reverse(self) -> None:
        self.sort_reversed = not self.sort_reversed
        self.find_sort_changed()
