"""The main screen: the live GPU table and the highlighted GPU's details.

The table is keyed by GPU UUID (index when NVML gave none) and updated in place: rows are added,
changed or removed by key and never cleared, so the operator's cursor and selection survive every
refresh, and only the rows whose cells changed are re-rendered and repainted
(:class:`gpudock.ui.widgets.live_table.LiveTable`). Narrow terminals (80 columns) get short forms of the
bus id and device node; nothing is dropped that an operator needs to tell cards apart.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer

from gpudock.model import Gpu, HostSnapshot
from gpudock.ui.widgets.docker_banner import DockerBanner, docker_message
from gpudock.ui.widgets.live_table import Column, Fit, LiveTable
from gpudock.ui.widgets.live_text import LiveText

WIDE = 120  # columns from which the table shows the full forms and the model name

# (key, label) in display order; the name column exists only when wide.
NARROW_COLUMNS = [
    ("idx", "#"),
    ("bus", "BUS"),
    ("dev", "DEV"),
    ("util", "GPU%"),
    ("mem%", "MEM%"),
    ("mem", "MEMORY GiB"),
    ("temp", "TEMP"),
    ("power", "POWER W"),
    ("holder", "HOLDER"),
]
WIDE_COLUMNS = [
    ("idx", "#"),
    ("bus", "PCI BUS ID"),
    ("dev", "DEVICE"),
    ("name", "NAME"),
    ("util", "GPU%"),
    ("mem%", "MEM%"),
    ("mem", "MEMORY MiB"),
    ("temp", "TEMP"),
    ("power", "POWER W"),
    ("holder", "HOLDER"),
]


# The holder column's least text width (its label is cut with "…" beyond it; "! " marks a
# conflict). It takes whatever width the other columns leave, so it is wider on a wider terminal.
HOLDER_WIDTH_NARROW = 10
HOLDER_WIDTH_WIDE = 16

# What the holder column says of a conflict on a GPU that no running container holds.
_CONFLICT_SHORT = {"no-container": "host process", "foreign-container": "other engine", "unclaimed": "not given"}


def holder_cell(gh, conflicts, width: int, stale: bool = False) -> str | Text:
    """The holder column's cell: the holders' label, and a "!" in bold red/yellow on a conflict;
    "?" and dim while the engine does not answer (the holders are the last known ones)."""
    if gh is None:
        return ""
    if stale:
        return Text(f"? {gh.label(width - 2)}".rstrip(), style="dim")
    if not conflicts:
        return gh.label(width)
    label = gh.label(width - 2) or _CONFLICT_SHORT.get(conflicts[0].kind, conflicts[0].kind)
    severe = any(c.kind in ("shared", "no-container", "unclaimed") for c in conflicts)
    return Text(f"! {label}", style="bold red" if severe else "bold yellow")


def _na(v, fmt: str = "{}") -> str:
    return "N/A" if v is None else fmt.format(v)


def _short_bus(bus: str | None) -> str:
    if not bus:
        return "N/A"
    s = bus.lower().split(":")
    if len(s) == 3 and int(s[0], 16) == 0:
        return f"{s[1]}:{s[2]}"
    return bus.lower()


def _util(v: int | None) -> Text:
    if v is None:
        return Text("N/A", style="dim")
    style = "bold red" if v >= 90 else "yellow" if v >= 50 else "green" if v > 0 else "dim"
    return Text(f"{v:>3}", style=style)


def gpu_cells(g: Gpu, wide: bool, holder: str = "") -> dict[str, object]:
    """The table cells of one GPU, by column key."""
    if g.error:
        err = Text(g.error.split(":")[0], style="bold red")
        base = {
            "idx": str(g.index),
            "bus": g.pci_bus_id or "N/A" if wide else _short_bus(g.pci_bus_id),
            "dev": _na(g.device) if wide else _na(g.minor, "nvidia{}"),
            "name": _na(g.name),
            "util": err,
            "mem%": "",
            "mem": "",
            "temp": "",
            "power": "",
            "holder": holder,
        }
        return base
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
        "bus": (g.pci_bus_id or "N/A") if wide else _short_bus(g.pci_bus_id),
        "dev": _na(g.device) if wide else _na(g.minor, "nvidia{}"),
        "name": _na(g.name),
        "util": _util(g.utilization_gpu),
        "mem%": _util(g.utilization_memory),
        "mem": mem,
        "temp": _na(g.temperature_c, "{}C"),
        "power": power,
        "holder": holder,
    }


def gpu_details(g: Gpu, holders=None, conflicts=(), docker=None) -> Text:
    """The details of one GPU, as the operator reads them under the table.

    ``holders``: its :class:`gpudock.host.holders.GpuHolders` (who holds it, its processes' containers);
    ``conflicts``: what is wrong on it (``HoldersMap.conflicts_for_gpu``); ``docker``: the engine's
    :class:`~gpudock.host.docker.DockerStatus` (when it cannot be read, the holders are unknown).
    """
    t = Text()

    def row(label: str, value: str, style: str = "") -> None:
        t.append(f"{label:<12}", style="bold")
        t.append(f"{value}\n", style=style)

    row("GPU", f"{g.index}  {_na(g.name)}")
    if g.error:
        row("Error", g.error, "bold red")
    row("UUID", _na(g.uuid))
    row("Bus / minor", f"{_na(g.pci_bus_id)}  minor {_na(g.minor)}  {_na(g.device)}")
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
        f"mem {_na(g.clock_mem_mhz)}/{_na(g.clock_mem_max_mhz)} MHz",
    )
    for m in g.mig_devices:
        row(f"  MIG {m.index}", f"{_na(m.profile):<8} {m.uuid}  {_na(m.memory_used_mib)}/{_na(m.memory_total_mib)} MiB")
    if docker is not None and not getattr(docker, "ok", True):
        t.append(f"{'Held by':<12}", style="bold")
        t.append("unknown: ", style="bold yellow")
        t.append(f"{docker_message(docker)}\n", style="yellow")
    elif holders is not None:
        if getattr(docker, "stale_since", None) is not None:
            t.append(f"{'Docker':<12}", style="bold yellow")
            t.append(f"{docker_message(docker)}\n", style="yellow")
        _holder_rows(t, holders)
    held = {p.pid: p for p in holders.processes} if holders is not None else {}
    if g.processes:
        t.append(f"{'Processes':<12}", style="bold")
        t.append(f"{len(g.processes)}\n")
        for p in g.processes:
            where = f" on {p.mig_uuid[:12]}…" if p.mig_uuid else ""
            hp = held.get(p.pid)
            bad = hp is not None and (hp.claimed is False or hp.location in ("host", "foreign-container"))
            t.append(
                f"{'!' if bad else ' '} {p.pid:>8} {_na(p.used_memory_mib):>7} MiB  {p.kind[0].upper()}  ",
                style="bold red" if bad else "",
            )
            if hp is not None:
                _process_place(t, hp)
            t.append(f"{_na(p.command)}{where}\n")
    elif not g.error:
        row("Processes", "none")
    for c in conflicts:
        t.append(f"{'Conflict':<12}", style="bold red")
        t.append(f"{c.message}\n", style="red")
    return t


def _holder_rows(t: Text, gh) -> None:
    """'Held by' lines: each container holding the GPU, how (mechanism) and what it asked for."""
    if not gh.holders:
        t.append(f"{'Held by':<12}", style="bold")
        t.append("no container\n", style="dim")
        return
    for i, h in enumerate(gh.holders):
        t.append(f"{'Held by' if i == 0 else '':<12}", style="bold")
        t.append(h.name, style="bold" if h.running else "dim")
        t.append(f"  {', '.join(h.mechanisms)}  {' '.join(h.selectors)}")
        if h.mig_uuids:
            t.append(f"  MIG {' '.join(m[:12] + '…' for m in h.mig_uuids)}")
        if not h.running:
            t.append(f"  ({h.status})", style="dim")
        t.append("\n")


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


def header_text(snap: HostSnapshot | None, banner: str | None) -> Text:
    t = Text()
    if snap is None:
        t.append("Reading the GPUs…", style="dim")
        return t
    if snap.nvml_failure:
        f = snap.nvml_failure
        t.append(f"NVML could not start: {f.nvml_text}\n", style="bold red")
        t.append(f.message)
        return t
    t.append("Driver ", style="dim")
    t.append(_na(snap.driver_version), style="bold")
    t.append("  CUDA ", style="dim")
    t.append(_na(snap.cuda_driver_version), style="bold")
    t.append("  NVML ", style="dim")
    t.append(_na(snap.nvml_version), style="bold")
    t.append(f"  {len(snap.gpus)} GPUs", style="dim")
    if snap.source != "nvml":
        t.append(f"  [{snap.source}]", style="bold magenta")
    if banner:
        t.append("\n" + banner, style="yellow")
    return t


class GpuScreen(Screen):
    """Every GPU, live."""

    BINDINGS = [
        Binding("enter", "details", "Details", id="details", show=False),
        Binding("space", "toggle_mark", "Mark", id="mark"),
        Binding("l", "launch", "Launch", id="launch"),
        Binding("c", "containers", "Containers", id="containers"),
    ]

    def __init__(self, banner: str | None = None) -> None:
        super().__init__()
        self.banner = banner
        self._wide: bool | None = None
        self._snapshot: HostSnapshot | None = None
        self.marks: list[str] = []  # row keys of the GPUs marked for a launch, in marking order

    def compose(self) -> ComposeResult:
        yield LiveText(header_text(None, self.banner), id="host-header")
        yield DockerBanner(id="docker-banner")
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
            stale = getattr(hmap.docker, "stale_since", None) is not None
            return Fit(lambda width: holder_cell(gh, conflicts, width, stale), (gh, conflicts, stale))
        holders = getattr(self.app, "holders_by_gpu", None)
        if not holders or not g.uuid:
            return ""
        return holders.get(g.uuid, "")

    def show_snapshot(self, snap: HostSnapshot) -> None:
        self._snapshot = snap
        self.query_one("#host-header", LiveText).show(header_text(snap, self.banner))
        hmap = getattr(self.app, "holders", None)
        self.query_one("#docker-banner", DockerBanner).show_status(hmap.docker if hmap is not None else None)
        table = self.query_one(LiveTable)
        wide = self.size.width >= WIDE
        if wide != self._wide:
            self._rebuild_columns(table, wide)
        seen = set()
        for g in snap.gpus:
            key = self.row_key(g)
            seen.add(key)
            cells = gpu_cells(g, wide, self.holder_text(g))
            cells["idx"] = self._idx_cell(g)
            table.set_row(key, cells)  # repaints the row only when a cell differs
        for key in [k for k in table.row_keys if k not in seen]:
            table.remove_row(key)
        self._show_details()

    def _rebuild_columns(self, table: LiveTable, wide: bool) -> None:
        # Only on a change of width class (rare); the table keeps the cursor on its GPU.
        # The holder column fills the width the others leave (its labels are cut to it): a width
        # that grew with whatever label happened to pass would make the table jump between refreshes.
        holder_width = HOLDER_WIDTH_WIDE if wide else HOLDER_WIDTH_NARROW
        table.set_columns(
            [
                Column(key, label, holder_width, fill=True) if key == "holder" else Column(key, label)
                for key, label in (WIDE_COLUMNS if wide else NARROW_COLUMNS)
            ]
        )
        self._wide = wide

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
        if g is not None and hmap is not None and g.uuid:
            text = gpu_details(g, hmap.gpu(g.uuid), hmap.conflicts_for_gpu(g.uuid), hmap.docker)
        else:
            text = gpu_details(g) if g else Text()
        self.query_one("#gpu-details", LiveText).show(text)

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
        self.app.push_screen(LaunchScreen(self._snapshot, gpus, root=self.app.host.root, client_factory=factory))

    def action_containers(self) -> None:
        from gpudock.ui.screens.containers import ContainerScreen

        self.app.push_screen(ContainerScreen())

    def on_live_table_row_highlighted(self, event: LiveTable.RowHighlighted) -> None:
        self._show_details()

    def action_details(self) -> None:
        box = self.query_one("#gpu-details-box")
        box.focus()
