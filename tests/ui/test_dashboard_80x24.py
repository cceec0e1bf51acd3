"""The dashboard as an operator drives it over SSH at 80x24, with the keyboard alone.

Every way of moving between the screens (d, t, c, o, g and Escape, in any order, round after
round) leaves one of each screen on the stack and never crashes; a launch from the form ends in
"Started" in sight; the longest fix the doctor has can be read to its last line; ctrl+p finds every
command of the app; ``?`` lists every screen's keys; and a dashboard that dies of an exception exits
non-zero and leaves nothing behind."""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys

import pytest
from textual.command import CommandPalette
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input

from gpudock.sim.scenario import builtin_scenario
from gpudock.ui.screens.containers import ContainerScreen
from gpudock.ui.screens.doctor import DetailPane, DoctorScreen
from gpudock.ui.screens.gpus import GpuScreen
from gpudock.ui.screens.help import HelpScreen
from gpudock.ui.screens.help import screens as help_screens
from gpudock.ui.screens.launch import LaunchScreen
from gpudock.ui.screens.toolkit import ToolkitScreen
from gpudock.ui.screens.topology import TopologyScreen
from helpers import tty
from helpers.dashboard import first_snapshot, make_app, screen_text, settle_workers
from helpers.sim import frozen_demo

SIZE = (80, 24)

SCREEN_OF_KEY = {"g": GpuScreen, "c": ContainerScreen, "d": DoctorScreen, "t": ToolkitScreen, "o": TopologyScreen}


def de_bruijn(symbols: str, n: int) -> list[str]:
    """A sequence holding every run of ``n`` symbols exactly once (cyclically): every ordered
    triple of keys, each screen switched to from every other, in one walk."""
    k = len(symbols)
    a = [0] * k * n
    out: list[int] = []

    def db(t: int, p: int) -> None:
        if t > n:
            if n % p == 0:
                out.extend(a[1 : p + 1])
        else:
            a[t] = a[t - p]
            db(t + 1, p)
            for j in range(a[t - p] + 1, k):
                a[t] = j
                db(t + 1, t)

    db(1, 1)
    seq = [symbols[i] for i in out]
    return seq + seq[: n - 1]  # the wrap-around triples too


def expected_stack(stack: list[type], key: str) -> list[type]:
    """Where a key takes the screen stack: to the screen already on it (the ones above go, as
    going back would take them), else a new one on top; Escape goes back one (never off the GPUs)."""
    if key == "escape":
        return stack[:-1] if len(stack) > 1 else stack
    cls = SCREEN_OF_KEY[key]
    if cls in stack:
        return stack[: stack.index(cls) + 1]
    return [*stack, cls]


async def drive(pilot, keys: list[str]) -> None:
    app = pilot.app
    stack = [GpuScreen]
    for n, key in enumerate(keys):
        await pilot.press(key)
        await pilot.pause()
        stack = expected_stack(stack, key)
        shown = [type(s) for s in app.screen_stack[1:]]  # [0] is Textual's default screen
        assert shown == stack, f"after {keys[: n + 1]}: the stack is {shown}, not {stack}"
        assert app.is_running and app.return_code is None, f"the app ended after {keys[: n + 1]}"
        ids = [s.id for s in app.screen_stack if s.id]
        assert len(ids) == len(set(ids)), ids
    await settle_workers(app)


@pytest.mark.parametrize("keys", ["dtc", "dtco"])
async def test_every_switch_sequence_three_rounds_at_80x24(keys):
    # "dtc": every ordered triple of d, t, c and Escape (the path of the issue: the doctor says
    # the runtime is not wired, t to fix it, d to re-check); "dtco": with the topology too.
    # Three rounds of the walk (one of the longer one), then back to the GPUs with g.
    walk = de_bruijn(keys + "e", 3)
    walk = ["escape" if k == "e" else k for k in walk]
    app = make_app(refresh=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await first_snapshot(pilot)
        await drive(pilot, walk * (3 if keys == "dtc" else 1) + ["g"])
        assert type(app.screen) is GpuScreen and len(app.screen_stack) == 2
        assert app.return_code is None


async def test_the_navigation_keys_wait_while_a_modal_is_open():
    # The launch form is answered or closed first: d typed there is a letter of the image name.
    app = make_app(refresh=3600)
    async with app.run_test(size=SIZE) as pilot:
        await first_snapshot(pilot)
        await pilot.press("l")
        await pilot.pause()
        assert isinstance(app.screen, LaunchScreen)
        await pilot.press("d", "t", "c")
        assert isinstance(app.screen, LaunchScreen)
        assert app.screen.query_one("#f-image", Input).value == "dtc"
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen) is GpuScreen


