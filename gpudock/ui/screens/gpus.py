"""The main screen: the live GPU table and the highlighted GPU's details.

The table is keyed by GPU UUID (index when NVML gave none) and updated in place: rows are added,
changed or removed by key and never cleared, so the operator's cursor and selection survive every
refresh, and only the rows whose cells changed are re-rendered and repainted
(:class:`gpudock.ui.widgets.live_table.LiveTable`). Narrow terminals (80 columns) get short forms of the
bus id and device node; nothing is dropped that an operator needs to tell cards apart.

``T`` / ``K`` send SIGTERM / SIGKILL to one of the highlighted GPU's processes (nvitop's keys),
after a confirmation naming its PID, command and container (:mod:`gpudock.ui.screens.signal`).
"""

from __future__ import annotations

import io

from rich.console import Console
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message

from gpudock.host.history import History, Series, history_key
from gpudock.model import Gpu, HostSnapshot, mechanism_label, short_bus_id
from gpudock.ui.updates import LiveScreen
from gpudock.ui.widgets.docker_banner import DockerBanner, docker_message
from gpudock.ui.widgets.find_sort import FIND_SORT_BINDINGS, FindBar, FindSort, find_status
from gpudock.ui.widgets.footer import Footer
from gpudock.ui.widgets.live_table import Column, Fit, LiveTable
from gpudock.ui.widgets.live_text import LiveText

WIDE = 120  # columns from which the table shows the full forms and the model name
NARROW = 80  # columns from which it shows memory %, power and the node too

# (key, label, right-aligned) in display order, per width: below 80 columns the fewest that tell
# the cards apart and say how busy they are; the holder column fills what the others leave.
COMPACT_COLUMNS = [
    ("idx", "#", False),
    ("bus", "BUS", False),
    ("util", "GPU%", True),
    ("mem", "MEM GiB", True),
    ("temp", "TEMP", True),
    ("holder", "HOLDER", False),
]
NARROW_COLUMNS = [
    ("idx", "#", False),
    ("bus", "BUS", False),
    ("dev", "DEV", False),
    ("util", "GPU%", True),
    ("mem%", "MEM%", True),
    ("mem", "MEM GiB", True),
    ("temp", "TEMP", True),
    ("power", "POWER W", True),
    ("holder", "HOLDER", False),
]
WIDE_COLUMNS = [
    ("idx", "#", False),
    ("bus", "PCI BUS ID", False),
    ("dev", "DEVICE", False),
    ("name", "NAME", False),
    ("util", "GPU%", True),
    ("hist", "GPU% 5 MIN", False),  # the utilization's last 5 minutes, HIST_CELLS cells
    ("mem%", "MEM%", True),
    ("mem", "MEMORY MiB", True),
    ("temp", "TEMP", True),
    ("power", "POWER W", True),
    ("holder", "HOLDER", False),
]
LAYOUTS = {"compact": COMPACT_COLUMNS, "narrow": NARROW_COLUMNS, "wide": WIDE_COLUMNS}


def layout_for(width: int) -> str:
    return "wide" if width >= WIDE else "narrow" if width >= NARROW else "compact"


# The holder column's least text width (its label is cut with "…" beyond it; "! " marks a
# conflict). It takes whatever width the other columns leave, so it is wider on a wider terminal.
HOLDER_WIDTH_NARROW = 10
HOLDER_WIDTH_WIDE = 14
# The wide table's history column: 10 cells of 30 s (it fits at 120 columns beside the holder).
HIST_CELLS = 10

# What the holder column says of a conflict on a GPU that no running container holds.
_CONFLICT_SHORT = {"no-container": "host process", "foreign-container": "other engine", "unclaimed": "not given"}
# The GPU% cell of a GPU that NVML cannot read (the details pane has the whole error).
_ERROR_SHORT = {"GPU is lost": "lost", "GPU requires reset": "reset"}


def holder_cell(gh, conflicts, width: int, engine_ok: bool = True, stale: bool = False) -> str | Text:
    """The holder column's cell: the holders' label, "free" when nothing holds the GPU, and a "!"
    in bold red/yellow on a conflict (the header's legend says what it means); "?" and dim while
    the engine does not answer (the holders are the last known ones)."""
    if gh is None:
        return ""
    if stale:
        return Text(f"? {gh.label(width - 2)}".rstrip(), style="dim")
    if not conflicts:
        return gh.label(width) or (Text("free", style="dim") if engine_ok else "")
    label = gh.label(width - 2) or _CONFLICT_SHORT.get(conflicts[0].kind, conflicts[0].kind)
    severe = any(c.kind in ("shared", "no-container", "unclaimed") for c in conflicts)
    return Text(f"! {label}", style="bold red" if severe else "bold yellow")


