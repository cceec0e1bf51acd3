"""LiveText: a Static refreshed every second that re-lays out only when its text changed, and
repaints only the rows that changed when its height stays the same."""

from __future__ import annotations

from rich.text import Text
from textual.geometry import Region
from textual.visual import Visual, visualize
from textual.widgets import Static


class LiveText(Static):
    """Most refreshes change a few numbers in a table only: re-laying out an unchanged header or
    details pane every second would cost CPU (and terminal output) for nothing. When the new text
    renders to as many rows as the old, only the rows that differ (as Textual renders them,
    wrapping included) are repainted: a fan speed moving in the details pane sends one line over
    the SSH link, not the pane."""

    _shown: Text | None = None
    _rows: list | None = None  # the rendered rows of _shown, at _rows_width
    _rows_width: int = 0

    def render(self):
        return self._shown if self._shown is not None else super().render()

    def show(self, text: Text) -> None:
        last = self._shown
        if last is not None and last.plain == text.plain and last.spans == text.spans:
            return
        self._shown = text
        width = self.content_size.width
        old = self._rows if self._rows_width == width else None
        new = self._render_rows(text, width) if width > 0 else None
        self._rows, self._rows_width = new, width
        if old is None or new is None or len(old) != len(new):
            self.update(text)
            return
        for y, (a, b) in enumerate(zip(old, new)):
            if a != b:
                self.refresh(Region(0, y, width, 1))

    def _render_rows(self, text: Text, width: int) -> list:
        return Visual.to_strips(self, visualize(self, text), width, None, self.visual_style)
