"""The footer every screen uses: Textual's, compact, with the command palette's hint only where
it fits (below 80 columns the screen's own keys need the room; ctrl+p still works)."""

from __future__ import annotations

from textual import events
from textual.widgets import Footer as _Footer

ROOM_FOR_THE_PALETTE = 80


class Footer(_Footer):
    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("compact", True)
        super().__init__(**kwargs)

    def on_resize(self, event: events.Resize) -> None:
        self.show_command_palette = event.size.width >= ROOM_FOR_THE_PALETTE
