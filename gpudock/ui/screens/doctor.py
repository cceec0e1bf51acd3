"""The diagnostics screen: the doctor's findings, live.

A table of findings (severity, id, title), errors first; under it the highlighted finding's
summary, evidence and fix. All blocking work (reading the host, NVML, Docker) runs in
``@work(thread=True)`` workers that post messages; the event loop only paints. The screen re-checks
on ``r`` and whenever the host changes: a watcher worker stats a few files every ``watch_s`` seconds
(:data:`gpudock.doctor.WATCHED`: the driver's version files, ld.so.cache, daemon.json, the toolkit
config) and a changed fingerprint starts a re-check, so a driver upgrade while the dashboard is open
shows up without a restart.

The screen is given a ``runner`` (a callable returning ``(facts, findings)``) so tests run it on a
test root; the default runner is the app's host session's (:meth:`gpudock.session.HostSession.diagnose`).
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static
from textual.worker import Worker, WorkerState

from gpudock.doctor import Finding, fingerprint, severity_rank
from gpudock.ui.widgets.footer import Footer
from gpudock.ui.widgets.tables import cursor_row_key

Runner = Callable[[], tuple]

SEVERITY_STYLE = {"ok": "green", "info": "dim", "warning": "bold yellow", "error": "bold red"}
SEVERITY_LABEL = {"ok": "OK", "info": "INFO", "warning": "WARN", "error": "ERROR"}


def default_runner(app) -> Runner:
    """Diagnose the app's host: its root, its NVML session (pynvml has one global library, so the
    screen must not open a second session) and its Docker engine."""
    return app.host.diagnose


def order(findings) -> list[Finding]:
    """Errors first, then warnings, info, ok; the doctor's order within a severity."""
    return sorted(findings, key=lambda f: -severity_rank(f.severity))


def finding_detail(f: Finding) -> Text:
    t = Text()
    t.append(f"{SEVERITY_LABEL[f.severity]}  ", style=SEVERITY_STYLE[f.severity])
    t.append(f"{f.id}\n", style="bold")
    t.append(f"{f.title}\n\n", style="bold")
    t.append(f"{f.summary}\n")
    if f.fix:
        t.append("\nFix\n", style="bold underline")
        t.append(f"{f.fix}\n")
    if f.evidence:
        t.append("\nEvidence\n", style="bold underline")
        for e in f.evidence:
            t.append(f"{e.source}\n", style="cyan")
            line = e.line if e.line is not None else "(absent or not readable)"
            t.append(f"  {line}\n", style="" if e.line is not None else "dim")
            if e.value is not None and not (e.line or "").rstrip().endswith(e.value):
                t.append("  value: ", style="dim")
                t.append(f"{e.value}\n", style="bold")
    return t


class DetailPane(VerticalScroll):
    """The highlighted finding's summary, fix and evidence: Enter or Tab from the list comes here,
    the arrows and PageUp/PageDown scroll it, Escape goes back to the list."""

    BINDINGS = [
        Binding("escape", "screen.list", "List", id="doctor-list"),
        Binding("up", "scroll_up", "Scroll", show=False),
        Binding("down", "scroll_down", "Scroll", show=False),
    ]


