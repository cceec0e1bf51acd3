"""The container panel: every running (``a``: every) container with the GPUs it holds.

A table keyed by container id (:class:`gpudock.ui.widgets.live_table.LiveTable`), updated in place
on each refresh from the app's holders map (``app.holders``, :class:`gpudock.host.holders.HoldersMap`):
only rows whose cells changed are re-rendered, rows come and go by key, the cursor stays on its
container. Under it, the highlighted
container's claims (how it asked for a GPU, and the GPU it got or why none), its GPU processes (host
PID, PID inside the container, GPU, memory, command) and its conflicts.

GPU processes that run in no container, or in a container this Docker engine does not know, get
rows of their own ("host", or the foreign container's short id): they are conflicts, and this is
where an operator looks for who uses a card.

Acting on the highlighted container, with k9s's keys where they fit: ``l`` its logs, followed
(:mod:`gpudock.ui.screens.logs`), ``s`` a shell in it (``docker exec -it CONTAINER sh``, the docker
CLI run as a child process with the terminal while the dashboard is suspended), ``S`` stop, ``R``
restart, ``ctrl+d`` remove — each of these three after a confirmation that names the container and
the GPUs it holds (index, bus id, node). The work is :mod:`gpudock.launch.lifecycle`'s, through the
session (which refuses it in a read-only session), in worker threads.
"""

from __future__ import annotations

import subprocess

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message

from gpudock.launch.lifecycle import ACTIONS
from gpudock.model import MECHANISM_LABELS, HostSnapshot
from gpudock.ui.screens.confirm import ConfirmScreen, refused_readonly
from gpudock.ui.updates import LiveScreen
from gpudock.ui.widgets.docker_banner import DockerBanner, docker_message
from gpudock.ui.widgets.find_sort import FIND_SORT_BINDINGS, FindBar, FindSort, find_status
from gpudock.ui.widgets.footer import Footer
from gpudock.ui.widgets.live_table import Column, Fit, LiveTable
from gpudock.ui.widgets.live_text import LiveText

WIDE = 110

COLUMNS = [
    ("name", "NAME"),
    ("status", "STATUS"),
    ("image", "IMAGE"),
    ("gpus", "GPUS"),
    ("how", "HOW"),
    ("procs", "PROCS"),
]
# (name, image, gpus) widths: narrow (80 columns), wide. The image column fills what the others
# leave (its width here is its least), so a long image reference shows whole on a wide terminal.
NARROW_WIDTHS = (16, 12, 9)
WIDE_WIDTHS = (30, 24, 16)

# Mechanisms, short (the HOW column); the details spell them out.
# Mechanisms in the HOW column: the one name every view gives them (gpudock.model.MECHANISM_LABELS).
MECH_SHORT = MECHANISM_LABELS
# How a claim reads in the details: as the operator would have written it.
MECH_LONG = {
    "device": "--device ",
    "runtime-env": "NVIDIA_VISIBLE_DEVICES=",
    "device-request": "--gpus ",
    "cdi": "CDI ",
    "privileged": "",  # the selector is "--privileged": it can reach the GPU, it does not hold it
}

HOST_KEY = "host"  # the row of GPU processes that run in no container
FOREIGN_PREFIX = "foreign:"  # rows of containers the engine does not know


def _cut(s: str, width: int) -> str:
    return s if len(s) <= width else s[: max(1, width - 1)] + "…"


def _mib(v) -> str:
    return "N/A" if v is None else f"{v} MiB"


def _severe(conflicts) -> bool:
    # holds-all and privileged are warnings: the container can reach cards, it is not misusing one
    return any(c.kind not in ("holds-all", "privileged") for c in conflicts)


