"""How long a launch waits for the container's first log lines (``gpudock run``, the form)."""

from __future__ import annotations

import time

from gpudock.launch import run


class Writer:
    """A container that writes ``lines`` one every ``every`` seconds, then exits (or runs on)."""

    def __init__(self, lines: list[str], every: float, exits: bool = True) -> None:
        self.lines, self.every, self.exits = lines, every, exits
        self.start = time.monotonic()
        self.status = "running"

    def _written(self) -> int:
        return min(len(self.lines), int((time.monotonic() - self.start) / self.every))

    def logs(self, stdout=True, stderr=True) -> bytes:
        return "".join(line + "\n" for line in self.lines[: self._written()]).encode()

    def reload(self) -> None:
        if (
            self.exits
            and self._written() == len(self.lines)
            and time.monotonic() - self.start > self.every * (len(self.lines) + 1)
        ):
            self.status = "exited"


def test_a_container_writing_slowly_is_read_to_its_nth_line():
    # The old loop stopped at the first line while the container still wrote (a flaky CLI test).
    c = Writer([f"line {i}" for i in range(4)], every=0.1)
    assert run.wait_for_first_logs(c, 4, 5.0) == ["line 0", "line 1", "line 2", "line 3"]


def test_a_container_that_exits_is_read_to_its_end():
    c = Writer(["started", "NVIDIA_VISIBLE_DEVICES=GPU-1"], every=0.05)
    assert run.wait_for_first_logs(c, 10, 5.0) == ["started", "NVIDIA_VISIBLE_DEVICES=GPU-1"]


def test_a_server_that_says_one_line_and_runs_on_is_not_waited_for_to_the_end():
    c = Writer(["listening on :8000"], every=0.05, exits=False)
    t = time.monotonic()
    assert run.wait_for_first_logs(c, 10, 5.0) == ["listening on :8000"]
    assert time.monotonic() - t < 2.0  # the quiet moment, not the whole wait


def test_a_silent_container_is_waited_for_up_to_the_limit():
    c = Writer([], every=0.05, exits=False)
    t = time.monotonic()
    assert run.wait_for_first_logs(c, 10, 0.5) == []
    assert time.monotonic() - t >= 0.5