def _na(v, fmt: str = "{}") -> str:
    return "N/A" if v is None else fmt.format(v)


def _util(v: int | None) -> Text:
    if v is None:
        return Text("N/A", style="dim")
    style = "bold red" if v >= 90 else "yellow" if v >= 50 else "green" if v > 0 else "dim"
    return Text(str(v), style=style)


def short_name(name: str | None) -> str:
    """The model name in the table: without the "NVIDIA " every card's name starts with (the details
    pane has it whole), so the wide table keeps room for its history column."""
    if name is None:
        return "N/A"
    return name[len("NVIDIA ") :] if name.startswith("NVIDIA ") else name


def gpu_cells(g: Gpu, wide: bool, holder: str | Text | Fit = "") -> dict[str, object]:
    """The table cells of one GPU, by column key (every layout takes the ones it shows)."""
    bus = (g.pci_bus_id or "N/A") if wide else short_bus_id(g.pci_bus_id)
    dev = _na(g.device) if wide else _na(g.minor, "nvidia{}")
    if g.error:
        # a short word where the numbers go, so one lost card leaves the layout as it is
        word = _ERROR_SHORT.get(g.error.split(":")[0].strip(), "error")
        return {
            "idx": str(g.index),
            "bus": bus,
            "dev": dev,
            "name": short_name(g.name),
            "util": Text(word, style="bold red"),
            "mem%": "",
            "mem": "",
            "temp": "",
            "power": "",
            "holder": holder,
        }
    if wide:
        mem = f"{_na(g.memory_used_mib)}/{_na(g.memory_total_mib)}"
    else:
        mem = (
            f"{g.memory_used_mib / 1024:.1f}/{g.memory_total_mib / 1024:.0f}"
            if g.memory_used_mib is not None and g.memory_total_mib is not None
            else "N/A"
        )
    power = f"{_na(g.power_w, '{:.0f}')}/{_na(g.power_limit_w, '{:.0f}')}"
    return {
        "idx": str(g.index),
        "bus": bus,
        "dev": dev,
        "name": short_name(g.name),
        "util": _util(g.utilization_gpu),
        "mem%": _util(g.utilization_memory),
        "mem": mem,
        "temp": _na(g.temperature_c, "{}C"),
        "power": power,
        "holder": holder,
    }


# The details pane: a label column, and values that wrap under themselves (not at column 1).
LABEL_WIDTH = 12
_WRAP_CONSOLE = Console(width=400, file=io.StringIO(), color_system=None, legacy_windows=False)


def _rows_text(rows: list[tuple[str, Text, str]], width: int) -> Text:
    """``(label, value, label style)`` rows laid out in ``width`` columns with hanging indents."""
    out = Text()
    body = max(20, width - LABEL_WIDTH)
    for label, value, label_style in rows:
        lines = value.wrap(_WRAP_CONSOLE, body, overflow="fold") if value.cell_len > body else [value]
        for i, line in enumerate(lines):
            out.append(f"{label if i == 0 else '':<{LABEL_WIDTH}}", style=label_style)
            out.append_text(line)
            out.append("\n")
    return out


