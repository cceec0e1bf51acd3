"""Acting on containers from the Containers screen, on the demo's simulated engine.

An operator highlights burn-in (it holds GPU 4, at 00000000:85:00.0, /dev/nvidia7): `S` asks
"Stop container burn-in?" naming that GPU, `y` stops it; `R` restarts, `ctrl+d` removes; `n`
changes nothing; a container removed meanwhile is a clear message. `l` follows its logs (pause,
search), `s` on a simulated container says there is no shell to open.
"""

from __future__ import annotations

import time

from textual.widgets import Static

from gpudock.ui.screens.confirm import ConfirmScreen
from gpudock.ui.screens.containers import ContainerScreen
from gpudock.ui.screens.logs import ContainerLogScreen
from gpudock.ui.widgets.follow_log import FollowLog, LogSearch
from gpudock.ui.widgets.live_table import LiveTable
from helpers.dashboard import first_snapshot, make_app, settle_workers


async def until(pilot, cond, what: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        if not isinstance(pilot.app.screen, ContainerLogScreen):  # its worker follows for ever
            await settle_workers(pilot.app)
        await pilot.pause(0.05)


def engine(app):
    return app.host.sim.dockerd.engine


def notices(app) -> list[str]:
    return [n.message for n in app._notifications]


async def containers_screen(pilot, name: str = "burn-in") -> ContainerScreen:
    await first_snapshot(pilot)
    await pilot.press("c")
    await until(pilot, lambda: isinstance(pilot.app.screen, ContainerScreen), "the Containers screen")
    screen = pilot.app.screen
    await until(pilot, lambda: screen.query_one(LiveTable).row_count > 0, "the containers")
    cid = engine(pilot.app).find(name).id
    screen.query_one(LiveTable).move_cursor_to_key(cid)
    await pilot.pause()
    return screen


def dialog_text(dialog: ConfirmScreen) -> str:
    return f"{dialog.title_text}\n{dialog.body}"


async def press_for_confirmation(pilot, key: str) -> ConfirmScreen:
    await pilot.press(key)
    await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), "the confirmation")
    return pilot.app.screen


async def test_stop_asks_naming_the_container_and_the_gpu_it_holds_then_stops_it():
    app = make_app(refresh=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        await containers_screen(pilot)
        before = {c.name: c.state for c in engine(app).containers.values()}
        dialog = await press_for_confirmation(pilot, "S")
        text = dialog_text(dialog)
        assert "Stop container burn-in?" in text
        assert "GPU 4  00000000:85:00.0  /dev/nvidia7  (--runtime)" in text
        assert "1 GPU process runs in it" in text
        assert "SIGKILL after 10 s" in text
        await pilot.press("y")
        await until(pilot, lambda: engine(app).find("burn-in").state == "exited", "burn-in stopped")
        await until(pilot, lambda: any("burn-in" in n and "stopped" in n for n in notices(app)), "the notice")
        after = {c.name: c.state for c in engine(app).containers.values()}
        assert after == {**before, "burn-in": "exited"}  # nothing else touched


async def test_no_cancels_and_nothing_changes():
    app = make_app(refresh=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        await containers_screen(pilot)
        for key in ("S", "R", "ctrl+d"):
            await press_for_confirmation(pilot, key)
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, ContainerScreen), "back on the screen")
        assert engine(app).find("burn-in").state == "running"
        assert sum("Cancelled: nothing changed." in n for n in notices(app)) == 3


