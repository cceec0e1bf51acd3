"""``gpudock nvidia-docker``: nvidia-docker 1.0's wrapper around the docker CLI, in local mode.

This module owns reading a docker command line the way the wrapper did (which sub-command, where
the image is) and what goes in front of the image::

    gpudock nvidia-docker run|create [docker options] IMAGE [CMD...]    (also: container run|create)
    gpudock nvidia-docker <any other docker command>                     (passed through unchanged)

For ``run`` and ``create``, as 1.0 did:

- the GPUs come from ``$NV_GPU``: indices or UUIDs (prefixes too; gpudock also takes bus ids),
  split on commas or spaces, **in the order given** (1.0 lost it in a Go map); unset or empty is
  every GPU in index order;
- inserted immediately before the image: ``--device=/dev/nvidiactl --device=/dev/nvidia-uvm
  [--device=/dev/nvidia-uvm-tools] --device=/dev/nvidia<minor>…`` (by minor, never by index),
  then the driver volume ``--volume=nvidia_driver_<version>:/usr/local/nvidia:ro``. When that
  volume exists it is checked for the driver's files
  (:func:`gpudock.launch.volume.ensure_driver_volume`); when it does not and the volume plugin
  answers on its socket, ``--volume-driver=nvidia-docker`` goes first (the plugin builds it, as
  1.0 relied on); otherwise gpudock builds the local volume itself;
- the image's CUDA requirement is checked against the driver's (:mod:`gpudock.launch.cudacheck`:
  ``NVIDIA_REQUIRE_CUDA``, ``CUDA_VERSION``, and 1.0's label ``com.nvidia.cuda.version``); a
  refusal names both versions and nothing runs. A missing image is pulled first with
  ``docker pull``, as 1.0 did;
- every other argument goes to docker unchanged, and docker is exec'd (``$NV_DOCKER`` replaces
  the command, split on whitespace, as in 1.0), never through a shell.

One deliberate difference: 1.0 added nothing for an image without the label
``com.nvidia.volumes.needed``; the CUDA images dropped that label long ago, so gpudock adds the
GPUs to every image. Remote mode (``NV_HOST``) is not implemented: the wrapper works on this
host's engine (``$DOCKER_HOST``, or ``-H`` given to docker).

Plain Python; no Textual.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gpudock.host.root import HostRoot
from gpudock.model import HostSnapshot

from . import cudacheck
from .selection import Selection, parse_selection
from .spec import DRIVER_VOLUME_MOUNT, PLUGIN_VOLUME_DRIVER, LaunchError, build_spec
from .volume import DEFAULT_VOLUME_DIR, ensure_driver_volume

__all__ = ["DockerLine", "WrapperOptions", "docker_command", "gpu_args", "parse_docker_line", "wrapped_args"]

# docker's global options that take no value (everything else that starts with - takes one)
_GLOBAL_BOOL = {"-D", "--debug", "--tls", "--tlsverify", "-v", "--version", "-h", "--help"}
# `docker run/create` options that take no value (docker 20.10 to 28; 1.0 kept the same kind of
# table per docker version). `--opt=value` never takes the next argument.
_CREATE_BOOL = {
    "--disable-content-trust",
    "--help",
    "--init",
    "-i",
    "--interactive",
    "--no-healthcheck",
    "--oom-kill-disable",
    "--privileged",
    "-P",
    "--publish-all",
    "-q",
    "--quiet",
    "--read-only",
    "--rm",
    "-t",
    "--tty",
    "--use-api-socket",
}
_RUN_BOOL = _CREATE_BOOL | {"-d", "--detach", "--sig-proxy"}


@dataclass(frozen=True, slots=True)
class DockerLine:
    """Where things are in a docker command line: ``command`` ("run", "create", "ps", … or None),
    ``image_at`` (the index of the image argument, None when there is none), ``host`` (the
    value of a global ``-H``/``--host``)."""

    args: tuple[str, ...]
    command: str | None
    image_at: int | None
    host: str | None = None

    @property
    def image(self) -> str | None:
        return self.args[self.image_at] if self.image_at is not None else None


def _skip_options(args: Sequence[str], start: int, booleans: set[str]) -> tuple[int | None, dict[str, str]]:
    """The index of the first non-option argument from ``start``; the option values seen."""
    values: dict[str, str] = {}
    i = start
    while i < len(args):
        a = args[i]
        if a == "--":
            return (i + 1 if i + 1 < len(args) else None), values
        if not a.startswith("-") or a == "-":
            return i, values
        if a.startswith("--"):
            name, eq, value = a.partition("=")
            if eq:
                values[name] = value
            elif name not in booleans:
                values[name] = args[i + 1] if i + 1 < len(args) else ""
                i += 1
        else:
            # a cluster of short options: the first that takes a value takes the rest of the
            # cluster (-v/a:/b) or, when nothing is left, the next argument (-v /a:/b)
            for j, ch in enumerate(a[1:], start=1):
                if f"-{ch}" in booleans:
                    continue
                rest = a[j + 1 :]
                if rest:
                    values[f"-{ch}"] = rest.lstrip("=")
                else:
                    values[f"-{ch}"] = args[i + 1] if i + 1 < len(args) else ""
                    i += 1
                break
        i += 1
    return None, values


def parse_docker_line(args: Sequence[str]) -> DockerLine:
    """Find the sub-command (``container run`` is ``run``) and, for run/create, the image."""
    args = tuple(args)
    at, globals_ = _skip_options(args, 0, _GLOBAL_BOOL)
    host = globals_.get("-H") or globals_.get("--host")
    if at is None:
        return DockerLine(args, None, None, host)
    command = args[at]
    if command == "container" and at + 1 < len(args) and args[at + 1] in ("run", "create"):
        at += 1
        command = args[at]
    if command not in ("run", "create"):
        return DockerLine(args, command, None, host)
    image_at, _ = _skip_options(args, at + 1, _RUN_BOOL if command == "run" else _CREATE_BOOL)
    return DockerLine(args, command, image_at, host)


@dataclass(frozen=True, slots=True)
class WrapperOptions:
    root: HostRoot
    dev_dir: str = "/dev"
    volume_dir: str = DEFAULT_VOLUME_DIR
    plugin_socket: str | None = None  # None: the default socket of the volume plugin


def docker_command(env: Mapping[str, str]) -> list[str]:
    """``$NV_DOCKER`` split on whitespace (1.0's rule), else ``docker``."""
    return env.get("NV_DOCKER", "").split() or ["docker"]


def _selection(env: Mapping[str, str], snap: HostSnapshot) -> Selection:
    nv_gpu = env.get("NV_GPU", "").strip()
    if nv_gpu:
        return parse_selection(nv_gpu, snap)
    if not snap.gpus:
        raise LaunchError("this host has no GPUs to give the container")
    return Selection(tuple(sorted(snap.gpus, key=lambda g: g.index)), all=True)


def _plugin_answers(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def gpu_args(
    line: DockerLine,
    snap: HostSnapshot,
    env: Mapping[str, str],
    opts: WrapperOptions,
    client,
    say=lambda msg: print(f"gpudock: {msg}", file=sys.stderr),
) -> list[str]:
    """The arguments to insert before the image of a run/create line (devices, then the driver
    volume), after the CUDA check; :class:`LaunchError` when the launch must not happen."""
    import docker.errors

    from .volume_plugin import DEFAULT_PLUGIN_SOCKET

    image = line.image
    if not image:
        raise LaunchError(f"docker {line.command}: no image in the command line")
    try:
        attrs = client.images.get(image).attrs
    except docker.errors.ImageNotFound:
        attrs = None
    if attrs is None:
        cmd = [*docker_command(env), *(["-H", line.host] if line.host else []), "pull", image]
        say(f"{image} is not on this engine: {' '.join(cmd)}")
        if subprocess.run(cmd, stdout=sys.stderr).returncode != 0:
            raise LaunchError(f"{image}: not on this engine, and 'docker pull {image}' failed")
        attrs = client.images.get(image).attrs
    ok, message = cudacheck.check(
        cudacheck.image_cuda_requirement(attrs), snap.cuda_driver_version, snap.driver_version
    )
    if not ok:
        raise LaunchError(f"{image}: {message}")

    sel = _selection(env, snap)
    if opts.dev_dir == "/dev":
        uvm_tools = opts.root.exists("/dev/nvidia-uvm-tools")
    else:
        uvm_tools = os.path.exists(os.path.join(opts.dev_dir, "nvidia-uvm-tools"))
    spec = build_spec(snap, sel, "legacy", dev_dir=opts.dev_dir, uvm_tools=uvm_tools)
    out = [f"--device={d.cli()}" for d in spec.devices]

    name = spec.driver_volume or ""
    volume = f"--volume={name}:{DRIVER_VOLUME_MOUNT}:ro"
    try:
        client.volumes.get(name)
        exists = True
    except docker.errors.NotFound:
        exists = False
    if not exists and _plugin_answers(opts.plugin_socket or DEFAULT_PLUGIN_SOCKET):
        return [*out, f"--volume-driver={PLUGIN_VOLUME_DRIVER}", volume]
    got = ensure_driver_volume(client, opts.root, name, opts.volume_dir)
    if got.action != "ok":
        say(got.message)
    return [*out, volume]


def wrapped_args(line: DockerLine, inserted: Sequence[str]) -> list[str]:
    """The docker arguments with ``inserted`` immediately before the image (1.0's place)."""
    if line.image_at is None:
        return list(line.args)
    return [*line.args[: line.image_at], *inserted, *line.args[line.image_at :]]
