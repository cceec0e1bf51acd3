"""A container's logs, followed: ``l`` on the Containers screen.

The last 500 lines and then every new one, through the Engine API
(:meth:`gpudock.session.HostSession.container_logs`), read in a worker thread: the worker keeps
what it read, and a timer on the event loop shows it every 0.1 s (a chatty container is one
repaint per batch, a quiet one shows its line at once). The engine ends a follow when the
container stops; the view says so, asks the engine every second, and follows again, from the last
500 lines, when the container runs again. ``p`` pauses the view (new lines are kept, not
shown), ``/`` searches it, Escape clears a search, then goes back.
"""

from __future__ import annotations

import threading
import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import get_current_worker

from gpudock.ui.widgets.follow_log import FollowLog, LogSearch
from gpudock.ui.widgets.footer import Footer

__all__ = ["ContainerLogScreen"]

TAIL = 500
MAX_LINES = 5000
BATCH_S = 0.1  # how often the view takes what the worker read


class ContainerLogScreen(Screen):
    """The logs of one container, following."""

    BINDINGS = [
        Binding("escape", "back", "Back", id="logs-back"),
        Binding("p", "pause", "Pause", id="logs-pause"),
        Binding("slash", "search", "Search", id="logs-search"),
        Binding("end", "end", "End", show=False, id="logs-end"),
    ]

    class Lines(Message):
        def __init__(self, gen: int, lines: list[str], state: str | None = None) -> None:
            super().__init__()
            self.gen, self.lines, self.state = gen, lines, state

    def __init__(self, container_id: str, name: str, image: str = "") -> None:
        super().__init__(id="container-logs")
        self.container_id = container_id
        self.container_name = name
        self.image = image
        self.state = "opening…"
        self.ended = False
        self._gen = 0
        self._stream = None
        self._stream_lock = threading.Lock()
        self._pending: list[str | None] = []  # read by the worker, not yet shown; None: start again
        self._pending_gen = 0

    def compose(self) -> ComposeResult:
        yield Static("", id="logs-title")
        log = FollowLog(id="logs-view", max_lines=MAX_LINES, auto_scroll=True)
        yield log
        yield LogSearch(log, id="logs-search-input")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(LogSearch).display = False
        self.query_one(FollowLog).focus()
        self.set_interval(BATCH_S, self._drain)
        self._open()

    def _drain(self) -> None:
        with self._stream_lock:
            items, self._pending = self._pending, []
            gen = self._pending_gen
        if not items or gen != self._gen:
            return
        view = self.query_one(FollowLog)
        batch: list[str] = []
        for item in items:
            if item is None:  # the stream began again: so does the view
                batch = []
                view.reset()
            else:
                batch.append(item)
        view.follow(batch)
        self._show_title()

    def _open(self) -> None:
        self._gen += 1
        self.ended = False
        self.query_one(FollowLog).reset()
        self._set_state("opening…")
        self._follow(self._gen)

    # -- the worker ----------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="container-logs", exit_on_error=False)
    def _follow(self, gen: int) -> None:
        """Follow the stream; when the engine ends it (the container stopped), ask the engine every
        second whether it runs again (then follow it again from its last lines) or is gone."""
        from gpudock.launch.lifecycle import ActionError, ContainerGone
        from gpudock.session import SessionError

        worker = get_current_worker()
        host = self.app.host
        first = True
        with self._stream_lock:
            self._pending, self._pending_gen = [], gen
        while not worker.is_cancelled:
            try:
                stream = host.container_logs(self.container_id, tail=TAIL)
            except ContainerGone:
                self.post_message(self.Lines(gen, [], f"!{self.container_name} is gone (removed): the log ends here"))
                return
            except (ActionError, SessionError) as e:
                self.post_message(self.Lines(gen, [], f"!{e}"))
                return
            with self._stream_lock:
                self._stream = stream
                if not first:
                    self._pending.append(None)  # a new stream from its last lines: the view starts again
                first = False
            self.post_message(self.Lines(gen, [], "following"))
            try:
                for line in stream.lines():
                    if worker.is_cancelled:
                        return
                    with self._stream_lock:
                        self._pending.append(line)
                        del self._pending[:-MAX_LINES]
            except Exception as e:  # noqa: BLE001 - the engine went away mid-stream: said, not raised
                self.post_message(self.Lines(gen, [], f"!the log stream broke off: {e}"))
                return
            finally:
                stream.close()
                with self._stream_lock:
                    if self._stream is stream:
                        self._stream = None
            if not self._wait_until_it_runs(gen, worker):
                return

    def _wait_until_it_runs(self, gen: int, worker) -> bool:
        """After a follow ended: True when the container runs again, False when it is gone or the
        view closed."""
        import docker.errors

        said = None
        while not worker.is_cancelled:
            try:
                client = self.app.host.docker_client(10)
                try:
                    status = client.containers.get(self.container_id).status
                finally:
                    client.close()
            except docker.errors.NotFound:
                self.post_message(self.Lines(gen, [], f"!{self.container_name} is gone (removed): the log ends here"))
                return False
            except Exception as e:  # noqa: BLE001 - the engine is away: say so, ask again
                status = f"unknown ({e})"
            if status == "running":
                return True
            if status != said:
                said = status
                self.post_message(
                    self.Lines(gen, [], f"ended: {self.container_name} is {status}; followed again when it runs")
                )
            for _ in range(10):
                if worker.is_cancelled:
                    return False
                time.sleep(0.1)
        return False

    @on(Lines)
    def _on_lines(self, message: Lines) -> None:
        if message.gen != self._gen:
            return
        self._drain()  # what was read before the state changed comes first
        if message.state is not None:
            self.ended = message.state.startswith(("ended", "!"))
            self._set_state(message.state)

    def _set_state(self, state: str) -> None:
        self.state = state
        self._show_title()

    def _show_title(self) -> None:
        t = Text()
        t.append("Logs of ", style="bold")
        t.append(self.container_name, style="bold cyan")
        t.append(f" {self.container_id[:12]}", style="dim")
        if self.state.startswith("!"):
            t.append(f"  {self.state[1:]}", style="bold yellow")
        else:
            t.append(f"  {self.state}", style="dim")
        view = self.query_one(FollowLog)
        if view.status():
            t.append(f"  {view.status()}", style="bold")
        self.query_one("#logs-title", Static).update(t)

    # -- keys ----------------------------------------------------------------------------------

    def action_pause(self) -> None:
        view = self.query_one(FollowLog)
        view.set_paused(not view.paused)
        self._show_title()

    def action_search(self) -> None:
        self.query_one(LogSearch).open()

    def action_end(self) -> None:
        self.query_one(FollowLog).scroll_end(animate=False)

    @on(LogSearch.Searched)
    def _on_searched(self, message: LogSearch.Searched) -> None:
        self._show_title()

    def action_back(self) -> None:
        view = self.query_one(FollowLog)
        if view.pattern:  # Escape clears a search first
            self.query_one(LogSearch).action_clear_search()
            return
        self.app.pop_screen()

    def on_unmount(self) -> None:
        self._gen += 1
        self.workers.cancel_group(self, "container-logs")
        with self._stream_lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()  # unblocks the worker's read