async def test_a_launch_from_the_form_at_80x24_ends_in_started_in_sight():
    # The demo's simulated engine: GPU 3 is free, the image is local; Enter in the image field
    # launches, and the result line is on the screen (not pushed out of the modal).
    app = make_app(refresh=3600)
    async with app.run_test(size=SIZE) as pilot:
        await first_snapshot(pilot)
        await pilot.press("down", "down", "down", "l")
        form = app.screen
        assert isinstance(form, LaunchScreen)
        await app.workers.wait_for_complete([w for w in app.workers if w.group == "launch-facts"])
        await pilot.pause()
        await pilot.press(*"nvidia/cuda:12.0.1-base-ubuntu22.04")
        await pilot.press("tab", *"nvidia-smi -L", "tab", *"from-the-form")
        await pilot.press("enter")
        for _ in range(100):
            await app.workers.wait_for_complete([w for w in app.workers if w.group == "launch"])
            await pilot.pause()
            if "Started" in screen_text(app):
                break
        text = screen_text(app)
        assert "Started from-the-form" in text, text
        box = form.query_one("#launch-result-box")  # the result scrolls in its box, in sight
        assert 0 < box.region.height and box.region.bottom <= SIZE[1] - 1  # above the footer
        assert form.query_one("#launch-go").region.height > 0  # the buttons stay in sight too
        client = app.docker_client_factory()
        c = client.containers.get("from-the-form")
        gpu3 = app.snapshot.gpus[3].uuid
        assert c.attrs["Config"]["Image"] == "nvidia/cuda:12.0.1-base-ubuntu22.04"
        assert f"NVIDIA_VISIBLE_DEVICES={gpu3}" in c.attrs["Config"]["Env"]
        # the modal's footer shows its own keys, not the GPU screen's
        footer = text.splitlines()[-1]
        assert "Close" in footer and "Launch" in footer and "Containers" not in footer


async def test_the_last_line_of_the_longest_doctor_fix_is_reached_by_keyboard():
    app = make_app(refresh=3600)
    async with app.run_test(size=SIZE) as pilot:
        await first_snapshot(pilot)
        await pilot.press("d")
        doctor = app.screen
        assert isinstance(doctor, DoctorScreen)
        for _ in range(400):
            await pilot.pause(0.02)
            if doctor.checks_done and not doctor._checking:
                break
        longest = max(doctor.findings, key=lambda f: len(f.fix or ""))
        assert longest.fix, "the demo has a finding with a fix"
        last_line = longest.fix.strip().splitlines()[-1].strip()
        table = doctor.query_one(DataTable)
        while doctor.current_id() != longest.id:
            await pilot.press("down")
            assert table.cursor_row < len(doctor.findings)
        await pilot.press("enter")  # Enter reads it: the detail pane takes focus
        pane = doctor.query_one(DetailPane)
        assert doctor.focused is pane
        assert pane.max_scroll_y > 0, "the finding is longer than the pane: it must scroll"
        # The fix may be wrapped on the screen: its last words, read a line at a time with Down.
        tail = " ".join(last_line.split()[-3:])
        seen = []
        for _ in range(200):
            await pilot.press("down")
            await pilot.pause()
            seen.append(" ".join(screen_text(app).split()))
            if tail in seen[-1] or pane.scroll_y >= pane.max_scroll_y:
                break
        assert tail in seen[-1], f"{tail!r} never came on the screen"
        await pilot.press("end")  # and the evidence, to the end of the finding
        await pilot.pause()
        assert pane.scroll_y == pane.max_scroll_y
        await pilot.press("escape")  # back to the list, not off the screen
        assert isinstance(app.screen, DoctorScreen) and doctor.focused is table
        await pilot.press("escape")
        assert type(app.screen) is GpuScreen


APP_COMMANDS = ["Doctor", "Toolkit", "Containers", "Topology", "Refresh", "Help"]


@pytest.mark.parametrize("command", APP_COMMANDS)
async def test_ctrl_p_finds_each_command_of_the_app(command):
    app = make_app(refresh=3600)
    async with app.run_test(size=SIZE) as pilot:
        await first_snapshot(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*command.lower())
        for _ in range(50):  # the palette searches in the background
            await pilot.pause(0.05)
            if command in screen_text(app):
                break
        assert command in screen_text(app)
        await pilot.press("enter")
        await pilot.pause()
        await settle_workers(app)
        await pilot.pause()
        expected = {
            "Doctor": DoctorScreen,
            "Toolkit": ToolkitScreen,
            "Containers": ContainerScreen,
            "Topology": TopologyScreen,
            "Help": HelpScreen,
            "Refresh": GpuScreen,
        }[command]
        assert type(app.screen) is expected


async def test_ctrl_p_lists_the_keys_of_the_screen_shown():
    app = make_app(refresh=3600)
    async with app.run_test(size=SIZE) as pilot:
        await first_snapshot(pilot)
        await pilot.press("t")
        await pilot.pause()
        commands = [c.title for c in app.get_system_commands(app.screen)]
        assert {"Hook dbg", "Runtime dbg", "Back", "Doctor", "GPUs", "Help"} <= set(commands)
        assert "Toolkit" not in commands  # the screen shown needs no command to go to itself


