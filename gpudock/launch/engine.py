"""Can this Docker engine launch in this mode? Decided from ``docker info`` alone.

This module owns the mode-support rules, as a pure function of the ``docker info`` dict (the
Engine API's ``GET /info``), so that the CLI, the TUI and the tests give the same verdict before
anything is created:

- ``legacy``: any engine (plain ``--device`` and a local volume).
- ``runtime``: a runtime whose name is ``nvidia`` or whose path is ``nvidia-container-runtime``
  is registered (``Runtimes``); its name is what ``--runtime=`` gets.
- ``gpus``: Docker 19.03 or newer (DeviceRequests). Whether dockerd found
  ``nvidia-container-runtime-hook`` on its PATH is not in ``docker info``; the engine's own error
  at start says so.
- ``cdi``: Docker 25 or newer with CDI enabled, which ``docker info`` shows as a non-empty
  ``CDISpecDirs`` (Docker 26.1 with CDI off reports ``[]``, and then fails a CDI container at start
  with 'could not select device driver "cdi"'; Docker 24 and older have no such field).

Plain Python; no Textual, no Docker import.
"""

from __future__ import annotations

import re

from gpudock.host.claims import nvidia_runtimes

from .spec import LaunchError

__all__ = ["nvidia_runtime_name", "check_mode_supported", "server_version"]


def server_version(info: dict) -> tuple[int, ...]:
    m = re.match(r"(\d+)\.(\d+)", str(info.get("ServerVersion") or ""))
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def nvidia_runtime_name(info: dict) -> str | None:
    """The name of the NVIDIA runtime registered with the engine (``nvidia`` first), or None."""
    runtimes = info.get("Runtimes") or {}
    if "nvidia" in runtimes:
        return "nvidia"
    names = sorted(nvidia_runtimes(runtimes))
    return names[0] if names else None


def check_mode_supported(mode: str, info: dict) -> str | None:
    """Raise :class:`LaunchError` when the engine cannot launch in ``mode``; return the runtime
    name to use for ``runtime`` mode (None otherwise)."""
    version = server_version(info)
    shown = info.get("ServerVersion") or "unknown"
    if mode == "legacy":
        return None
    if mode == "runtime":
        name = nvidia_runtime_name(info)
        if name is None:
            have = ", ".join(sorted(info.get("Runtimes") or {})) or "none"
            raise LaunchError(
                f"runtime mode needs the NVIDIA runtime registered with Docker (runtimes: {have}); "
                "run 'nvidia-ctk runtime configure --runtime=docker' and restart dockerd, or use --mode gpus"
            )
        return name
    if mode == "gpus":
        if version < (19, 3):
            raise LaunchError(f"gpus mode needs Docker 19.03 or newer (this engine is {shown}); use --mode runtime")
        return None
    if mode == "cdi":
        if version < (25, 0):
            raise LaunchError(
                f"cdi mode needs Docker 25 or newer with CDI enabled (this engine is {shown}); "
                "use --mode gpus or --mode runtime"
            )
        if not info.get("CDISpecDirs"):
            # Not 'nvidia-ctk runtime configure --cdi.enabled': it replaces a "features" object
            # read from an existing daemon.json, dropping the other features (nvidia-stack.md §8).
            raise LaunchError(
                f"cdi mode: CDI is not enabled in this Docker engine ({shown}); add "
                '"features": {"cdi": true} to daemon.json and restart dockerd, or use --mode gpus'
            )
        return None
    raise LaunchError(f"unknown mode {mode!r}")