def container_cells(cg, conflicts, wide: bool) -> dict[str, object]:
    """The table cells of one container (:class:`ContainerGpus`), by column key."""
    wn, _, wg = WIDE_WIDTHS if wide else NARROW_WIDTHS
    c = cg.container
    name: object = _cut(c.name, wn)
    if conflicts:
        name = Text(_cut(f"! {c.name}", wn), style="bold red" if _severe(conflicts) else "bold yellow")
    status = Text(c.status, style="green" if c.status == "running" else "dim")
    gpus: object = _cut(cg.label(), wg) or "-"
    if cg.unresolved:
        gpus = Text(_cut((cg.label() + " ?" if cg.label() else "?"), wg), style="bold red")
    elif cg.holds_all and c.status in ("running", "paused", "restarting"):
        gpus = Text(str(gpus), style="bold yellow")
    if cg.privileged and cg.reachable:
        # --privileged: it can open every other card too (it does not hold them): "any (8)", "2 +7"
        held = cg.label()
        gpus = Text(
            _cut(f"{held} +{len(cg.reachable)}" if held else f"any ({len(cg.reachable)})", wg),
            style="bold yellow" if c.status in ("running", "paused", "restarting") else "yellow",
        )
    how = "+".join(dict.fromkeys(MECH_SHORT.get(m, m) for g in cg.gpus for m in g.mechanisms))
    if not how and cg.unresolved:
        how = "+".join(dict.fromkeys(MECH_SHORT.get(cl.mechanism, cl.mechanism) for cl in cg.unresolved))
    if cg.privileged:
        how = "+".join(dict.fromkeys([*filter(None, how.split("+")), MECH_SHORT["privileged"]]))
    return {
        "name": name,
        "status": status,
        "image": Fit(lambda width, image=c.image: _cut(image, width), c.image),
        "gpus": gpus,
        "how": how or "-",
        "procs": str(len(cg.processes)) if cg.processes else "-",
    }


def outsider_rows(hmap) -> dict[str, tuple[str, list]]:
    """Row key → (label, processes) for GPU processes in no container or in an unknown one."""
    out: dict[str, tuple[str, list]] = {}
    for g in hmap.gpus:
        for p in g.processes:
            if p.location == "host":
                out.setdefault(HOST_KEY, ("(host)", []))[1].append(p)
            elif p.location == "foreign-container" and p.container_id:
                out.setdefault(FOREIGN_PREFIX + p.container_id, (p.container_id[:12], []))[1].append(p)
    return out


def outsider_cells(key: str, label: str, procs: list, wide: bool) -> dict[str, object]:
    wn, _, wg = WIDE_WIDTHS if wide else NARROW_WIDTHS
    host = key == HOST_KEY
    gpus = ",".join(str(i) for i in sorted({p.gpu_index for p in procs}))
    return {
        "name": Text(_cut(f"! {label}", wn), style="bold red" if host else "bold yellow"),
        "status": Text("no ctr" if host else "unknown", style="bold red" if host else "yellow"),
        "image": "" if host else "(not this engine)",
        "gpus": _cut(gpus, wg),
        "how": "-",
        "procs": str(len(procs)),
    }


def _gpu_name(hmap, uuid: str | None) -> str:
    g = hmap.gpu(uuid) if uuid else None
    if g is None:
        return "?"
    minor = f" (minor {g.minor})" if g.minor is not None else ""
    return f"GPU {g.index}{minor}"


def _process_lines(t: Text, procs, with_container: bool) -> None:
    t.append(f"  {'HOST PID':>8} {'CTR PID':>7} {'GPU':>3} {'MEMORY':>10}  COMMAND\n", style="bold dim")
    for p in procs:
        bad = p.claimed is False or p.location in ("host", "foreign-container")
        cpid = "-" if p.container_pid is None else str(p.container_pid)
        t.append(
            f"{'!' if bad else ' '} {p.pid:>8} {cpid:>7} {p.gpu_index:>3} {_mib(p.used_memory_mib):>10}  ",
            style="bold red" if bad else "",
        )
        if with_container and p.container_name:
            t.append(f"[{p.container_name}] ", style="cyan")
        t.append(p.command or "?")
        if p.claimed is False:
            t.append("  (GPU not given to its container)", style="bold red")
        t.append("\n")