async def test_the_help_screen_lists_every_screens_keys():
    app = make_app(refresh=3600)
    async with app.run_test(size=SIZE) as pilot:
        await first_snapshot(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        help_ = app.screen
        assert isinstance(help_, HelpScreen) and isinstance(help_, ModalScreen)
        box = help_.query_one("#help-box")
        seen = screen_text(app)
        while box.scroll_y < box.max_scroll_y:  # read it all with PageDown, as an operator would
            await pilot.press("pagedown")
            await pilot.pause()
            seen += "\n" + screen_text(app)
        for title, cls in [("Everywhere", type(app))] + help_screens():
            assert title in seen, title
            for b in cls.BINDINGS:
                if b.description:
                    assert b.description in seen, (title, b.description)
        for key in ("Doctor", "Toolkit", "Containers", "Topology", "Re-check", "Hook dbg", "Launch anyway"):
            assert key in seen
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen) is GpuScreen


# -- the layouts at 60, 80, 120 and 200 columns, a lost GPU among the held ones ------------------


def demo_with_a_lost_gpu():
    sc = frozen_demo()
    gpus = list(sc.gpus)
    gpus[1] = dataclasses.replace(gpus[1], lost=True)
    return dataclasses.replace(sc, gpus=tuple(gpus))


@pytest.mark.parametrize("size", [(60, 24), (80, 24), (120, 40), (200, 50)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_lost_gpu_among_held_ones(snap_compare, size):
    app = make_app(demo_with_a_lost_gpu(), refresh=3600)

    async def ready(pilot):
        await first_snapshot(pilot)
        await pilot.press("down")

    assert snap_compare(app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("cols", [60, 80, 120, 200])
async def test_every_row_keeps_its_holder_and_no_line_overflows(cols):
    app = make_app(demo_with_a_lost_gpu(), refresh=3600)
    async with app.run_test(size=(cols, 30)) as pilot:
        await first_snapshot(pilot)
        text = screen_text(app)
        lines = text.splitlines()
        assert all(len(line) <= cols for line in lines)
        assert "HOLDER" in text  # the column stays below 80 too
        lost_row = next(line for line in lines if line.startswith(" 1 "))
        assert "lost" in lost_row and "! train-llama" in lost_row  # who asked for the lost card
        for name in ("train-llama", "free"):
            assert name in text, (cols, text)


# -- the exit status when the app dies of an exception ---------------------------------------------

CRASHING = """
import sys
from gpudock.ui.screens import doctor

def boom(self):
    raise RuntimeError("injected failure in the doctor screen")

doctor.DoctorScreen.on_mount = boom
from gpudock.cli import main
sys.exit(main(["--demo"]))
"""


def test_a_dashboard_that_dies_of_an_exception_exits_non_zero_and_leaves_nothing(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path), TERM="xterm-256color")
    env.pop("DOCKER_HOST", None)
    pid, fd = tty.spawn([sys.executable, "-c", CRASHING], env, size=SIZE)
    try:
        screen = tty.read(fd, 60, until=b"sim:demo")
        assert b"sim:demo" in screen, screen[-2000:]
        assert any(p.name.startswith("gpudock-sim-") for p in tmp_path.iterdir())
        os.write(fd, b"d")
        out = tty.read(fd, 20, until=b"injected failure")
        status = tty.wait(pid, 20)
        if status is None:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the dashboard kept running after the exception")
        out += tty.read(fd, 1)
        assert b"injected failure in the doctor screen" in out
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 1
        assert list(tmp_path.iterdir()) == []  # the simulated host's directory is gone
    finally:
        os.close(fd)


def test_the_walks_cover_every_triple():
    walk = de_bruijn("dtce", 3)
    triples = {tuple(walk[i : i + 3]) for i in range(len(walk) - 2)}
    assert triples == set(itertools.product("dtce", repeat=3))


async def test_the_whole_nvml_banner_shows_at_80x24():
    # driver-mismatch: the longest of the NVML messages, five lines at 80 columns, none cut
    sc = dataclasses.replace(builtin_scenario("driver-mismatch"), frozen=True)
    app = make_app(sc, refresh=3600)
    async with app.run_test(size=SIZE) as pilot:
        await first_snapshot(pilot)
        text = " ".join(screen_text(app).split())
        assert "NVML could not start: Driver/library version mismatch" in text
        assert "The doctor (d) shows both versions and any stray libraries." in text
        assert "gpudock doctor" not in text  # the dashboard names its key, not the CLI


async def test_the_toolkit_names_the_simulated_hosts_files_by_their_host_paths():
    # not by where this machine keeps them (/tmp/gpudock-sim-*/host/...): the header says whose
    app = make_app(refresh=3600)
    async with app.run_test(size=SIZE) as pilot:
        await first_snapshot(pilot)
        await pilot.press("t")
        for _ in range(100):
            await pilot.pause(0.02)
            if "daemon.json   /etc" in screen_text(app):
                break
        text = screen_text(app)
        assert "simulated host demo" in text
        assert "config.toml   /etc/nvidia-container-runtime/config.toml" in text
        assert "daemon.json   /etc/docker/daemon.json" in text
        assert "gpudock-sim-" not in text
        await pilot.press("h")  # the confirmation names the line by its host path too
        await pilot.pause(0.3)
        text = " ".join(screen_text(app).split())
        assert "/etc/nvidia-container-runtime/config.toml line 8" in text and "gpudock-sim-" not in text
