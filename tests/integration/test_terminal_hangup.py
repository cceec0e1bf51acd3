"""The SSH connection drops: the terminal hangs up under a running dashboard.

gpudock must then exit on its own, cleanly (the simulated host's socket and files removed, no
process left behind), instead of being killed mid-way or spinning on a dead terminal. The dashboard
runs as an operator runs it: a real process on a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time

import pytest



def _start(tmp_path, *args, block_sighup: bool = False):
    env = dict(os.environ, TMPDIR=str(tmp_path), TERM="xterm-256color", COLUMNS="80", LINES="24")
    env.pop("DOCKER_HOST", None)
    pid, fd = pty.fork()
    if pid == 0:  # the child: the dashboard on the pty's slave end, its controlling terminal
        try:
            if block_sighup:  # the mask survives exec: only the dead terminal itself tells
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
            os.execve(sys.executable, [sys.executable, "-m", "gpudock", *args], env)
        finally:
            os._exit(127)
    return pid, fd


def _read_until(fd, needle: bytes, seconds: float) -> bytes:
    buf = b""
    deadline = time.monotonic() + seconds
    while needle not in buf and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def _wait(pid, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.1)
    return None


@pytest.mark.parametrize("how", ["hangup", "hangup-sighup-blocked", "sigterm"])
def test_the_dashboard_exits_cleanly_when_its_terminal_goes_away(tmp_path, how):
    # hangup-sighup-blocked: no SIGHUP arrives (blocked, as under some supervisors), so the dead
    # terminal's failed reads and writes must end the app; Textual's own driver then hung for good
    # (its writer thread died on EIO and every later write blocked on its full queue).
    pid, fd = _start(tmp_path, "--demo", block_sighup=how == "hangup-sighup-blocked")
    try:
        screen = _read_until(fd, b"sim:demo", 60)
        assert b"sim:demo" in screen, screen[-2000:]
        assert any(p.name.startswith("gpudock-sim-") for p in tmp_path.iterdir())
        if how.startswith("hangup"):
            os.close(fd)  # the SSH connection drops: the kernel hangs up the terminal (SIGHUP)
            fd = None
        else:
            os.kill(pid, signal.SIGTERM)  # systemd, tmux kill-session, an operator's kill
        status = _wait(pid, 20)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"gpudock kept running for 20 s after {how}")
        assert not os.WIFSIGNALED(status), f"gpudock was killed by signal {os.WTERMSIG(status)}, not exited"
        assert os.WEXITSTATUS(status) == 0
        assert list(tmp_path.iterdir()) == []  # the simulated host's socket and files are gone
    finally:
        if fd is not None:
            os.close(fd)
