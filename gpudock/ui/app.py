"""The Textual application: the GPU screen, the refresh loop, and the way to the other screens.

Data flows one way. A one-shot worker thread takes a ``HostSnapshot`` (NVML calls never run on the
event loop) and posts ``SnapshotReady``; the app keeps the latest snapshot and hands it to the
screens, which update their tables in place by key. The next poll is scheduled only when the last
one is done, so a slow host stretches the period instead of queueing polls (as dolphie does).
"""

from __future__ import annotations

import asyncio
import functools
import signal
import time
from importlib import resources
from pathlib import Path

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.command import CommandPalette
from textual.message import Message
from textual.screen import ModalScreen
from textual.worker import Worker, WorkerState, get_current_worker

from gpudock.host.docker import DockerWatcher
from gpudock.host.history import History
from gpudock.host.holders import HoldersMap
from gpudock.model import HostSnapshot
from gpudock.session import HostSession, Options, open_session

# The holder column's width in app.holders_by_gpu (the GPU screen fits the text to its own column).
HOLDER_WIDTH = 24


def _css_paths() -> list[str]:
    """The .tcss files: inside the installed package (the wheel ships styles/ as gpudock/styles),
    or styles/ beside gpudock/ in a checkout."""
    styles = Path(str(resources.files("gpudock"))) / "styles"
    if not styles.is_dir():
        styles = Path(__file__).resolve().parents[2] / "styles"
    return sorted(str(p) for p in styles.iterdir() if p.name.endswith(".tcss"))


class SnapshotReady(Message):
    def __init__(self, snapshot: HostSnapshot, holders: HoldersMap | None = None) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.holders = holders  # the holders map joined with this snapshot (None: no Docker watcher)


