"""The SSH connection drops: the terminal hangs up under a running dashboard.

gpudock must then exit on its own, cleanly (the simulated host's socket and files removed, no
process left behind), instead of being killed mid-way or spinning on a dead terminal. The dashboard
runs as an operator runs it: a real process on a real pseudo-terminal."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from helpers import tty


def _start(tmp_path, *args, block_sighup: bool = False):
    env = dict(os.environ, TMPDIR=str(tmp_path), TERM="xterm-256color")
    env.pop("DOCKER_HOST", None)
    return tty.spawn([sys.executable, "-m", "gpudock", *args], env, block_sighup=block_sighup)


@pytest.mark.parametrize("how", ["hangup", "hangup-sighup-blocked", "sigterm"])
def test_the_dashboard_exits_cleanly_when_its_terminal_goes_away(tmp_path, how):
    # hangup-sighup-blocked: no SIGHUP arrives (blocked, as under some supervisors), so the dead
    # terminal's failed reads and writes must end the app; Textual's own driver then hung for good
    # (its writer thread died on EIO and every later write blocked on its full queue).
    pid, fd = _start(tmp_path, "--demo", block_sighup=how == "hangup-sighup-blocked")
    try:
        screen = tty.read(fd, 60, until=b"sim:demo")
        assert b"sim:demo" in screen, screen[-2000:]
        assert any(p.name.startswith("gpudock-sim-") for p in tmp_path.iterdir())
        if how.startswith("hangup"):
            os.close(fd)  # the SSH connection drops: the kernel hangs up the terminal (SIGHUP)
            fd = None
        else:
            os.kill(pid, signal.SIGTERM)  # systemd, tmux kill-session, an operator's kill
        status = tty.wait(pid, 20)
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