def gpu_details(
    g: Gpu, holders=None, conflicts=(), docker=None, width: int = 78, history: History | None = None
) -> Text:
    """The details of one GPU, as the operator reads them under the table, in ``width`` columns.

    ``holders``: its :class:`gpudock.host.holders.GpuHolders` (who holds it, its processes' containers);
    ``conflicts``: what is wrong on it (``HoldersMap.conflicts_for_gpu``); ``docker``: the engine's
    :class:`~gpudock.host.docker.DockerStatus` (when it cannot be read, the holders are unknown);
    ``history``: the readings of the last minutes (:class:`gpudock.host.history.History`), as
    sparklines under the GPU's identity.
    """
    rows: list[tuple[str, Text, str]] = []

    def row(label: str, value: str | Text, style: str = "") -> None:
        rows.append((label, value if isinstance(value, Text) else Text(value, style=style), "bold"))

    # A GPU NVML cannot read: only what is known of it (a lost card often has no name, UUID or bus
    # id left to read), not rows of N/A.
    row("GPU", f"{g.index}  {_na(g.name)}" if g.name or not g.error else str(g.index))
    if g.error:
        row("Error", g.error, "bold red")
    if g.uuid or not g.error:
        row("UUID", _na(g.uuid))
    if g.pci_bus_id or g.minor is not None or not g.error:
        row("Bus / minor", f"{_na(g.pci_bus_id)}  minor {_na(g.minor)}  {_na(g.device)}")
    if history is not None and not g.error:  # no readings of a card NVML cannot read
        _history_rows(g, history, row, width)
    if not g.error:  # a GPU NVML cannot read has no modes, clocks or readings to show
        row("Serial", _na(g.serial))
        row(
            "Modes",
            f"persistence {_onoff(g.persistence_mode)}  compute {_na(g.compute_mode)}  "
            f"MIG {_onoff(g.mig_mode_current)}"
            + (f" (pending {_onoff(g.mig_mode_pending)})" if g.mig_mode_pending != g.mig_mode_current else ""),
        )
        row(
            "Clocks",
            f"SM {_na(g.clock_sm_mhz)}/{_na(g.clock_sm_max_mhz)} MHz  "
            f"mem {_na(g.clock_mem_mhz)}/{_na(g.clock_mem_max_mhz)} MHz  {_na(g.performance_state, 'P{}')}",
        )
    body = max(20, width - LABEL_WIDTH)
    for m in g.mig_devices:
        mem = f"{_na(m.memory_used_mib)}/{_na(m.memory_total_mib)} MiB"
        line = f"{_na(m.profile):<8} {m.uuid}  {mem}"
        if len(line) > body:  # the UUID cut rather than the memory wrapped onto a line of its own
            line = f"{_na(m.profile):<8} {m.uuid[:16]}…  {mem}"
        row(f"  MIG {m.index}", line)
    if not g.error:
        _reading_rows(g, row)
    if docker is not None and not getattr(docker, "ok", True):
        v = Text()
        v.append("unknown: ", style="bold yellow")
        v.append(docker_message(docker), style="yellow")
        row("Held by", v)
    elif holders is not None:
        if getattr(docker, "stale_since", None) is not None:
            row("Docker", Text(docker_message(docker), style="yellow"))
        _holder_rows(row, holders)
    held = {p.pid: p for p in holders.processes} if holders is not None else {}
    if g.processes:
        row("Processes", str(len(g.processes)))
        for p in g.processes:
            where = f" on {p.mig_uuid[:12]}…" if p.mig_uuid else ""
            hp = held.get(p.pid)
            bad = hp is not None and (hp.claimed is False or hp.location in ("host", "foreign-container"))
            v = Text(
                f"{p.pid:>8} {_na(p.used_memory_mib):>7} MiB  {p.kind[0].upper()}  {_na(p.sm_util, 'sm {}%'):<7} ",
                style="bold red" if bad else "",
            )
            if hp is not None:
                _process_place(v, hp)
            v.append(f"{_na(p.command)}{where}")
            rows.append(("!" if bad else "", v, "bold red"))
    elif not g.error:
        row("Processes", "none")
    for c in conflicts:
        rows.append(("Conflict", Text(c.message, style="red"), "bold red"))
    return _rows_text(rows, width)


