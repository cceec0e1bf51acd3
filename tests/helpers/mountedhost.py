"""A host root seen at a directory, as gpudock in a container sees the host at /host, that the
private engine shares: helpers.driverhost's driver root, with the engine's volumes directory and a
volume directory bind-mounted into it at the paths the engine knows them by. Then what gpudock
writes or reads under ``--root`` is what the engine sees.

    with mounted_host(engine, tmp_path) as (root, volume_dir):
        main(["--root", str(root), "run", "--mode", "legacy", "--volume-dir", str(volume_dir), ...])

Volumes made on the engine inside the block are removed (with their containers) at its end.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from helpers.driverhost import driver_host


def _bind(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--bind", str(src), str(dst)], check=True, capture_output=True)


@contextlib.contextmanager
def mounted_host(engine, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    root = driver_host(tmp_path)
    vdir = tmp_path / "volumes"
    vdir.mkdir()
    mounted: list[Path] = []
    api = engine.client.api
    before = {v["Name"] for v in api.volumes().get("Volumes") or ()}
    try:
        for src in (engine.data_root / "volumes", vdir):
            dst = root / str(src).lstrip("/")
            _bind(src, dst)
            mounted.append(dst)
        yield root, vdir
    finally:
        for v in api.volumes().get("Volumes") or ():
            if v["Name"] not in before:
                for c in api.containers(all=True, filters={"volume": v["Name"]}):
                    api.remove_container(c["Id"], force=True)
                api.remove_volume(v["Name"], force=True)
        for dst in reversed(mounted):
            subprocess.run(["umount", "-l", str(dst)], capture_output=True)