class DoctorScreen(Screen):
    """Diagnostics: what is wrong with the GPU stack, the evidence, and the fix."""

    BINDINGS = [
        Binding("r", "recheck", "Re-check", id="doctor-recheck"),
        Binding("escape", "back", "Back", id="doctor-back"),
        Binding("tab", "focus_next", "Detail/List", show=False),
        Binding("enter", "read", "Read", id="doctor-read"),
    ]

    class Checked(Message):
        def __init__(self, facts, findings: tuple, reason: str) -> None:
            super().__init__()
            self.facts = facts
            self.findings = findings
            self.reason = reason

    class HostChanged(Message):
        def __init__(self, fp: tuple) -> None:
            super().__init__()
            self.fp = fp

    def __init__(
        self,
        runner: Runner | None = None,
        *,
        root: str | None = None,
        root_label: str | None = None,
        watch_s: float = 3.0,
    ) -> None:
        super().__init__(id="doctor")
        self._runner = runner
        self._root = root
        self._environ = None  # where the toolkit's config lookup reads its overrides (None: ours)
        self.root_label = root_label
        self.watch_s = watch_s
        self.findings: list[Finding] = []
        self.checks_done = 0
        self.last_reason = ""
        self._fp: tuple | None = None
        self._checking = False
        self._again = False

    def compose(self) -> ComposeResult:
        yield Static("Doctor: checking the host…", id="doctor-header")
        yield DataTable(id="doctor-table", cursor_type="row", zebra_stripes=True)
        with DetailPane(id="doctor-detail-box"):
            yield Static("", id="doctor-detail")
        yield Footer()

    def on_mount(self) -> None:
        host = getattr(self.app, "host", None)
        if self._root is None:
            self._root = host.root if host is not None else "/"
            self._environ = host.environ if host is not None else None
            if self.root_label is None and host is not None:
                self.root_label = host.root_label
        if self._runner is None:
            self._runner = default_runner(self.app)
        table = self.query_one(DataTable)
        table.add_column("SEV", key="sev", width=5)
        table.add_column("ID", key="id")
        table.add_column("FINDING", key="title")
        table.focus()
        self._fp = fingerprint(self._root, environ=self._environ)
        self.recheck("opened")
        self.set_interval(self.watch_s, self._watch)

    # -- workers ---------------------------------------------------------------------------------

    def recheck(self, reason: str) -> None:
        if self._checking:
            self._again = True  # one more run after this one: the host changed meanwhile
            return
        self._checking = True
        self._update_header(checking=True)
        self._run_checks(reason)

    @work(thread=True, exclusive=True, group="doctor-check", exit_on_error=False)
    def _run_checks(self, reason: str) -> None:
        facts, findings = self._runner()
        self.post_message(self.Checked(facts, findings, reason))

    @work(thread=True, exclusive=True, group="doctor-watch", exit_on_error=False)
    def _watch(self) -> None:
        fp = fingerprint(self._root, environ=self._environ)
        if fp != self._fp:
            self.post_message(self.HostChanged(fp))

    @on(HostChanged)
    def _on_host_changed(self, message: HostChanged) -> None:
        self._fp = message.fp
        self.recheck("host changed")

    @on(Checked)
    def _on_checked(self, message: Checked) -> None:
        self._checking = False
        self.checks_done += 1
        self.last_reason = message.reason
        self.show_findings(message.findings)
        if self._again:
            self._again = False
            self.recheck("host changed")

    @on(Worker.StateChanged)
    def _on_worker_state(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "doctor-check" and event.state == WorkerState.ERROR:
            self._checking = False
            self.notify(f"The doctor failed: {event.worker.error}", severity="error", timeout=8)
            self._update_header()

    # -- rendering -------------------------------------------------------------------------------

    def show_findings(self, findings) -> None:
        table = self.query_one(DataTable)
        current = self.current_id()
        self.findings = order(findings)
        table.clear()
        title_w = self._title_width()
        for f in self.findings:
            title = f.title if len(f.title) <= title_w else f.title[: title_w - 1] + "…"
            table.add_row(Text(SEVERITY_LABEL[f.severity], style=SEVERITY_STYLE[f.severity]), f.id, title, key=f.id)
        if current is not None and any(f.id == current for f in self.findings):
            table.move_cursor(row=table.get_row_index(current))
        self._update_header()
        self._show_detail()

    def _title_width(self) -> int:
        # Fit the row to the screen so 80 columns need no horizontal scrollbar (which would cost a
        # row); the detail pane below shows the whole title.
        id_w = max((len(f.id) for f in self.findings), default=10)
        return max(16, (self.size.width or 80) - 5 - id_w - 8 - 2)

    def on_resize(self) -> None:
        if self.findings:
            self.show_findings(self.findings)

    def _update_header(self, checking: bool = False) -> None:
        t = Text()
        t.append("Doctor", style="bold")
        path = getattr(self._root, "root", self._root)  # a HostRoot, or a test's directory
        label = self.root_label or (f"root {path}" if path not in (None, "/") else None)
        if label:
            t.append(f"  {label}", style="dim")
        counts = {s: sum(1 for f in self.findings if f.severity == s) for s in ("error", "warning", "info", "ok")}
        if self.findings:
            t.append("  ")
            narrow = (self.size.width or 80) < 100
            for s in ("error", "warning", "info", "ok"):
                if narrow and not counts[s] and s != "error":
                    continue  # at 80 columns the line keeps to one: no "0 info"
                t.append(f"{counts[s]} {SEVERITY_LABEL[s].lower()}  ", style=SEVERITY_STYLE[s] if counts[s] else "dim")
        if checking:
            t.append("checking…", style="italic")
        elif self.checks_done:
            reason = f" ({self.last_reason})" if (self.size.width or 80) >= 100 else ""
            t.append(f"check #{self.checks_done}{reason}", style="dim")
        self.query_one("#doctor-header", Static).update(t)

    def current_id(self) -> str | None:
        return cursor_row_key(self.query_one(DataTable))

    def current_finding(self) -> Finding | None:
        fid = self.current_id()
        return next((f for f in self.findings if f.id == fid), None)

    def _show_detail(self) -> None:
        f = self.current_finding()
        self.query_one("#doctor-detail", Static).update(finding_detail(f) if f else "")

    @on(DataTable.RowHighlighted, "#doctor-table")
    def _on_highlight(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    # -- actions ---------------------------------------------------------------------------------

    def action_recheck(self) -> None:
        self.recheck("r pressed")

    def action_read(self) -> None:
        self.query_one(DetailPane).focus()

    def action_list(self) -> None:
        self.query_one(DataTable).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "read" and isinstance(self.focused, DetailPane):
            return False  # already reading
        return True

    def on_descendant_focus(self, event) -> None:
        # reading a finding: the list gives the detail pane its rows
        self.set_class(isinstance(self.focused, DetailPane), "-reading")
        self.refresh_bindings()

    @on(DataTable.RowSelected, "#doctor-table")
    def _on_selected(self, event: DataTable.RowSelected) -> None:
        self.action_read()  # Enter on a finding: read it

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
