"""The demo is a whole simulated host: it never reads this machine's /dev, /etc, /proc/<pid> or
ld.so.cache, never talks to this machine's Docker engine, and never writes outside its own
temporary directory.

A child Python process runs the demo's commands (doctor, libs, toolkit status, a toolkit edit,
holders, gpus, args, run) and its dashboard screens (GPUs, Containers, Doctor, Toolkit with an
edit through the screen) under a Python audit hook (``sys.addaudithook``: open, os.listdir,
os.scandir and every other file event Python raises, and socket.connect), with os.stat/os.lstat
wrapped too (Python raises no audit event for them). The test then checks every recorded path.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

CHILD = textwrap.dedent(
    r"""
    import asyncio, json, os, socket, sys, tempfile
    tmp = tempfile.gettempdir()  # tempfile probes (writes) the directory once: before the hook
    events = []
    FILE_EVENTS = {
        "open", "os.listdir", "os.scandir", "os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir",
        "os.symlink", "os.link", "os.chmod", "os.chown", "os.utime", "os.truncate", "os.mknod", "os.chdir",
        "shutil.rmtree", "shutil.copyfile", "shutil.move", "os.chflags", "os.lchown",
    }

    recording = [True]
    import threading
    local = threading.local()

    def where(path, dir_fd):
        # the path an operation names: relative to a directory descriptor when it has one
        if isinstance(path, bytes):
            path = path.decode(errors="replace")
        if not isinstance(path, (str, os.PathLike)):
            return None
        path = os.fspath(path)
        if isinstance(dir_fd, int) and dir_fd >= 0 and not path.startswith("/"):
            try:
                return os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
            except OSError:
                return f"<fd {dir_fd}>/{path}"
        return path

    # (paths, their directory descriptors) by event: the arguments Python passes to the audit hook
    WHERE = {
        "os.mkdir": lambda a: [(a[0], a[2])],
        "os.rename": lambda a: [(a[0], a[2]), (a[1], a[3])],
        "os.replace": lambda a: [(a[0], a[2]), (a[1], a[3])],
        "os.remove": lambda a: [(a[0], a[1])],
        "os.rmdir": lambda a: [(a[0], a[1])],
        "os.symlink": lambda a: [(a[1], a[2])],
        "os.link": lambda a: [(a[1], a[3])],
        "os.chmod": lambda a: [(a[0], a[2])],
        "os.chown": lambda a: [(a[0], a[3])],
        "os.utime": lambda a: [(a[0], a[3])],
        "os.listdir": lambda a: [(a[0], None)],
        "os.scandir": lambda a: [(a[0], None)],
        "shutil.rmtree": lambda a: [(a[0], a[1])],
    }

    def hook(event, args):
        if not recording:
            return
        if event == "open":
            if getattr(local, "dir_fd", None) is not None:
                return  # os.open with dir_fd: recorded by the wrapper below, which knows the directory
            path = where(args[0], None)
            mode = args[1] if len(args) > 1 and isinstance(args[1], str) else None
            if path is not None:
                events.append([event, path, mode, (args[2] if len(args) > 2 else 0) or 0])
        elif event in FILE_EVENTS:
            pairs = WHERE.get(event, lambda a: [(a[0], None)])(args) if args else []
            for path, dir_fd in pairs:
                path = where(path, dir_fd)
                if path is not None:
                    events.append([event, path, None, 0])
        elif event == "socket.connect":
            addr = args[1] if len(args) > 1 else None
            if isinstance(addr, (str, bytes)):
                events.append(["connect", addr.decode() if isinstance(addr, bytes) else addr, None, 0])

    real_stat, real_lstat, real_open = os.stat, os.lstat, os.open

    def stat(path, *a, **kw):
        if recording and isinstance(path, (str, bytes, os.PathLike)):
            events.append(["os.stat", where(path, kw.get("dir_fd")), None, 0])
        return real_stat(path, *a, **kw)

    def lstat(path, *a, **kw):
        if recording and isinstance(path, (str, bytes, os.PathLike)):
            events.append(["os.lstat", where(path, kw.get("dir_fd")), None, 0])
        return real_lstat(path, *a, **kw)

    def os_open(path, flags, mode=0o777, *, dir_fd=None):
        if dir_fd is None:
            return real_open(path, flags, mode)
        if recording:
            events.append(["open", where(path, dir_fd), None, flags])
        local.dir_fd = dir_fd
        try:
            return real_open(path, flags, mode, dir_fd=dir_fd)
        finally:
            local.dir_fd = None

    import gpudock.cli, gpudock.ui.app, textual.app, docker, pynvml, yaml  # imports read site-packages only
    sys.addaudithook(hook)
    os.stat, os.lstat, os.open = stat, lstat, os_open

    from gpudock.cli import main
    plan = json.loads(sys.argv[2])
    results = {}
    for argv in plan["commands"]:
        results[" ".join(argv)] = main(argv)

    async def dashboard():
        from gpudock.session import Options, open_session
        from gpudock.ui.app import GpudockApp
        from gpudock.ui.screens.doctor import DoctorScreen
        from gpudock.ui.screens.toolkit import ToolkitScreen

        app = GpudockApp(open_session(Options(demo=True), fallback_to_demo=True), refresh=0.3)
        async with app.run_test(size=(80, 24)) as pilot:
            async def until(cond):
                for _ in range(500):
                    if cond():
                        return True
                    await pilot.pause(0.02)
                return False

            assert await until(lambda: app.holders is not None and app.holders.docker.state == "ok")
            await pilot.press("c")
            await pilot.pause(0.3)
            await pilot.press("escape", "d")
            assert await until(lambda: isinstance(app.screen, DoctorScreen) and app.screen.checks_done > 0)
            await pilot.press("escape", "t")
            assert await until(lambda: isinstance(app.screen, ToolkitScreen) and app.screen.doc is not None)
            screen = app.screen
            await pilot.press("h")
            await pilot.pause(0.5)
            await pilot.press("y")
            assert await until(lambda: screen.writes_done == 1)
            await pilot.press("escape")
            await pilot.pause(0.2)
        results["dashboard"] = "ok"

    if plan["dashboard"]:
        asyncio.run(dashboard())
    recording.clear()  # an audit hook cannot be removed: it stops recording before the results are written
    json.dump({"results": results, "events": events, "tmp": tmp}, open(sys.argv[1], "w"))
    """
)

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
MUTATING = {
    "os.mkdir",
    "os.rename",
    "os.replace",
    "os.remove",
    "os.rmdir",
    "os.symlink",
    "os.link",
    "os.chmod",
    "os.chown",
    "os.utime",
    "os.truncate",
    "os.mknod",
    "shutil.rmtree",
    "shutil.copyfile",
    "shutil.move",
    "os.lchown",
}
FORBIDDEN_READS = (re.compile(r"^/dev(/|$)"), re.compile(r"^/etc(/|$)"), re.compile(r"^/proc/\d+(/|$)"))
SESSION_DIR = re.compile(r"/gpudock-sim-[^/]+")


def _is_write(event: str, mode: str | None, flags: int) -> bool:
    if event in MUTATING:
        return True
    if event == "open":
        return bool(mode and set(mode) & set("wax+")) or bool(flags & WRITE_FLAGS)
    return False


DEMO_COMMANDS = [
    ["--demo", "doctor", "--json"],
    ["--demo", "libs", "--json"],
    ["--demo", "toolkit", "status", "--json"],
    ["toolkit", "debug", "on", "--yes", "--demo"],
    ["--demo", "holders", "--json"],
    ["--demo", "gpus", "--json"],
    ["--demo", "args", "--mode", "legacy", "2", "0"],
    ["--demo", "run", "--gpu", "2,0", "nvidia/cuda:12.0.1-base-ubuntu22.04", "nvidia-smi"],
]


def _run_child(tmp_path: Path, commands: list[list[str]], dashboard: bool) -> dict:
    out = tmp_path / "events.json"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    (tmp_path / "tmp").mkdir()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", TMPDIR=str(tmp_path / "tmp"), TERM="xterm-256color")
    env.pop("DOCKER_HOST", None)
    plan = json.dumps({"commands": commands, "dashboard": dashboard})
    p = subprocess.run(
        [sys.executable, str(script), str(out), plan],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return json.loads(out.read_text())


def _leaks(doc: dict, cwd: Path) -> tuple[list[str], set[str]]:
    """(what went outside the simulated host, the session directories made)."""
    # a session's directory: in the temporary directory, or in /tmp when that one's path is too
    # long for the simulated engine's socket
    homes = {os.path.realpath(doc["tmp"]), "/tmp"}
    sessions: set[str] = set()
    leaks = []
    for event, path, mode, flags in doc["events"]:
        real = os.path.normpath(path if os.path.isabs(path) else os.path.join(str(cwd), path))
        home = next((h for h in homes if real.startswith(h + "/") and SESSION_DIR.match(real[len(h) :])), None)
        inside = home is not None
        if event == "os.mkdir" and inside and real.count("/") == home.count("/") + 1:
            sessions.add(real)  # a session's own temporary directory
        if event == "connect":
            if not inside:
                leaks.append(f"connected to {path}, which is not the simulated host's engine")
        elif _is_write(event, mode, flags):
            if not inside:
                leaks.append(f"{event} {path} (mode {mode}, flags {flags:#o}): a write outside the session directory")
        elif any(r.match(real) for r in FORBIDDEN_READS) or (real.endswith("ld.so.cache") and not inside):
            leaks.append(f"{event} {path}: this machine's own file")
    return sorted(set(leaks)), sessions


def test_the_demo_stays_inside_its_own_directory(tmp_path):
    doc = _run_child(tmp_path, DEMO_COMMANDS, dashboard=True)
    results = doc["results"]
    # the commands did their work: the doctor found the demo's warnings but no error, the edit was made
    assert results["--demo doctor --json"] == 0 and results["toolkit debug on --yes --demo"] == 0
    assert results["--demo run --gpu 2,0 nvidia/cuda:12.0.1-base-ubuntu22.04 nvidia-smi"] == 0
    assert results["dashboard"] == "ok"
    leaks, sessions = _leaks(doc, tmp_path)
    assert not leaks, "\n".join(leaks[:40])
    # one session directory per command and one for the dashboard, all removed again
    assert len(sessions) == len(DEMO_COMMANDS) + 1, sessions
    assert not any(Path(s).exists() for s in sessions)


def test_the_check_sees_a_real_host_being_read(tmp_path):
    # The same child and check on the real host (no --demo): its /proc, /etc and ld.so.cache are
    # read, which is what the check must catch, so the test above can fail.
    doc = _run_child(tmp_path, [["doctor", "--json", "--no-docker"]], dashboard=False)
    leaks, _ = _leaks(doc, tmp_path)
    assert any("/etc/ld.so.cache" in x for x in leaks) and any(x.startswith("open /proc/") for x in leaks), leaks
