"""The fleet view: every host Prometheus knows, its GPUs and holders, on an app of its own.

Why an app of its own (:class:`FleetApp`) rather than a screen on the dashboard's stack: the
dashboard is one host's (it owns that host's NVML session, Docker watcher and poll), while the
fleet view runs anywhere that reaches Prometheus — an operator's laptop with no GPU, no Docker
and no driver — and polls nothing but Prometheus. Sharing the dashboard's app would start a host
poll it does not need, or make that poll optional everywhere. The two share the widgets
(:class:`~gpudock.ui.widgets.live_table.LiveTable`), the styles and the terminal driver.

Data flows one way, as on the dashboard: a one-shot thread worker calls the reader
(:class:`gpudock.fleet.reader.FleetReader`, plain Python; any object with ``read(detailed,
only) -> FleetView``) and posts :class:`FleetReady` (and :class:`FleetHostReady` for the host
whose screen is open); the app keeps the latest view and hands it to the
screens; the next read is scheduled when the last is done, so a slow Prometheus stretches the
period instead of queueing reads. A failed read shows the last good hosts marked stale, with the
reason in the header.

:class:`FleetScreen`: one row per host (sorted with ``s``/``S``, filtered with ``/``); Enter on a
host opens :class:`FleetHostScreen`: its GPUs and their holders, its doctor errors, and the
``ssh -t HOST gpudock`` line for a live session (``y`` copies it to the clipboard).
"""

from __future__ import annotations

import time

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input
from textual.worker import Worker, WorkerState

from gpudock.fleet.view import SORT_KEYS, FleetGpu, FleetHost, FleetView, filter_hosts, sort_hosts
from gpudock.model import mechanism_label
from gpudock.ui.app import _css_paths, _terminal_driver
from gpudock.ui.widgets.footer import Footer
from gpudock.ui.widgets.live_table import Column, LiveTable
from gpudock.ui.widgets.live_text import LiveText

WIDE = 120

SORT_LABEL = {
    "host": "host",
    "util": "GPU%",
    "mem": "memory",
    "temp": "temperature",
    "power": "power",
    "errors": "errors",
    "stale": "stale",
}


class FleetReady(Message):
    def __init__(self, view: FleetView) -> None:
        super().__init__()
        self.view = view


def _na(v, fmt: str = "{}") -> str:
    return "N/A" if v is None else fmt.format(v)


def _round(v: float | None) -> str:
    return "N/A" if v is None else f"{v:.0f}"


def _pct(v: float | None) -> Text:
    if v is None:
        return Text("N/A", style="dim")
    style = "bold red" if v >= 90 else "yellow" if v >= 50 else "green" if v > 0 else "dim"
    return Text(f"{v:>3.0f}", style=style)


def _gib(used: float | None, total: float | None) -> str:
    if used is None and total is None:
        return "N/A"
    u = "?" if used is None else f"{used / 1024:.0f}"
    t = "?" if total is None else f"{total / 1024:.0f}"
    return f"{u}/{t}"


def _holders_text(names: tuple[str, ...], width: int | None = None) -> str:
    if not names:
        return ""
    s = names[0] if len(names) == 1 else f"{names[0]} +{len(names) - 1}"
    if width is not None and len(s) > width:
        tail = "" if len(names) == 1 else f" +{len(names) - 1}"
        s = names[0][: max(1, width - len(tail) - 1)] + "…" + tail
    return s


def host_cells(h: FleetHost) -> dict[str, object]:
    """The host table's cells of one host, by column key."""
    errors = h.errors
    if h.stale:
        state = Text("stale", style="bold yellow")
    elif not h.gpu_count and h.nvml_error:
        state = Text("NVML", style="bold red")
    else:
        state = Text("ok", style="green")
    return {
        "host": Text(h.hostname, style="dim" if h.stale else ""),
        # held/GPUs; "?" where no gpudock exporter says who holds them (dcgm-exporter alone)
        "gpus": f"{'?' if h.held is None else h.held}/{h.gpu_count}",
        "util": _pct(h.utilization),
        "mem": _gib(h.memory_used_mib, h.memory_total_mib),
        "temp": _na(None if h.temperature_c is None else round(h.temperature_c), "{}C"),
        "power": _na(None if h.power_w is None else round(h.power_w)),
        "holders": _holders_text(h.holder_names, 24),
        "errors": Text(str(errors), style="bold red") if errors else Text("0", style="dim"),
        "state": state,
    }