def _reading_rows(g: Gpu, row) -> None:
    """The readings operators compare cards by, one short line each (they fit 78 columns)."""
    reasons = g.clock_event_reasons
    held = "N/A" if reasons is None else (", ".join(reasons) or "none")
    severe = reasons is not None and any(r not in ("Idle", "Applications Clocks Setting") for r in reasons)
    row("Throttle", held, "bold yellow" if severe else "")
    row(
        "Fan / video",
        f"fan {_na(g.fan_speed_pct, '{}%')}  encoder {_na(g.encoder_utilization, '{}%')}  "
        f"decoder {_na(g.decoder_utilization, '{}%')}",
    )
    e = g.ecc_errors
    ecc = _onoff(g.ecc_mode_current)
    if g.ecc_mode_pending is not None and g.ecc_mode_pending != g.ecc_mode_current:
        ecc += f" (pending {_onoff(g.ecc_mode_pending)})"
    if e is not None:
        ecc += (
            f"  volatile {_na(e.volatile_corrected)}/{_na(e.volatile_uncorrected)}"
            f"  aggregate {_na(e.aggregate_corrected)}/{_na(e.aggregate_uncorrected)} (corr/uncorr)"
        )
    row("ECC", ecc, "bold red" if e is not None and (e.volatile_uncorrected or 0) > 0 else "")
    rows, pages = g.remapped_rows, g.retired_pages
    bad = []
    if rows is not None:
        flags = " pending" if rows.pending else ""
        flags += " FAILED" if rows.failed else ""
        bad.append(f"rows remapped {rows.correctable}/{rows.uncorrectable}{flags}")
    if pages is not None:
        bad.append(
            f"pages retired {_na(pages.single_bit)}/{_na(pages.double_bit)}{' pending' if pages.pending else ''}"
        )
    alarm = (rows is not None and (rows.failed or rows.uncorrectable > 0)) or (pages is not None and pages.pending)
    row("Bad memory", "  ".join(bad) or "N/A", "bold red" if alarm else "")
    row(
        "PCIe",
        f"gen {_na(g.pcie_gen)}/{_na(g.pcie_gen_max)}  x{_na(g.pcie_width)}/{_na(g.pcie_width_max)}  "
        f"rx {_rate(g.pcie_rx_kib_s)}  tx {_rate(g.pcie_tx_kib_s)}  "
        f"BAR1 {_na(g.bar1_used_mib)}/{_na(g.bar1_total_mib)} MiB",
    )
    links = "none" if g.nvlinks is None else f"{_na(g.nvlinks_up)}/{g.nvlinks} up"
    down = g.nvlinks is not None and g.nvlinks_up is not None and g.nvlinks_up < g.nvlinks
    row("NVLink", f"{links}  NUMA {_na(g.numa_node)}  CPUs {_na(g.cpu_affinity)}", "bold yellow" if down else "")


# The details pane's history rows: (label, series, how its peak reads). One row per series, so a
# refresh repaints the newest cell of each (and, when a cell's time is up, the cells that moved).
HISTORY_ROWS = (
    ("GPU% 5 min", "util", lambda v: f"{v:.0f}%"),
    ("Mem 5 min", "mem", lambda v: f"{v / 1024:.1f} GiB"),
    ("Power 5 min", "power", lambda v: f"{v:.0f} W"),
)
HISTORY_SUFFIX = 16  # room after a sparkline for "  max 77.9 GiB": the sparkline's width never moves


def history_cells(width: int) -> int:
    """How many cells a details pane ``width`` columns wide gives each sparkline (the 5 minutes
    are cut into that many): 48 at 80 columns, 60 (5 s each) from 92."""
    return max(10, min(60, max(20, width - LABEL_WIDTH) - HISTORY_SUFFIX))


def _spark(series: Series | None, cells: int, peak=None) -> Text:
    if series is None or series.peak() is None:
        return Text("N/A", style="dim")
    t = Text(series.sparkline(cells), style="cyan")
    if peak is not None:
        t.append(f"  max {peak(series.peak())}", style="dim")
    return t


def _history_rows(g: Gpu, history: History, row, width: int) -> None:
    cells = history_cells(width)
    key = history_key(g)
    for label, name, peak in HISTORY_ROWS:
        row(label, _spark(history.series(key, name), cells, peak))
    for m in g.mig_devices:
        row(f"  MIG {m.index} mem", _spark(history.series(m.uuid, "mem"), cells, HISTORY_ROWS[1][2]))


def _rate(kib_s: int | None) -> str:
    """NVML's PCIe KB/s in the unit that keeps it short."""
    if kib_s is None:
        return "N/A"
    if kib_s >= 1_000_000:
        return f"{kib_s / 1_000_000:.1f} GB/s"
    if kib_s >= 1000:
        return f"{kib_s / 1000:.0f} MB/s"
    return f"{kib_s} KB/s"


def _holder_rows(row, gh) -> None:
    """'Held by' rows: each container holding the GPU, how (the docker run flag) and what it asked for."""
    if not gh.holders:
        row("Held by", Text("free: no container holds it", style="dim"))
        return
    for i, h in enumerate(gh.holders):
        v = Text()
        v.append(h.name, style="bold" if h.running else "dim")
        v.append(f"  {', '.join(mechanism_label(m) for m in h.mechanisms)}  {' '.join(h.selectors)}")
        # a MIG device named by the selector itself is not said twice
        migs = [m for m in h.mig_uuids if not any(m in sel for sel in h.selectors)]
        if migs:
            v.append(f"  MIG {' '.join(m[:12] + '…' for m in migs)}")
        if not h.running:
            v.append(f"  ({h.status})", style="dim")
        row("Held by" if i == 0 else "", v)


