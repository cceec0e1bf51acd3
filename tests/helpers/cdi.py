"""NVIDIA-style CDI specs for the CDI engine's tests, in the shape `nvidia-ctk cdi generate` writes.

    from helpers.cdi import nvidia_spec, write_spec
    spec = nvidia_spec(snapshot.gpus, eng.dev_dir, libs={"/usr/lib/x86_64-linux-gnu/libcuda.so.1": real})
    write_spec(eng.cdi_dir, spec)

The format (NVIDIA's cdi-support docs, nvidia-ctk 1.18; nvidia-stack.md §9): ``kind: nvidia.com/gpu``;
one device per GPU named by its NVML index ("0") and one by its UUID ("GPU-…"), both giving the
card's ``/dev/nvidia<minor>`` (by minor, never by index), plus "all" with every card; top-level
``containerEdits`` with the control nodes (nvidiactl, nvidia-uvm, nvidia-uvm-tools, nvidia-modeset),
``env`` ``NVIDIA_VISIBLE_DEVICES=void`` (so that a legacy hook or runtime that also sees the
container does nothing) and the driver libraries as read-only bind mounts.

The nodes live in the tests' fake /dev (``dev_dir``), so every device node has a ``hostPath``; the
spec gives no major/minor unless asked (the engine stats ``hostPath``, as for NVIDIA's own specs),
and ``uvm_major`` writes the numbers of a spec generated on an earlier boot. No hooks: the real
ones run ``nvidia-cdi-hook`` (ldcache, symlinks), which needs a driver, and nothing here reads them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from gpudock.model import Gpu

KIND = "nvidia.com/gpu"
CDI_VERSION = "0.5.0"
CONTROL_NODES = ("nvidia-modeset", "nvidia-uvm", "nvidia-uvm-tools", "nvidiactl")
MOUNT_OPTIONS = ["ro", "nosuid", "nodev", "bind"]
LIB_DIR = "/usr/lib/x86_64-linux-gnu"
SPEC_LIBS = ("libcuda", "libnvidia-ml")


def spec_libs(driver_root: str | os.PathLike, version: str) -> dict[str, str]:
    """container path -> host path of the libraries an NVIDIA spec mounts (the versioned files, as
    `nvidia-ctk cdi generate` lists them) from a driver host root (helpers.driverhost)."""
    root = Path(driver_root)
    return {f"{LIB_DIR}/{n}.so.{version}": str(root / LIB_DIR.lstrip("/") / f"{n}.so.{version}") for n in SPEC_LIBS}


def demo_gpus() -> tuple[Gpu, ...]:
    """The GPUs of the built-in demo host (what `gpudock --demo ...` sees)."""
    from helpers.sim import frozen_demo, session

    s = session(frozen_demo())
    try:
        return s.snapshot().gpus
    finally:
        s.shutdown()


def _card_node(gpu: Gpu, dev_dir: str) -> dict:
    return {"path": f"/dev/nvidia{gpu.minor}", "hostPath": f"{dev_dir}/nvidia{gpu.minor}"}


def nvidia_spec(
    gpus: Iterable[Gpu],
    dev_dir: str | os.PathLike,
    *,
    libs: Mapping[str, str | os.PathLike] | None = None,
    uvm_major: int | None = None,
    names: Iterable[str] = ("index", "uuid"),
) -> dict:
    """The spec for these GPUs. ``libs``: container path -> host path of each driver library to
    mount; ``uvm_major``: give ``/dev/nvidia-uvm`` and ``-tools`` this major (a stale spec's)."""
    dev = str(dev_dir).rstrip("/")
    gpus = tuple(gpus)
    devices = []
    for g in gpus:
        edits = {"deviceNodes": [_card_node(g, dev)]}
        if "index" in names:
            devices.append({"name": str(g.index), "containerEdits": edits})
        if "uuid" in names and g.uuid:
            devices.append({"name": g.uuid, "containerEdits": edits})
    devices.append({"name": "all", "containerEdits": {"deviceNodes": [_card_node(g, dev) for g in gpus]}})
    control = []
    for name in CONTROL_NODES:
        node: dict = {"path": f"/dev/{name}", "hostPath": f"{dev}/{name}"}
        if uvm_major is not None and name.startswith("nvidia-uvm"):
            node.update(type="c", major=uvm_major, minor=1 if name.endswith("tools") else 0)
        control.append(node)
    edits = {
        "env": ["NVIDIA_VISIBLE_DEVICES=void"],
        "deviceNodes": control,
        "mounts": [
            {"hostPath": str(host), "containerPath": cpath, "options": list(MOUNT_OPTIONS)}
            for cpath, host in (libs or {}).items()
        ],
    }
    return {"cdiVersion": CDI_VERSION, "kind": KIND, "devices": devices, "containerEdits": edits}


def write_spec(directory: str | os.PathLike, spec: dict, name: str = "nvidia.yaml") -> Path:
    """Write ``spec`` as YAML into ``directory`` (atomically: the engine watches the directory and
    must never read half a file)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{name}.tmp"
    tmp.write_text("---\n" + yaml.safe_dump(spec, sort_keys=False))
    os.replace(tmp, d / name)
    return d / name
