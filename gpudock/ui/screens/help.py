"""The help screen (``?``): every screen's keys, made from the screens' own bindings.

It lists what each screen's ``BINDINGS`` say, with the keys shown as the footer shows them, so it
can never disagree with what a key does. Escape, ``q`` or ``?`` close it; arrows and PageDown
scroll it.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from gpudock.ui.widgets.footer import Footer


def screens() -> list[tuple[str, type]]:
    """(title, class) of every screen and modal whose keys the help lists, in the order an operator
    meets them."""
    from gpudock.ui.screens.confirm import ConfirmScreen
    from gpudock.ui.screens.containers import ContainerScreen
    from gpudock.ui.screens.doctor import DoctorScreen
    from gpudock.ui.screens.gpus import GpuScreen
    from gpudock.ui.screens.launch import LaunchScreen
    from gpudock.ui.screens.logs import ContainerLogScreen
    from gpudock.ui.screens.toolkit import ToolkitScreen
    from gpudock.ui.screens.topology import TopologyScreen

    return [
        ("GPUs (the main screen)", GpuScreen),
        ("Containers (c)", ContainerScreen),
        ("A container's logs (l on Containers)", ContainerLogScreen),
        ("Doctor (d)", DoctorScreen),
        ("Toolkit (t)", ToolkitScreen),
        ("Topology (o)", TopologyScreen),
        ("Launch form (l)", LaunchScreen),
        ("A confirmation", ConfirmScreen),
    ]


def keys_table(app, bindings) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(min_width=12, no_wrap=True, style="bold")
    grid.add_column()
    for b in bindings:
        b = b if isinstance(b, Binding) else Binding(*b)
        if not b.description:
            continue
        grid.add_row(app.get_key_display(b), b.description)
    return grid


class HelpScreen(ModalScreen[None]):
    """Every screen's keys."""

    BINDINGS = [
        Binding("escape", "close", "Close", id="help-close"),
        Binding("q", "close", "Close", show=False),
        Binding("question_mark", "close", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(id="help-text")
        yield Footer()

    def on_mount(self) -> None:
        from rich.console import Group

        app = self.app
        parts = [
            Text("gpudock: the keys of every screen", style="bold"),
            Text(
                "Everything works with the keyboard. ctrl+p searches every command of the screen you are on. "
                "Escape goes back; q quits.",
                style="dim",
            ),
        ]
        for title, bindings in [("Everywhere", type(app).BINDINGS)] + [(t, c.BINDINGS) for t, c in screens()]:
            parts += [Text(""), Text(title, style="bold underline"), keys_table(app, bindings)]
        self.query_one("#help-text", Static).update(Group(*parts))
        self.query_one("#help-box").focus()

    def action_close(self) -> None:
        self.dismiss(None)
