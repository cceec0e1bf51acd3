"""The Textual application: the GPU screen, the refresh loop, and the way to the other screens.

Data flows one way. A one-shot worker thread takes a ``HostSnapshot`` (NVML calls never run on the
event loop) and posts ``SnapshotReady``; the app keeps the latest snapshot and hands it to the
screens, which update their tables in place by key. The next poll is scheduled only when the last
one is done, so a slow host stretches the period instead of queueing polls (as dolphie does).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources

from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.message import Message
from textual.worker import Worker, WorkerState

from gpudock.host.nvml import NvmlSession
from gpudock.model import HostSnapshot


def _css_paths() -> list[str]:
    styles = resources.files("gpudock") / "styles"
    return sorted(str(p) for p in styles.iterdir() if p.name.endswith(".tcss"))


class SnapshotReady(Message):
    def __init__(self, snapshot: HostSnapshot, cpu_s: float) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.cpu_s = cpu_s


@dataclass(frozen=True)
class HostChoice:
    """Which host the dashboard shows, and the banner that says why (e.g. the fallback to the demo)."""

    session: NvmlSession
    banner: str | None = None


def choose_host(args) -> HostChoice:
    """The dashboard's host: the one asked for, or the demo when this machine has no NVIDIA driver."""
    from gpudock.cli import open_nvml
    from gpudock.sim.libnvml import sim_library_loader
    from gpudock.sim.scenario import builtin_scenario

    session = open_nvml(args)
    if session.source != "nvml" or getattr(args, "no_demo", False):
        return HostChoice(session)
    failure = session.start()
    if failure is not None and failure.code == 12:  # no libnvidia-ml.so.1 at all: a laptop, CI
        session.shutdown()
        demo = NvmlSession(sim_library_loader(builtin_scenario("demo")), source="sim:demo")
        return HostChoice(
            demo,
            "No NVIDIA driver on this machine (libnvidia-ml.so.1 not found): showing the built-in "
            "simulated host. Use --no-demo to see the error instead.",
        )
    return HostChoice(session)


class GpudockApp(App):
    """gpudock's dashboard."""

    TITLE = "gpudock"
    CSS_PATH = _css_paths()
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("r", "refresh_now", "Refresh", id="refresh"),
        # Not in the footer yet: showing it changes every main-screen snapshot (the lead decides).
        Binding("d", "doctor", "Doctor", id="doctor", show=False),
        Binding("t", "toolkit", "Toolkit", id="toolkit"),
    ]

    def __init__(self, host: HostChoice, refresh: float = 1.0, root: str = "/", args=None) -> None:
        super().__init__()
        self.host = host
        self.refresh_period = max(0.2, refresh)
        self.root = root
        self.args = args
        self.snapshot: HostSnapshot | None = None
        self.last_poll_cpu_s = 0.0
        self._poll_timer = None
        self._closing = False

    def on_mount(self) -> None:
        from gpudock.ui.screens.gpus import GpuScreen

        self.push_screen(GpuScreen(banner=self.host.banner))
        self.poll()

    # -- the refresh loop ------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="poll")
    def poll(self) -> None:
        t0 = time.thread_time()
        snap = self.host.session.snapshot()
        self.post_message(SnapshotReady(snap, time.thread_time() - t0))

    @on(SnapshotReady)
    def _on_snapshot(self, message: SnapshotReady) -> None:
        self.snapshot = message.snapshot
        self.last_poll_cpu_s = message.cpu_s
        for screen in self.screen_stack:
            update = getattr(screen, "show_snapshot", None)
            if update is not None:
                update(message.snapshot)
        self._schedule_next()

    def _schedule_next(self) -> None:
        if self._closing:
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

    def action_refresh_now(self) -> None:
        self.poll()

    def action_doctor(self) -> None:
        from gpudock.ui.screens.doctor import DoctorScreen

        if not isinstance(self.screen, DoctorScreen):
            self.push_screen(DoctorScreen())

    def action_toolkit(self) -> None:
        from gpudock.ui.screens.toolkit import ToolkitScreen

        if not isinstance(self.screen, ToolkitScreen):
            self.push_screen(ToolkitScreen())

    async def action_quit(self) -> None:
        self._closing = True
        self.exit()

    def on_unmount(self) -> None:
        self.host.session.shutdown()


def run_dashboard(args) -> int:
    host = choose_host(args)
    app = GpudockApp(host, refresh=args.refresh, root=args.root, args=args)
    app.run()
    return 0
