"""The toolkit screen: the NVIDIA Container Toolkit's config.toml and Docker's side, and the hook's log.

On top, config.toml as the toolkit reads it (where it is and which lookup found it; mode, log-level,
ldconfig, no-cgroups; for the hook ``[nvidia-container-cli]`` and the runtime
``[nvidia-container-runtime]`` whether debug logging is on and where it writes), then daemon.json
and the running engine (runtime registered, known to the engine, default runtime, restart needed).
Below, while a debug log is on, a live view follows it, so the operator can launch a container and
watch the hook's decisions.

Keys: ``h`` / ``u`` toggle the hook's / the runtime's debug log, ``P`` turns one on with a log path
the operator types (the CLI's ``toolkit debug on --path``), ``R`` registers the nvidia runtime in
daemon.json, ``D`` makes it the default runtime (or stops it being), ``w`` writes the toolkit's
defaults where config.toml is missing, ``r`` re-reads everything (the engine included), ``escape``
goes back. Every edit is planned first (``gpudock.toolkit``) and shown in a confirmation that names
the file and the line, old and new; ``y``/enter writes, ``n``/escape cancels. In a read-only
session (``--readonly``) the keys that edit say so and do nothing. While a log is shown, ``p``
pauses and resumes it and ``/`` searches it (:class:`gpudock.ui.widgets.follow_log.FollowLog`).

All file I/O and the ``docker info`` call run in ``@work(thread=True)`` workers that post messages;
the event loop only paints. The log view is fed by a worker polling a ``LogFollower`` every
``log_poll_s`` seconds (which survives truncation and rotation).

The screen is given ``config_path`` / ``daemon_json_path`` (else the app's ``--config`` /
``--daemon-json`` options, else the toolkit's own lookup under the app's root) and, for tests, a
``docker_info_factory`` returning the ``docker info`` dict or raising.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Input, Label, Select, Static
from textual.worker import Worker, WorkerState, get_current_worker

from gpudock.host.root import HostRoot
from gpudock.session import SessionError
from gpudock.toolkit import config as tkconfig
from gpudock.toolkit import daemon_json as dj
from gpudock.toolkit.atomic import AtomicWriteError
from gpudock.toolkit.logfollow import DEFAULT_WARN_BYTES, LogFollower
from gpudock.toolkit.overview import overview
from gpudock.ui.screens.confirm import ConfirmScreen, refused_readonly
from gpudock.ui.widgets.follow_log import FollowLog, LogSearch
from gpudock.ui.widgets.footer import Footer

__all__ = ["ConfirmScreen", "ToolkitScreen"]

DockerInfoFactory = Callable[[], dict]

COMPONENT_LABEL = {"hook": "hook", "runtime": "runtime"}
COMPONENT_WHO = {"hook": "the hook (nvidia-container-cli)", "runtime": "nvidia-container-runtime"}
# An existing log bigger than this is followed from its end: the view shows what comes next.
FOLLOW_FROM_END_BYTES = 256 << 10
LOG_MAX_LINES = 2000
ASKING_ENGINE = "asking the Docker engine…"


def host_docker_info(host) -> DockerInfoFactory:
    """``docker info`` of the session's engine (the simulated one on --demo); raises when it cannot."""

    def info() -> dict:
        answer, error = host.docker_info()
        if answer is None:
            raise ConnectionError(error)
        return answer

    return info


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB" if n >= (1 << 20) else f"{n / 1024:.0f} KiB" if n >= 1024 else f"{n} B"


def _value(v: Any) -> str:
    return json.dumps(v) if isinstance(v, bool) else str(v)


# --------------------------------------------------------------------------- rendering (pure)


