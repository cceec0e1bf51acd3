"""Launching a :class:`~gpudock.launch.spec.LaunchSpec` through the Docker API, after the checks.

This module owns the order of the pre-flight checks and the one call that creates a container:

1. the engine supports the mode (:func:`gpudock.launch.engine.check_mode_supported`);
2. the image is present locally (gpudock never pulls);
3. the image's CUDA requirement against the driver (:mod:`gpudock.launch.cudacheck`): a refusal
   names both versions and stops the launch unless ``force``;
4. cards another container already holds: warnings, returned to the caller (the TUI asks the
   operator; the CLI prints them), never a refusal;
5. in ``legacy`` mode, the driver volume exists (gpudock builds it with
   :mod:`gpudock.launch.volume`).

Any failure raises :class:`~gpudock.launch.spec.LaunchError` and nothing is left behind: a container
the engine creates but refuses to start is removed again. The container is started detached and
never privileged. Plain Python; no Textual.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import docker
import docker.errors

from gpudock.host.docker import DockerWatcher
from gpudock.model import HostSnapshot

from . import cudacheck
from .engine import check_mode_supported
from .spec import LaunchError, LaunchSpec

__all__ = ["Preflight", "first_logs", "holders_by_gpu", "launch", "preflight"]


@dataclass(frozen=True, slots=True)
class Preflight:
    """What the checks found: the runtime to use, the CUDA verdict, warnings to show."""

    runtime: str | None
    cuda_message: str
    warnings: tuple[str, ...]


def holders_by_gpu(snapshot: HostSnapshot, base_url: str | None = None) -> dict[str, tuple[str, ...]]:
    """GPU UUID -> names of the running containers that hold it, from a one-shot
    :class:`gpudock.host.docker.DockerWatcher` (the engine ``DOCKER_HOST`` names, like
    ``docker.from_env()``). Raises :class:`LaunchError` when the engine cannot be read."""
    watcher = DockerWatcher(base_url)
    status = watcher.connect()
    if not status.ok:
        raise LaunchError(status.message or f"cannot read the Docker engine at {status.base_url}")
    out: dict[str, list[str]] = {}
    for c in watcher.snapshot(snapshot):
        if c.running:
            for uuid in c.gpu_uuids:
                out.setdefault(uuid, []).append(c.name)
    return {k: tuple(sorted(v)) for k, v in out.items()}


def preflight(
    client: docker.DockerClient,
    spec: LaunchSpec,
    snapshot: HostSnapshot,
    *,
    force: bool = False,
    holders: Mapping[str, Sequence[str]] | None = None,
) -> Preflight:
    """Run every check; raise :class:`LaunchError` on the first that refuses."""
    if not spec.image:
        raise LaunchError("no image given")
    try:
        info = client.info()
    except docker.errors.DockerException as e:
        raise LaunchError(f"cannot reach the Docker engine: {e}") from None
    runtime = check_mode_supported(spec.mode, info)

    try:
        image = client.images.get(spec.image)
    except docker.errors.ImageNotFound:
        raise LaunchError(
            f"image {spec.image} is not present on this engine; gpudock does not pull: "
            f"run 'docker pull {spec.image}' first"
        ) from None
    except docker.errors.APIError as e:
        raise LaunchError(f"cannot inspect image {spec.image}: {e.explanation or e}") from None

    requirement = cudacheck.image_cuda_requirement(image.attrs)
    ok, message = cudacheck.check(requirement, snapshot.cuda_driver_version, snapshot.driver_version)
    warnings: list[str] = []
    if not ok:
        if not force:
            raise LaunchError(f"{spec.image}: {message}", forcible=True)
        warnings.append(f"forced past the CUDA check: {message}")

    if holders is None:
        holders = holders_by_gpu(snapshot)
    for g in spec.cards:
        who = holders.get(g.uuid or "", ())
        if who:
            warnings.append(f"GPU {g.index} ({g.uuid}) is already held by {', '.join(who)}")

    if spec.mode == "legacy" and spec.driver_volume:
        try:
            client.volumes.get(spec.driver_volume)
        except docker.errors.NotFound:
            raise LaunchError(
                f"driver volume {spec.driver_volume} does not exist on this engine: 'gpudock run --mode legacy' "
                "builds it, or, with 'gpudock serve' running, 'docker volume create --driver=nvidia-docker "
                f"--name={spec.driver_volume}'"
            ) from None
    return Preflight(runtime, message, tuple(warnings))


def launch(
    client: docker.DockerClient,
    spec: LaunchSpec,
    snapshot: HostSnapshot,
    *,
    force: bool = False,
    holders: Mapping[str, Sequence[str]] | None = None,
):
    """Check, then create and start the container. Returns ``(container, warnings)``. A container
    the engine creates but will not start is removed again, so a retry with the same name works."""
    pre = preflight(client, spec, snapshot, force=force, holders=holders)
    kwargs = spec.sdk_kwargs()
    kwargs.pop("detach", None)  # create + start is what a detached run is
    if spec.mode == "runtime" and pre.runtime:
        kwargs["runtime"] = pre.runtime
    image, command = kwargs.pop("image"), kwargs.pop("command", None)
    try:
        container = client.containers.create(image, command, **kwargs)
    except docker.errors.APIError as e:
        raise LaunchError(f"Docker refused the container: {e.explanation or e}") from None
    try:
        container.start()
    except docker.errors.APIError as e:
        why = e.explanation or str(e)
        try:
            container.remove(force=True)
            gone = "it was removed again"
        except docker.errors.APIError as e2:
            gone = f"and removing it failed too ({e2.explanation or e2}): 'docker rm {container.id[:12]}'"
        raise LaunchError(f"Docker created the container but would not start it: {why}; {gone}") from None
    container.reload()
    return container, pre.warnings


QUIET_S = 0.3  # the log has not grown for this long: what the container says at start is out


def wait_for_first_logs(container, n: int, wait_s: float) -> list[str]:
    """The container's first ``n`` log lines, waiting up to ``wait_s`` for them: until it has
    written ``n`` lines, or stopped, or said something and then nothing more for a moment (a
    server that prints one line and runs on), or the time is up. The container is reloaded: its
    status is current."""
    deadline = time.monotonic() + wait_s
    logs: list[str] = []
    grew_at = time.monotonic()
    while True:
        now_logs = first_logs(container, n)
        container.reload()
        now = time.monotonic()
        if len(now_logs) != len(logs):
            logs, grew_at = now_logs, now
        if len(logs) >= n or container.status != "running" or now >= deadline:
            break
        if logs and now - grew_at >= QUIET_S:
            break
        time.sleep(0.05)
    if container.status != "running" and len(logs) < n:
        # it exited while we read: its log is complete now (the last read may have caught half)
        logs = first_logs(container, n)
    return logs


def first_logs(container, n: int = 20) -> list[str]:
    """The first ``n`` lines the container wrote (stdout and stderr), as text."""
    try:
        raw = container.logs(stdout=True, stderr=True)
    except docker.errors.APIError:
        return []
    return raw.decode("utf-8", "replace").splitlines()[:n]