def container_details(cg, hmap) -> Text:
    """The highlighted container: what it asked for and got, its GPU processes, its conflicts."""
    t = Text()
    c = cg.container

    def label(s: str, style: str = "bold") -> None:
        t.append(f"{s:<11}", style=style)

    label("Container")
    t.append(c.name, style="bold")
    t.append(f"  {c.status}", style="green" if c.status == "running" else "dim")
    t.append(f"  {c.image}")
    if c.runtime:
        t.append(f"  runtime {c.runtime}", style="dim")
    t.append("\n")
    if c.error:
        label("Error", "bold red")
        t.append(f"{c.error}\n", style="red")
    if not c.claims:
        label("Claims")
        t.append("none: holds no GPU\n", style="dim")
    for i, cl in enumerate(c.claims):
        label("Claims" if i == 0 else "")
        t.append(f"{MECH_LONG.get(cl.mechanism, cl.mechanism + ' ')}{cl.selector}")
        if cl.gpu_uuid is None:
            t.append(f"  ✗ {cl.error or 'no such GPU'}\n", style="bold red")
            continue
        t.append(f"  → {_gpu_name(hmap, cl.gpu_uuid)}", style="green")
        if cl.mig_uuid:
            t.append(f" MIG {cl.mig_uuid[:16]}…")
        t.append("\n")
    if cg.holds_all:
        label("GPUs")
        t.append(f"all {len(cg.gpus)} GPUs of this host\n", style="bold yellow")
    if cg.processes:
        label("Processes")
        t.append(f"{len(cg.processes)}\n")
        _process_lines(t, cg.processes, with_container=False)
    elif c.status == "running":
        label("Processes")
        t.append("none on a GPU\n", style="dim")
    for conflict in hmap.conflicts_for_container(c.id):
        label("Conflict", "bold red")
        t.append(f"{conflict.message}\n", style="red")
    return t


def outsider_details(key: str, label: str, procs: list, hmap) -> Text:
    t = Text()
    if key == HOST_KEY:
        t.append("GPU processes in no container", style="bold red")
        t.append(" (started on the host, outside Docker)\n")
    else:
        cid = key[len(FOREIGN_PREFIX) :]
        t.append(f"Container {cid[:12]}", style="bold yellow")
        t.append(" is not known to this Docker engine (Kubernetes, containerd, podman or another engine?)\n")
    _process_lines(t, procs, with_container=False)
    pids = {p.pid for p in procs}
    for conflict in hmap.conflicts:
        if conflict.pid in pids:
            t.append(f"{'Conflict':<11}", style="bold red")
            t.append(f"{conflict.message}\n", style="red")
    return t


def header_text(hmap, show_all: bool) -> Text:
    t = Text()
    if hmap is None:
        t.append("Reading the containers…", style="dim")
        return t
    n = len(hmap.containers)
    with_gpus = sum(1 for c in hmap.containers if c.gpus)
    t.append(f"{n} {'containers (all states)' if show_all else 'running containers'}", style="bold")
    t.append(f"  {with_gpus} with GPUs", style="dim")
    if hmap.conflicts:
        t.append(f"  ! {len(hmap.conflicts)} conflict{'s' if len(hmap.conflicts) != 1 else ''}", style="bold red")
    st = hmap.docker
    if st is not None and getattr(st, "ok", False) and getattr(st, "engine_version", None):
        t.append(f"  Docker {st.engine_version}", style="dim")
    return t


# Find and sort: the columns of counts sort highest first, the others A to Z; the status by how
# alive a container is (running first), the GPUs by the first GPU's index.
CONTAINER_COUNTS = {"procs"}
STATUS_RANK = {"running": 0, "restarting": 1, "paused": 2, "created": 3, "exited": 4, "dead": 5}


def container_find_text(cg) -> str:
    """What ``/`` finds a container by: its row's text (name, status, image, GPUs, how), its id and
    runtime, and its GPU processes' commands."""
    c = cg.container
    how = " ".join(MECH_SHORT.get(m, m) for g in cg.gpus for m in g.mechanisms)
    words = [c.name, c.id[:12], c.status, c.image, cg.label(), how, c.runtime or ""]
    words += [p.command or "" for p in cg.processes]
    return " ".join(words)


def outsider_find_text(key: str, label: str, procs) -> str:
    words = [label, "host no ctr" if key == HOST_KEY else "unknown (not this engine)"]
    words += [p.command or "" for p in procs]
    return " ".join(words)


def container_sort_value(item, cells: dict, column: str) -> object:
    """A row's value in a column, for sorting (``item``: its ContainerGpus, or (label, processes)
    for a row of processes outside Docker)."""
    outsider = isinstance(item, tuple)
    if column == "name":
        return (item[0] if outsider else item.container.name).lower()
    if column == "status":
        return 9 if outsider else STATUS_RANK.get(item.container.status, 8)
    if column == "image":
        return None if outsider else item.container.image.lower()
    if column == "gpus":
        indices = [p.gpu_index for p in item[1]] if outsider else [g.index for g in item.gpus]
        indices = [i for i in indices if i is not None]
        return min(indices) if indices else None
    if column == "how":
        how = str(cells.get("how", ""))
        return None if how in ("", "-") else how
    if column == "procs":
        return len(item[1]) if outsider else len(item.processes)
    return None


