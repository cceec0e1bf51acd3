"""Signalling a GPU process from the GPU screen: `T` SIGTERM, `K` SIGKILL, after a confirmation.

The processes are ones the test starts itself: a simulated GPU whose process PIDs are these real
children, mapped through this machine's /proc (the session's process table is this machine's, as
with a real engine under simulated GPUs in test_holders_ui.py). On the demo, whose processes are
made up, nothing is ever sent.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from gpudock.session import Options, open_scenario
from gpudock.ui.app import GpudockApp
from gpudock.ui.screens.confirm import ConfirmScreen
from gpudock.ui.screens.gpus import GpuScreen
from gpudock.ui.screens.signal import ProcessPickScreen
from helpers.dashboard import NO_DOCKER, first_snapshot, make_app, until
from helpers.sim import gpu, scenario


@pytest.fixture
def children():
    procs: list[subprocess.Popen] = []

    def start(n: int = 1) -> list[subprocess.Popen]:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]))
        return procs

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def app_on(pids: list[int], readonly: bool = False) -> GpudockApp:
    procs = [{"pid": pid, "used_memory_mib": 1000 + i, "command": f"train.py --rank {i}"} for i, pid in enumerate(pids)]
    sc = scenario([gpu(0, process=procs), gpu(1)])
    host = open_scenario(sc, Options(sim="test", readonly=readonly), docker_url=NO_DOCKER, proc_root="/proc")
    return GpudockApp(host, refresh=0.3)


def notices(app) -> list[str]:
    return [n.message for n in app._notifications]


def confirmation(app) -> str:
    assert isinstance(app.screen, ConfirmScreen)
    return f"{app.screen.title_text}\n{app.screen.body}"


async def test_sigterm_after_a_confirmation_naming_the_pid_its_command_and_where_it_runs(children):
    (child,) = children(1)
    app = app_on([child.pid])
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await pilot.press("T")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        text = confirmation(app)
        assert f"Send SIGTERM to PID {child.pid}?" in text
        assert "train.py --rank 0" in text  # its command
        assert "Runs in" in text  # and where: this machine's cgroup says (host, or this test's container)
        assert "GPU       0  10:00.0  /dev/nvidia1  1000 MiB" in text
        assert child.poll() is None  # nothing sent before the answer
        await pilot.press("y")
        assert child.wait(10) == -signal.SIGTERM
        await until(pilot, lambda: any(f"Sent SIGTERM to PID {child.pid}" in n for n in notices(app)), "the notice")


async def test_sigkill_to_the_process_chosen_among_several(children):
    first, second = children(2)
    app = app_on([first.pid, second.pid])
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await pilot.press("K")
        await until(pilot, lambda: isinstance(app.screen, ProcessPickScreen), "the choice of process")
        await pilot.press("down", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        assert f"Send SIGKILL to PID {second.pid}?" in confirmation(app)
        await pilot.press("y")
        assert second.wait(10) == -signal.SIGKILL
        assert first.poll() is None  # only the one chosen


async def test_no_sends_nothing(children):
    (child,) = children(1)
    app = app_on([child.pid])
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await pilot.press("K")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, GpuScreen), "back")
        assert "Cancelled: no signal sent." in notices(app)
        assert child.poll() is None


async def test_a_pid_that_exited_since_it_was_shown_is_refused(children):
    (child,) = children(1)
    app = app_on([child.pid])
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await pilot.press("K")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        child.kill()
        child.wait()
        await pilot.press("y")
        await until(pilot, lambda: any("has exited since it was shown" in n for n in notices(app)), "the refusal")


async def test_a_read_only_session_says_so_and_sends_nothing(children):
    (child,) = children(1)
    app = app_on([child.pid], readonly=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        for key in ("T", "K"):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, GpuScreen)
        assert sum("Read-only session (--readonly): sending SIG" in n for n in notices(app)) == 2
        assert child.poll() is None


async def test_a_gpu_with_no_process_says_so(children):
    (child,) = children(1)
    app = app_on([child.pid])
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await pilot.press("down", "T")
        await pilot.pause()
        assert isinstance(app.screen, GpuScreen) and "GPU 1 runs no process." in notices(app)


async def test_the_demos_made_up_processes_are_never_signalled():
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await pilot.press("K")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: any("is a process of the simulated host demo" in n for n in notices(app)), "no")


def test_signal_confirmation_80x24(snap_compare):
    async def ready(pilot):
        await first_snapshot(pilot)
        await pilot.press("T")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), "the confirmation")

    assert snap_compare(make_app(refresh=3600), terminal_size=(80, 24), run_before=ready)


def test_process_choice_80x24(snap_compare):
    async def ready(pilot):
        await first_snapshot(pilot)
        await pilot.press(*["down"] * 6, "K")  # GPU 6: a MIG card with two processes
        await until(pilot, lambda: isinstance(pilot.app.screen, ProcessPickScreen), "the choice")

    assert snap_compare(make_app(refresh=3600), terminal_size=(80, 24), run_before=ready)