def status_text(doc: dict | None, *, engine_pending: bool = False, shown=lambda p: p) -> Table | Text:
    """The whole status panel for an ``overview()`` document: a label column and a value column
    (values wrap inside their column, so 80 columns stay readable)."""
    if doc is None:
        return Text("Reading config.toml and daemon.json…", style="dim")
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(width=13, no_wrap=True)
    grid.add_column(ratio=1)

    def row(label: str, value: Text, style: str = "bold") -> None:
        grid.add_row(Text(label, style=style), value)

    c = doc["config"]
    v = Text()
    v.append(shown(c["path"]), style="cyan")
    v.append(f" ({_source_words(c['source'])})", style="dim")
    row("config.toml", v)
    if not c["exists"]:
        v = Text()
        v.append("not found", style="bold red")
        v.append(": the toolkit runs on its built-in defaults. Press ")
        v.append(" w ", style="bold reverse")
        v.append(" to write the toolkit's default config.toml there.")
        row("", v)
    elif c["error"]:
        row("", Text(c["error"], style="bold red"))
    if c["settings"]:
        v = Text()
        for i, name in enumerate(("mode", "log-level", "ldconfig", "no-cgroups")):
            s = c["settings"][name]
            if i:
                v.append("  ")
            v.append(f"{name} ", style="dim")
            v.append(_value(s["value"]), style="bold" if s["state"] == "set" else "")
            if s["state"] != "set":
                v.append(" (default)", style="dim")
        row("", v)
        for comp in ("hook", "runtime"):
            row(f"{COMPONENT_LABEL[comp]} debug", _debug_value(c["debug"][comp]), style="")
    d = doc["daemon_json"]
    v = Text()
    v.append(shown(d["path"]), style="cyan")
    if not d.get("exists", True):
        v.append(" (does not exist yet)", style="dim")
    row("daemon.json", v)
    if d["error"]:
        row("", Text(d["error"], style="bold red"))
    else:
        v = Text()
        if d["nvidia_registered"]:
            v.append("nvidia registered", style="green")
            v.append(f" → {d['runtimes'].get('nvidia')}", style="dim")
        else:
            v.append("nvidia not registered", style="yellow")
            v.append(" (R registers it)", style="dim")
        if d["default_runtime"] == "nvidia":
            v.append(" (D makes runc the default again)", style="dim")
        elif d["nvidia_registered"]:
            v.append(" (D makes it the default)", style="dim")
        others = [n for n in d["toolkit_runtimes"] if n != "nvidia"]
        if others:
            v.append(f"; also toolkit runtimes {', '.join(others)}", style="dim")
        v.append("  default ", style="dim")
        v.append(d["default_runtime"] or "runc (not set)")
        row("", v)
    e = doc["engine"]
    v = Text()
    if engine_pending:
        v.append(ASKING_ENGINE, style="dim italic")
    elif not e["reachable"]:
        v.append("not reachable: ", style="yellow")
        v.append(str(e["error"]), style="dim")
    else:
        v.append(
            "knows nvidia" if e["knows_runtime"] else "does not know nvidia",
            style="green" if e["knows_runtime"] else "yellow",
        )
        v.append("  default ", style="dim")
        v.append(str(e["default_runtime"]))
        v.append("  runtimes ", style="dim")
        v.append(", ".join(e["runtimes"]) or "none")
        for r in e["reasons"]:
            v.append(f"\n{r}", style="yellow")
        if e["restart_needed"]:
            v.append("\nrestart needed: ", style="bold yellow")
            v.append(dj.RESTART_HINT)
    row("engine", v)
    return grid


def _source_words(source: str) -> str:
    return {
        "--config": "as given with --config",
        "NVIDIA_CTK_CONFIG_FILE_PATH": "found by $NVIDIA_CTK_CONFIG_FILE_PATH",
        "XDG_CONFIG_HOME": "found by $XDG_CONFIG_HOME",
        "default": "the toolkit's default location",
    }.get(source, source)


def _debug_value(d: dict) -> Text:
    t = Text()
    if d["enabled"]:
        t.append("ON", style="bold green")
        t.append(" → ")
        t.append(d["log_path"], style="cyan")
        t.append(f"  [{d['table']}] line {d['line']}", style="dim")
    else:
        t.append("off", style="bold")
        t.append(f"  [{d['table']}] ", style="dim")
        if d["state"] == "commented":
            t.append(f"line {d['line']}: #debug = {json.dumps(d['commented_path'])}", style="dim")
        elif d["state"] == "set":
            t.append(f"line {d['line']}: set to an off value", style="dim")
        else:
            t.append("no debug line", style="dim")
    return t


