"""LiveText: a Static refreshed every second that re-lays out only when its text changed."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class LiveText(Static):
    """Most refreshes change a few numbers in a table only: re-laying out an unchanged header or
    details pane every second would cost CPU (and terminal output) for nothing."""

    _shown: Text | None = None

    def show(self, text: Text) -> None:
        last = self._shown
        if last is not None and last.plain == text.plain and last.spans == text.spans:
            return
        self._shown = text
        self.update(text)