async def test_restart_asks_then_restarts():
    app = make_app(refresh=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        await containers_screen(pilot)
        before = engine(app).find("burn-in").started
        dialog = await press_for_confirmation(pilot, "R")
        assert "Restart container burn-in?" in dialog_text(dialog)
        assert "starts it again, on the same GPUs" in dialog_text(dialog)
        await pilot.press("enter")
        await until(pilot, lambda: engine(app).find("burn-in").started != before, "burn-in restarted")
        assert engine(app).find("burn-in").state == "running"


async def test_remove_of_a_running_container_says_it_is_killed_first():
    app = make_app(refresh=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await containers_screen(pilot)
        cid = engine(app).find("burn-in").id
        dialog = await press_for_confirmation(pilot, "ctrl+d")
        assert "Remove container burn-in?" in dialog_text(dialog)
        assert "It is running: it is killed, then removed (docker rm -f)" in dialog_text(dialog)
        await pilot.press("y")
        await until(pilot, lambda: cid not in engine(app).containers, "burn-in removed")
        await until(pilot, lambda: cid not in screen.query_one(LiveTable).row_keys, "its row gone")


async def test_an_action_on_a_container_that_went_away_meanwhile_is_a_clear_message():
    app = make_app(refresh=3600)  # no refresh removes its row before the answer
    async with app.run_test(size=(80, 24)) as pilot:
        await containers_screen(pilot)
        await press_for_confirmation(pilot, "S")
        engine(app).remove("burn-in", force=True)  # someone else, in another terminal
        before = {c.name: c.state for c in engine(app).containers.values()}
        await pilot.press("y")
        await until(pilot, lambda: any("is gone" in n for n in notices(app)), "the message")
        msg = next(n for n in notices(app) if "is gone" in n)
        assert msg == "container burn-in is gone (removed since it was shown): nothing was done"
        assert {c.name: c.state for c in engine(app).containers.values()} == before


async def test_a_shell_in_a_simulated_container_says_why_there_is_none():
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await containers_screen(pilot)
        await pilot.press("s")
        await until(pilot, lambda: any("no shell to open" in n for n in notices(app)), "the message")
        assert isinstance(app.screen, ContainerScreen)  # the dashboard as it was


async def test_the_host_processes_row_has_no_container_to_act_on():
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await containers_screen(pilot)
        screen.query_one(LiveTable).move_cursor_to_key("host")
        await pilot.pause()
        await pilot.press("S")
        await pilot.pause()
        assert isinstance(app.screen, ContainerScreen)
        assert any("there is no container to act on" in n for n in notices(app))


# --------------------------------------------------------------------------- the log view


def log_title(app) -> str:
    return str(app.screen.query_one("#logs-title", Static).render())


def shown(app) -> list[str]:
    view = app.screen.query_one(FollowLog)
    return [strip.text.rstrip() for strip in view.lines]


async def open_logs(pilot) -> ContainerLogScreen:
    await containers_screen(pilot)
    await pilot.press("l")
    await pilot.pause()
    await until(pilot, lambda: isinstance(pilot.app.screen, ContainerLogScreen), "the log view")
    screen = pilot.app.screen
    await until(pilot, lambda: "following" in log_title(pilot.app), "following")
    await until(pilot, lambda: shown(pilot.app), "the first lines")
    return screen


async def test_the_log_view_follows_new_lines_pauses_and_searches():
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_logs(pilot)
        assert "Logs of burn-in" in log_title(app)
        assert shown(app)[0] == "burn-in: simulated by gpudock (scenario demo); nothing runs here"
        engine(app).log("burn-in", "step 100 loss 2.31")
        await until(pilot, lambda: "step 100 loss 2.31" in shown(app), "a new line")

        await pilot.press("p")  # pause: new lines are kept, not shown
        engine(app).log("burn-in", "step 200 loss 1.97")
        await until(pilot, lambda: screen.query_one(FollowLog).held == 1, "the line held")
        assert "step 200 loss 1.97" not in shown(app)
        assert "paused, 1 new line (p resumes)" in log_title(app)
        await pilot.press("p")
        assert "step 200 loss 1.97" in shown(app)

        await pilot.press("slash")
        assert screen.query_one(LogSearch).display
        await pilot.press(*"LOSS")  # any case
        assert shown(app) == ["step 100 loss 2.31", "step 200 loss 1.97"]
        assert "search 'LOSS': 2 of 3 lines" in log_title(app)
        engine(app).log("burn-in", "checkpoint saved")
        engine(app).log("burn-in", "step 300 loss 1.52")
        await until(pilot, lambda: "step 300 loss 1.52" in shown(app), "a matching line, following")
        assert "checkpoint saved" not in shown(app)
        await pilot.press("enter")  # keep the search, back to the log
        assert not screen.query_one(LogSearch).display
        await pilot.press("escape")  # clears the search first
        assert "checkpoint saved" in shown(app)
        await pilot.press("escape")  # then goes back
        assert isinstance(app.screen, ContainerScreen)


async def test_the_log_view_says_when_the_container_stopped_and_follows_it_again_when_it_runs():
    app = make_app(refresh=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_logs(pilot)
        engine(app).stop("burn-in")
        await until(pilot, lambda: "burn-in is exited; followed again when it runs" in log_title(app), "ended")
        engine(app).start("burn-in")
        await until(pilot, lambda: "following" in log_title(app), "following again")
        await until(pilot, lambda: any(", started " in line for line in shown(app)), "the restart's first line")


# --------------------------------------------------------------------------- snapshots at 80x24


def test_stop_confirmation_80x24(snap_compare):
    async def ready(pilot):
        await containers_screen(pilot)
        await press_for_confirmation(pilot, "S")

    assert snap_compare(make_app(refresh=3600), terminal_size=(80, 24), run_before=ready)


def test_remove_confirmation_80x24(snap_compare):
    async def ready(pilot):
        await containers_screen(pilot, "train-llama")
        await press_for_confirmation(pilot, "ctrl+d")

    assert snap_compare(make_app(refresh=3600), terminal_size=(80, 24), run_before=ready)


def test_log_view_80x24(snap_compare):
    async def ready(pilot):
        await open_logs(pilot)
        for i in range(1, 4):
            engine(pilot.app).log("burn-in", f"step {i}00 loss {3 - i * 0.5:.2f}")
        await until(pilot, lambda: len(shown(pilot.app)) == 4, "the lines")
        await pilot.press("slash", *"loss")
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(make_app(refresh=3600), terminal_size=(80, 24), run_before=ready)