def plan_body(plan: tkconfig.EditPlan, shown=lambda p: p) -> Text:
    """What the debug confirmation says: the file and line, old and new, and what follows."""
    t = Text()
    t.append(shown(plan.describe()) + "\n\n")
    if plan.added_header:
        t.append(f"+ {plan.added_header}\n", style="green")
    if plan.old_line is not None:
        t.append(f"- {plan.old_line}\n", style="red")
    if plan.new_line is not None:
        t.append(f"+ {plan.new_line}\n", style="green")
    t.append("\n")
    who = COMPONENT_WHO[plan.component]
    if plan.enable:
        t.append(f"{who} writes its debug log to {plan.log_path} from the next container start.\n")
    else:
        t.append(f"{who} stops writing its debug log from the next container start.\n")
    t.append(
        f"Nothing else in the file changes; the previous version is kept as {os.path.basename(plan.path)}.gpudock-bak.",
        style="dim",
    )
    if plan.note:
        t.append(f"\nNote: {plan.note}.", style="yellow")
    return t


def register_body(plan: dj.RegisterPlan, shown=lambda p: p) -> Text:
    t = Text()
    t.append(f"{shown(plan.path)}:\n", style="cyan")
    for change in plan.changes:
        t.append(f"  {change}\n", style="green")
    t.append(
        f"\nEvery other key is kept; the previous version is kept as {os.path.basename(plan.path)}.gpudock-bak.\n",
        style="dim",
    )
    t.append("Then " + dj.RESTART_HINT + ".", style="bold yellow")
    return t


# --------------------------------------------------------------------------- the screen


