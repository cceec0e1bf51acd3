"""What a running test container sees: its device nodes, its PID 1's environment, a command's output."""

from __future__ import annotations

import re


def exec_out(container, cmd: list[str]) -> str:
    code, out = container.exec_run(cmd)
    assert code == 0, out
    return out.decode()


def dev_listing(container, directory: str = "/dev") -> dict[str, tuple[str, int, int]]:
    """`ls -l DIR` inside the container: name -> (type char, major, minor) for device nodes."""
    out = {}
    for line in exec_out(container, ["ls", "-l", directory]).splitlines():
        m = re.match(r"^([cb])\S+\s+\d+\s+\S+\s+\S+\s+(\d+),\s+(\d+)\s+.*\s(\S+)$", line)
        if m:
            out[m.group(4)] = (m.group(1), int(m.group(2)), int(m.group(3)))
    return out


def process_env(container) -> dict[str, str]:
    """The environment of the container's PID 1: what the OCI spec gave it, with what the engine
    added (--gpus, CDI containerEdits); `docker exec env` would show only Config.Env."""
    raw = exec_out(container, ["cat", "/proc/1/environ"])
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
