"""A yes-or-no question before gpudock changes anything: one pattern for every change.

:class:`ConfirmScreen` shows a title (the question, naming the thing changed), a body (what it is
and what follows), and the answer keys: ``y``/Enter does it, ``n``/Escape cancels; it is
dismissed with True or False. The toolkit's edits, the container actions and the process signals
all ask with it. :func:`refused_readonly` is what a key that would change the host calls first:
in a read-only session it says so where the key was pressed, naming the option.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from gpudock.ui.widgets.footer import Footer

__all__ = ["ConfirmScreen", "refused_readonly"]


class ConfirmScreen(ModalScreen[bool]):
    """Yes or no on one change: ``y``/enter does it (``yes`` names it in the hint), ``n``/escape cancels."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm-yes"),
        Binding("enter", "answer(True)", "Yes", show=False, id="confirm-enter"),
        Binding("n", "answer(False)", "Cancel", id="confirm-no"),
        Binding("escape", "answer(False)", "Cancel", show=False, id="confirm-escape"),
    ]

    def __init__(self, title: str, body: Text, yes: str = "write", *, id: str = "toolkit-confirm") -> None:
        super().__init__(id=id)
        self.title_text = title
        self.body = body
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(Text(self.title_text, style="bold"), id="confirm-title")
            with VerticalScroll(id="confirm-body-box"):
                yield Static(self.body, id="confirm-body")
            hint = Text()
            hint.append(" y ", style="bold reverse")
            hint.append("/")
            hint.append(" Enter ", style="bold reverse")
            hint.append(f" {self.yes}    ")
            hint.append(" n ", style="bold reverse")
            hint.append("/")
            hint.append(" Esc ", style="bold reverse")
            hint.append(" cancel")
            yield Static(hint, id="confirm-hint")
        yield Footer()  # its own keys, not those of the screen under it

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


def refused_readonly(node, what: str) -> bool:
    """True (and a notice where the key was pressed) when the app's session is read-only: ``what``
    is the change, as the notice names it ("stopping train-a")."""
    host = getattr(node.app, "host", None)
    if host is None or not host.readonly:
        return False
    opt = host.options.readonly_from
    node.notify(
        f"Read-only session ({opt}): {what} is turned off. Start gpudock without {opt.split('=')[0]} to do it.",
        title="Read-only",
        severity="warning",
        timeout=6,
    )
    return True
