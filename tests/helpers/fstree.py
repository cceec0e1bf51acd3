"""File-tree helpers for the hostile-file tests: a canary that proves nothing changed, and the
``gpudock`` CLI run as the operator would run it."""

from __future__ import annotations

import os
import resource
import stat
import subprocess
import sys
from pathlib import Path


def tree_state(top: str | os.PathLike[str]) -> dict[str, tuple]:
    """Everything under ``top`` (not following links): per relative path, its type and content
    (file bytes, link target), mode and mtime. Two equal states mean nothing was created, removed,
    written or touched there."""
    out: dict[str, tuple] = {}
    top = os.fspath(top)
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, top)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(full))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", Path(full).read_bytes(), st.st_mode, st.st_mtime_ns)
            else:
                out[rel] = ("other", st.st_mode, st.st_mtime_ns)
    return out


# Every CLI run in these tests is capped: a reader that does not bound what it reads (the
# /dev/zero cases) gets MemoryError here instead of taking this shared machine's memory.
MEMORY_CAP = 2 << 30


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def gpudock(*argv: str, timeout: float = 60, env: dict | None = None, prefix: list[str] | None = None):
    """``python -m gpudock ARGV`` with no Docker engine reachable, memory capped at MEMORY_CAP;
    returns the CompletedProcess (TimeoutExpired when it hangs)."""
    e = dict(os.environ)
    e["DOCKER_HOST"] = "unix:///nonexistent/gpudock-test-no-docker.sock"
    e.pop("NVIDIA_CTK_CONFIG_FILE_PATH", None)
    e.pop("XDG_CONFIG_HOME", None)
    if env:
        e.update(env)
    cmd = [*(prefix or []), sys.executable, "-m", "gpudock", *argv]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=e, stdin=subprocess.DEVNULL, preexec_fn=_cap_memory
    )


def private_mount(setup: str) -> list[str]:
    """A command prefix that runs the command in a private mount namespace after the shell
    commands ``setup`` (mounts made there are gone when it exits and never seen outside)."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", f'{setup} && exec "$@"', "sh"]