def gpu_cells(g: FleetGpu, wide: bool) -> dict[str, object]:
    if g.error:
        util: object = Text(g.error.split(":")[0], style="bold red")
    else:
        util = _pct(g.utilization_gpu)
    bus = g.pci_bus_id or "N/A"
    if not wide and bus.count(":") == 2 and int(bus.split(":")[0], 16) == 0:
        bus = ":".join(bus.split(":")[1:]).lower()
    power = f"{_round(g.power_w)}/{_round(g.power_limit_w)}"
    xid = Text(f"Xid {g.xid}", style="bold red") if (g.xid or 0) > 0 else ""
    return {
        "idx": _na(g.index),
        "bus": bus,
        "dev": _na(g.device),
        "name": _na(g.name),
        "util": util,
        "mem": _gib(g.memory_used_mib, g.memory_total_mib),
        "temp": _na(None if g.temperature_c is None else round(g.temperature_c), "{}C"),
        "power": power,
        "holders": _holders_text(g.holder_names, 24) or Text("free", style="dim"),
        "xid": xid,
    }


HOST_COLUMNS = [
    Column("host", "HOST"),
    Column("gpus", "HELD"),
    Column("util", "GPU%"),
    Column("mem", "MEM GiB"),
    Column("temp", "TEMP"),
    Column("power", "POWER W"),
    Column("errors", "ERR"),
    Column("state", "STATE"),
    Column("holders", "HOLDERS", 10, fill=True),
]


def fleet_header(view: FleetView | None, shown: int, sort: str, reverse: bool, filt: str) -> Text:
    t = Text()
    if view is None:
        t.append("Reading the fleet from Prometheus…", style="dim")
        return t
    gpus = sum(h.gpu_count for h in view.hosts)
    stale = sum(1 for h in view.hosts if h.stale)
    t.append(f"{len(view.hosts)} hosts", style="bold")
    t.append(f", {gpus} GPUs", style="bold")
    if stale:
        t.append(f", {stale} stale", style="bold yellow")
    t.append(f"  from {view.prometheus}", style="dim")
    if view.taken_at:
        t.append(f"  at {time.strftime('%H:%M:%S', time.localtime(view.taken_at))}", style="dim")
    t.append(f"\nsorted by {SORT_LABEL[sort]}{' (reversed)' if reverse else ''}", style="dim")
    if filt:
        t.append(f"  filter {filt!r}: {shown} shown", style="bold cyan")
    if not view.ok:
        t.append("\n" + (view.error or "the read failed"), style="bold red")
        t.append("\n" + ("showing the last good read, marked stale" if view.hosts else "no earlier read to show"))
    for p in view.problems[:2]:
        t.append(f"\n! {p}", style="yellow")
    if len(view.problems) > 2:
        t.append(f"\n! and {len(view.problems) - 2} more (gpudock fleet --json lists them)", style="yellow")
    return t


