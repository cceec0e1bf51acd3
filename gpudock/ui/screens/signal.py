"""Signalling a GPU process from the GPU screen (``T`` SIGTERM, ``K`` SIGKILL, as nvitop's keys).

:class:`ProcessPickScreen` lists the highlighted GPU's processes when there are several (up/down,
Enter picks one); then a :class:`~gpudock.ui.screens.confirm.ConfirmScreen` names the PID, its
command and its container (:func:`signal_body`), and only its ``y``/Enter sends the signal, through
the session (:meth:`gpudock.session.HostSession.signal_process`): it compares the PID's start time
with the one read when it was shown, and refuses a read-only session and a simulated host's
made-up processes.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from gpudock.model import Gpu, GpuProcess, short_bus_id

__all__ = ["ProcessPickScreen", "process_place", "signal_body"]

WHAT_IT_DOES = {
    "TERM": "SIGTERM asks it to exit: it may clean up first, or ignore it.",
    "KILL": "SIGKILL ends it at once: nothing it has not saved is kept.",
}


def _mib(v) -> str:
    return "N/A" if v is None else f"{v} MiB"


def process_place(held) -> str:
    """Where a GPU process runs, in words: its container (and its PID in there), or why none."""
    if held is None:
        return "container unknown (the Docker engine was not read)"
    if held.container_name:
        inside = f" (PID {held.container_pid} inside)" if held.container_pid is not None else ""
        return f"container {held.container_name}{inside}"
    if held.container_id:
        return f"container {held.container_id[:12]} of another engine (Kubernetes, containerd, podman…)"
    if held.location == "host":
        return "no container: a process of the host itself"
    return "container unknown (its /proc entry cannot be read)"


def signal_body(g: Gpu, p: GpuProcess, held, sig: str) -> Text:
    """The confirmation's text: the PID, its command, its container, the GPU, what the signal does."""
    t = Text()

    def row(label: str, value: str, style: str = "") -> None:
        t.append(f"{label:<10}", style="bold")
        t.append(f"{value}\n", style=style)

    row("PID", f"{p.pid} (on the host)")
    row("Command", p.command or "?")
    row("Runs in", process_place(held), "cyan" if held is not None and held.container_name else "yellow")
    node = f"/dev/nvidia{g.minor}" if g.minor is not None else "no device node"
    row("GPU", f"{g.index}  {short_bus_id(g.pci_bus_id)}  {node}  {_mib(p.used_memory_mib)}")
    t.append("\n")
    t.append(WHAT_IT_DOES[sig] + "\n")
    t.append(
        "Its start time is checked again first: if it has exited, or its PID now names another process, "
        "nothing is sent.",
        style="dim",
    )
    return t


class ProcessPickScreen(ModalScreen[int | None]):
    """Which of a GPU's processes to signal: Enter picks, Escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="pick-cancel")]

    def __init__(self, g: Gpu, held: dict[int, object], sig: str) -> None:
        super().__init__(id="process-pick")
        self.gpu = g
        self.held = held
        self.sig = sig

    def compose(self) -> ComposeResult:
        with Vertical(id="pick-box"):
            yield Static(
                Text(f"Send SIG{self.sig} to which process on GPU {self.gpu.index}?", style="bold"), id="pick-title"
            )
            options = []
            for p in self.gpu.processes:
                label = Text()
                label.append(f"{p.pid:>8}", style="bold")
                label.append(f" {_mib(p.used_memory_mib):>10}  ")
                hp = self.held.get(p.pid)
                if hp is not None and getattr(hp, "container_name", None):
                    label.append(f"[{hp.container_name}] ", style="cyan")
                label.append(p.command or "?")
                options.append(Option(label, id=str(p.pid)))
            yield OptionList(*options, id="pick-list")
            yield Static(Text(" ↑↓ choose   Enter: confirm   Esc: cancel", style="dim"), id="pick-hint")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(int(event.option.id))

    def action_cancel(self) -> None:
        self.dismiss(None)
