"""The toolkit screen, driven by the keyboard: config.toml and daemon.json on temp copies of the real
toolkit files, a stand-in ``docker info``, the confirmation before every write, errors in words, the
live log view, 80x24 snapshots, and the real test engine's stand-in hook writing into the log view."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
from pathlib import Path

import docker
import pytest
from textual.widgets import RichLog, Static

from gpudock.toolkit import atomic
from gpudock.toolkit import config as tkconfig
from gpudock.toolkit import daemon_json as dj
from gpudock.ui.screens.toolkit import ConfirmScreen, ToolkitScreen
from helpers.dashboard import first_snapshot, make_app

DATA = Path(__file__).resolve().parent.parent / "data" / "config-toml"
DEBIAN_117 = DATA / "toolkit-1.17-debian.toml"
HOOK_LINE = b'#debug = "/var/log/nvidia-container-toolkit.log"'
RUNTIME_LINE = b'#debug = "/var/log/nvidia-container-runtime.log"'
INFO = {
    "Runtimes": {"runc": {"path": "runc"}, "nvidia": {"path": "nvidia-container-runtime"}},
    "DefaultRuntime": "runc",
}
# Snapshots need the same paths on every run: their files live here, recreated by each test.
SNAP_DIR = Path("/tmp/gpudock-snap")


def setup_files(d: Path, config: bytes | None = None, daemon: dict | None = None) -> tuple[Path, Path]:
    d.mkdir(parents=True, exist_ok=True)
    cfg, dmn = d / "config.toml", d / "daemon.json"
    if config is not None:
        cfg.write_bytes(config)
    if daemon is not None:
        dmn.write_text(json.dumps(daemon, indent=4) + "\n")
    return cfg, dmn


def snap_dir(name: str) -> Path:
    d = SNAP_DIR / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def screen_for(cfg: Path, dmn: Path, info=INFO, **kw) -> ToolkitScreen:
    def factory():
        if isinstance(info, Exception):
            raise info
        return info

    kw.setdefault("log_poll_s", 0.05)
    kw.setdefault("root", "/")  # the test's files are this machine's
    return ToolkitScreen(str(cfg), str(dmn), docker_info_factory=factory, **kw)


async def until(pilot, cond, what: str, timeout: float = 15.0) -> None:
    """Let the app run (workers, messages, paints) until ``cond()`` holds."""
    for _ in range(int(timeout / 0.02)):
        if cond():
            await pilot.pause()
            return
        await pilot.pause(0.02)
    raise AssertionError(f"the toolkit screen never got there: {what}")


def idle(screen: ToolkitScreen) -> bool:
    return screen.loads_done > 0 and not screen._engine_pending and not screen._busy


async def open_toolkit(pilot, screen: ToolkitScreen) -> None:
    await first_snapshot(pilot)
    pilot.app.push_screen(screen)
    await until(pilot, lambda: idle(screen) and pilot.app.screen is screen, "loaded")


async def confirm_dialog(pilot) -> ConfirmScreen:
    await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), "the confirmation opened")
    return pilot.app.screen


async def press_and_confirm(pilot, screen: ToolkitScreen, key: str, answer: str = "y") -> ConfirmScreen:
    writes, loads = screen.writes_done, screen.loads_done
    await pilot.press(key)
    dialog = await confirm_dialog(pilot)
    await pilot.press(answer)
    if answer in ("y", "enter"):
        await until(
            pilot,
            lambda: screen.writes_done > writes and screen.loads_done > loads and idle(screen),
            f"{key} written and re-read",
        )
    else:
        await until(pilot, lambda: pilot.app.screen is screen and idle(screen), "cancelled")
    return dialog


def status(screen: ToolkitScreen) -> str:
    """The status panel as plain text (wide, so that long temp paths stay on one line)."""
    from rich.console import Console

    console = Console(width=400, record=True, color_system=None)
    console.print(screen.status_renderable)
    return console.export_text()


def dialog_text(dialog: ConfirmScreen) -> str:
    return dialog.title_text + "\n" + dialog.body.plain


# --------------------------------------------------------------------------- pilot tests


async def test_status_shows_the_config_and_dockers_side(tmp_path):
    cfg, dmn = setup_files(
        tmp_path, DEBIAN_117.read_bytes(), {"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}
    )
    screen = screen_for(cfg, dmn)
    async with make_app(refresh=3600).run_test(size=(80, 24)) as pilot:
        await open_toolkit(pilot, screen)
        text = status(screen)
        assert str(cfg) in text and "as given with --config" in text
        assert "mode auto" in text and "log-level info" in text and "ldconfig @/sbin/ldconfig" in text
        assert "no-cgroups false (default)" in text
        assert "hook debug" in text and 'line 8: #debug = "/var/log/nvidia-container-toolkit.log"' in text
        assert "runtime debug" in text and "line 19" in text
        assert "nvidia registered" in text and "default runc (not set)" in text
        assert "knows nvidia" in text and "restart needed" not in text
        assert not screen.query_one("#toolkit-log", RichLog).display


async def test_hook_debug_on_changes_only_that_line_and_off_restores_the_bytes(tmp_path):
    original = DEBIAN_117.read_bytes()
    cfg, dmn = setup_files(tmp_path, original, {})
    screen = screen_for(cfg, dmn)
    async with make_app(refresh=3600).run_test(size=(80, 24)) as pilot:
        await open_toolkit(pilot, screen)
        dialog = await press_and_confirm(pilot, screen, "h")
        text = dialog_text(dialog)
        assert f"{cfg} line 8" in text and HOOK_LINE.decode() in text and "hook" in text.lower()
        assert cfg.read_bytes() == original.replace(HOOK_LINE, HOOK_LINE[1:], 1)
        assert (tmp_path / "config.toml.gpudock-bak").read_bytes() == original
        assert screen.doc["config"]["debug"]["hook"]["enabled"] is True
        assert "ON → /var/log/nvidia-container-toolkit.log" in status(screen)
        assert screen.query_one("#toolkit-log", RichLog).display  # the view follows the hook's log

        dialog = await press_and_confirm(pilot, screen, "h", "enter")
        assert "off" in dialog.title_text and f"{cfg} line 8" in dialog_text(dialog)
        assert cfg.read_bytes() == original
        assert screen.doc["config"]["debug"]["hook"]["enabled"] is False
        assert not screen.query_one("#toolkit-log", RichLog).display


async def test_runtime_debug_with_u_changes_only_the_runtime_line(tmp_path):
    original = DEBIAN_117.read_bytes()
    cfg, dmn = setup_files(tmp_path, original, {})
    screen = screen_for(cfg, dmn)
    async with make_app(refresh=3600).run_test(size=(80, 24)) as pilot:
        await open_toolkit(pilot, screen)
        dialog = await press_and_confirm(pilot, screen, "u")
        assert f"{cfg} line 19" in dialog_text(dialog)
        assert cfg.read_bytes() == original.replace(RUNTIME_LINE, RUNTIME_LINE[1:], 1)
        assert screen.doc["config"]["debug"]["runtime"]["enabled"] is True
        assert screen.doc["config"]["debug"]["hook"]["enabled"] is False
        await press_and_confirm(pilot, screen, "u")
        assert cfg.read_bytes() == original


@pytest.mark.parametrize("answer", ["n", "escape"])
async def test_cancel_changes_nothing(tmp_path, answer):
    original = DEBIAN_117.read_bytes()
    cfg, dmn = setup_files(tmp_path, original, {})
    screen = screen_for(cfg, dmn)
    async with make_app(refresh=3600).run_test(size=(80, 24)) as pilot:
        await open_toolkit(pilot, screen)
        await press_and_confirm(pilot, screen, "h", answer)
        assert cfg.read_bytes() == original
        assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", "daemon.json"]
        assert screen.writes_done == 0 and screen.doc["config"]["debug"]["hook"]["enabled"] is False


async def test_a_file_changed_behind_the_confirmation_is_not_overwritten(tmp_path):
    cfg, dmn = setup_files(tmp_path, DEBIAN_117.read_bytes(), {})
    screen = screen_for(cfg, dmn)
    async with make_app(refresh=3600).run_test(size=(80, 24)) as pilot:
        await open_toolkit(pilot, screen)
        await pilot.press("h")
        await confirm_dialog(pilot)
        theirs = DEBIAN_117.read_bytes().replace(b'mode = "auto"', b'mode = "cdi"')
        cfg.write_bytes(theirs)  # someone else edits the file while the dialog is open
        await pilot.press("y")
        await until(
            pilot,
            lambda: idle(screen) and screen.doc["config"]["settings"]["mode"]["value"] == "cdi",
            "re-read after the refusal",
        )
        assert cfg.read_bytes() == theirs and screen.writes_done == 0
        assert any("changed" in n.message for n in pilot.app._notifications)


async def test_an_edit_in_another_terminal_shows_up_without_a_key(tmp_path):
    original = DEBIAN_117.read_bytes()
    cfg, dmn = setup_files(tmp_path, original, {})
    screen = screen_for(cfg, dmn, watch_s=0.05)
    async with make_app(refresh=3600).run_test(size=(80, 24)) as pilot:
        await open_toolkit(pilot, screen)
        cfg.write_bytes(original.replace(b'log-level = "info"', b'log-level = "debug"'))
        await until(
            pilot, lambda: screen.doc["config"]["settings"]["log-level"]["value"] == "debug", "the edit picked up"
        )
        assert "log-level debug" in status(screen)


async def test_malformed_config_is_shown_with_line_and_column_and_left_alone(tmp_path):
    bad = b'[nvidia-container-cli]\n#debug = "/var/log/x.log"\nldconfig = "@/sbin/ldconfig\n'
    cfg, dmn = setup_files(tmp_path, bad, {})
    screen = screen_for(cfg, dmn)
    async with make_app(refresh=3600).run_test(size=(80, 24)) as pilot:
        await open_toolkit(pilot, screen)
        text = " ".join(status(screen).split())
        assert "is not valid TOML at line 3, column" in text and "gpudock left it untouched" in text
        assert "nvidia registered" not in text and "engine" in text  # the rest is still shown
        await pilot.press("h")
        await until(
            pilot,
            lambda: idle(screen) and any("line 3" in n.message for n in pilot.app._notifications),
            "the refusal said",
        )
        assert not isinstance(pilot.app.screen, ConfirmScreen)
        assert cfg.read_bytes() == bad


async def test_malformed_daemon_json_is_shown_with_line_and_column(tmp_path):
    cfg, dmn = setup_files(tmp_path, DEBIAN_117.read_bytes())
    dmn.write_text('{\n  "log-driver": "json-file",\n}\n')
    screen = screen_for(cfg, dmn)
    async with make_app(refresh=3600).run_test(size=(80, 24)) as pilot:
        await open_toolkit(pilot, screen)
        text = " ".join(status(screen).split())
        assert "is not valid JSON at line 3, column 1" in text
        assert "mode auto" in text  # config.toml is still shown
        await pilot.press("R")
        await until(
            pilot,
            lambda: idle(screen) and any("line 3" in n.message for n in pilot.app._notifications),
            "the refusal said",
        )
        assert dmn.read_text() == '{\n  "log-driver": "json-file",\n}\n'


async def test_missing_config_offers_the_defaults_and_w_writes_them(tmp_path):
    cfg, dmn = setup_files(tmp_path / "etc", None, {})
    screen = screen_for(cfg, dmn)
    async with make_app(refresh=3600).run_test(size=(80, 24)) as pilot:
        await open_toolkit(pilot, screen)
        text = " ".join(status(screen).split())
        assert "not found" in text and "Press w to write the toolkit's default config.toml" in text
        assert screen.check_action("write_defaults", ()) is True
        # h on a missing file: said, not crashed
        await pilot.press("h")
        await until(
            pilot,
            lambda: idle(screen) and any("press w" in n.message for n in pilot.app._notifications),
            "told to press w",
        )
        dialog = await press_and_confirm(pilot, screen, "w")
        assert str(cfg) in dialog_text(dialog)
        assert cfg.read_text() == tkconfig.default_config_text()
        assert screen.doc["config"]["exists"] and screen.doc["config"]["settings"]["mode"]["value"] == "auto"
        assert screen.check_action("write_defaults", ()) is False


async def test_no_permission_is_said_in_words(tmp_path, monkeypatch):
    cfg, dmn = setup_files(tmp_path, DEBIAN_117.read_bytes(), {})
    real = atomic.read_snapshot

    def denied(path):
        if str(path) == str(cfg):
            raise atomic.PermissionDeniedError(atomic.permission_message(path, "read"), path)
        return real(path)

    monkeypatch.setattr(tkconfig, "read_snapshot", denied)
    screen = screen_for(cfg, dmn)
    async with make_app(refresh=3600).run_test(size=(80, 24)) as pilot:
        await open_toolkit(pilot, screen)
        text = " ".join(status(screen).split())
        assert f"cannot read {cfg}: permission denied; run gpudock as root" in text


async def test_register_and_default_runtime_keep_the_other_keys(tmp_path):
    cfg, dmn = setup_files(
        tmp_path,
        DEBIAN_117.read_bytes(),
        {"log-driver": "json-file", "log-opts": {"max-size": "10m"}, "data-root": "/srv/docker"},
    )
    info = {"Runtimes": {"runc": {"path": "runc"}}, "DefaultRuntime": "runc"}
    screen = screen_for(cfg, dmn, info)
    async with make_app(refresh=3600).run_test(size=(80, 24)) as pilot:
        await open_toolkit(pilot, screen)
        assert "nvidia not registered" in status(screen)
        dialog = await press_and_confirm(pilot, screen, "R")
        text = dialog_text(dialog)
        assert str(dmn) in text and 'add runtime "nvidia"' in text and dj.RESTART_HINT in text
        data = json.loads(dmn.read_text())
        assert data == {
            "log-driver": "json-file",
            "log-opts": {"max-size": "10m"},
            "data-root": "/srv/docker",
            "runtimes": {"nvidia": {"path": "nvidia-container-runtime"}},
        }
        text = " ".join(status(screen).split())
        assert "nvidia registered" in text and "restart needed" in text and "systemctl restart docker" in text

        await press_and_confirm(pilot, screen, "D")
        assert json.loads(dmn.read_text())["default-runtime"] == "nvidia"
        await press_and_confirm(pilot, screen, "D")
        assert "default-runtime" not in json.loads(dmn.read_text())
        # R again: nothing to change, said so, no dialog
        await pilot.press("R")
        await until(
            pilot,
            lambda: idle(screen) and any("already registered" in n.message for n in pilot.app._notifications),
            "nothing to do",
        )


async def test_engine_unreachable_is_shown_as_such(tmp_path):
    cfg, dmn = setup_files(tmp_path, DEBIAN_117.read_bytes(), {})
    screen = screen_for(cfg, dmn, ConnectionError("connection refused"))
    async with make_app(refresh=3600).run_test(size=(80, 24)) as pilot:
        await open_toolkit(pilot, screen)
        text = " ".join(status(screen).split())
        assert "engine not reachable: cannot reach the Docker engine: connection refused" in text


async def test_log_view_follows_appends_truncation_and_warns_when_large(tmp_path):
    log_path = tmp_path / "log" / "hook.log"
    original = DEBIAN_117.read_bytes().replace(b"/var/log/nvidia-container-toolkit.log", str(log_path).encode())
    cfg, dmn = setup_files(tmp_path, original, {})
    screen = screen_for(cfg, dmn, log_warn_bytes=200)
    async with make_app(refresh=3600).run_test(size=(80, 24)) as pilot:
        await open_toolkit(pilot, screen)
        await press_and_confirm(pilot, screen, "h")
        log = screen.query_one("#toolkit-log", RichLog)
        assert log.display
        await until(pilot, lambda: "no file yet" in screen.log_state, "waiting for the file")
        log_path.parent.mkdir()
        with open(log_path, "a") as f:
            f.write("I1123 12:00:00.000001 1 nvc.c:396] initializing library context\n")
            f.write("I1123 12:00:00.000002 1 nvc.c:452] shutting down library context\n")
        await until(pilot, lambda: len(screen.log_lines) == 2, "two lines")
        assert "initializing library context" in screen.log_lines[0]
        await until(pilot, lambda: any("initializing library" in strip.text for strip in log.lines), "painted")
        with open(log_path, "a") as f:
            f.write("partial")
        await pilot.pause(0.2)
        assert len(screen.log_lines) == 2  # a line is shown once its newline arrives
        with open(log_path, "a") as f:
            f.write(" line done\n")
        await until(pilot, lambda: screen.log_lines[-1] == "partial line done", "the completed line")
        log_path.write_text("after truncation\n")  # `> file` / copytruncate
        await until(pilot, lambda: screen.log_lines[-1] == "after truncation", "the line after the truncation")
        with open(log_path, "a") as f:
            f.write("x" * 300 + "\n")
        await until(pilot, lambda: "turn debug off" in screen.log_state, "the size warning")
        title = str(screen.query_one("#toolkit-log-title", Static).render())
        assert str(log_path) in title and "turn debug off" in title


async def test_t_opens_the_screen_with_the_apps_options_and_escape_goes_back(tmp_path):
    cfg, dmn = setup_files(tmp_path, DEBIAN_117.read_bytes(), {"runtimes": {}})
    app = make_app(refresh=3600)
    app.host.options = dataclasses.replace(app.host.options, config=str(cfg), daemon_json=str(dmn))
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        main = app.screen
        await pilot.press("t")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ToolkitScreen)
        await until(pilot, lambda: idle(screen), "loaded")
        text = " ".join(status(screen).split())
        # --config/--daemon-json win; the engine is the one the dashboard watches (the demo's)
        assert str(cfg) in text and str(dmn) in text and "engine knows nvidia" in text
        await pilot.press("t")  # already there: no second screen
        await pilot.pause()
        assert app.screen is screen
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is main


# --------------------------------------------------------------------------- snapshots (80x24)


def test_toolkit_screen_80x24(snap_compare):
    d = snap_dir("status")
    cfg, dmn = setup_files(d, DEBIAN_117.read_bytes(), {"log-driver": "json-file"})
    screen = screen_for(cfg, dmn)

    async def ready(pilot):
        await open_toolkit(pilot, screen)

    assert snap_compare(make_app(refresh=3600), terminal_size=(80, 24), run_before=ready)


def test_toolkit_confirmation_80x24(snap_compare):
    d = snap_dir("confirm")
    cfg, dmn = setup_files(d, DEBIAN_117.read_bytes(), {"log-driver": "json-file"})
    screen = screen_for(cfg, dmn)

    async def ready(pilot):
        await open_toolkit(pilot, screen)
        await pilot.press("h")
        await confirm_dialog(pilot)

    assert snap_compare(make_app(refresh=3600), terminal_size=(80, 24), run_before=ready)


def test_toolkit_log_view_80x24(snap_compare):
    d = snap_dir("log")
    log_path = d / "nvidia-container-toolkit.log"
    original = DEBIAN_117.read_bytes().replace(b"/var/log/nvidia-container-toolkit.log", str(log_path).encode())
    cfg, dmn = setup_files(d, original, {"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}})
    lines = [
        "",
        "-- WARNING, the following logs are for debugging purposes only --",
        "",
        "I1123 12:00:00.000001 4242 nvc.c:396] initializing library context (version=1.17.0)",
        "I1123 12:00:00.000002 4242 nvc_container.c:240] configuring container with 'utility supervised'",
        "I1123 12:00:00.000003 4242 nvc_info.c:800] requesting NVIDIA_VISIBLE_DEVICES=all",
        "I1123 12:00:00.000004 4242 nvc.c:452] shutting down library context",
    ]
    screen = screen_for(cfg, dmn)

    async def ready(pilot):
        await open_toolkit(pilot, screen)
        await press_and_confirm(pilot, screen, "h")
        log_path.write_text("\n".join(lines) + "\n")
        await until(pilot, lambda: len(screen.log_lines) == len(lines) and "B" in screen.log_state, "the log lines")
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(make_app(refresh=3600), terminal_size=(80, 24), run_before=ready)


# --------------------------------------------------------------------------- the real engine


async def test_hook_lines_from_a_gpus_container_appear_in_the_log_view(engine):
    log_path = engine.hook_log
    log_path.unlink(missing_ok=True)
    original = engine.hook_config.read_bytes()
    screen = ToolkitScreen(
        str(engine.hook_config),
        str(engine.daemon_json),
        root="/",
        docker_info_factory=engine.client.info,
        log_poll_s=0.05,
    )
    async with make_app(refresh=3600).run_test(size=(80, 24)) as pilot:
        await open_toolkit(pilot, screen)
        assert "knows nvidia" in status(screen)
        dialog = await press_and_confirm(pilot, screen, "h")
        assert f"{engine.hook_config} line" in dialog_text(dialog)
        assert engine.hook_config.read_bytes() != original
        log = screen.query_one("#toolkit-log", RichLog)
        assert log.display and screen._log_sources == (("hook", str(log_path)),)

        def launch() -> None:
            engine.client.containers.run(
                engine.image,
                "true",
                device_requests=[docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])],
                remove=True,
            )

        await asyncio.to_thread(launch)
        await until(
            pilot,
            lambda: any("NVIDIA_VISIBLE_DEVICES=all" in ln for ln in screen.log_lines),
            "the hook's lines in the log view",
            timeout=30,
        )
        assert any("stand-in hook: container" in ln and "prestart" in ln for ln in screen.log_lines)

        await press_and_confirm(pilot, screen, "h")
        assert engine.hook_config.read_bytes() == original
