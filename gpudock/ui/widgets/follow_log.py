"""A log view that follows its source and can be paused and searched.

:class:`FollowLog` is a ``RichLog`` that keeps the text of its last ``max_lines`` lines, so that it
can show them again:

* **pause** (:meth:`FollowLog.set_paused`): new lines are kept but not shown, so the operator can
  read and scroll without the view moving; how many arrived meanwhile is in :meth:`status`;
  resuming shows them;
* **search** (:meth:`FollowLog.search`): only the lines holding the text (any case) are shown, the
  text highlighted, as k9s's ``/`` filters its log view; new lines that hold it keep coming;
  an empty search shows every line again.

:class:`LogSearch` is the one-line input that drives the search (``/`` opens it, Enter keeps the
search, Escape clears it). The screens that own a log (the toolkit's debug log, a container's
logs) bind the keys and show :meth:`status` in their title.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input, RichLog

__all__ = ["FollowLog", "LogSearch"]

MATCH_STYLE = "bold black on yellow"


class FollowLog(RichLog):
    """A following log view with pause and search (see the module's notes)."""

    def __init__(self, *, max_lines: int = 2000, **kwargs) -> None:
        kwargs.setdefault("wrap", True)
        kwargs.setdefault("markup", False)
        kwargs.setdefault("highlight", False)
        super().__init__(max_lines=max_lines, **kwargs)
        self.kept: deque[str] = deque(maxlen=max_lines)  # every line, as text (shown or not)
        self.paused = False
        self.held = 0  # lines that arrived while paused
        self.pattern = ""
        self.total = 0  # lines seen since the last reset

    # -- what comes in ------------------------------------------------------------------------

    def follow(self, lines: Iterable[str]) -> None:
        """Add lines as they come from the source (a burst bigger than the view is cut to its end)."""
        lines = list(lines)[-(self.kept.maxlen or len(lines) or 1) :] if lines else []
        self.kept.extend(lines)
        self.total += len(lines)
        if self.paused:
            self.held += len(lines)
            return
        for line in lines:
            self._show(line)

    def reset(self) -> None:
        """Forget every line (a new source)."""
        self.kept.clear()
        self.held = 0
        self.total = 0
        self.clear()

    # -- pause -----------------------------------------------------------------------------------

    def set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        if not paused:
            held, self.held = self.held, 0
            # the lines that came meanwhile, as many as are still kept
            for line in list(self.kept)[len(self.kept) - min(held, len(self.kept)) :]:
                self._show(line)

    # -- search ----------------------------------------------------------------------------------

    def search(self, pattern: str) -> None:
        """Show only the lines holding ``pattern`` (any case); "" shows them all."""
        if pattern == self.pattern:
            return
        self.pattern = pattern
        self.clear()
        lines = list(self.kept)
        if self.paused and self.held:
            lines = lines[: len(lines) - min(self.held, len(lines))]
        for line in lines:
            self._show(line)

    def matches(self) -> int:
        """How many kept lines the search matches (all of them without a search)."""
        if not self.pattern:
            return len(self.kept)
        p = self.pattern.lower()
        return sum(1 for line in self.kept if p in line.lower())

    def status(self) -> str:
        """What the title says of the view: "paused, 12 new lines", "search 'xid': 3 of 120 lines"."""
        bits = []
        if self.paused:
            bits.append(f"paused, {self.held} new line{'s' if self.held != 1 else ''} (p resumes)")
        if self.pattern:
            bits.append(f"search {self.pattern!r}: {self.matches()} of {len(self.kept)} lines")
        return "; ".join(bits)

    def _show(self, line: str) -> None:
        if not self.pattern:
            self.write(Text(line))
            return
        low, p = line.lower(), self.pattern.lower()
        if p not in low:
            return
        t = Text(line)
        start = low.find(p)
        while start >= 0:
            t.stylize(MATCH_STYLE, start, start + len(p))
            start = low.find(p, start + len(p))
        self.write(t)


class LogSearch(Input):
    """The search line under a log view: each keystroke searches, Enter keeps the search and goes
    back to the log, Escape clears it."""

    BINDINGS = [Binding("escape", "clear_search", "Clear search", show=False)]

    def __init__(self, log: FollowLog, **kwargs) -> None:
        kwargs.setdefault("placeholder", "search the log (any case); Enter keeps it, Escape clears it")
        kwargs.setdefault("compact", True)
        super().__init__(**kwargs)
        self.log_view = log

    def open(self) -> None:
        self.value = self.log_view.pattern
        self.display = True
        self.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.log_view.search(event.value)
        self.post_message(self.Searched(self))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.display = False
        self.log_view.focus()
        self.post_message(self.Searched(self))

    def action_clear_search(self) -> None:
        self.value = ""
        self.log_view.search("")
        self.display = False
        self.log_view.focus()
        self.post_message(self.Searched(self))

    class Searched(Message):
        """The search changed (or closed): the owner updates its title."""

        def __init__(self, search: LogSearch) -> None:
            super().__init__()
            self.search = search
