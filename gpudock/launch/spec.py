"""The launch spec: one immutable description of a GPU container, and every way to write it down.

This module owns the argument generator. :func:`build_spec` turns a snapshot, an ordered
:class:`~gpudock.launch.selection.Selection` and the operator's choices into a :class:`LaunchSpec`;
the spec renders as docker CLI arguments (and a shell-quoted ``docker run`` line for display), as
JSON, as Docker SDK ``containers.run`` keyword arguments, as a docker compose service fragment and
as a Kubernetes resources fragment. The TUI's preview, ``gpudock args``, ``gpudock run`` and
``gpudock serve`` all go through here, so what is shown is what is launched.

Modes (see the reference notes on the NVIDIA stack):

``legacy``  nvidia-docker 1.0: control devices, then ``/dev/nvidia<minor>`` per card in the order
            chosen (by minor, never by index), and the driver volume ``nvidia_driver_<version>``
            read-only at ``/usr/local/nvidia``. gpudock's own launch uses a local volume it built
            (:mod:`gpudock.launch.volume`); :meth:`LaunchSpec.plugin_line` is the plugin's
            ``/docker/cli`` line, byte for byte, with ``--volume-driver=nvidia-docker``.
``runtime`` nvidia-docker2: ``--runtime=nvidia`` plus ``NVIDIA_VISIBLE_DEVICES`` and
            ``NVIDIA_DRIVER_CAPABILITIES``.
``gpus``    Docker 19.03+: ``--gpus '"device=…"'``, i.e. one Docker ``DeviceRequest``, exactly as the
            docker CLI builds it (empty driver, ``gpu`` appended to the capabilities).
``cdi``     ``--device nvidia.com/gpu=<id>`` per card (a ``cdi`` DeviceRequest in the API).

MPS (kept simple): a thread percentage sets ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` and
``--ipc=host`` (clients must share IPC with an MPS control daemon running on the host, whose pipe
dir is the default ``/tmp/nvidia-mps``). In ``legacy`` mode, which has no toolkit to do it, the pipe
dir is also bind-mounted; the toolkit mounts it itself in the other modes.

MIG devices (a :class:`~gpudock.launch.selection.Selection` item with its MIG device) are named to
the runtime, ``--gpus`` and CDI by their UUID (``MIG-…``; ``ids="index"``: ``<gpu>:<mig>``, e.g.
``6:0``), the forms the toolkit takes; legacy mode maps whole ``/dev/nvidiaN`` nodes and refuses
them.

Commands are argv lists and are never given to a shell; nothing built here is privileged.
Plain Python; no Textual.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from gpudock.model import Gpu, HostSnapshot, MigDevice

from .selection import Selection

__all__ = [
    "CAPABILITIES",
    "DEFAULT_CAPABILITIES",
    "DRIVER_VOLUME_MOUNT",
    "MODES",
    "DeviceMap",
    "GpuRequest",
    "LaunchError",
    "LaunchSpec",
    "Mount",
    "build_spec",
    "driver_volume_name",
    "parse_capabilities",
    "parse_command",
    "parse_env",
    "plugin_line",
    "validate_image",
]

Mode = Literal["legacy", "runtime", "gpus", "cdi"]
MODES: tuple[str, ...] = ("legacy", "runtime", "gpus", "cdi")
CAPABILITIES: tuple[str, ...] = ("compute", "compat32", "graphics", "utility", "video", "display", "ngx")
DEFAULT_CAPABILITIES: tuple[str, ...] = ("compute", "utility")
GPUS_CAPABILITIES: tuple[str, ...] = ("compute", "compat32", "graphics", "utility", "video", "display")
DRIVER_VOLUME = "nvidia_driver"
DRIVER_VOLUME_MOUNT = "/usr/local/nvidia"
PLUGIN_VOLUME_DRIVER = "nvidia-docker"
MPS_PIPE_DIR = "/tmp/nvidia-mps"
CDI_KIND = "nvidia.com/gpu"


class LaunchError(ValueError):
    """The launch cannot be built or run as asked; the message names the problem. Nothing was
    launched. ``forcible``: the refusal is the CUDA check, which the operator may override (the CLI
    says how with --force, the launch form with its checkbox)."""

    def __init__(self, message: str, *, forcible: bool = False) -> None:
        super().__init__(message)
        self.forcible = forcible


# -- input validation ---------------------------------------------------------------------------

# Docker's reference grammar (distribution/reference): [host[:port]/]path[:tag][@digest].
_ALNUM = r"[a-z0-9]+"
_SEP = r"(?:[._]|__|[-]+)"
_PATH_COMP = rf"{_ALNUM}(?:{_SEP}{_ALNUM})*"
_DOMAIN_COMP = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMP}(?:\.{_DOMAIN_COMP})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMP}(?:/{_PATH_COMP})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::{_TAG})?(?:@{_DIGEST})?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONTAINER_NAME = re.compile(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]+")


def validate_image(image: str) -> str:
    """``image`` if it is a valid Docker image reference, else :class:`LaunchError`."""
    m = _REFERENCE.fullmatch(image or "")
    if not m:
        why = (
            "repository name must be lowercase"
            if _REFERENCE.fullmatch((image or "").lower())
            else ("expected [host[:port]/]name[:tag][@digest]")
        )
        raise LaunchError(f"invalid image reference {image!r}: {why}")
    if len(m.group("name")) > 255:
        raise LaunchError(f"invalid image reference {image!r}: repository name longer than 255 characters")
    return image


def parse_command(command: str | Sequence[str] | None) -> tuple[str, ...]:
    """An argv tuple. A string is split like a POSIX shell would split words (``shlex``), but
    nothing is ever run through a shell: no variables, globs or pipes."""
    if command is None:
        return ()
    if isinstance(command, str):
        try:
            return tuple(shlex.split(command))
        except ValueError as e:
            raise LaunchError(f"command does not parse ({e}): {command}") from None
    return tuple(str(c) for c in command)


def parse_env(items: Iterable[str] | Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """``K=V`` strings (or a mapping) as ordered pairs; names must match ``[A-Za-z_][A-Za-z0-9_]*``."""
    pairs = list(items.items()) if isinstance(items, Mapping) else []
    if not isinstance(items, Mapping):
        for item in items:
            name, eq, value = item.partition("=")
            if not eq:
                raise LaunchError(f"env {item!r} is not NAME=VALUE")
            pairs.append((name, value))
    seen: set[str] = set()
    for name, value in pairs:
        if not _ENV_NAME.fullmatch(name):
            raise LaunchError(f"invalid env name {name!r}: use letters, digits and _, not starting with a digit")
        if "\0" in value:
            raise LaunchError(f"env {name} contains a NUL byte")
        if name in seen:
            raise LaunchError(f"env {name} is given twice")
        seen.add(name)
    return tuple(pairs)


def parse_capabilities(caps: str | Iterable[str] | None) -> tuple[str, ...]:
    """Driver capabilities, comma or space separated; ``all`` stands alone. None is the toolkit's
    default (``compute,utility``)."""
    if caps is None:
        return DEFAULT_CAPABILITIES
    if isinstance(caps, str):
        caps = [caps]
    out: list[str] = []
    for c in caps:
        for tok in re.split(r"[\s,]+", c.strip()):
            if tok and tok not in out:
                out.append(tok)
    if not out:
        return DEFAULT_CAPABILITIES
    bad = [c for c in out if c not in CAPABILITIES and c != "all"]
    if bad:
        raise LaunchError(f"unknown driver capability {bad[0]!r}: choose from {', '.join(CAPABILITIES)} or all")
    if "all" in out and len(out) > 1:
        raise LaunchError("driver capability 'all' cannot be combined with others")
    return tuple(out)


def driver_volume_name(driver_version: str) -> str:
    return f"{DRIVER_VOLUME}_{driver_version}"


# -- the spec -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceMap:
    host: str
    container: str
    permissions: str = "rwm"

    def cli(self) -> str:
        return self.host if self.host == self.container else f"{self.host}:{self.container}"

    def sdk(self) -> str:
        return f"{self.host}:{self.container}:{self.permissions}"


@dataclass(frozen=True, slots=True)
class Mount:
    source: str  # a volume name or a host path
    target: str
    read_only: bool = True

    def cli(self) -> str:
        return f"{self.source}:{self.target}" + (":ro" if self.read_only else "")


@dataclass(frozen=True, slots=True)
class GpuRequest:
    """One Docker ``DeviceRequest`` (HostConfig.DeviceRequests)."""

    driver: str = ""
    count: int = 0
    device_ids: tuple[str, ...] = ()
    capabilities: tuple[tuple[str, ...], ...] = ()

    def to_json(self) -> dict:
        """The Engine API form."""
        return {
            "Driver": self.driver,
            "Count": self.count,
            "DeviceIDs": list(self.device_ids) or None,
            "Capabilities": [list(c) for c in self.capabilities] or None,
            "Options": {},
        }

    def sdk(self):
        import docker.types

        return docker.types.DeviceRequest(
            driver=self.driver,
            count=self.count,
            device_ids=list(self.device_ids) or None,
            capabilities=[list(c) for c in self.capabilities] or None,
        )

    def sdk_text(self) -> str:
        parts = [f"driver={self.driver!r}"]
        if self.count:
            parts.append(f"count={self.count}")
        if self.device_ids:
            parts.append(f"device_ids={list(self.device_ids)!r}")
        if self.capabilities:
            parts.append(f"capabilities={[list(c) for c in self.capabilities]!r}")
        return f"docker.types.DeviceRequest({', '.join(parts)})"


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """Everything about one GPU container launch, resolved. Build it with :func:`build_spec`."""

    mode: Mode
    gpus: tuple[Gpu, ...]  # one per item chosen: a GPU twice when two of its MIG devices are
    image: str | None = None
    command: tuple[str, ...] = ()
    name: str | None = None
    all_gpus: bool = False
    gpu_ids: tuple[str, ...] = ()  # how the cards are named to the runtime/CDI (UUIDs or indices)
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES
    gpu_env: tuple[tuple[str, str], ...] = ()  # set by the mode and MPS
    user_env: tuple[tuple[str, str], ...] = ()
    mps_thread_percentage: int | None = None
    devices: tuple[DeviceMap, ...] = ()
    volumes: tuple[Mount, ...] = ()
    runtime: str | None = None
    device_requests: tuple[GpuRequest, ...] = ()
    driver_volume: str | None = None
    ipc_mode: str | None = None
    migs: tuple[MigDevice | None, ...] = ()  # parallel to gpus: the MIG device chosen on it, or None

    @property
    def cards(self) -> tuple[Gpu, ...]:
        """The physical GPUs, each once (what holders are checked against)."""
        return tuple({g.index: g for g in self.gpus}.values())

    def mig_of(self, i: int) -> MigDevice | None:
        return self.migs[i] if i < len(self.migs) else None

    @property
    def env(self) -> tuple[tuple[str, str], ...]:
        return self.gpu_env + self.user_env

    # -- docker CLI ------------------------------------------------------------------------------

    def gpu_args(self) -> list[str]:
        """The arguments that give a container its GPUs (what ``gpudock args`` prints)."""
        a: list[str] = []
        if self.mode == "legacy":
            a += [f"--volume={v.cli()}" for v in self.volumes if v.target == DRIVER_VOLUME_MOUNT]
            a += [f"--device={d.cli()}" for d in self.devices]
        elif self.mode == "runtime":
            a.append(f"--runtime={self.runtime}")
        elif self.mode == "gpus":
            a += ["--gpus", _gpus_flag(self.device_requests[0])]
        elif self.mode == "cdi":
            for name in self.device_requests[0].device_ids:
                a += ["--device", name]
        for k, v in self.gpu_env:
            a += ["-e", f"{k}={v}"]
        if self.ipc_mode:
            a.append(f"--ipc={self.ipc_mode}")
        a += [f"--volume={v.cli()}" for v in self.volumes if v.target != DRIVER_VOLUME_MOUNT]
        return a

    def run_args(self) -> list[str]:
        """``docker run`` arguments after ``run``: options, image, command."""
        if not self.image:
            raise LaunchError("no image given")
        a = ["--detach"]
        if self.name:
            a.append(f"--name={self.name}")
        a += self.gpu_args()
        for k, v in self.user_env:
            a += ["-e", f"{k}={v}"]
        return a + [self.image, *self.command]

    def docker_run_line(self) -> str:
        """The equivalent shell command, quoted for copy and paste."""
        return shlex.join(["docker", "run", *self.run_args()])

    def cli_line(self) -> str:
        """:meth:`gpu_args` quoted for a shell."""
        return shlex.join(self.gpu_args())

    def plugin_args(self, volumes: int = 1) -> dict:
        """nvidia-docker-plugin's ``/docker/cli/json`` object (legacy mode only); ``volumes`` is
        how many times ``vol=`` named the driver volume (the plugin repeated it, 0 for none)."""
        if self.mode != "legacy":
            raise LaunchError("the nvidia-docker-plugin form exists only for legacy mode")
        return {
            "VolumeDriver": PLUGIN_VOLUME_DRIVER,
            "Volumes": [f"{self.driver_volume}:{DRIVER_VOLUME_MOUNT}:ro"] * volumes,
            # host:container when the nodes are not in /dev (--dev-dir); the plugin's form otherwise
            "Devices": [d.cli() for d in self.devices],
        }

    def plugin_line(self) -> str:
        """nvidia-docker-plugin's ``/docker/cli`` text, byte for byte (no trailing newline)."""
        return plugin_line(self.plugin_args())

    # -- JSON ------------------------------------------------------------------------------------

    def to_json(self) -> dict:
        return {
            "mode": self.mode,
            "image": self.image,
            "command": list(self.command),
            "name": self.name,
            "gpus": [
                {
                    "index": g.index,
                    "uuid": g.uuid,
                    "minor": g.minor,
                    "pci_bus_id": g.pci_bus_id,
                    "mig_uuid": self.mig_of(i).uuid if self.mig_of(i) else None,
                }
                for i, g in enumerate(self.gpus)
            ],
            "all_gpus": self.all_gpus,
            "gpu_ids": list(self.gpu_ids),
            "capabilities": list(self.capabilities),
            "env": dict(self.env),
            "mps_thread_percentage": self.mps_thread_percentage,
            "runtime": self.runtime,
            "devices": [{"host": d.host, "container": d.container, "permissions": d.permissions} for d in self.devices],
            "volumes": [{"source": v.source, "target": v.target, "read_only": v.read_only} for v in self.volumes],
            "driver_volume": self.driver_volume,
            "device_requests": [r.to_json() for r in self.device_requests],
            "ipc_mode": self.ipc_mode,
            "docker_args": self.gpu_args(),
            "docker_run": self.docker_run_line() if self.image else None,
        }

    def json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    # -- Docker SDK ------------------------------------------------------------------------------

    def sdk_kwargs(self) -> dict:
        """Keyword arguments for ``docker.DockerClient().containers.run(**kwargs)`` (detached)."""
        kw: dict = {}
        if self.image:
            kw["image"] = self.image
        kw["command"] = list(self.command) or None
        if self.name:
            kw["name"] = self.name
        kw["detach"] = True
        if self.env:
            kw["environment"] = dict(self.env)
        if self.devices:
            kw["devices"] = [d.sdk() for d in self.devices]
        if self.volumes:
            kw["volumes"] = {v.source: {"bind": v.target, "mode": "ro" if v.read_only else "rw"} for v in self.volumes}
        if self.runtime:
            kw["runtime"] = self.runtime
        if self.device_requests:
            kw["device_requests"] = [r.sdk() for r in self.device_requests]
        if self.ipc_mode:
            kw["ipc_mode"] = self.ipc_mode
        return kw

    def sdk_text(self) -> str:
        """:meth:`sdk_kwargs` as Python source."""
        kw = self.sdk_kwargs()
        lines = ["import docker", "", "client = docker.from_env()", "container = client.containers.run("]
        for k, v in kw.items():
            if k == "device_requests":
                text = "[" + ", ".join(r.sdk_text() for r in self.device_requests) + "]"
            else:
                text = repr(v)
            lines.append(f"    {k}={text},")
        lines.append(")")
        return "\n".join(lines)

    # -- compose ---------------------------------------------------------------------------------

    def compose_text(self, service: str | None = None) -> str:
        """A docker compose file fragment (``services:`` with one service) for this launch."""
        svc: dict = {}
        if self.image:
            svc["image"] = self.image
        if self.command:
            svc["command"] = list(self.command)
        if self.name:
            svc["container_name"] = self.name
        if self.runtime:
            svc["runtime"] = self.runtime
        if self.env:
            svc["environment"] = dict(self.env)
        if self.ipc_mode:
            svc["ipc"] = self.ipc_mode
        if self.devices:
            svc["devices"] = [d.sdk() for d in self.devices]
        if self.volumes:
            svc["volumes"] = [v.cli() for v in self.volumes]
        if self.device_requests:
            reqs = []
            for r in self.device_requests:
                d: dict = {"driver": r.driver or "nvidia"}
                if r.device_ids:
                    d["device_ids"] = list(r.device_ids)
                else:
                    d["count"] = "all" if r.count < 0 else r.count
                caps = [c for c in (r.capabilities[0] if r.capabilities else ("gpu",))]
                d["capabilities"] = caps
                reqs.append(d)
            svc["deploy"] = {"resources": {"reservations": {"devices": reqs}}}
        doc: dict = {"services": {service or self.name or "app": svc}}
        if self.driver_volume:
            doc["volumes"] = {self.driver_volume: {"external": True}}
        head = [f"# gpudock: {self.mode} mode, GPUs {self._gpu_summary()}"]
        return "\n".join(head + _yaml(doc)) + "\n"

    # -- Kubernetes ------------------------------------------------------------------------------

    def k8s_text(self) -> str:
        """A container ``resources`` fragment for the NVIDIA device plugin."""
        n = len(self.gpus)
        return "\n".join(
            [
                f"# Kubernetes cannot pin specific cards: the NVIDIA device plugin picks {n} free GPU(s) of the node.",
                f"# Chosen here: {self._gpu_summary()}.",
                "# Do not set NVIDIA_VISIBLE_DEVICES in the pod spec: the device plugin sets it from its",
                "# allocation, and a value set by hand would bypass the scheduler's accounting.",
                "resources:",
                "  limits:",
                f"    nvidia.com/gpu: {n}",
                "",
            ]
        )

    def _gpu_summary(self) -> str:
        if self.all_gpus:
            return "all"
        out = []
        for i, g in enumerate(self.gpus):
            m = self.mig_of(i)
            if m is not None:
                out.append(f"{g.index}:{m.index} ({m.uuid})")
            else:
                out.append(f"{g.index}" + (f" ({g.uuid})" if g.uuid else ""))
        return ", ".join(out)

    def render(self, fmt: str) -> str:
        """One of the text formats: cli, plugin, json, compose, k8s, sdk, run."""
        if fmt == "cli":
            return self.cli_line()
        if fmt == "plugin":
            return self.plugin_line()
        if fmt == "json":
            return self.json_text()
        if fmt == "compose":
            return self.compose_text()
        if fmt == "k8s":
            return self.k8s_text()
        if fmt == "sdk":
            return self.sdk_text()
        if fmt == "run":
            return self.docker_run_line()
        raise LaunchError(f"unknown format {fmt!r}")