class GpudockApp(App):
    """gpudock's dashboard."""

    TITLE = "gpudock"
    CSS_PATH = _css_paths()
    ENABLE_COMMAND_PALETTE = True
    # The screens an operator moves between, from any of them; the footer hides the key of the
    # screen shown (check_action). The table refreshes itself every second, so `r` stays out of the
    # 80-column footer (ctrl+p and ? list it).
    # Everywhere, but in the footer only where a screen shows them (the main screen does): the other
    # screens' footers keep their 80 columns for their own keys.
    BINDINGS = [
        Binding("c", "containers", "Containers", id="containers", show=False),
        Binding("d", "doctor", "Doctor", id="doctor", show=False),
        Binding("t", "toolkit", "Toolkit", id="toolkit", show=False),
        Binding("o", "topology", "Topology", id="topology", show=False),
        Binding("g", "gpus", "GPUs", id="gpus", show=False),
        Binding("r", "refresh_now", "Refresh", id="refresh", show=False),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("q", "quit", "Quit", id="quit"),
    ]
    # action -> the screen it shows
    NAVIGATION = ("gpus", "containers", "doctor", "toolkit", "topology")

    def __init__(self, host: HostSession, refresh: float | None = None) -> None:
        super().__init__(driver_class=_terminal_driver())
        self.host = host
        self.refresh_period = max(0.2, refresh if refresh is not None else host.options.refresh)
        self.snapshot: HostSnapshot | None = None
        # Which container holds each GPU (gpudock.host.holders), joined on every poll.
        self.docker_watcher: DockerWatcher | None = None
        self.holders: HoldersMap | None = None
        self.holders_by_gpu: dict[str, str] = {}  # GPU UUID -> the holder column's text
        # The readings of the last minutes (sparklines), kept by the poll from its own snapshots.
        self.history = History(period=self.refresh_period)
        self.show_all_containers = False  # the container panel's `a`: stopped/created ones too
        self._poll_timer = None
        self._poll_again = False  # poll_soon() asked while a poll ran
        self._quitting = False
        self._signals: list[int] = []

    def on_mount(self) -> None:
        from gpudock.ui.screens.gpus import GpuScreen

        self._handle_termination()
        self.docker_watcher = self.host.watcher()
        self._start_docker()
        self.push_screen(GpuScreen(banner=self.host.banner))
        self.poll()

    @work(thread=True, exit_on_error=False, group="docker")
    def _start_docker(self) -> None:
        """Start the watcher's thread; once its first connection attempt is over (ok or not), poll
        again so the holders (or the banner saying why there are none) show without waiting a period."""
        watcher = self.host.start_watching()
        worker = get_current_worker()
        while watcher.status.state == "connecting" and watcher.running:
            if worker.is_cancelled or self._quitting:
                return
            time.sleep(0.02)
        if not self._quitting:
            self.call_from_thread(self.poll_soon)

    # -- the refresh loop ------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="poll")
    def poll(self) -> None:
        snap, holders = self.host.poll(all=self.show_all_containers)
        self.history.add(snap)  # before the screens see the snapshot, so its readings are in
        self.post_message(SnapshotReady(snap, holders))

    @on(SnapshotReady)
    def _on_snapshot(self, message: SnapshotReady) -> None:
        self.snapshot = message.snapshot
        self.holders = message.holders
        self.holders_by_gpu = message.holders.labels(HOLDER_WIDTH) if message.holders is not None else {}
        for screen in self.screen_stack:
            update = getattr(screen, "show_snapshot", None)
            if update is not None:
                update(message.snapshot)
        self._schedule_next()

    def poll_soon(self) -> None:
        """Refresh now, or as soon as the refresh in flight is over (never cancel one: its thread
        runs on anyway, and whoever awaits it gets WorkerCancelled)."""
        if any(w.group == "poll" and w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in self.workers):
            self._poll_again = True
        else:
            self.poll()

    def _schedule_next(self) -> None:
        if self._quitting:
            return
        if self._poll_timer is not None:
            self._poll_timer.stop()
        self._poll_timer = self.set_timer(self.refresh_period, self.poll)

    @on(Worker.StateChanged)
    def _on_worker_state(self, event: Worker.StateChanged) -> None:
        # A failed poll must not stop the loop or crash the app: say it, and try again later.
        if event.worker.group == "poll" and event.state == WorkerState.ERROR:
            self.notify(f"Refresh failed: {event.worker.error}", severity="error", timeout=6)
            self._schedule_next()
        if event.worker.group == "poll" and event.state == WorkerState.SUCCESS and self._poll_again:
            self._poll_again = False
            if not self._quitting:
                self.poll()
        elif event.worker.group == "docker" and event.state == WorkerState.ERROR:
            self.notify(f"Cannot watch the Docker engine: {event.worker.error}", severity="error", timeout=6)

    def action_refresh_now(self) -> None:
        self.poll_soon()

    # -- what the launch form uses: the engine this dashboard watches ------------------------------

    def docker_client_factory(self):
        """A Docker client for the engine the dashboard watches (the simulated one on --demo)."""
        return self.host.docker_client()

    def holders_for_launch(self, snapshot: HostSnapshot) -> dict[str, tuple[str, ...]]:
        """GPU UUID -> running containers holding it, from the live holders map (no second read)."""
        return self.holders.running_holder_names() if self.holders is not None else {}

    # -- moving between screens ---------------------------------------------------------------

    @staticmethod
    def _screen_class(action: str) -> type:
        from gpudock.ui.screens.containers import ContainerScreen
        from gpudock.ui.screens.doctor import DoctorScreen
        from gpudock.ui.screens.gpus import GpuScreen
        from gpudock.ui.screens.toolkit import ToolkitScreen
        from gpudock.ui.screens.topology import TopologyScreen

        return {
            "gpus": GpuScreen,
            "containers": ContainerScreen,
            "doctor": DoctorScreen,
            "toolkit": ToolkitScreen,
            "topology": TopologyScreen,
        }[action]

    def show(self, action: str) -> None:
        """Bring a screen forward: the one on the stack if there is one (the screens above it go, as
        going back would take them), else a new one. One of each, so ids never clash."""
        cls = self._screen_class(action)
        if isinstance(self.screen, cls):
            return
        if any(isinstance(s, cls) for s in self.screen_stack):
            while not isinstance(self.screen, cls):
                self.pop_screen()
            return
        self.push_screen(cls())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # The screen the operator is on: while ctrl+p is open, the one under the palette (the
        # palette asks which commands that screen offers).
        screen = next((s for s in reversed(self.screen_stack) if not isinstance(s, CommandPalette)), self.screen)
        if action in self.NAVIGATION:
            # a modal (the launch form, a confirmation, the help) is answered or closed first;
            # the screen shown needs no key to go to itself
            if isinstance(screen, ModalScreen) or isinstance(screen, self._screen_class(action)):
                return False
        if action == "help" and type(screen).__name__ == "HelpScreen":
            return False
        return True

    def action_gpus(self) -> None:
        self.show("gpus")

    def action_containers(self) -> None:
        self.show("containers")

    def action_doctor(self) -> None:
        self.show("doctor")

    def action_toolkit(self) -> None:
        self.show("toolkit")

    def action_topology(self) -> None:
        self.show("topology")

    def action_help(self) -> None:
        from gpudock.ui.screens.help import HelpScreen

        self.push_screen(HelpScreen())

    def get_system_commands(self, screen):
        """ctrl+p: Textual's own commands, and every key of the app and of the screen shown, by its
        name ("Doctor", "Refresh", "Hook dbg", ...), so the palette finds what the keys do."""
        yield from super().get_system_commands(screen)
        seen: set[str] = set()
        for active in screen.active_bindings.values():
            b = active.binding
            if not active.enabled or not b.description or (b.action, b.description) in seen:
                continue
            seen.add((b.action, b.description))
            yield SystemCommand(
                b.description,
                f"{b.tooltip or b.description} (key {self.get_key_display(b)})",
                functools.partial(active.node.run_action, b.action),
            )

    async def action_quit(self) -> None:
        self._quitting = True
        self.exit()

    def _handle_termination(self) -> None:
        """Exit cleanly on SIGHUP (the SSH connection dropped: the terminal hung up) and SIGTERM.
        Their default action kills the process on the spot: the simulated host's socket and files
        stay behind, threads die mid-call. Handled on the event loop, like the quit key."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGHUP, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.terminal_gone)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread's loop
                continue
            self._signals.append(sig)

    def terminal_gone(self) -> None:
        """SIGHUP or SIGTERM, or the terminal driver found the terminal gone: exit cleanly."""
        self._quitting = True
        self.exit()

    def on_unmount(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        self._signals.clear()
        self.host.close()


def _terminal_driver():
    """Our hang-up-safe driver where Textual would use its Linux driver (not when TEXTUAL_DRIVER
    names another, nor on Windows); None leaves Textual's choice."""
    try:
        from textual.drivers.linux_driver import LinuxDriver

        from gpudock.ui.driver import HangupSafeDriver
    except ImportError:  # no termios: not a POSIX terminal
        return None
    return HangupSafeDriver if App.get_driver_class(App) is LinuxDriver else None


def run_dashboard(options: Options) -> int:
    """Open the host the options name (the built-in simulated one where this machine has no
    NVIDIA driver) and run the dashboard on it; the exit status is non-zero when it died of an
    exception. The host is closed however the app ends."""
    host = open_session(options, fallback_to_demo=True)
    try:
        app = GpudockApp(host)
        app.run()
        return int(app.return_code or 0)
    finally:
        host.close()
