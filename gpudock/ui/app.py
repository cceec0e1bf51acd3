"""The Textual application: the GPU screen, the refresh loop, and the way to the other screens.

Data flows one way. A one-shot worker thread takes a ``HostSnapshot`` (NVML calls never run on the
event loop) and posts ``SnapshotReady``; the app keeps the latest snapshot and hands it to the
screens, which update their tables in place by key. The next poll is scheduled only when the last
one is done, so a slow host stretches the period instead of queueing polls (as dolphie does).
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass
from importlib import resources

from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.message import Message
from textual.worker import Worker, WorkerState, get_current_worker

from gpudock.host.docker import DockerWatcher
from gpudock.host.holders import HoldersMap, build_holders, proc_root_for
from gpudock.host.nvml import NvmlSession
from gpudock.model import HostSnapshot

# The holder column's width in app.holders_by_gpu (the GPU screen fits the text to its own column).
HOLDER_WIDTH = 24


def _css_paths() -> list[str]:
    styles = resources.files("gpudock") / "styles"
    return sorted(str(p) for p in styles.iterdir() if p.name.endswith(".tcss"))


class SnapshotReady(Message):
    def __init__(self, snapshot: HostSnapshot, holders: HoldersMap | None = None) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.holders = holders  # the holders map joined with this snapshot (None: no Docker watcher)


@dataclass(frozen=True)
class HostChoice:
    """Which host the dashboard shows, and the banner that says why (e.g. the fallback to the demo)."""

    session: NvmlSession
    banner: str | None = None
    # The Docker engine whose containers hold the GPUs (None: --docker-host, else DOCKER_HOST or
    # the default socket) and the /proc that maps GPU processes to containers (None: <--root>/proc).
    # A simulated host (gpudock.sim) sets both to its own engine and /proc.
    docker_base_url: str | None = None
    proc_root: str | None = None
    sim_host: object | None = None  # gpudock.sim.host.SimHost serving both; the app closes it on exit


def with_sim_docker(choice: HostChoice, args, scenario=None) -> HostChoice:
    """A simulated host's Docker side: when the scenario (``--demo``/``--sim`` or ``scenario``)
    describes an engine and none is named (``--docker-host``/``DOCKER_HOST``), start a
    :class:`gpudock.sim.host.SimHost` (engine socket + ``/proc``) and watch it."""
    import dataclasses

    from gpudock.sim.host import sim_host_for

    sim = sim_host_for(args, scenario).__enter__()  # a started SimHost, or None
    if sim is None:
        return choice
    return dataclasses.replace(choice, docker_base_url=sim.docker_base_url, proc_root=sim.proc_root, sim_host=sim)


def choose_host(args) -> HostChoice:
    """The dashboard's host: the one asked for, or the demo when this machine has no NVIDIA driver."""
    from gpudock.cli import open_nvml
    from gpudock.sim.libnvml import sim_library_loader
    from gpudock.sim.scenario import builtin_scenario

    session = open_nvml(args)
    if session.source != "nvml":
        return with_sim_docker(HostChoice(session), args)
    if getattr(args, "no_demo", False):
        return HostChoice(session)
    failure = session.start()
    if failure is not None and failure.code == 12:  # no libnvidia-ml.so.1 at all: a laptop, CI
        session.shutdown()
        demo = NvmlSession(sim_library_loader(builtin_scenario("demo")), source="sim:demo")
        return with_sim_docker(
            HostChoice(
                demo,
                "No NVIDIA driver on this machine (libnvidia-ml.so.1 not found): showing the built-in "
                "simulated host. Use --no-demo to see the error instead.",
            ),
            args,
            builtin_scenario("demo"),
        )
    return HostChoice(session)


