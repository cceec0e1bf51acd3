"""LiveText: a Static shown anew every second that repaints only the characters that changed."""

from __future__ import annotations

from rich.text import Text
from textual.geometry import Region
from textual.visual import Visual, visualize
from textual.widgets import Static

from gpudock.ui.updates import changed_spans


class LiveText(Static):
    """Most refreshes change a few numbers in a table only: re-laying out an unchanged header or
    details pane every second would cost CPU (and terminal output) for nothing. When the text does
    change but keeps its number of lines (a clock, a process's memory), only the changed spans of
    its lines are repainted, as in :class:`gpudock.ui.widgets.live_table.LiveTable`; a text that
    grows or shrinks is laid out again."""

    _shown: Text | None = None
    _visual: Visual | None = None  # what show() was last given, as Textual renders it
    # The lines made of it for (width, height, style): the next show() compares with them.
    _lines: tuple[tuple, list] | None = None

    def render(self) -> Visual:
        return self._visual if self._visual is not None else super().render()

    def show(self, text: Text) -> None:
        last = self._shown
        if last is not None and last.plain == text.plain and last.spans == text.spans:
            return
        self._shown = text
        old = self.render() if self.is_mounted else None
        self._visual = visualize(self, text, markup=False)
        regions = self._changed_regions(old, self._visual)
        if regions is None:
            self._lines = None
            self.refresh(layout=True)
        elif regions:
            self.refresh(*regions)

    def _changed_regions(self, old: Visual | None, new: Visual) -> list[Region] | None:
        """The spans of the lines that differ between the two texts at this size; None when the
        size must change (or nothing was shown yet)."""
        width, height = self.size
        if old is None or not width or not height:
            return None
        if old.get_height(self.styles, width) != new.get_height(self.styles, width):
            return None
        key = (width, height, self.visual_style)
        before = self._lines[1] if self._lines is not None and self._lines[0] == key else None
        if before is None:
            before = Visual.to_strips(self, old, width, height, self.visual_style)
        after = Visual.to_strips(self, new, width, height, self.visual_style)
        self._lines = (key, after)
        if len(before) != len(after):
            return None
        return [Region(a, y, b - a, 1) for y, (s, t) in enumerate(zip(before, after)) for a, b in changed_spans(s, t)]