class FleetScreen(Screen):
    """One row per host, live."""

    BINDINGS = [
        Binding("enter", "open_host", "Host", id="open-host"),
        Binding("s", "sort", "Sort", id="sort"),
        Binding("S", "reverse", "Reverse", id="reverse", show=False),
        # the keys of the GPU and Containers tables (gpudock.ui.widgets.find_sort), the same here
        Binding("full_stop", "sort", "Sort by the next column", id="sort-next", show=False),
        Binding("comma", "sort_previous", "Sort by the previous column", id="sort-previous", show=False),
        Binding("minus", "reverse", "Reverse the sort", id="sort-reverse", show=False),
        Binding("slash", "filter", "Filter", id="filter"),
        Binding("r", "refresh_now", "Refresh", id="refresh", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sort_key = "host"
        self.reverse = False
        self.filter_text = ""
        self._view: FleetView | None = None
        self._shown: list[FleetHost] = []

    def compose(self) -> ComposeResult:
        yield LiveText(fleet_header(None, 0, self.sort_key, self.reverse, ""), id="fleet-header")
        yield Input(placeholder="filter: host, model, container, image; is:stale is:errors is:held is:free",
                    id="fleet-filter")  # fmt: skip
        yield LiveTable(id="fleet-table", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(LiveTable)
        table.set_columns(HOST_COLUMNS)
        self.query_one("#fleet-filter", Input).display = False
        table.focus()
        view = getattr(self.app, "view", None)
        if view is not None:
            self.show_view(view)

    def show_view(self, view: FleetView) -> None:
        self._view = view
        hosts = filter_hosts(view.hosts, self.filter_text) if self.filter_text else list(view.hosts)
        hosts = sort_hosts(hosts, self.sort_key, self.reverse)
        self._shown = hosts
        table = self.query_one(LiveTable)
        keys = [h.hostname for h in hosts]
        wanted = set(keys)
        for key in [k for k in table.row_keys if k not in wanted]:
            table.remove_row(key)
        for h in hosts:
            table.set_row(h.hostname, host_cells(h))
        table.set_order(keys)
        self.query_one("#fleet-header", LiveText).show(
            fleet_header(view, len(hosts), self.sort_key, self.reverse, self.filter_text)
        )

    def current_host(self) -> FleetHost | None:
        key = self.query_one(LiveTable).cursor_row_key
        if key is None or self._view is None:
            return None
        return self._view.host(key)

    def action_open_host(self) -> None:
        h = self.current_host()
        if h is not None:
            self.app.push_screen(FleetHostScreen(h.hostname))

    def action_sort(self) -> None:
        self.sort_key = SORT_KEYS[(SORT_KEYS.index(self.sort_key) + 1) % len(SORT_KEYS)]
        self._again()

    def action_sort_previous(self) -> None:
        self.sort_key = SORT_KEYS[(SORT_KEYS.index(self.sort_key) - 1) % len(SORT_KEYS)]
        self._again()

    def action_reverse(self) -> None:
        self.reverse = not self.reverse
        self._again()

    def action_filter(self) -> None:
        box = self.query_one("#fleet-filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#fleet-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self._again()

    @on(Input.Submitted, "#fleet-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            event.input.display = False
        self.query_one(LiveTable).focus()

    def key_escape(self) -> None:
        box = self.query_one("#fleet-filter", Input)
        if box.has_focus or self.filter_text:
            box.value = ""
            box.display = False
            self.filter_text = ""
            self.query_one(LiveTable).focus()
            self._again()

    def action_refresh_now(self) -> None:
        self.app.read_soon()

    def _again(self) -> None:
        if self._view is not None:
            self.show_view(self._view)


def host_header(h: FleetHost | None, name: str, reading: bool = False, error: str | None = None) -> Text:
    t = Text()
    t.append(name, style="bold")
    if h is None:
        t.append("  is not in the last read (gone from Prometheus)", style="bold yellow")
        if error:
            t.append(f"\n{error}", style="bold red")
        return t
    t.append(f"  {h.gpu_count} GPUs", style="dim")
    if h.driver_version:
        t.append(f"  driver {h.driver_version}", style="dim")
    if h.source and h.source != "nvml":
        t.append(f"  [{h.source}]", style="bold magenta")
    t.append(f"  from {', '.join(h.sources) or '?'}", style="dim")
    if reading:
        t.append("  reading its GPUs…", style="dim italic")
    if error:
        t.append(f"\n{error}", style="bold red")
    if h.stale:
        t.append(f"\nstale: {h.stale_reason}", style="bold yellow")
    if h.nvml_error:
        t.append(f"\nNVML cannot start: {h.nvml_error}", style="bold red")
    if h.docker_up is False:
        t.append("\nits Docker engine cannot be read: the holders are unknown", style="yellow")
    for e in h.doctor_errors:
        t.append(f"\ndoctor error {e.id}: {e.title}", style="red")
    if h.doctor_warnings:
        t.append(f"\n{h.doctor_warnings} doctor warning(s)", style="yellow")
    t.append("\nlive session: ", style="dim")
    t.append(h.ssh_command, style="bold cyan")
    t.append("  (y copies it)", style="dim")
    return t


def gpu_holders_text(g: FleetGpu | None) -> Text:
    t = Text()
    if g is None:
        return t
    t.append(f"GPU {_na(g.index)}  {_na(g.name)}\n", style="bold")
    t.append(f"{g.uuid}  {_na(g.pci_bus_id)}  {_na(g.device)}  from {', '.join(g.sources)}\n", style="dim")
    if not g.holders:
        t.append(
            "held by no container" if "gpudock" in g.sources else "holders unknown (no gpudock exporter)", style="dim"
        )
        return t
    for h in g.holders:
        t.append("held by ", style="dim")
        t.append(h.container, style="bold")
        how = ", ".join(mechanism_label(m) for m in h.mechanism.split(","))
        t.append(f"  {h.container_id[:12]}  {h.image}  via {how}\n")
    return t


class FleetHostScreen(Screen):
    """One host of the fleet: its GPUs and who holds them, its doctor errors, the ssh line. Its
    GPUs come from a read of this host alone (asked for when the screen opens, and on each
    refresh while it is open); the header shows the host list's summary until then."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="back"),
        Binding("y", "copy_ssh", "Copy ssh line", id="copy-ssh"),
    ]

    def __init__(self, hostname: str) -> None:
        super().__init__()
        self.hostname = hostname
        self._host: FleetHost | None = None
        self._wide: bool | None = None

    def compose(self) -> ComposeResult:
        yield LiveText(host_header(None, self.hostname), id="fleet-host-header")
        yield LiveTable(id="fleet-gpu-table", zebra_stripes=True)
        with VerticalScroll(id="fleet-gpu-details-box"):
            yield LiveText("", id="fleet-gpu-details")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(LiveTable).focus()
        view = getattr(self.app, "view", None)
        if view is not None:
            self.show_view(view)
        detail = getattr(self.app, "host_views", {}).get(self.hostname)
        if detail is not None:
            self.show_host_view(detail)
        if isinstance(self.app, FleetApp):
            self.app.open_hostname = self.hostname
            self.app.read_host(self.hostname)

    def on_unmount(self) -> None:
        if isinstance(self.app, FleetApp) and self.app.open_hostname == self.hostname:
            self.app.open_hostname = None

    def on_resize(self) -> None:
        if self._host is not None and self._host.detailed:
            self._show_gpus(self._host)

    def show_view(self, view: FleetView) -> None:
        """The host list's read: the header, until this host's own read is in."""
        if self._host is None or not self._host.detailed:
            h = view.host(self.hostname)
            self._host = h
            self.query_one("#fleet-host-header", LiveText).show(host_header(h, self.hostname, reading=True))

    def show_host_view(self, view: FleetView) -> None:
        h = view.host(self.hostname)
        if h is None:  # this read failed with nothing kept, or the host is gone
            self.query_one("#fleet-host-header", LiveText).show(
                host_header(self._host, self.hostname, error=view.error)
            )
            return
        self._host = h
        self.query_one("#fleet-host-header", LiveText).show(host_header(h, self.hostname, error=view.error))
        self._show_gpus(h)

    def _show_gpus(self, h: FleetHost) -> None:
        table = self.query_one(LiveTable)
        wide = self.size.width >= WIDE
        if wide != self._wide:
            cols = [("idx", "#"), ("bus", "BUS"), ("dev", "DEV")] + ([("name", "NAME")] if wide else [])
            cols += [("util", "GPU%"), ("mem", "MEM GiB"), ("temp", "TEMP"), ("power", "POWER W"), ("xid", "XID")]
            table.set_columns([Column(k, label) for k, label in cols] + [Column("holders", "HOLDERS", 10, fill=True)])
            self._wide = wide
        keys = {g.uuid for g in h.gpus}
        for key in [k for k in table.row_keys if k not in keys]:
            table.remove_row(key)
        for g in h.gpus:
            table.set_row(g.uuid, gpu_cells(g, wide))
        self._details()

    def _details(self) -> None:
        key = self.query_one(LiveTable).cursor_row_key
        h = self._host
        g = next((g for g in h.gpus if g.uuid == key), None) if h is not None else None
        self.query_one("#fleet-gpu-details", LiveText).show(gpu_holders_text(g))

    def on_live_table_row_highlighted(self, event: LiveTable.RowHighlighted) -> None:
        self._details()

    def action_copy_ssh(self) -> None:
        line = f"ssh -t {self.hostname} gpudock"
        self.app.copy_to_clipboard(line)
        self.notify(f"copied: {line}", timeout=3)


class FleetHostReady(Message):
    def __init__(self, hostname: str, view: FleetView) -> None:
        super().__init__()
        self.hostname = hostname
        self.view = view


class FleetApp(App):
    """``gpudock fleet``: the fleet from Prometheus.

    Each read asks for the per-host summary (what the host list shows: a fraction of the per-GPU
    answer on a large fleet) and, while a host's screen is open, that host's GPUs."""

    TITLE = "gpudock fleet"
    CSS_PATH = _css_paths()
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [Binding("q", "quit", "Quit", id="quit")]

    def __init__(self, reader, interval: float = 10.0) -> None:
        super().__init__(driver_class=_terminal_driver())
        self.reader = reader
        self.interval = max(1.0, interval)
        self.view: FleetView | None = None
        self.host_views: dict[str, FleetView] = {}
        self.open_hostname: str | None = None  # the host whose screen is open: each read reads it too
        self._timer = None
        self._again = False

    def on_mount(self) -> None:
        self.push_screen(FleetScreen())
        self.read()

    @work(thread=True, exclusive=True, exit_on_error=False, group="fleet")
    def read(self) -> None:
        self.post_message(FleetReady(self.reader.read(detailed=False)))
        host = self.open_hostname
        if host is not None:
            self.post_message(FleetHostReady(host, self.reader.read(detailed=True, only=host)))

    @work(thread=True, exclusive=True, exit_on_error=False, group="fleet-host")
    def read_host(self, hostname: str) -> None:
        """One host's GPUs now (its screen just opened), without waiting for the next read."""
        self.post_message(FleetHostReady(hostname, self.reader.read(detailed=True, only=hostname)))

    @on(FleetReady)
    def _on_view(self, message: FleetReady) -> None:
        self.view = message.view
        for screen in self.screen_stack:
            update = getattr(screen, "show_view", None)
            if update is not None:
                update(message.view)
        self._schedule()

    @on(FleetHostReady)
    def _on_host_view(self, message: FleetHostReady) -> None:
        self.host_views[message.hostname] = message.view
        for screen in self.screen_stack:
            if isinstance(screen, FleetHostScreen) and screen.hostname == message.hostname:
                screen.show_host_view(message.view)

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(self.interval, self.read)

    def read_soon(self) -> None:
        if any(w.group == "fleet" and w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in self.workers):
            self._again = True
        else:
            self.read()

    @on(Worker.StateChanged)
    def _on_worker(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "fleet-host" and event.state == WorkerState.ERROR:
            self.notify(f"Reading the host failed: {event.worker.error}", severity="error", timeout=6)
        if event.worker.group != "fleet":
            return
        if event.state == WorkerState.ERROR:  # the reader turns its faults into views: this is a bug, say it
            self.notify(f"Reading the fleet failed: {event.worker.error}", severity="error", timeout=6)
            self._schedule()
        elif event.state == WorkerState.SUCCESS and self._again:
            self._again = False
            self.read()


def run_fleet(reader, interval: float) -> int:
    FleetApp(reader, interval).run()
    return 0