class GpudockApp(App):
    """gpudock's dashboard."""

    TITLE = "gpudock"
    CSS_PATH = _css_paths()
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit"),
        # The table refreshes itself every second, so `r` gives its place in the 80-column footer to
        # the doctor, which an operator in trouble must find (ctrl+p lists both).
        Binding("r", "refresh_now", "Refresh", id="refresh", show=False),
        Binding("d", "doctor", "Doctor", id="doctor"),
        Binding("t", "toolkit", "Toolkit", id="toolkit"),
    ]

    def __init__(self, host: HostChoice, refresh: float = 1.0, root: str = "/", args=None) -> None:
        super().__init__(driver_class=_terminal_driver())
        self.host = host
        self.refresh_period = max(0.2, refresh)
        self.root = root
        self.args = args
        self.snapshot: HostSnapshot | None = None
        # Which container holds each GPU (gpudock.host.holders), joined on every poll.
        self.docker_watcher: DockerWatcher | None = None
        self.holders: HoldersMap | None = None
        self.holders_by_gpu: dict[str, str] = {}  # GPU UUID -> the holder column's text
        self.show_all_containers = False  # the container panel's `a`: stopped/created ones too
        self._poll_timer = None
        self._poll_again = False  # poll_soon() asked while a poll ran
        self._quitting = False
        self._signals: list[int] = []

    def on_mount(self) -> None:
        from gpudock.ui.screens.gpus import GpuScreen

        self._handle_termination()
        url = self.host.docker_base_url or getattr(self.args, "docker_host", None)
        # Retry a lost engine at most every 5 s: the banner should go soon after it is back.
        self.docker_watcher = DockerWatcher(url, backoff=(0.5, 5.0))
        self._start_docker()
        self.push_screen(GpuScreen(banner=self.host.banner))
        self.poll()

    @work(thread=True, exit_on_error=False, group="docker")
    def _start_docker(self) -> None:
        """Start the watcher's thread; once its first connection attempt is over (ok or not), poll
        again so the holders (or the banner saying why there are none) show without waiting a period."""
        watcher = self.docker_watcher
        if watcher is None:
            return
        watcher.start()
        worker = get_current_worker()
        while watcher.status.state == "connecting":
            if worker.is_cancelled or self._quitting:
                return
            time.sleep(0.02)
        if not self._quitting:
            self.call_from_thread(self.poll_soon)

    # -- the refresh loop ------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="poll")
    def poll(self) -> None:
        snap = self.host.session.snapshot()
        try:
            holders = self._holders(snap)
        except Exception as e:  # noqa: BLE001 - the GPU view must keep working whatever the join does
            self.log.error(f"holders: {e!r}")
            holders = None
        self.post_message(SnapshotReady(snap, holders))

    def _holders(self, snap: HostSnapshot) -> HoldersMap | None:
        """Join the snapshot with the watcher's containers (called in the poll thread)."""
        watcher = self.docker_watcher
        if watcher is None:
            return None
        status = watcher.status
        # The exact tuple the watcher returns: build_holders caches its container-side work on it.
        containers = watcher.snapshot(snap.gpus, all=self.show_all_containers)
        proc_root = self.host.proc_root or proc_root_for(self.root)
        return build_holders(snap, containers, proc_root=proc_root, docker_status=status)

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
        import docker

        url = self.docker_watcher.status.base_url if self.docker_watcher else None
        return docker.DockerClient(base_url=url, timeout=10) if url else docker.from_env(timeout=10)

    def holders_for_launch(self, snapshot: HostSnapshot) -> dict[str, tuple[str, ...]]:
        """GPU UUID -> running containers holding it, from the live holders map (no second read)."""
        holders = self.holders
        if holders is None:
            return {}
        return {
            g.uuid: tuple(sorted(h.name for h in g.running_holders))
            for g in holders.gpus
            if g.uuid and g.running_holders
        }

    def action_doctor(self) -> None:
        from gpudock.ui.screens.doctor import DoctorScreen

        if not isinstance(self.screen, DoctorScreen):
            self.push_screen(DoctorScreen())

    def action_toolkit(self) -> None:
        from gpudock.ui.screens.toolkit import ToolkitScreen

        if not isinstance(self.screen, ToolkitScreen):
            self.push_screen(ToolkitScreen())

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
        if self.docker_watcher is not None:
            self.docker_watcher.stop()
        if self.host.sim_host is not None:
            self.host.sim_host.close()
        self.host.session.shutdown()


def _terminal_driver():
    """Our hang-up-safe driver where Textual would use its Linux driver (not when TEXTUAL_DRIVER
    names another, nor on Windows); None leaves Textual's choice."""
    try:
        from textual.drivers.linux_driver import LinuxDriver

        from gpudock.ui.driver import HangupSafeDriver
    except ImportError:  # no termios: not a POSIX terminal
        return None
    return HangupSafeDriver if App.get_driver_class(App) is LinuxDriver else None


def run_dashboard(args) -> int:
    host = choose_host(args)
    app = GpudockApp(host, refresh=args.refresh, root=args.root, args=args)
    try:
        app.run()
    finally:
        if host.sim_host is not None:
            host.sim_host.close()
    return 0
