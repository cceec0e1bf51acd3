"""A program on a real pseudo-terminal, as an operator's SSH session runs it (the hangup tests and
the benchmark of terminal output use it)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import termios
import time


def spawn(
    argv: list[str], env: dict[str, str], *, size: tuple[int, int] = (80, 24), block_sighup: bool = False
) -> tuple[int, int]:
    """Run ``argv`` on the slave end of a new pty, its controlling terminal: (pid, master fd).
    ``block_sighup``: the child starts with SIGHUP blocked (the mask survives exec)."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            cols, rows = size
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            if block_sighup:
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    return pid, fd


def read(fd: int, seconds: float, until: bytes | None = None) -> bytes:
    """What the program writes for ``seconds`` (less when ``until`` shows up, or the pty closes)."""
    buf = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (until is None or until not in buf):
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the program is gone and the slave end closed
                break
            if not chunk:
                break
            buf += chunk
    return buf


def wait(pid: int, seconds: float) -> int | None:
    """The exit status, or None when the program still runs after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.1)
    return None
