"""The diagnostics screen, driven by the keyboard against test roots (real gcc-built libraries, real
ldconfig caches, procfs files): findings listed errors first, evidence and fix of the highlighted
one, re-check on r and on a host change, and what an operator sees at 80x24."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from textual.widgets import DataTable, Static

from gpudock.doctor import diagnose
from gpudock.host.root import HostRoot
from gpudock.ui.screens.doctor import DoctorScreen
from helpers import kernelroot as K
from helpers.dashboard import first_snapshot, make_app
from helpers.libroot import make_driver_root

LIB = "/usr/lib/x86_64-linux-gnu"


def upgraded_root(tmp: Path) -> Path:
    """Libraries and on-disk module 535.129.03, module 535.104.05 still loaded; uvm missing."""
    root = tmp / "host"
    make_driver_root(root, {"535.129.03": [LIB]})
    K.kernel(root, "535.104.05")
    K.gpu(root, "0000:3b:00.0", 0)
    K.nodes(root, uvm_major=None)
    K.module_ko(root, "535.129.03")
    return root


def runner(root: Path):
    return functools.partial(diagnose, HostRoot(root), None, None, use_docker=False)


def screen_for(root: Path, watch_s: float = 3600) -> DoctorScreen:
    return DoctorScreen(runner(root), root=str(root), root_label="test-root", watch_s=watch_s)


async def checked(pilot, screen: DoctorScreen, n: int = 1) -> None:
    for _ in range(400):
        await pilot.pause(0.02)
        if screen.checks_done >= n and not screen._checking:
            await pilot.pause()
            return
    raise AssertionError(f"the doctor screen did not finish check #{n} (done {screen.checks_done})")


def detail(screen) -> str:
    return str(screen.query_one("#doctor-detail", Static).render())


async def open_doctor(pilot, screen):
    await first_snapshot(pilot)
    pilot.app.push_screen(screen)
    await checked(pilot, screen)


async def test_findings_listed_errors_first_with_evidence_and_fix(tmp_path):
    screen = screen_for(upgraded_root(tmp_path))
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_doctor(pilot, screen)
        table = screen.query_one(DataTable)
        sevs = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert sevs[:2] == ["ERROR", "ERROR"] and sevs == sorted(sevs, key=["ERROR", "WARN", "INFO", "OK"].index)
        ids = [str(table.get_row_at(i)[1]) for i in range(table.row_count)]
        assert set(ids[:2]) == {"driver-library-mismatch", "uvm"}
        # Walk to the mismatch with the keyboard and read its evidence and fix.
        while screen.current_id() != "driver-library-mismatch":
            await pilot.press("down")
        text = detail(screen)
        assert "reboot or module reload is pending" in text
        assert "/proc/driver/nvidia/version" in text and "535.104.05" in text
        assert "libnvidia-ml.so.535.129.03" in text
        assert "Fix" in text and "Reboot the host" in text
        header = str(screen.query_one("#doctor-header", Static).render())
        assert "2 error" in header and "check #1" in header  # (the reason shows from 100 columns)
        # the findings are the test root's: the header names it
        assert "test-root" in header


async def test_recheck_with_r_keeps_the_selection(tmp_path):
    screen = screen_for(upgraded_root(tmp_path))
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_doctor(pilot, screen)
        await pilot.press("down")
        chosen = screen.current_id()
        await pilot.press("r")
        await checked(pilot, screen, 2)
        assert screen.last_reason == "r pressed"
        assert screen.current_id() == chosen


async def test_host_change_is_picked_up_without_a_key(tmp_path):
    root = upgraded_root(tmp_path)
    screen = screen_for(root, watch_s=0.1)
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_doctor(pilot, screen)
        assert {f.id: f.severity for f in screen.findings}["driver-library-mismatch"] == "error"
        # The operator reboots in another terminal: the new module is loaded, uvm with it.
        K.kernel(root, "535.129.03")
        K.nodes(root)
        later = os.stat(root / "proc/driver/nvidia/version").st_mtime + 5
        os.utime(root / "proc/driver/nvidia/version", (later, later))
        await checked(pilot, screen, 2)
        assert screen.last_reason == "host changed"
        sev = {f.id: f.severity for f in screen.findings}
        assert sev["driver-library-mismatch"] == "ok" and sev["uvm"] == "ok"
        assert str(screen.query_one(DataTable).get_row_at(0)[0]) != "ERROR"


async def test_escape_goes_back_and_a_failing_runner_is_reported(tmp_path):
    def broken():
        raise RuntimeError("no host here")

    screen = DoctorScreen(broken, root=str(tmp_path), root_label="broken", watch_s=3600)
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        app.push_screen(screen)
        for _ in range(200):
            await pilot.pause(0.02)
            if not screen._checking:
                break
        assert screen.checks_done == 0 and not screen._checking
        assert screen.query_one(DataTable).row_count == 0
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is not screen


def test_doctor_screen_80x24(snap_compare, tmp_path):
    screen = screen_for(upgraded_root(tmp_path))

    async def ready(pilot):
        await open_doctor(pilot, screen)

    assert snap_compare(make_app(refresh=3600), terminal_size=(80, 24), run_before=ready)


def test_doctor_screen_detail_80x24(snap_compare, tmp_path):
    screen = screen_for(upgraded_root(tmp_path))

    async def ready(pilot):
        await open_doctor(pilot, screen)
        await pilot.press("down")  # the uvm error's evidence and fix

    assert snap_compare(make_app(refresh=3600), terminal_size=(80, 24), run_before=ready)


async def test_on_the_demo_the_doctor_reads_the_simulated_host_and_says_so():
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await pilot.press("d")
        screen = app.screen
        assert isinstance(screen, DoctorScreen)
        await checked(pilot, screen)
        header = str(screen.query_one("#doctor-header", Static).render())
        assert "simulated host demo" in header
        by_id = {f.id: f for f in screen.findings}
        # the simulated host's own files: its module and libraries agree, its /dev nodes are there
        assert by_id["driver-library-mismatch"].severity == "ok"
        assert by_id["device-nodes"].severity == "ok" and "8 GPU" in by_id["device-nodes"].title


async def test_d_opens_the_doctor_on_the_apps_own_host_and_session():
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        main = app.screen
        await pilot.press("d")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, DoctorScreen)
        await checked(pilot, screen)
        by_id = {f.id: f for f in screen.findings}
        # The app's (simulated) NVML session is the one the doctor asked: no second session.
        assert by_id["nvml-init"].severity == "ok" and "535.129.03" in by_id["nvml-init"].summary
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is main
