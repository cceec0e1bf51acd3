"""A read-only dashboard (`gpudock --readonly`): every key that would change the host says so, where
it is pressed, naming the option, and changes nothing; what only reads (logs, the launch preview,
copying the docker run line) still works."""

from __future__ import annotations

import os
import time

from ui.test_toolkit_screen import DEBIAN_117, open_toolkit, screen_for, setup_files

from gpudock.session import Options, open_scenario
from gpudock.ui.app import GpudockApp
from gpudock.ui.screens.confirm import ConfirmScreen
from gpudock.ui.screens.containers import ContainerScreen
from gpudock.ui.screens.gpus import GpuScreen
from gpudock.ui.screens.launch import LaunchScreen
from gpudock.ui.screens.logs import ContainerLogScreen
from gpudock.ui.widgets.live_table import LiveTable
from helpers.dashboard import first_snapshot, screen_text, settle_workers
from helpers.sim import frozen_demo

READONLY = "Read-only session (--readonly)"


def readonly_app(env: bool = False) -> GpudockApp:
    opts = Options(demo=True, readonly=True, readonly_from="GPUDOCK_READONLY=1" if env else "--readonly")
    return GpudockApp(open_scenario(frozen_demo(), opts), refresh=0.3)


def notices(app) -> list[str]:
    return [n.message for n in app._notifications]


def engine_state(app) -> dict[str, str]:
    return {c.name: c.state for c in app.host.sim.dockerd.engine.containers.values()}


async def until(pilot, cond, what: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        if not isinstance(pilot.app.screen, ContainerLogScreen):
            await settle_workers(pilot.app)
        await pilot.pause(0.05)


async def test_the_header_says_read_only_before_any_key_is_pressed():
    app = readonly_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        assert "[read-only]" in screen_text(app).splitlines()[0]
    app = GpudockApp(open_scenario(frozen_demo(), Options(demo=True)), refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        assert "read-only" not in screen_text(app)


async def test_container_actions_are_refused_and_logs_still_open():
    app = readonly_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        before = engine_state(app)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ContainerScreen), "the Containers screen")
        screen = app.screen
        await until(pilot, lambda: screen.query_one(LiveTable).row_count > 0, "the rows")
        screen.query_one(LiveTable).move_cursor_to_key(app.host.sim.dockerd.engine.find("burn-in").id)
        for key, what in (("S", "stopping"), ("R", "restarting"), ("ctrl+d", "removing"), ("s", "a shell in")):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, ContainerScreen), key  # no confirmation opened
            assert any(n.startswith(f"{READONLY}: {what} burn-in is turned off") for n in notices(app)), key
        assert engine_state(app) == before
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, ContainerLogScreen), "the log view (it only reads)")


async def test_signals_are_refused():
    app = readonly_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await pilot.press("T")
        await pilot.press("K")
        await pilot.pause()
        assert isinstance(app.screen, GpuScreen)
        assert sum(n.startswith(f"{READONLY}: sending SIG") for n in notices(app)) == 2


async def test_launch_and_saving_a_compose_file_are_refused_the_preview_and_copy_work(tmp_path):
    app = readonly_app()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await first_snapshot(pilot)
            before = engine_state(app)
            await pilot.press("l")
            await until(pilot, lambda: isinstance(app.screen, LaunchScreen), "the form")
            await pilot.press(*"nvidia/cuda:12.0.1-base-ubuntu22.04")
            await pilot.press("enter")
            await pilot.pause()
            assert any(n.startswith(f"{READONLY}: launching a container is turned off") for n in notices(app))
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert any(n.startswith(f"{READONLY}: saving a compose file is turned off") for n in notices(app))
            await pilot.press("ctrl+y")
            await pilot.pause()
            assert app.clipboard == app.screen.spec.docker_run_line()
            await settle_workers(app)
            assert engine_state(app) == before
    finally:
        os.chdir(cwd)
    assert list(tmp_path.iterdir()) == []


async def test_toolkit_edits_are_refused_naming_the_environment_variable(tmp_path):
    cfg, dmn = setup_files(tmp_path, DEBIAN_117.read_bytes(), {"runtimes": {"nvidia": {"path": "x"}}})
    cfg_before, dmn_before = cfg.read_bytes(), dmn.read_bytes()
    app = readonly_app(env=True)
    screen = screen_for(cfg, dmn)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_toolkit(pilot, screen)
        for key in ("h", "u", "P", "R", "D"):
            await pilot.press(key)
            await pilot.pause()
            assert app.screen is screen and not isinstance(app.screen, ConfirmScreen), key
        refused = [n for n in notices(app) if n.startswith("Read-only session (GPUDOCK_READONLY=1)")]
        assert len(refused) == 5 and all("Start gpudock without GPUDOCK_READONLY" in n for n in refused)
    assert cfg.read_bytes() == cfg_before and dmn.read_bytes() == dmn_before


async def test_writing_the_toolkits_defaults_is_refused(tmp_path):
    cfg, dmn = tmp_path / "nowhere" / "config.toml", tmp_path / "daemon.json"
    app = readonly_app()
    screen = screen_for(cfg, dmn)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_toolkit(pilot, screen)
        await pilot.press("w")
        await pilot.pause()
        assert app.screen is screen
        assert any(n.startswith(f"{READONLY}: writing the toolkit's defaults") for n in notices(app))
    assert not cfg.exists()
