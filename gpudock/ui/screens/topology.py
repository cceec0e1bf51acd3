"""The topology screen (``o``): how the GPUs reach each other, as ``nvidia-smi topo -m`` shows it.

The matrix is static (NVML's topology is read once per session, with the first snapshot), so the
screen renders it from the app's latest snapshot when it opens and again when a snapshot brings a
different one (another host, GPUs added or lost).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen

from gpudock.model import TOPOLOGY_LEGEND, HostSnapshot, Topology
from gpudock.ui.widgets.footer import Footer
from gpudock.ui.widgets.live_text import LiveText

# Short legend lines: the full words are in `gpudock topo`; these fit 80 columns.
SHORT_LEGEND = {
    "X": "self",
    "SYS": "PCIe + the link between NUMA nodes (QPI/UPI)",
    "NODE": "PCIe + the link between host bridges of one NUMA node",
    "PHB": "PCIe through a host bridge (the CPU)",
    "PXB": "several PCIe bridges, no host bridge",
    "PIX": "at most one PCIe bridge",
    "NV#": "a bonded set of # NVLinks",
}


def topology_text(topo: Topology | None, source: str | None = None) -> Text:
    t = Text()
    t.append("GPU topology", style="bold")
    t.append("  as nvidia-smi topo -m prints it", style="dim")
    if source and source != "nvml":
        t.append(f"  [{source}]", style="bold magenta")
    t.append("\n\n")
    if topo is None or not topo.gpus:
        t.append("No topology: NVML has not given one (no GPUs, or NVML could not start).\n", style="yellow")
        return t
    lines = topo.table_lines(pad=1, numa_head="NUMA")
    t.append(lines[0] + "\n", style="bold")
    first = len(lines[0]) - len(lines[0].lstrip(" "))  # the row heads' column
    for line in lines[1:]:
        head, rest = line[:first], line[first:]
        t.append(head, style="bold")
        for word in rest.split(" "):
            style = "green" if word.startswith("NV") else "yellow" if word == "SYS" else ""
            t.append(word, style=style)
            t.append(" ")
        t.append("\n")
    t.append("\n")
    for key, _words in TOPOLOGY_LEGEND:
        t.append(f"{key:<5}", style="bold")
        t.append(f"{SHORT_LEGEND[key]}\n", style="dim")
    return t


class TopologyScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back", id="back")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="topology-box"):
            yield LiveText("", id="topology")
        yield Footer()

    def on_mount(self) -> None:
        snap = getattr(self.app, "snapshot", None)
        self.show_snapshot(snap)

    def show_snapshot(self, snap: HostSnapshot | None) -> None:
        topo = snap.topology if snap is not None else None
        self.query_one("#topology", LiveText).show(topology_text(topo, snap.source if snap else None))