class ContainerScreen(FindSort, LiveScreen):
    """The containers and the GPUs they hold, live."""

    BINDINGS = [
        *FIND_SORT_BINDINGS,  # its Escape first: clearing the filter comes before going back
        Binding("escape", "back", "Back", id="back"),
        Binding("a", "toggle_all", "All/running", id="toggle-all"),
        # acting on the highlighted container (see "actions on a container" below)
        Binding("l", "logs", "Logs", id="container-logs"),
        Binding("s", "shell", "Shell", id="container-shell"),
        Binding("S", "container_action('stop')", "Stop", id="container-stop"),
        Binding("R", "container_action('restart')", "Restart", show=False, id="container-restart"),
        Binding("ctrl+d", "container_action('remove')", "Remove", show=False, id="container-remove"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._wide: bool | None = None
        self._details: dict[str, object] = {}  # row key -> what to show for it

    def compose(self) -> ComposeResult:
        yield LiveText(header_text(None, False), id="containers-header")
        yield DockerBanner(id="containers-docker-banner")
        yield FindBar(id="containers-find")
        yield LiveTable(id="containers-table", zebra_stripes=True)
        with VerticalScroll(id="container-details-box"):
            yield LiveText("", id="container-details")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(LiveTable).focus()
        snap = getattr(self.app, "snapshot", None)
        if snap is not None:
            self.show_snapshot(snap)

    def on_resize(self) -> None:
        snap = getattr(self.app, "snapshot", None)
        if snap is not None:
            self.show_snapshot(snap)

    # -- rendering -------------------------------------------------------------------------------

    def show_snapshot(self, snap: HostSnapshot | None = None) -> None:
        """Called by the app on every refresh; reads the holders map joined with ``snap``."""
        hmap = getattr(self.app, "holders", None)
        show_all = bool(getattr(self.app, "show_all_containers", False))
        self.query_one(DockerBanner).show_status(hmap.docker if hmap is not None else None)
        table = self.query_one(LiveTable)
        wide = self.size.width >= WIDE
        if wide != self._wide:  # the table keeps the cursor on its container
            least = (WIDE_WIDTHS if wide else NARROW_WIDTHS)[1]
            table.set_columns(
                [Column(key, lbl, least, fill=True) if key == "image" else Column(key, lbl) for key, lbl in COLUMNS]
            )
            self._wide = wide
        rows: dict[str, dict[str, object]] = {}
        details: dict[str, object] = {}
        if hmap is not None:
            for cg in hmap.containers:
                rows[cg.id] = container_cells(cg, hmap.conflicts_for_container(cg.id), wide)
                details[cg.id] = cg
            for key, (lbl, procs) in outsider_rows(hmap).items():
                rows[key] = outsider_cells(key, lbl, procs, wide)
                details[key] = (lbl, procs)
        # A new row is appended; when it belongs among the others (a container started or renamed,
        # `a` showing stopped ones, a process outside Docker) the rows are laid out again: in the
        # engine's order (running first, by name; outsiders last) unless sorted, the cursor staying
        # on its row. Rows the filter leaves out are removed by key and come back when it changes.
        self._show_container_rows(table, rows, details)
        header = header_text(hmap, show_all)
        line = find_status(self.find_text, table.row_count, len(rows), "rows", self.sort_note(table))
        self.query_one("#containers-header", LiveText).show(header + Text("\n") + line if line else header)
        self._details = details
        self._hmap = hmap
        self._select_launched()
        self._show_details()

    # -- find and sort (gpudock.ui.widgets.find_sort) ---------------------------------------------

    def sort_columns(self) -> list[tuple[str, str, bool]]:
        return [(key, label, key in CONTAINER_COUNTS) for key, label in COLUMNS]

    def find_sort_changed(self) -> None:
        self.show_snapshot(getattr(self.app, "snapshot", None))

    def _show_container_rows(self, table: LiveTable, rows: dict[str, dict], details: dict[str, object]) -> None:
        def text(key: str) -> str:
            item = details[key]
            return outsider_find_text(key, *item) if isinstance(item, tuple) else container_find_text(item)

        def value(key: str, column: str) -> object:
            return container_sort_value(details[key], rows[key], column)

        self.show_rows(table, rows, self.arrange_rows(list(rows), text, value))

    def current_key(self) -> str | None:
        return self.query_one(LiveTable).cursor_row_key

    def _show_details(self) -> None:
        key = self.current_key()
        item = self._details.get(key) if key is not None else None
        hmap = getattr(self, "_hmap", None)
        docker = hmap.docker if hmap is not None else None
        if docker is not None and not getattr(docker, "ok", True) and docker.state != "connecting":
            text = Text("Docker: ", style="bold red")
            text.append(docker_message(docker), style="yellow")
        elif item is None or hmap is None:
            if self.find_text and self._details:
                text = Text(f"Nothing matches {self.find_text!r}: escape clears the filter, / changes it.", style="dim")
            elif hmap is not None and not hmap.containers and not self._details:
                text = Text(
                    "No running containers."
                    if not getattr(self.app, "show_all_containers", False)
                    else "No containers.",
                    style="dim",
                )
                if not getattr(self.app, "show_all_containers", False):
                    text.append("  a: show stopped and created ones too", style="dim")
            else:
                text = Text()
        elif isinstance(item, tuple):
            text = outsider_details(key, item[0], item[1], hmap)
        else:
            text = container_details(item, hmap)
        self.query_one("#container-details", LiveText).show(text)

    def on_live_table_row_highlighted(self, event: LiveTable.RowHighlighted) -> None:
        self._show_details()

    # -- actions -----------------------------------------------------------------------------------

    def action_toggle_all(self) -> None:
        app = self.app
        app.show_all_containers = not getattr(app, "show_all_containers", False)
        refresh = getattr(app, "poll_soon", None) or getattr(app, "action_refresh_now", None)
        if refresh is not None:
            refresh()

    def action_back(self) -> None:
        self.app.pop_screen()

    # -- actions on a container ------------------------------------------------------------------

    class ActionDone(Message):
        def __init__(self, message: str, error: bool) -> None:
            super().__init__()
            self.message, self.error = message, error

    class ShellReady(Message):
        def __init__(self, argv: list[str] | None, name: str, error: str | None) -> None:
            super().__init__()
            self.argv, self.name, self.error = argv, name, error

    def selected_container(self):
        """The highlighted container (its ContainerGpus), or None with a notice saying why."""
        item = self._details.get(self.current_key() or "")
        if item is None:
            self.notify("No container highlighted.", severity="warning", timeout=3)
            return None
        if isinstance(item, tuple):
            self.notify(
                "This row is GPU processes outside this engine's containers: there is no container to act on "
                "(signal a process from the GPU screen: T or K).",
                severity="warning",
                timeout=6,
            )
            return None
        return item

    def action_logs(self) -> None:
        from gpudock.ui.screens.logs import ContainerLogScreen

        cg = self.selected_container()
        if cg is not None:
            self.app.push_screen(ContainerLogScreen(cg.id, cg.name, cg.container.image))

    def action_container_action(self, action: str) -> None:
        cg = self.selected_container()
        if cg is None or refused_readonly(self, f"{ACTIONS[action][2]} {cg.name}"):
            return
        c = cg.container
        force = action == "remove" and c.status in ("running", "paused", "restarting")
        title = f"{action.capitalize()} container {c.name}?"

        def answered(yes: bool | None) -> None:
            if yes:
                self._act(c.id, c.name, action, force)
            else:
                self.notify("Cancelled: nothing changed.", timeout=3)

        body = action_body(cg, getattr(self, "_hmap", None), action)
        self.app.push_screen(ConfirmScreen(title, body, yes=action, id="container-confirm"), answered)

    @work(thread=True, group="container-action", exit_on_error=False)
    def _act(self, cid: str, name: str, action: str, force: bool) -> None:
        from gpudock.launch.lifecycle import ActionError
        from gpudock.session import SessionError

        try:
            done = self.app.host.container_action(cid, action, expect_id=cid, force=force, shown_as=name)
        except (ActionError, SessionError) as e:
            self.post_message(self.ActionDone(str(e), True))
            return
        self.post_message(self.ActionDone(done.message, False))

    @on(ActionDone)
    def _on_action_done(self, message: ActionDone) -> None:
        self.notify(message.message, severity="error" if message.error else "information", timeout=8)
        refresh = getattr(self.app, "poll_soon", None)
        if refresh is not None:
            refresh()

    def action_shell(self) -> None:
        cg = self.selected_container()
        if cg is None or refused_readonly(self, f"a shell in {cg.name}"):
            return
        self._prepare_shell(cg.id, cg.name)

    @work(thread=True, group="container-shell", exit_on_error=False)
    def _prepare_shell(self, cid: str, name: str) -> None:
        from gpudock.launch.lifecycle import ActionError
        from gpudock.session import SessionError

        try:
            argv = self.app.host.shell_argv(cid, expect_id=cid, shown_as=name)
        except (ActionError, SessionError) as e:
            self.post_message(self.ShellReady(None, name, str(e)))
            return
        self.post_message(self.ShellReady(argv, name, None))

    @on(ShellReady)
    def _on_shell_ready(self, message: ShellReady) -> None:
        from textual.app import SuspendNotSupported

        from gpudock.launch.lifecycle import explain_exec

        if message.argv is None:
            self.notify(message.error or "no shell", severity="error", timeout=10)
            return
        try:
            with self.app.suspend():
                # The docker CLI, as a child with the terminal; never a host shell. Its own messages
                # (the engine's refusals) go to stderr: kept, to say them in the dashboard after.
                done = subprocess.run(message.argv, stderr=subprocess.PIPE, check=False)
        except SuspendNotSupported:
            self.notify(
                f"This terminal cannot hand itself over: run {' '.join(message.argv[3:])} yourself.",
                severity="error",
                timeout=10,
            )
            return
        except OSError as e:
            self.notify(f"Cannot run the docker command: {e.strerror or e}", severity="error", timeout=10)
            return
        problem = explain_exec(message.name, done.returncode, done.stderr.decode("utf-8", "replace"))
        if problem:
            self.notify(problem, severity="error", timeout=12)
        else:
            self.notify(f"Shell in {message.name} closed.", timeout=3)
        refresh = getattr(self.app, "poll_soon", None)
        if refresh is not None:
            refresh()

    def _select_launched(self) -> None:
        """Put the cursor on the container the launch form just started, once it has a row."""
        cid = getattr(self.app, SELECT_ATTR, None)
        table = self.query_one(LiveTable)
        if cid and cid in table.row_keys:
            table.move_cursor_to_key(cid)
            setattr(self.app, SELECT_ATTR, None)


# The app attribute the launch form sets to the id of the container it started (select_launched).
SELECT_ATTR = "launched_container_id"


def select_launched(app, container_id: str) -> None:
    """The Containers screen puts its cursor on ``container_id`` when it next shows it."""
    setattr(app, SELECT_ATTR, container_id)


def action_body(cg, hmap, action: str) -> Text:
    """What a stop/restart/remove confirmation says: the container, what it holds, what follows."""
    from gpudock.launch.lifecycle import holdings

    c = cg.container
    t = Text()
    t.append(c.name, style="bold")
    t.append(f"  {c.status}", style="green" if c.status == "running" else "dim")
    t.append(f"  {c.image}\n")
    t.append(f"id {c.id[:12]}", style="dim")
    if c.runtime:
        t.append(f"  runtime {c.runtime}", style="dim")
    t.append("\n\n")
    held = holdings(cg, hmap)
    gpu_lines = [h for h in held if h.startswith("GPU ")]
    if gpu_lines:
        t.append("It holds:\n", style="bold")
    else:
        t.append("It holds no GPU.\n", style="dim")
    for line in held:
        t.append(f"  {line}\n", style="" if line.startswith("GPU ") else "yellow")
    t.append("\n")
    running = c.status in ("running", "paused", "restarting")
    if action == "stop":
        t.append("Docker sends its stop signal, then SIGKILL after 10 s; ")
        t.append("its GPUs are free when it has stopped." if gpu_lines else "it can be started again.")
    elif action == "restart":
        t.append("Docker stops it (stop signal, SIGKILL after 10 s) and starts it again, on the same GPUs.")
    elif running:
        t.append("It is running: it is killed, then removed (docker rm -f). ", style="bold yellow")
        t.append("Its writable layer goes with it.")
    else:
        t.append("The container and its writable layer are removed (docker rm); named volumes stay.")
    return t