def _process_place(t: Text, hp) -> None:
    """Where a GPU process runs: its container and its PID in there, or why none."""
    if hp.container_name:
        pid = hp.container_pid if hp.container_pid is not None else "?"
        t.append(f"[{hp.container_name} pid {pid}] ", style="cyan" if hp.claimed is not False else "bold red")
        if hp.claimed is False:
            t.append("(GPU not given) ", style="bold red")
    elif hp.container_id:
        t.append(f"[container {hp.container_id[:12]}, other engine] ", style="bold yellow")
    elif hp.location == "host":
        t.append("[host: no container] ", style="bold red")


def _onoff(v: bool | None) -> str:
    return "N/A" if v is None else ("on" if v else "off")


def header_text(
    snap: HostSnapshot | None,
    banner: str | None,
    conflicts: int = 0,
    wide: bool = True,
    compact: bool = False,
    readonly: bool = False,
) -> Text:
    """The line above the table. ``wide``: with the NVML version; ``compact`` (below 80 columns):
    without the GPU count (the table counts them), so the conflicts' legend stays on the line."""
    t = Text()
    if snap is None:
        t.append("Reading the GPUs…", style="dim")
        return t
    if snap.nvml_failure:
        f = snap.nvml_failure
        t.append(f"NVML could not start: {f.nvml_text}\n", style="bold red")
        # the message names the CLI's doctor; here it is a key away
        t.append(f.message.replace("'gpudock doctor'", "The doctor (d)"))
        return t
    t.append("Driver ", style="dim")
    t.append(_na(snap.driver_version), style="bold")
    t.append("  CUDA ", style="dim")
    t.append(_na(snap.cuda_driver_version), style="bold")
    if wide:
        t.append("  NVML ", style="dim")
        t.append(_na(snap.nvml_version), style="bold")
    if not compact:
        t.append(f"  {len(snap.gpus)} GPUs", style="dim")
    if snap.source != "nvml":
        t.append(f"  [{snap.source}]", style="bold magenta")
    if readonly:  # always in sight: the keys that change the host say so only when pressed
        t.append("  [read-only]", style="bold cyan")
    if conflicts:
        # the legend of the holder column's marker
        t.append(f"  ! {conflicts} conflict{'s' if conflicts != 1 else ''}", style="bold yellow")
    if banner:
        t.append("\n" + banner, style="yellow")
    return t


# The columns of readings: sorted highest first (the others, names and ids, A to Z).
GPU_READINGS = {"util", "hist", "mem%", "mem", "temp", "power"}


def gpu_find_text(g: Gpu, hmap=None, images: dict[str, str] | None = None) -> str:
    """What ``/`` finds a GPU by: the text of its row in every layout (index, bus id long and
    short, node, minor, model), its UUID, its holders' names and images ("free" when none holds it)
    and what is wrong with it."""
    words = [str(g.index), g.pci_bus_id or "", short_bus_id(g.pci_bus_id), g.device or "", g.name or "", g.uuid or ""]
    if g.minor is not None:
        words.append(f"nvidia{g.minor}")
    if g.error:
        words.append(g.error)
    gh = hmap.gpu(g.uuid) if hmap is not None and g.uuid else None
    if gh is not None:
        for h in gh.holders:
            words += [h.name, (images or {}).get(h.container_id, "")]
        if not gh.running_holders:
            words.append("free")
        words += [_CONFLICT_SHORT.get(c.kind, c.kind) for c in hmap.conflicts_for_gpu(g.uuid)]
    return " ".join(words)


def gpu_sort_value(g: Gpu, column: str, hmap=None, history: History | None = None) -> object:
    """A GPU's value in a column, for sorting (None: not known, sorted last)."""
    readings = g.error is None
    if column == "idx":
        return g.index
    if column == "bus":
        return (g.pci_bus_id or "").lower() or None
    if column == "dev":
        return g.minor
    if column == "name":
        return g.name
    if column == "holder":
        gh = hmap.gpu(g.uuid) if hmap is not None and g.uuid else None
        label = gh.label() if gh is not None else ""
        return label.lower() or None  # free cards after the held ones
    if column == "hist":
        series = history.series(history_key(g), "util") if history is not None else None
        return series.mean() if series is not None else None
    field = {
        "util": "utilization_gpu",
        "mem%": "utilization_memory",
        "mem": "memory_used_mib",
        "temp": "temperature_c",
        "power": "power_w",
    }[column]
    return getattr(g, field) if readings else None