class ToolkitScreen(Screen):
    """The NVIDIA Container Toolkit's configuration, Docker's runtimes and the hook's debug log."""

    BINDINGS = [
        Binding("h", "toggle_debug('hook')", "Hook dbg", id="toolkit-hook"),
        Binding("u", "toggle_debug('runtime')", "Runtime dbg", id="toolkit-runtime"),
        Binding("R", "register", "Register", id="toolkit-register"),
        Binding("D", "toggle_default", "Default runtime", show=False, id="toolkit-default"),
        Binding("w", "write_defaults", "Defaults", id="toolkit-defaults"),
        Binding("r", "reload", "Re-read", id="toolkit-reload", show=False),  # (it re-reads when the files change)
        Binding("P", "set_log_path", "Debug log path", show=False, id="toolkit-log-path"),
        Binding("p", "pause_log", "Pause/resume log", show=False, id="toolkit-log-pause"),
        Binding("slash", "search_log", "Search log", show=False, id="toolkit-log-search"),
        Binding("escape", "back", "Back", id="toolkit-back"),
    ]

    class Loaded(Message):
        def __init__(self, gen: int, doc: dict, errors: list[str]) -> None:
            super().__init__()
            self.gen = gen
            self.doc = doc
            self.errors = errors

    class EngineAnswered(Message):
        def __init__(self, info: dict | None, error: str | None) -> None:
            super().__init__()
            self.info = info
            self.error = error

    class Planned(Message):
        """A plan is ready for the confirmation; ``kind``: "debug", "register" or "defaults"."""

        def __init__(self, kind: str, plan: Any, title: str, body: Text) -> None:
            super().__init__()
            self.kind = kind
            self.plan = plan
            self.title = title
            self.body = body

    class Done(Message):
        """A plan was written (or refused): ``message`` says what happened, ``error`` whether it failed."""

        def __init__(self, message: str, error: bool = False, wrote: bool = False) -> None:
            super().__init__()
            self.message = message
            self.error = error
            self.wrote = wrote

    class FilesChanged(Message):
        """config.toml or daemon.json changed on disk (the watcher's stat fingerprint)."""

    class LogUpdate(Message):
        def __init__(self, gen: int, lines: list[str], state: str) -> None:
            super().__init__()
            self.gen = gen
            self.lines = lines
            self.state = state

    def __init__(
        self,
        config_path: str | None = None,
        daemon_json_path: str | None = None,
        *,
        root: str | None = None,
        docker_info_factory: DockerInfoFactory | None = None,
        log_poll_s: float = 0.5,
        log_warn_bytes: int = DEFAULT_WARN_BYTES,
        watch_s: float = 2.0,
    ) -> None:
        super().__init__(id="toolkit")
        self.config_path = config_path
        self.daemon_json_path = daemon_json_path
        self.root = root
        self.environ = None  # where the toolkit's config lookup reads its overrides (None: ours)
        self.root_label: str | None = None if root in (None, "/") else str(root)
        self._docker_info_factory = docker_info_factory
        self.log_poll_s = log_poll_s
        self.log_warn_bytes = log_warn_bytes
        self.watch_s = watch_s
        self._fp: tuple | None = None
        self.doc: dict | None = None
        self.errors: list[str] = []
        self.loads_done = 0
        self.writes_done = 0
        self.log_lines_seen = 0
        self._docker_info: dict | None = None
        self._docker_error: str | None = None
        self._engine_pending = True
        self._gen = 0
        self._busy = False  # a plan is being made or confirmed or written: one at a time
        self._log_sources: tuple[tuple[str, str], ...] = ()
        self._log_gen = 0
        self.log_state = ""
        self._status_shown: tuple | None = None
        self.status_renderable: Table | Text = status_text(None)

    def compose(self) -> ComposeResult:
        yield Static(Text("Toolkit", style="bold"), id="toolkit-header")
        with VerticalScroll(id="toolkit-status-box"):
            yield Static(self.status_renderable, id="toolkit-status")
        yield Static("", id="toolkit-log-title")
        log = FollowLog(id="toolkit-log", max_lines=LOG_MAX_LINES, auto_scroll=True)
        yield log
        yield LogSearch(log, id="toolkit-log-search")
        yield Footer()

    @property
    def log_lines(self) -> deque[str]:
        """What the log view holds, as text (shown or not: paused, searched)."""
        return self.query_one(FollowLog).kept

    def on_mount(self) -> None:
        host = getattr(self.app, "host", None)
        if host is not None:
            if self.root is None:
                self.root = host.root
                self.environ = host.environ
                self.root_label = host.root_label
            self.config_path = self.config_path or host.options.config
            self.daemon_json_path = self.daemon_json_path or host.options.daemon_json
            if self._docker_info_factory is None:
                self._docker_info_factory = host_docker_info(host)
        if self.root is None:
            self.root = "/"
        self._show_log(False)
        self.query_one(LogSearch).display = False
        self._update_header()
        self.query_one("#toolkit-status-box").focus()
        self.reload(ask_engine=True)
        self.set_interval(self.watch_s, self._watch)

    # -- loading ---------------------------------------------------------------------------------

    def reload(self, ask_engine: bool = False) -> None:
        """Read the files again (and ask the engine again when ``ask_engine``)."""
        if ask_engine:
            self._engine_pending = True
            self._ask_engine()
        self._gen += 1
        self._load(self._gen, self._docker_info, self._docker_error)

    @work(thread=True, group="toolkit-load", exit_on_error=False)
    def _load(self, gen: int, info: dict | None, error: str | None) -> None:
        doc, errors = overview(self.config_path, self.daemon_json_path, self.root, info, error, self.environ)
        self.post_message(self.Loaded(gen, doc, errors))

    def _paths(self) -> tuple[str, str]:
        return self._locate().path, self._daemon_json().shown

    def _locate(self) -> tkconfig.ConfigLocation:
        return tkconfig.locate_config(self.config_path, root=self.root, environ=self.environ)

    def _daemon_json(self):
        return dj.daemon_json_file(self.daemon_json_path, root=self.root)

    @staticmethod
    def _fingerprint(paths: tuple[str, ...]) -> tuple:
        out = []
        for p in paths:
            try:
                st = os.stat(p)
                out.append((p, st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError as e:
                out.append((p, e.errno))
        return tuple(out)

    @work(thread=True, exclusive=True, group="toolkit-watch", exit_on_error=False)
    def _watch(self) -> None:
        """Someone edited config.toml or daemon.json in another terminal: read them again."""
        fp = self._fingerprint(self._paths())
        if self._fp is not None and fp != self._fp:
            self.post_message(self.FilesChanged())
        self._fp = fp

    @on(FilesChanged)
    def _on_files_changed(self, message: FilesChanged) -> None:
        self.reload()

    @work(thread=True, exclusive=True, group="toolkit-engine", exit_on_error=False)
    def _ask_engine(self) -> None:
        try:
            info, err = self._docker_info_factory(), None
            if not isinstance(info, dict):
                info, err = None, f"unexpected answer from the engine: {type(info).__name__}"
        except Exception as e:  # noqa: BLE001 - any failure: the engine is not reachable, said so
            info, err = None, f"cannot reach the Docker engine: {e}"
        self.post_message(self.EngineAnswered(info, err))

    @on(EngineAnswered)
    def _on_engine(self, message: EngineAnswered) -> None:
        self._docker_info, self._docker_error = message.info, message.error
        self._engine_pending = False
        self.reload()

    @on(Loaded)
    def _on_loaded(self, message: Loaded) -> None:
        if message.gen != self._gen:
            return  # a newer read is on its way
        self.doc = message.doc
        self.errors = message.errors
        self.loads_done += 1
        shown = (self.doc, self._engine_pending)
        if shown != self._status_shown:
            self._status_shown = shown
            self.status_renderable = status_text(self.doc, engine_pending=self._engine_pending, shown=self.host_words)
            self.query_one("#toolkit-status", Static).update(self.status_renderable)
        self._update_header()
        self.refresh_bindings()
        self._sync_log_sources()

    def _update_header(self) -> None:
        t = Text()
        t.append("NVIDIA Container Toolkit", style="bold")
        if self.root_label:
            t.append(f"  {self.root_label}", style="dim")
        if self._busy:
            t.append("  working…", style="italic")
        self.query_one("#toolkit-header", Static).update(t)

    # -- the log view ----------------------------------------------------------------------------

    def _wanted_log_sources(self) -> tuple[tuple[str, str], ...]:
        c = (self.doc or {}).get("config") or {}
        debug = c.get("debug") or {}
        out: list[tuple[str, str]] = []
        for comp in ("hook", "runtime"):
            d = debug.get(comp)
            if d and d["enabled"] and d["log_path"]:
                try:
                    path = tkconfig.host_file(self.root, d["log_path"])
                except (OSError, ValueError):  # a link loop, a relative path: nothing to follow
                    continue
                if path not in [p for _, p in out]:
                    out.append((comp, path))
        return tuple(out)

    def _sync_log_sources(self) -> None:
        wanted = self._wanted_log_sources()
        if wanted == self._log_sources:
            return
        self._log_sources = wanted
        self._log_gen += 1
        self.query_one(FollowLog).reset()
        self.log_lines_seen = 0
        if not wanted:
            self.workers.cancel_group(self, "toolkit-log")
            self._show_log(False)
            return
        self.log_state = "waiting"
        self._show_log(True)
        self._set_log_title("opening…")
        self._follow(wanted, self._log_gen)

    def host_words(self, text: str) -> str:
        """Paths as the host names them: a simulated host's or a --root copy's files by their own
        paths (the header says which root), not by where this machine holds them."""
        root = self.root if isinstance(self.root, HostRoot) else HostRoot(self.root or "/")
        return root.host_words(text)

    def _show_log(self, on: bool) -> None:
        self.query_one(FollowLog).display = on
        self.query_one("#toolkit-log-title", Static).display = on
        self.set_class(on, "-log-on")

    def _set_log_title(self, state: str) -> None:
        t = Text()
        view = self.query_one(FollowLog).status()
        if view:  # first: a long log path is cut at the right edge, and this must show
            t.append(f"{view}", style="bold reverse")
            t.append("  ")
        for i, (comp, path) in enumerate(self._log_sources):
            t.append(" · " if i else "")
            t.append(f"{comp} log ", style="bold")
            t.append(self.host_words(path), style="cyan")
        if state:
            t.append("  ")
            if state.startswith("!"):
                t.append(state[1:], style="bold yellow")
            else:
                t.append(state, style="dim")
        self.query_one("#toolkit-log-title", Static).update(t)

    @work(thread=True, exclusive=True, group="toolkit-log", exit_on_error=False)
    def _follow(self, sources: tuple[tuple[str, str], ...], gen: int) -> None:
        worker = get_current_worker()
        followers: list[tuple[str, LogFollower]] = []
        skipped: list[str] = []
        for comp, path in sources:
            try:
                big = os.path.getsize(path) > FOLLOW_FROM_END_BYTES
            except OSError:
                big = False
            if big:
                skipped.append(comp)
            followers.append((comp, LogFollower(path, warn_bytes=self.log_warn_bytes, from_end=big)))
        prefix = len(followers) > 1
        last_state = None
        try:
            while not worker.is_cancelled:
                lines: list[str] = []
                states: list[str] = []
                for comp, f in followers:
                    try:
                        got = f.poll()
                    except OSError as e:
                        got = []
                        states.append(f"!{comp}: cannot read the log: {e.strerror or e}")
                    lines += [f"{comp}│ {ln}" if prefix else ln for ln in got]
                    states.append(self._follower_state(comp if prefix else "", f, comp in skipped))
                state = "  ".join(s for s in states if s)
                if lines or state != last_state:
                    last_state = state
                    self.post_message(self.LogUpdate(gen, lines, state))
                time.sleep(self.log_poll_s)
        finally:
            for _, f in followers:
                f.close()

    @staticmethod
    def _follower_state(label: str, f: LogFollower, skipped: bool) -> str:
        who = f"{label}: " if label else ""
        if not f.exists:
            return f"{who}no file yet: it appears at the next container start"
        if f.too_large:
            return f"!{who}the log is {_mib(f.size)}: turn debug off when done"
        bits = [_mib(f.size)]
        if f.last_event in ("truncated", "rotated"):
            bits.append(f.last_event)
        if skipped:
            bits.append("following new lines")
        return who + ", ".join(bits)

    @on(LogUpdate)
    def _on_log_update(self, message: LogUpdate) -> None:
        if message.gen != self._log_gen:
            return
        if message.lines:
            # a burst bigger than the view keeps (a huge first read) is cut to its end
            self.query_one(FollowLog).follow(message.lines)
            self.log_lines_seen += len(message.lines)
        self.log_state = message.state
        self._set_log_title(message.state)

    # -- actions ---------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "write_defaults":
            c = (self.doc or {}).get("config")
            return bool(c) and not c["exists"]
        if action in ("pause_log", "search_log"):
            return bool(self._log_sources)  # only while a log is shown
        return True

    # the log view: pause and search

    def action_pause_log(self) -> None:
        view = self.query_one(FollowLog)
        view.set_paused(not view.paused)
        self._set_log_title(self.log_state)

    def action_search_log(self) -> None:
        self.query_one(LogSearch).open()

    @on(LogSearch.Searched)
    def _on_searched(self, message: LogSearch.Searched) -> None:
        self._set_log_title(self.log_state)

    def _start(self) -> bool:
        if self._busy:
            self.notify("One change at a time: finish the one under way first.", timeout=3)
            return False
        self._busy = True
        self._update_header()
        return True

    def _finish(self) -> None:
        self._busy = False
        self._update_header()

    def action_toggle_debug(self, component: str) -> None:
        if (
            not refused_readonly(self, f"turning {COMPONENT_LABEL[component]} debug logging on or off")
            and self._start()
        ):
            self._plan_debug(component)

    def action_set_log_path(self) -> None:
        if refused_readonly(self, "setting a debug log path"):
            return
        debug = ((self.doc or {}).get("config") or {}).get("debug") or {}

        def answered(choice: tuple[str, str] | None) -> None:
            if choice is not None and self._start():
                self._plan_debug(choice[0], choice[1])

        self.app.push_screen(LogPathScreen(debug), answered)

    def action_register(self) -> None:
        if not refused_readonly(self, "registering the nvidia runtime in daemon.json") and self._start():
            self._plan_register(None)

    def action_toggle_default(self) -> None:
        if not refused_readonly(self, "changing Docker's default runtime") and self._start():
            self._plan_register("toggle")

    def action_write_defaults(self) -> None:
        if not refused_readonly(self, "writing the toolkit's defaults") and self._start():
            self._plan_defaults()

    def action_reload(self) -> None:
        self.reload(ask_engine=True)

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    @work(thread=True, group="toolkit-plan", exit_on_error=False)
    def _plan_debug(self, component: str, log_path: str | None = None) -> None:
        """Toggle ``component``'s debug log; with ``log_path``, turn it on writing there."""
        loc = self._locate()
        try:
            cfg = tkconfig.load_config(loc)
            enable = log_path is not None or not cfg.debug_status(component).enabled
            plan = tkconfig.plan_debug(cfg, component, enable, log_path)
        except tkconfig.ConfigMissingError:
            self.post_message(
                self.Done(f"{loc.path} does not exist: press w to write the toolkit's defaults first", error=True)
            )
            return
        except (tkconfig.ConfigError, AtomicWriteError) as e:
            self.post_message(self.Done(str(e), error=True))
            return
        if not plan.changed:
            self.post_message(self.Done(plan.describe()))
            return
        title = f"Turn {COMPONENT_LABEL[component]} debug logging {'ON' if enable else 'off'}?"
        self.post_message(self.Planned("debug", plan, title, plan_body(plan, self.host_words)))

    @work(thread=True, group="toolkit-plan", exit_on_error=False)
    def _plan_register(self, default: str | None) -> None:
        dfile = self._daemon_json()
        path = dfile.shown
        try:
            doc = dj.load_daemon_json(dfile)
            if default == "toggle":
                make = doc.default_runtime != "nvidia"
                plan = dj.plan_register(doc, default=make)
                title = (
                    "Make nvidia Docker's default runtime?" if make else "Stop nvidia being Docker's default runtime?"
                )
            else:
                plan = dj.plan_register(doc)
                title = "Register the nvidia runtime in daemon.json?"
        except (dj.DaemonJsonError, AtomicWriteError) as e:
            self.post_message(self.Done(str(e), error=True))
            return
        if not plan.changed:
            self.post_message(
                self.Done(f"{path}: the nvidia runtime is already registered as asked; nothing to change")
            )
            return
        self.post_message(self.Planned("register", plan, title, register_body(plan, self.host_words)))

    @work(thread=True, group="toolkit-plan", exit_on_error=False)
    def _plan_defaults(self) -> None:
        loc = self._locate()
        if loc.error:
            self.post_message(self.Done(loc.error, error=True))
            return
        if loc.exists:
            self.post_message(self.Done(f"{loc.path} exists; gpudock writes the defaults only where there is no file"))
            return
        body = Text()
        body.append(f"{loc.path} does not exist.\n\n")
        body.append(
            "Write the toolkit's default config.toml there (as `nvidia-ctk config default` renders it "
            "in 1.17): debug logging off, mode auto, log-level info.\n"
        )
        body.append("The directory is created if needed.", style="dim")
        self.post_message(self.Planned("defaults", loc, "Write the toolkit's defaults?", body))

    @on(Planned)
    def _on_planned(self, message: Planned) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._apply(message.kind, message.plan)
            else:
                self._finish()
                self.notify("Cancelled: nothing written.", timeout=3)

        self.app.push_screen(ConfirmScreen(message.title, message.body), answered)

    @work(thread=True, group="toolkit-apply", exit_on_error=False)
    def _apply(self, kind: str, plan: Any) -> None:
        host = getattr(self.app, "host", None)
        try:
            if host is not None:
                host.refuse_if_readonly(f"writing {plan.path}")
            if kind == "debug":
                tkconfig.apply_plan(plan)
                state = f"on, writing to {plan.log_path}" if plan.enable else "off"
                msg = f"{COMPONENT_LABEL[plan.component]} debug logging {state} ({plan.path} line {plan.line})"
            elif kind == "register":
                dj.apply_register(plan)
                msg = f"{plan.path}: {'; '.join(plan.changes)}. {dj.RESTART_HINT[0].upper()}{dj.RESTART_HINT[1:]}"
            else:
                tkconfig.write_defaults(plan, root=self.root)
                msg = f"wrote the toolkit's defaults to {plan.path}"
        except (tkconfig.ConfigError, dj.DaemonJsonError, AtomicWriteError) as e:
            self.post_message(self.Done(str(e), error=True))
            return
        except OSError as e:
            self.post_message(self.Done(f"cannot write: {e}", error=True))
            return
        except SessionError as e:  # read-only
            self.post_message(self.Done(str(e), error=True))
            return
        self.post_message(self.Done(msg, wrote=True))

    @on(Done)
    def _on_done(self, message: Done) -> None:
        self._finish()
        said = self.host_words(message.message)
        if message.error:
            self.notify(said, severity="error", timeout=10)
        else:
            self.writes_done += message.wrote
            self.notify(said, timeout=6)
        self.reload()

    @on(Worker.StateChanged)
    def _on_worker_state(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR or not (event.worker.group or "").startswith("toolkit-"):
            return
        group = event.worker.group
        if group in ("toolkit-plan", "toolkit-apply"):
            self._finish()
            self.reload()
        elif group == "toolkit-engine":
            self._engine_pending = False
        self.notify(f"Toolkit screen: {event.worker.error}", severity="error", timeout=10)


# --------------------------------------------------------------------------- the log path


class LogPathScreen(ModalScreen[tuple[str, str] | None]):
    """Which component's debug log, and where: the path the toolkit writes it to (as the CLI's
    ``toolkit debug on --path``). Enter asks for the edit's confirmation; Escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="log-path-cancel")]

    def __init__(self, debug: dict) -> None:
        super().__init__(id="toolkit-log-path-prompt")
        self.debug = debug

    def _path_of(self, component: str) -> str:
        d = self.debug.get(component) or {}
        return d.get("log_path") or d.get("commented_path") or ""

    def compose(self) -> ComposeResult:
        with Vertical(id="log-path-box"):
            yield Static(Text("Turn a debug log on, writing to this file", style="bold"), id="log-path-title")
            with Horizontal(classes="log-path-field"):
                yield Label("Component")
                yield Select(
                    [("the hook (nvidia-container-cli)", "hook"), ("nvidia-container-runtime", "runtime")],
                    value="hook",
                    allow_blank=False,
                    id="log-path-component",
                    compact=True,
                )
            with Horizontal(classes="log-path-field"):
                yield Label("Log file")
                yield Input(self._path_of("hook"), placeholder="/var/log/…", id="log-path-input", compact=True)
            yield Static(
                Text(
                    "An absolute path on the host. Enter: show the change to config.toml; Escape: cancel.", style="dim"
                ),
                id="log-path-hint",
            )

    def on_mount(self) -> None:
        self.query_one("#log-path-input", Input).focus()

    @on(Select.Changed, "#log-path-component")
    def _component_changed(self, event: Select.Changed) -> None:
        self.query_one("#log-path-input", Input).value = self._path_of(str(event.value))

    @on(Input.Submitted, "#log-path-input")
    def _submitted(self, event: Input.Submitted) -> None:
        path = event.value.strip()
        hint = self.query_one("#log-path-hint", Static)
        if not path.startswith("/"):
            hint.update(
                Text(
                    "The log path must be absolute (/var/log/…): the toolkit runs with no working directory of yours.",
                    style="bold red",
                )
            )
            return
        self.dismiss((str(self.query_one("#log-path-component", Select).value), path))

    def action_cancel(self) -> None:
        self.dismiss(None)
