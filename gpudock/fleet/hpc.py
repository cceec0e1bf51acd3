"""dcgm-exporter's HPC job mapping files, written from the holders map.

dcgm-exporter started with ``--hpc-job-mapping-dir DIR`` reads, before each scrape, the files in
DIR named by a GPU index (``0``, ``1``) or, for a MIG instance, ``<GPU index>.<GPU instance id>``
(``2.1``); each line of a file becomes an ``hpc_job`` label on that GPU's (instance's) series. This
module owns writing that directory so that ``hpc_job`` is the name of the container holding the
GPU: one running container name per line, sorted; a GPU held by nobody has no file.

A MIG-enabled GPU is reported by dcgm-exporter per instance, so a container holding the whole of
such a GPU is written into each of its instances' files; one holding MIG devices only, into those.

Every file is replaced atomically (:func:`gpudock.toolkit.atomic.atomic_write`: temp file in DIR,
fsync, rename), so dcgm-exporter never reads half a file; its temp names start with a dot, which
dcgm-exporter's ``^\\d+(\\.\\d+)?$`` file filter skips. Files are written only when their text
changes. A file of that naming in DIR that is not wanted any more (the GPU was released, or
vanished) is removed: DIR is meant for gpudock alone. While the Docker engine cannot be read the
files are left as they are (the holders are unknown, not gone), and so they are when the exporter
stops: the containers still hold their GPUs.
"""

from __future__ import annotations

import logging
import os
import re

from gpudock.model import HostSnapshot
from gpudock.toolkit.atomic import atomic_write, read_snapshot

__all__ = ["job_files", "HpcJobDir"]

log = logging.getLogger(__name__)

_GPU_FILE = re.compile(r"^\d+(\.\d+)?$")  # dcgm-exporter's own filter


def job_files(snapshot: HostSnapshot, holders) -> dict[str, str]:
    """File name -> text (container names, one per line) for every GPU or MIG instance held."""
    by_uuid = {g.uuid: g for g in snapshot.gpus if g.uuid}
    names: dict[str, set[str]] = {}
    if holders is None:
        return {}
    for gh in holders.gpus:
        g = by_uuid.get(gh.uuid)
        migs = {d.uuid: d for d in g.mig_devices} if g is not None else {}
        mig_on = bool(g is not None and g.mig_mode_current and g.mig_devices)
        for h in gh.holders:
            if not h.running:
                continue
            keys: list[str] = []
            if h.whole and not mig_on:
                keys.append(str(gh.index))
            elif h.whole:
                keys += [f"{gh.index}.{d.gpu_instance_id}" for d in migs.values() if d.gpu_instance_id is not None]
            for mu in h.mig_uuids:
                d = migs.get(mu)
                if d is not None and d.gpu_instance_id is not None:
                    keys.append(f"{gh.index}.{d.gpu_instance_id}")
            for k in keys:
                names.setdefault(k, set()).add(h.name)
    return {k: "".join(f"{n}\n" for n in sorted(v)) for k, v in sorted(names.items())}


class HpcJobDir:
    """Keeps ``directory`` equal to :func:`job_files` of the latest poll (call :meth:`update`)."""

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)

    def check(self) -> None:
        """Refuse a directory that is not there or not writable, in an operator's words."""
        if not os.path.isdir(self.directory):
            raise OSError(
                f"--dcgm-hpc-job-dir {self.directory}: no such directory; create it (the one given to "
                "dcgm-exporter's --hpc-job-mapping-dir) or name another"
            )
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise OSError(
                f"--dcgm-hpc-job-dir {self.directory}: not writable by this user; run as root or fix its mode"
            )

    def update(self, snapshot: HostSnapshot, holders) -> bool:
        """Write the files that changed and remove the ones no longer wanted; True when anything changed."""
        if holders is None or (getattr(holders, "docker", None) is not None and not holders.docker.ok):
            return False  # holders unknown (engine unreadable): keep what the files say rather than empty them
        want = job_files(snapshot, holders)
        have = self._read()  # each time: someone may have removed or edited a file since
        changed = False
        for name, text in want.items():
            if have.get(name) == text:
                continue
            path = os.path.join(self.directory, name)
            atomic_write(path, text.encode(), read_snapshot(path), backup=False)
            changed = True
        for name in set(have) - set(want):
            try:
                os.unlink(os.path.join(self.directory, name))
                changed = True
            except FileNotFoundError:
                pass
        return changed

    def _read(self) -> dict[str, str]:
        out: dict[str, str] = {}
        try:
            entries = os.listdir(self.directory)
        except OSError:
            return out
        for name in entries:
            if not _GPU_FILE.match(name):
                continue
            try:
                with open(os.path.join(self.directory, name), encoding="utf-8", errors="replace") as f:
                    out[name] = f.read()
            except (IsADirectoryError, OSError):
                continue
        return out