FORMATS: tuple[str, ...] = ("cli", "plugin", "json", "compose", "k8s", "sdk", "run")


def plugin_line(args: dict) -> str:
    """The ``/docker/cli`` line of a ``/docker/cli/json`` object: the plugin's Go template."""
    return (
        f"--volume-driver={args['VolumeDriver']}"
        + "".join(f" --volume={v}" for v in args["Volumes"])
        + "".join(f" --device={d}" for d in args["Devices"])
    )


def _gpus_flag(r: GpuRequest) -> str:
    """The value of ``--gpus``. It is one CSV record for the docker CLI, so a comma list has to be
    quoted inside the value: the argument is ``"device=0,2"`` with the double quotes."""
    fields = []
    if r.count < 0:
        fields.append("all")
    else:
        fields.append('"device=' + ",".join(r.device_ids) + '"')
    caps = [c for c in r.capabilities[0] if c != "gpu"] if r.capabilities else []
    if caps:
        fields.append('"capabilities=' + ",".join(caps) + '"')
    return ",".join(fields)


def _yaml(obj, indent: int = 0) -> list[str]:
    """A tiny block-style YAML emitter: dicts and lists nest, scalars are JSON (a subset of YAML)."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = k if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", k) else json.dumps(k)
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{key}:")
                lines += _yaml(v, indent + 1)
            else:
                lines.append(f"{pad}{key}: {_scalar(v)}")
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, dict) and v:
                sub = _yaml(v, indent + 1)
                lines.append(f"{pad}- {sub[0].lstrip()}")
                lines += sub[1:]
            elif isinstance(v, list) and v:
                lines.append(f"{pad}- {json.dumps(v)}")
            else:
                lines.append(f"{pad}- {_scalar(v)}")
    return lines


def _scalar(v) -> str:
    if isinstance(v, dict):
        return "{}"
    if isinstance(v, list):
        return "[]"
    return json.dumps(v)


# -- building -----------------------------------------------------------------------------------


def _runtime_id(g: Gpu, ids: str, mig: MigDevice | None = None) -> str:
    if mig is not None:
        return mig.uuid if ids == "uuid" else f"{g.index}:{mig.index}"
    if ids == "uuid" and g.uuid:
        return g.uuid
    return str(g.index)


def build_spec(
    snapshot: HostSnapshot,
    selection: Selection,
    mode: str = "runtime",
    *,
    image: str | None = None,
    command: str | Sequence[str] | None = None,
    name: str | None = None,
    capabilities: str | Iterable[str] | None = None,
    env: Iterable[str] | Mapping[str, str] = (),
    mps_thread_percentage: int | None = None,
    ids: Literal["uuid", "index"] = "uuid",
    runtime: str = "nvidia",
    dev_dir: str = "/dev",
    uvm_tools: bool = True,
    driver_volume: str | None = None,
) -> LaunchSpec:
    """Validate the operator's choices and resolve them into a :class:`LaunchSpec`.

    ``ids`` picks how runtime, ``--gpus`` and CDI name the cards: UUIDs (stable across reboots and
    index reordering; the default) or NVML indices. ``dev_dir`` is where the Docker host has the
    device nodes (``/dev``); ``uvm_tools`` says whether ``nvidia-uvm-tools`` exists there, as the
    plugin checked. ``driver_volume`` overrides the legacy volume name (default
    ``nvidia_driver_<driver version>``).
    """
    if mode not in MODES:
        raise LaunchError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
    if not selection.gpus:
        raise LaunchError("no GPU selected")
    if ids not in ("uuid", "index"):
        raise LaunchError(f"unknown id style {ids!r}: uuid or index")
    if image is not None:
        validate_image(image)
    argv = parse_command(command)
    if name is not None and name != "":
        if not _CONTAINER_NAME.fullmatch(name):
            raise LaunchError(f"invalid container name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]+")
    else:
        name = None
    caps = parse_capabilities(capabilities)
    user_env = parse_env(env)
    if mps_thread_percentage is not None:
        if isinstance(mps_thread_percentage, bool) or not 1 <= int(mps_thread_percentage) <= 100:
            raise LaunchError(f"MPS thread percentage must be 1-100, not {mps_thread_percentage}")
        mps_thread_percentage = int(mps_thread_percentage)
    if mode in ("legacy", "cdi") and caps != DEFAULT_CAPABILITIES:
        raise LaunchError(
            f"driver capabilities do not apply in {mode} mode "
            "(legacy mounts the whole driver volume; a CDI spec decides what is injected)"
        )

    gpus = selection.gpus
    gpu_env: list[tuple[str, str]] = []
    devices: list[DeviceMap] = []
    volumes: list[Mount] = []
    requests: list[GpuRequest] = []
    run_time: str | None = None
    vol_name: str | None = None
    items = selection.items
    gpu_ids = tuple(_runtime_id(g, ids, m) for g, m in items)

    if mode == "legacy":
        mig = next(((g, m) for g, m in items if m is not None), None)
        if mig is not None:
            raise LaunchError(
                f"legacy mode maps whole /dev/nvidiaN nodes: it cannot give MIG device {mig[0].index}:{mig[1].index} "
                "alone; use runtime, gpus or cdi mode"
            )
        if driver_volume is None and not snapshot.driver_version:
            raise LaunchError("legacy mode needs the driver version (for nvidia_driver_<version>); NVML gave none")
        vol_name = driver_volume or driver_volume_name(snapshot.driver_version)
        missing = [g for g in gpus if g.minor is None]
        if missing:
            raise LaunchError(
                f"GPU {missing[0].index} has no device minor (NVML could not say which /dev/nvidiaN it "
                "is); legacy mode cannot map it"
            )
        ctl = ["nvidiactl", "nvidia-uvm"] + (["nvidia-uvm-tools"] if uvm_tools else [])
        names = ctl + [f"nvidia{g.minor}" for g in gpus]
        base = dev_dir.rstrip("/") or "/dev"
        devices = [DeviceMap(f"{base}/{n}", f"/dev/{n}") for n in names]
        volumes.append(Mount(vol_name, DRIVER_VOLUME_MOUNT, read_only=True))
        gpu_ids = tuple(f"/dev/nvidia{g.minor}" for g in gpus)
    elif mode == "runtime":
        run_time = runtime
        gpu_env.append(("NVIDIA_VISIBLE_DEVICES", "all" if selection.all else ",".join(gpu_ids)))
        gpu_env.append(("NVIDIA_DRIVER_CAPABILITIES", ",".join(caps)))
    elif mode == "gpus":
        # Docker's NVIDIA device driver knows these capabilities; "all" and "ngx" are the runtime's words.
        if "ngx" in caps:
            raise LaunchError("driver capability 'ngx' cannot be asked for with --gpus; use --mode runtime")
        extra = () if caps == DEFAULT_CAPABILITIES else GPUS_CAPABILITIES if caps == ("all",) else caps
        cap_list = ((*extra, "gpu"),)
        if selection.all:
            requests.append(GpuRequest(count=-1, capabilities=cap_list))
        else:
            requests.append(GpuRequest(device_ids=gpu_ids, capabilities=cap_list))
    else:  # cdi
        names = (f"{CDI_KIND}=all",) if selection.all else tuple(f"{CDI_KIND}={i}" for i in gpu_ids)
        requests.append(GpuRequest(driver="cdi", device_ids=names))
        gpu_ids = names

    ipc = None
    if mps_thread_percentage is not None:
        gpu_env.append(("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", str(mps_thread_percentage)))
        ipc = "host"
        if mode == "legacy":
            volumes.append(Mount(MPS_PIPE_DIR, MPS_PIPE_DIR, read_only=False))

    taken = {k for k, _ in gpu_env} | {"NVIDIA_VISIBLE_DEVICES"}
    for k, _ in user_env:
        if k in taken:
            raise LaunchError(f"env {k} is set by gpudock from the GPU selection and mode; do not set it by hand")

    return LaunchSpec(
        mode=mode,  # type: ignore[arg-type]
        gpus=gpus,
        image=image,
        command=argv,
        name=name,
        all_gpus=selection.all,
        gpu_ids=gpu_ids,
        capabilities=caps,
        gpu_env=tuple(gpu_env),
        user_env=user_env,
        mps_thread_percentage=mps_thread_percentage,
        devices=tuple(devices),
        volumes=tuple(volumes),
        runtime=run_time,
        device_requests=tuple(requests),
        driver_volume=vol_name,
        ipc_mode=ipc,
        migs=selection.migs,
    )