class GpuScreen(FindSort, LiveScreen):
    """Every GPU, live."""

    # find and sort (gpudock.ui.widgets.find_sort): the natural order is the index's
    natural_sort = "idx"
    sort_column = "idx"

    BINDINGS = [
        Binding("enter", "details", "Details", id="details", show=False),
        Binding("space", "toggle_mark", "Mark", id="mark"),
        Binding("l", "launch", "Launch", id="launch"),
        # the way to the other screens (the app's keys, shown here)
        Binding("c", "app.containers", "Containers"),
        Binding("d", "app.doctor", "Doctor"),
        Binding("t", "app.toolkit", "Toolkit"),
        *FIND_SORT_BINDINGS,
        # a signal to one of the highlighted GPU's processes (see "signals to a GPU process" below)
        Binding("T", "signal('TERM')", "SIGTERM a process", show=False, id="gpu-sigterm"),
        Binding("K", "signal('KILL')", "SIGKILL a process", show=False, id="gpu-sigkill"),
    ]

    def __init__(self, banner: str | None = None) -> None:
        super().__init__()
        self.banner = banner
        self._layout: str | None = None
        self._snapshot: HostSnapshot | None = None
        self.marks: list[str] = []  # row keys of the GPUs marked for a launch, in marking order

    def compose(self) -> ComposeResult:
        yield LiveText(header_text(None, self.banner), id="host-header")
        yield DockerBanner(id="docker-banner")
        yield FindBar(id="gpu-find")
        yield LiveTable(id="gpu-table", zebra_stripes=True)
        with VerticalScroll(id="gpu-details-box"):
            yield LiveText("", id="gpu-details")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(LiveTable).focus()
        app_snap = getattr(self.app, "snapshot", None)
        if app_snap is not None:
            self.show_snapshot(app_snap)

    def on_resize(self) -> None:
        if self._snapshot is not None:
            self.show_snapshot(self._snapshot)

    # -- rendering -------------------------------------------------------------------------------

    @staticmethod
    def row_key(g: Gpu) -> str:
        return g.uuid or f"index-{g.index}"

    def holder_text(self, g: Gpu) -> str | Fit:
        """The holder column's cell for a GPU (filled by the holders map), made for the width the
        column gets: "name +2" rather than a name cut anywhere."""
        hmap = getattr(self.app, "holders", None)
        if hmap is not None and g.uuid:
            gh, conflicts = hmap.gpu(g.uuid), tuple(hmap.conflicts_for_gpu(g.uuid))
            ok = hmap.docker is None or hmap.docker.ok
            stale = getattr(hmap.docker, "stale_since", None) is not None
            return Fit(lambda width: holder_cell(gh, conflicts, width, ok, stale), (gh, conflicts, ok, stale))
        if hmap is not None and not g.uuid:  # a card NVML cannot read: who asked for it
            hit = hmap.conflicts_for_unreadable(g.index)
            names = hmap.container_names(i for c in hit for i in c.container_ids)
            return Text("! " + ", ".join(names), style="bold red") if names else ""
        holders = getattr(self.app, "holders_by_gpu", None)
        if not holders or not g.uuid:
            return ""
        return holders.get(g.uuid, "")

    def show_snapshot(self, snap: HostSnapshot) -> None:
        self._snapshot = snap
        hmap = getattr(self.app, "holders", None)
        self.query_one("#docker-banner", DockerBanner).show_status(hmap.docker if hmap is not None else None)
        table = self.query_one(LiveTable)
        layout = layout_for(self.size.width)
        if layout != self._layout:
            self._rebuild_columns(table, layout)
        wide = layout == "wide"
        rows = {}
        for g in snap.gpus:
            cells = gpu_cells(g, wide, self.holder_text(g))
            cells["idx"] = self._idx_cell(g)
            if wide:
                cells["hist"] = self._hist_cell(g)
            rows[self.row_key(g)] = cells
        self._show_gpu_rows(table, snap, rows)  # filtered and sorted; repaints only the cells that differ
        header = header_text(
            snap,
            self.banner,
            conflicts=len(hmap.conflicts) if hmap is not None else 0,
            wide=self.size.width >= WIDE,
            compact=0 < self.size.width < NARROW,
            readonly=bool(getattr(getattr(self.app, "host", None), "readonly", False)),
        )
        self.query_one("#host-header", LiveText).show(header + self._find_line(table, snap))
        self._show_details()

    def _rebuild_columns(self, table: LiveTable, layout: str) -> None:
        # Only on a change of width class (rare); the table keeps the cursor on its GPU.
        # The holder column fills the width the others leave (its labels are cut to it): a width
        # that grew with whatever label happened to pass would make the table jump between refreshes.
        holder_width = HOLDER_WIDTH_WIDE if layout == "wide" else HOLDER_WIDTH_NARROW
        table.set_columns(
            [
                Column(key, label, holder_width, fill=True)
                if key == "holder"
                else Column(key, label, HIST_CELLS)
                if key == "hist"
                else Column(key, label, right=right)
                for key, label, right in LAYOUTS[layout]
            ]
        )
        self._layout = layout

    def current_gpu_key(self) -> str | None:
        return self.query_one(LiveTable).cursor_row_key

    def current_gpu(self) -> Gpu | None:
        key = self.current_gpu_key()
        if key is None or self._snapshot is None:
            return None
        for g in self._snapshot.gpus:
            if self.row_key(g) == key:
                return g
        return None

    def _show_details(self) -> None:
        g = self.current_gpu()
        hmap = getattr(self.app, "holders", None)
        width = max(40, self.size.width - 4)  # the pane's padding and scrollbar
        history = getattr(self.app, "history", None)
        if g is not None and hmap is not None and g.uuid:
            text = gpu_details(
                g, hmap.gpu(g.uuid), hmap.conflicts_for_gpu(g.uuid), hmap.docker, width=width, history=history
            )
        elif g is not None and hmap is not None:
            text = gpu_details(
                g, None, hmap.conflicts_for_unreadable(g.index), hmap.docker, width=width, history=history
            )
        elif g is not None:
            text = gpu_details(g, width=width, history=history)
        elif self.find_text and self._snapshot is not None and self._snapshot.gpus:
            text = Text(f"No GPU matches {self.find_text!r}: escape clears the filter, / changes it.", style="dim")
        else:
            text = Text()
        self.query_one("#gpu-details", LiveText).show(text)

    # -- find and sort (gpudock.ui.widgets.find_sort) ---------------------------------------------

    def sort_columns(self) -> list[tuple[str, str, bool]]:
        return [(key, label, key in GPU_READINGS) for key, label, _ in LAYOUTS[self._layout or "narrow"]]

    def known_sort_columns(self) -> list[tuple[str, str, bool]]:
        return [(key, label, key in GPU_READINGS) for key, label, _ in WIDE_COLUMNS]

    def find_sort_changed(self) -> None:
        if self._snapshot is not None:
            self.show_snapshot(self._snapshot)

    def _show_gpu_rows(self, table: LiveTable, snap: HostSnapshot, rows: dict[str, dict]) -> None:
        by_key = {self.row_key(g): g for g in snap.gpus}
        hmap = getattr(self.app, "holders", None)
        history = getattr(self.app, "history", None)
        images = {cg.id: cg.container.image for cg in hmap.containers} if hmap is not None else {}

        def text(key: str) -> str:
            return gpu_find_text(by_key[key], hmap, images)

        def value(key: str, column: str) -> object:
            return gpu_sort_value(by_key[key], column, hmap, history)

        self.show_rows(table, rows, self.arrange_rows(list(rows), text, value))

    def _find_line(self, table: LiveTable, snap: HostSnapshot) -> Text:
        present = {self.row_key(g) for g in snap.gpus}
        hidden = [k for k in self.marks if k in present and k not in table.row_keys]
        note = f"{len(hidden)} marked GPU{'s' if len(hidden) != 1 else ''} hidden by the filter" if hidden else ""
        if self.sort_note(table):
            note = (note + "  " if note else "") + self.sort_note(table)
        line = find_status(self.find_text, table.row_count, len(snap.gpus), "GPUs", note)
        return Text("\n").append_text(line) if line else line

    def _hist_cell(self, g: Gpu) -> Text | str:
        history = getattr(self.app, "history", None)
        series = history.series(history_key(g), "util") if history is not None else None
        if series is None or series.peak() is None:
            return ""
        return Text(series.sparkline(HIST_CELLS), style="cyan")

    # -- marks for the launch form (gpudock.ui.screens.launch) --------------------------------------

    def _idx_cell(self, g: Gpu) -> object:
        key = self.row_key(g)
        if key not in self.marks:
            return str(g.index)
        return Text.assemble(f"{g.index} ", (f"[{self.marks.index(key) + 1}]", "bold reverse"))

    def action_toggle_mark(self) -> None:
        key = self.current_gpu_key()
        if key is None or self._snapshot is None:
            return
        if key in self.marks:
            self.marks.remove(key)
        else:
            self.marks.append(key)
        table = self.query_one(LiveTable)
        for g in self._snapshot.gpus:
            if self.row_key(g) in table.row_keys:
                table.update_cell(self.row_key(g), "idx", self._idx_cell(g))

    def marked_gpus(self) -> list[Gpu]:
        if self._snapshot is None:
            return []
        by_key = {self.row_key(g): g for g in self._snapshot.gpus}
        return [by_key[k] for k in self.marks if k in by_key]

    def action_launch(self) -> None:
        from gpudock.ui.screens.launch import LaunchScreen

        current = self.current_gpu()
        gpus = self.marked_gpus() or ([current] if current else [])
        if not gpus or self._snapshot is None:
            self.notify("Mark GPUs with the space bar first", severity="warning")
            return
        factory = getattr(self.app, "docker_client_factory", None)
        self.app.push_screen(
            LaunchScreen(
                self._snapshot, gpus, root=self.app.host.root, client_factory=factory, on_launched=self.clear_marks
            )
        )

    def clear_marks(self, _container_id: str | None = None) -> None:
        """After a launch: the cards it took are not marked for the next one."""
        self.marks.clear()
        table = self.query_one(LiveTable)
        for g in self._snapshot.gpus if self._snapshot is not None else ():
            if self.row_key(g) in table.row_keys:
                table.update_cell(self.row_key(g), "idx", self._idx_cell(g))

    def on_live_table_row_highlighted(self, event: LiveTable.RowHighlighted) -> None:
        self._show_details()

    def action_details(self) -> None:
        box = self.query_one("#gpu-details-box")
        box.focus()

    # -- signals to a GPU process ------------------------------------------------------------------

    class Signalled(Message):
        def __init__(self, message: str, error: bool) -> None:
            super().__init__()
            self.message, self.error = message, error

    def action_signal(self, sig: str) -> None:
        from gpudock.ui.screens.confirm import refused_readonly
        from gpudock.ui.screens.signal import ProcessPickScreen

        g = self.current_gpu()
        if g is None:
            return
        if not g.processes:
            self.notify(f"GPU {g.index} runs no process.", timeout=3)
            return
        if refused_readonly(self, f"sending SIG{sig} to a process"):
            return
        hmap = getattr(self.app, "holders", None)
        gh = hmap.gpu(g.uuid) if hmap is not None and g.uuid else None
        held = {hp.pid: hp for hp in gh.processes} if gh is not None else {}
        if len(g.processes) == 1:
            self._confirm_signal(g, g.processes[0], held, sig)
            return

        def picked(pid: int | None) -> None:
            p = next((p for p in g.processes if p.pid == pid), None)
            if p is not None:
                self._confirm_signal(g, p, held, sig)

        self.app.push_screen(ProcessPickScreen(g, held, sig), picked)

    def _confirm_signal(self, g: Gpu, p, held: dict, sig: str) -> None:
        from gpudock.ui.screens.confirm import ConfirmScreen
        from gpudock.ui.screens.signal import process_place, signal_body

        what = f"{p.command or '?'}, {process_place(held.get(p.pid))}"

        def answered(yes: bool | None) -> None:
            if yes:
                self._send_signal(p.pid, sig, p.start_time, what)
            else:
                self.notify("Cancelled: no signal sent.", timeout=3)

        body = signal_body(g, p, held.get(p.pid), sig)
        self.app.push_screen(
            ConfirmScreen(f"Send SIG{sig} to PID {p.pid}?", body, yes=f"send SIG{sig}", id="signal-confirm"), answered
        )

    @work(thread=True, group="gpu-signal", exit_on_error=False)
    def _send_signal(self, pid: int, sig: str, start_time: int | None, what: str) -> None:
        from gpudock.host.signals import SignalRefused
        from gpudock.session import SessionError

        try:
            sent = self.app.host.signal_process(pid, sig, start_time, what=what)
        except (SignalRefused, SessionError) as e:
            self.post_message(self.Signalled(str(e), True))
            return
        self.post_message(self.Signalled(f"Sent {sent.signal} to PID {pid} ({what}).", False))

    @on(Signalled)
    def _on_signalled(self, message: Signalled) -> None:
        self.notify(message.message, severity="error" if message.error else "information", timeout=8)
        refresh = getattr(self.app, "poll_soon", None)
        if refresh is not None:
            refresh()
