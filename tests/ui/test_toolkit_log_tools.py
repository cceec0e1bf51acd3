"""The toolkit screen's debug log, set and read from the screen: `P` turns a log on at a path the
operator types (the CLI's `toolkit debug on --path`), `p` pauses the log view, `/` searches it."""

from __future__ import annotations

from textual.widgets import Input, Select, Static
from ui.test_toolkit_screen import (
    DEBIAN_117,
    confirm_dialog,
    dialog_text,
    idle,
    open_toolkit,
    press_and_confirm,
    screen_for,
    setup_files,
    until,
)

from gpudock.toolkit import config as tkconfig
from gpudock.ui.screens.toolkit import LogPathScreen
from gpudock.ui.widgets.follow_log import FollowLog, LogSearch
from helpers.dashboard import make_app


def shown(screen) -> list[str]:
    return [strip.text.rstrip() for strip in screen.query_one(FollowLog).lines]


def title(screen) -> str:
    return str(screen.query_one("#toolkit-log-title", Static).render())


async def test_p_turns_the_hooks_log_on_at_the_path_typed(tmp_path):
    cfg, dmn = setup_files(tmp_path, DEBIAN_117.read_bytes(), {})
    log_path = tmp_path / "logs" / "hook-debug.log"
    screen = screen_for(cfg, dmn)
    async with make_app(refresh=3600).run_test(size=(80, 24)) as pilot:
        await open_toolkit(pilot, screen)
        await pilot.press("P")
        await until(pilot, lambda: isinstance(pilot.app.screen, LogPathScreen), "the path prompt")
        prompt = pilot.app.screen
        field = prompt.query_one("#log-path-input", Input)
        assert field.value == "/var/log/nvidia-container-toolkit.log"  # the shipped, commented path
        field.value = "logs/relative.log"
        await pilot.press("enter")
        hint = str(prompt.query_one("#log-path-hint", Static).render())
        assert "must be absolute" in hint and pilot.app.screen is prompt  # refused, still asking
        field.value = str(log_path)
        writes = screen.writes_done
        await pilot.press("enter")
        dialog = await confirm_dialog(pilot)
        text = dialog_text(dialog)
        assert "Turn hook debug logging ON?" in text and str(log_path) in text
        await pilot.press("y")
        await until(pilot, lambda: screen.writes_done > writes and idle(screen), "written")
    cfg_now = tkconfig.load_config(tkconfig.locate_config(str(cfg)))
    d = cfg_now.debug_status("hook")
    assert d.enabled and d.log_path == str(log_path)
    assert cfg.read_text().count(f'debug = "{log_path}"') == 1


async def test_p_for_the_runtime_and_escape_cancels(tmp_path):
    cfg, dmn = setup_files(tmp_path, DEBIAN_117.read_bytes(), {})
    before = cfg.read_bytes()
    screen = screen_for(cfg, dmn)
    async with make_app(refresh=3600).run_test(size=(80, 24)) as pilot:
        await open_toolkit(pilot, screen)
        await pilot.press("P")
        await until(pilot, lambda: isinstance(pilot.app.screen, LogPathScreen), "the path prompt")
        prompt = pilot.app.screen
        prompt.query_one("#log-path-component", Select).value = "runtime"
        await pilot.pause()
        assert prompt.query_one("#log-path-input", Input).value == "/var/log/nvidia-container-runtime.log"
        await pilot.press("escape")
        await until(pilot, lambda: pilot.app.screen is screen and idle(screen), "cancelled")
    assert cfg.read_bytes() == before


async def test_the_log_view_pauses_and_searches(tmp_path):
    log_path = tmp_path / "hook.log"
    original = DEBIAN_117.read_bytes().replace(b"/var/log/nvidia-container-toolkit.log", str(log_path).encode())
    cfg, dmn = setup_files(tmp_path, original, {})
    log_path.write_text("I1 nvc.c:396] initializing library context\nI2 nvc_container.c:240] configuring container\n")
    screen = screen_for(cfg, dmn)
    async with make_app(refresh=3600).run_test(size=(80, 24)) as pilot:
        await open_toolkit(pilot, screen)
        await press_and_confirm(pilot, screen, "h")
        await until(pilot, lambda: len(shown(screen)) == 2, "the two lines")

        await pilot.press("p")
        with open(log_path, "a") as f:
            f.write("I3 nvc_mount.c:112] mounting /usr/bin/nvidia-smi\n")
        await until(pilot, lambda: len(screen.log_lines) == 3, "the line read")
        assert len(shown(screen)) == 2  # kept, not shown
        assert "paused, 1 new line (p resumes)" in title(screen)
        await pilot.press("p")
        assert shown(screen)[-1] == "I3 nvc_mount.c:112] mounting /usr/bin/nvidia-smi"

        await pilot.press("slash")
        assert screen.query_one(LogSearch).has_focus
        await pilot.press(*"nvc_")
        assert shown(screen) == [
            "I2 nvc_container.c:240] configuring container",
            "I3 nvc_mount.c:112] mounting /usr/bin/nvidia-smi",
        ]
        assert "search 'nvc_': 2 of 3 lines" in title(screen)
        await pilot.press("escape")  # clears the search
        assert len(shown(screen)) == 3 and "search" not in title(screen)


async def test_pause_and_search_are_only_there_while_a_log_is_shown(tmp_path):
    cfg, dmn = setup_files(tmp_path, DEBIAN_117.read_bytes(), {})
    screen = screen_for(cfg, dmn)
    async with make_app(refresh=3600).run_test(size=(80, 24)) as pilot:
        await open_toolkit(pilot, screen)
        await pilot.press("p", "slash")
        assert not screen.query_one(FollowLog).paused
        assert not screen.query_one(LogSearch).display
