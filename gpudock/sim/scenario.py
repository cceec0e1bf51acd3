"""Scenario files: a simulated GPU host described in TOML.

A scenario is what a customer's host looks like to NVML: driver and CUDA versions, an init failure
to play, GPUs (index order is file order) with bus id, minor, memory, utilization behaviour,
temperature, power, MIG instances and processes. The format is documented in README.md
("Scenario files"); ``gpudock/sim/scenarios/demo.toml`` is the built-in 8-GPU server.

The Docker side of the same host (optional; a file without it is a GPU-only host): ``[docker]``
(engine version, default runtime, registered runtimes), ``[[image]]`` (local images: name, env,
labels) and ``[[container]]`` tables, served by :mod:`gpudock.sim.dockerd` at the Engine API
boundary, with ``/proc/<pid>/{cgroup,status}`` for the GPU processes written by
:mod:`gpudock.sim.procfs`. A container::

    [[container]]
    name = "train-llama"                  # required
    id = "<64 hex>"                       # default: sha256 of the name (deterministic)
    image = "nvcr.io/nvidia/pytorch:24.01-py3"
    state = "running"                     # created|running|paused|restarting|removing|exited|dead
    runtime = "nvidia"                    # HostConfig.Runtime; default: the engine's default
    env = ["NVIDIA_VISIBLE_DEVICES=2"]    # Config.Env, "K=V"
    devices = ["/dev/nvidia1", "/dev/nvidia2:/dev/nvidia0", {host = "/dev/nvidiactl"}]
    device_requests = [{driver = "nvidia", count = 0, device_ids = ["0", "1"], capabilities = [["gpu"]]}]
    labels = {team = "research"}
    pid = 3904098                         # host PID of its PID 1 (default: derived)
    pids = [[3904121, 17], [3904122, 18]] # [[gpu.process]] PIDs inside it: [host PID, PID in the container]
    created = "2026-11-20T08:14:03Z"      # default: a fixed demo time
    started = "2026-11-20T08:14:05Z"      # default: created (none for a created container)
    exit_code = 0

Bad files are refused with the file, the TOML line/column or the key path, and what is expected.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from gpudock.model import nvml_bus_id
from gpudock.sim.host_spec import HostSpec, HostSpecError, parse_host

# NVML return codes an init failure can play, by the names operators see in nvidia-smi's output.
INIT_ERRORS = {
    "uninitialized": 1,
    "no_permission": 4,
    "driver_not_loaded": 9,
    "library_not_found": 12,
    "function_not_found": 13,
    "gpu_is_lost": 15,
    "operating_system": 17,
    "lib_rm_version_mismatch": 18,
    "version_mismatch": 18,
    "unknown": 999,
}

COMPUTE_MODES = {"default": 0, "exclusive_thread": 1, "prohibited": 2, "exclusive_process": 3}


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the place."""


@dataclass(frozen=True)
class Wave:
    """A value that moves: ``base ± amplitude`` over ``period`` seconds (amplitude 0: steady)."""

    base: float
    amplitude: float = 0.0
    period: float = 30.0
    phase: float = 0.0


@dataclass(frozen=True)
class SimProcess:
    pid: int
    used_memory_mib: int
    command: str
    kind: str = "compute"  # compute | graphics
    mig_index: int | None = None  # which MIG device it runs on (when MIG is on)


@dataclass(frozen=True)
class SimMig:
    profile: str
    uuid: str
    memory_total_mib: int
    memory_used_mib: int
    gpu_instance_id: int
    compute_instance_id: int = 0


@dataclass(frozen=True)
class SimGpu:
    uuid: str
    name: str
    pci_bus_id: str
    minor: int | None
    serial: str | None
    memory_total_mib: int
    memory_used_mib: Wave
    utilization_gpu: Wave
    utilization_memory: Wave
    temperature_c: Wave
    power_w: Wave
    power_limit_w: float | None
    persistence_mode: bool
    compute_mode: int
    mig_current: bool | None  # None: the GPU does not support MIG
    mig_pending: bool | None
    mig: tuple[SimMig, ...]
    processes: tuple[SimProcess, ...]
    clock_sm_mhz: int
    clock_mem_mhz: int
    clock_sm_max_mhz: int
    clock_mem_max_mhz: int
    lost: bool = False
    unsupported: frozenset[str] = frozenset()  # NVML functions that answer NOT_SUPPORTED here


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    driver_version: str
    cuda_version: int  # NVML's integer form: 12020 for 12.2
    nvml_version: str
    init_error: int | None
    missing_functions: frozenset[str]
    gpus: tuple[SimGpu, ...] = field(default_factory=tuple)
    frozen: bool = False  # values never move (tests, snapshots)
    docker: SimEngine | None = None  # None: the file describes no Docker engine
    images: tuple[SimImage, ...] = ()
    containers: tuple[SimContainer, ...] = ()
    host: HostSpec | None = None  # [host]: the host's files (parse_scenario always fills it)

    @property
    def hostname(self) -> str:
        return self.host.hostname if self.host else self.name

    @property
    def has_docker(self) -> bool:
        """The scenario describes a Docker engine (``[docker]``, ``[[container]]`` or ``[[image]]``)."""
        return self.docker is not None


CONTAINER_STATES = ("created", "running", "paused", "restarting", "removing", "exited", "dead")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_DEFAULT_CREATED = "2026-11-20T08:14:03.000000000Z"


@dataclass(frozen=True)
class SimEngine:
    """``[docker]``: what ``docker version``/``docker info`` say."""

    server_version: str = "24.0.7"
    api_version: str = "1.43"
    default_runtime: str = "runc"
    cgroup_driver: str = "systemd"
    runtimes: tuple[tuple[str, str], ...] = (
        ("io.containerd.runc.v2", "runc"),
        ("nvidia", "/usr/bin/nvidia-container-runtime"),
        ("runc", "runc"),
    )
    cdi_spec_dirs: tuple[str, ...] = ()


@dataclass(frozen=True)
class SimImage:
    name: str  # "repo:tag" (":latest" added when no tag)
    env: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    size: int = 0

    @property
    def id(self) -> str:
        return "sha256:" + hashlib.sha256(("image:" + self.name).encode()).hexdigest()


@dataclass(frozen=True)
class SimDevice:
    host: str
    container: str
    permissions: str = "rwm"


@dataclass(frozen=True)
class SimDeviceRequest:
    driver: str = ""
    count: int = 0
    device_ids: tuple[str, ...] = ()
    capabilities: tuple[tuple[str, ...], ...] = (("gpu",),)


@dataclass(frozen=True)
class SimContainer:
    id: str
    name: str
    image: str
    state: str
    runtime: str | None  # None: the engine's default
    env: tuple[str, ...]
    devices: tuple[SimDevice, ...]
    device_requests: tuple[SimDeviceRequest, ...]
    labels: tuple[tuple[str, str], ...]
    pid: int | None  # host PID of the container's PID 1 (None when not running)
    pids: tuple[tuple[int, int], ...]  # (host PID, PID inside the container)
    created: str
    started: str | None
    command: str = ""
    exit_code: int = 0

    @property
    def running(self) -> bool:
        return self.state in ("running", "paused", "restarting")


def _wave(value, where: str) -> Wave:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Wave(float(value))
    if isinstance(value, dict):
        try:
            return Wave(
                float(value["base"]),
                float(value.get("amplitude", 0.0)),
                float(value.get("period", 30.0)),
                float(value.get("phase", 0.0)),
            )
        except KeyError:
            raise ScenarioError(
                f"{where}: a moving value needs 'base' (and optionally amplitude, period, phase)"
            ) from None  # noqa: E501
        except (TypeError, ValueError):
            raise ScenarioError(f"{where}: base/amplitude/period/phase must be numbers") from None
    raise ScenarioError(f"{where}: expected a number or a table {{base=, amplitude=, period=}}, got {value!r}")


def _cuda_int(text: str, where: str) -> int:
    try:
        major, _, minor = str(text).partition(".")
        return int(major) * 1000 + int(minor or 0) * 10
    except ValueError:
        raise ScenarioError(f"{where}: CUDA version must look like '12.2', got {text!r}") from None


def _require(table: dict, key: str, where: str, kind: type | tuple[type, ...]):
    if key not in table:
        raise ScenarioError(f"{where}: missing required key '{key}'")
    value = table[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ScenarioError(f"{where}.{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def parse_scenario(data: dict, source: str = "<scenario>") -> Scenario:
    driver = data.get("driver", {})
    if not isinstance(driver, dict):
        raise ScenarioError(f"{source}: [driver] must be a table")
    version = _require(driver, "version", f"{source}: [driver]", str)
    init_error = driver.get("init_error")
    if init_error is not None:
        if init_error not in INIT_ERRORS:
            raise ScenarioError(
                f"{source}: [driver].init_error {init_error!r} is not one of: {', '.join(sorted(INIT_ERRORS))}"
            )
        init_error = INIT_ERRORS[init_error]
    gpus = []
    for i, g in enumerate(data.get("gpu", [])):
        where = f"{source}: [[gpu]] #{i}"
        mem_total = _require(g, "memory_total_mib", where, int)
        procs = []
        for j, p in enumerate(g.get("process", [])):
            pw = f"{where} [[gpu.process]] #{j}"
            kind = p.get("type", "compute")
            if kind not in ("compute", "graphics"):
                raise ScenarioError(f"{pw}.type: expected 'compute' or 'graphics', got {kind!r}")
            procs.append(
                SimProcess(
                    pid=_require(p, "pid", pw, int),
                    used_memory_mib=_require(p, "used_memory_mib", pw, int),
                    command=p.get("command", ""),
                    kind=kind,
                    mig_index=p.get("mig_index"),
                )
            )
        migs = []
        for j, m in enumerate(g.get("mig", [])):
            mw = f"{where} [[gpu.mig]] #{j}"
            migs.append(
                SimMig(
                    profile=_require(m, "profile", mw, str),
                    uuid=_require(m, "uuid", mw, str),
                    memory_total_mib=_require(m, "memory_total_mib", mw, int),
                    memory_used_mib=m.get("memory_used_mib", 0),
                    gpu_instance_id=m.get("gpu_instance_id", j + 1),
                    compute_instance_id=m.get("compute_instance_id", 0),
                )
            )
        mig_mode = g.get("mig_mode")  # absent: not MIG capable
        mig_pending = g.get("mig_pending", mig_mode)
        compute_mode = str(g.get("compute_mode", "default")).lower()
        if compute_mode not in COMPUTE_MODES:
            raise ScenarioError(
                f"{where}.compute_mode: expected one of {', '.join(COMPUTE_MODES)}, got {compute_mode!r}"
            )
        bus = _require(g, "pci_bus_id", where, str)
        try:
            bus = nvml_bus_id(bus)
        except ValueError:
            raise ScenarioError(f"{where}.pci_bus_id: {bus!r} is not a PCI bus id like 0000:05:00.0") from None
        used_default = sum(p.used_memory_mib for p in procs) + 4
        gpus.append(
            SimGpu(
                uuid=_require(g, "uuid", where, str),
                name=_require(g, "name", where, str),
                pci_bus_id=bus,
                minor=g.get("minor", i),
                serial=g.get("serial"),
                memory_total_mib=mem_total,
                memory_used_mib=_wave(g.get("memory_used_mib", used_default), f"{where}.memory_used_mib"),
                utilization_gpu=_wave(g.get("utilization_gpu", 0), f"{where}.utilization_gpu"),
                utilization_memory=_wave(g.get("utilization_memory", 0), f"{where}.utilization_memory"),
                temperature_c=_wave(g.get("temperature_c", 35), f"{where}.temperature_c"),
                power_w=_wave(g.get("power_w", 60), f"{where}.power_w"),
                power_limit_w=g.get("power_limit_w"),
                persistence_mode=bool(g.get("persistence_mode", True)),
                compute_mode=COMPUTE_MODES[compute_mode],
                mig_current=mig_mode,
                mig_pending=mig_pending,
                mig=tuple(migs),
                processes=tuple(procs),
                clock_sm_mhz=int(g.get("clock_sm_mhz", 1410)),
                clock_mem_mhz=int(g.get("clock_mem_mhz", 1593)),
                clock_sm_max_mhz=int(g.get("clock_sm_max_mhz", 1980)),
                clock_mem_max_mhz=int(g.get("clock_mem_max_mhz", 2619)),
                lost=bool(g.get("lost", False)),
                unsupported=frozenset(g.get("unsupported", [])),
            )
        )
    uuids = [g.uuid for g in gpus]
    if len(set(uuids)) != len(uuids):
        raise ScenarioError(f"{source}: two GPUs share a UUID")
    minors = [g.minor for g in gpus if g.minor is not None]
    if len(set(minors)) != len(minors):
        raise ScenarioError(f"{source}: two GPUs share a device minor")
    gpu_pids = {p.pid for g in gpus for p in g.processes}
    engine, images, containers = _parse_docker(data, source, gpu_pids)
    name = str(data.get("name", Path(source).stem))
    try:
        host = parse_host(data.get("host"), f"{source}: [host]", name=name, driver_version=version)
    except HostSpecError as e:
        raise ScenarioError(str(e)) from None
    return Scenario(
        name=name,
        description=str(data.get("description", "")),
        driver_version=version,
        cuda_version=_cuda_int(driver.get("cuda", "12.2"), f"{source}: [driver].cuda"),
        nvml_version=str(driver.get("nvml", "12." + version)),
        init_error=init_error,
        missing_functions=frozenset(driver.get("missing_functions", [])),
        gpus=tuple(gpus),
        frozen=bool(data.get("frozen", False)),
        docker=engine,
        images=images,
        containers=containers,
        host=host,
    )


def _str_list(value, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ScenarioError(f"{where}: expected a list of strings, got {value!r}")
    return tuple(value)


def _labels(value, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ScenarioError(f'{where}: expected a table of strings (key = "value"), got {value!r}')
    return tuple(sorted(value.items()))


def _device(value, where: str) -> SimDevice:
    if isinstance(value, str):
        parts = value.split(":")
        if not parts[0] or len(parts) > 3:
            raise ScenarioError(f"{where}: expected 'host[:container[:permissions]]', got {value!r}")
        host = parts[0]
        cont = parts[1] if len(parts) > 1 and parts[1] else host
        perms = parts[2] if len(parts) > 2 else "rwm"
        return SimDevice(host, cont, perms)
    if isinstance(value, dict):
        host = _require(value, "host", where, str)
        cont = value.get("container", host)
        perms = value.get("permissions", "rwm")
        if not isinstance(cont, str) or not isinstance(perms, str):
            raise ScenarioError(f"{where}: container and permissions must be strings")
        return SimDevice(host, cont, perms)
    raise ScenarioError(f'{where}: expected "host:container" or {{host=, container=}}, got {value!r}')


def _device_request(value, where: str) -> SimDeviceRequest:
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: expected a table {{driver=, count=, device_ids=, capabilities=}}, got {value!r}")
    unknown = set(value) - {"driver", "count", "device_ids", "capabilities"}
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    driver = value.get("driver", "")
    if not isinstance(driver, str):
        raise ScenarioError(f"{where}.driver: expected a string, got {driver!r}")
    count = value.get("count", 0)
    if not isinstance(count, int) or isinstance(count, bool) or count < -1:
        raise ScenarioError(f"{where}.count: expected an integer >= -1 (-1: all), got {count!r}")
    ids = _str_list(value.get("device_ids", []), f"{where}.device_ids")
    caps = value.get("capabilities", [["gpu"]])
    if isinstance(caps, list) and all(isinstance(c, str) for c in caps):
        caps = [caps] if caps else []
    if not isinstance(caps, list) or not all(isinstance(c, list) and all(isinstance(x, str) for x in c) for c in caps):
        raise ScenarioError(f'{where}.capabilities: expected a list of lists of strings ([["gpu"]]), got {caps!r}')
    return SimDeviceRequest(driver, count, ids, tuple(tuple(c) for c in caps))


def _parse_docker(data: dict, source: str, gpu_pids: set[int]):
    raw_engine = data.get("docker")
    raw_images = data.get("image", [])
    raw_containers = data.get("container", [])
    if raw_engine is None and not raw_images and not raw_containers:
        return None, (), ()
    if raw_engine is None:
        raw_engine = {}
    if not isinstance(raw_engine, dict):
        raise ScenarioError(f"{source}: [docker] must be a table")
    defaults = SimEngine()
    runtimes = raw_engine.get("runtimes")
    if runtimes is None:
        runtimes = dict(defaults.runtimes)
    elif not isinstance(runtimes, dict) or not all(isinstance(v, str) for v in runtimes.values()):
        raise ScenarioError(f'{source}: [docker].runtimes: expected a table name = "path", got {runtimes!r}')
    engine = SimEngine(
        server_version=str(raw_engine.get("version", defaults.server_version)),
        api_version=str(raw_engine.get("api_version", defaults.api_version)),
        default_runtime=str(raw_engine.get("default_runtime", defaults.default_runtime)),
        cgroup_driver=str(raw_engine.get("cgroup_driver", defaults.cgroup_driver)),
        runtimes=tuple(sorted(runtimes.items())),
        cdi_spec_dirs=_str_list(raw_engine.get("cdi_spec_dirs", []), f"{source}: [docker].cdi_spec_dirs"),
    )
    if engine.default_runtime not in runtimes:
        raise ScenarioError(f"{source}: [docker].default_runtime {engine.default_runtime!r} is not in runtimes")

    if not isinstance(raw_images, list):
        raise ScenarioError(f"{source}: image must be an array of tables ([[image]])")
    images = []
    for i, im in enumerate(raw_images):
        where = f"{source}: [[image]] #{i}"
        if not isinstance(im, dict):
            raise ScenarioError(f"{where}: expected a table")
        name = _require(im, "name", where, str)
        images.append(
            SimImage(
                name=image_ref(name),
                env=_str_list(im.get("env", []), f"{where}.env"),
                labels=_labels(im.get("labels", {}), f"{where}.labels"),
                size=int(im.get("size", 0)),
            )
        )

    if not isinstance(raw_containers, list):
        raise ScenarioError(f"{source}: container must be an array of tables ([[container]])")
    containers = []
    owner: dict[int, str] = {}
    for i, c in enumerate(raw_containers):
        where = f"{source}: [[container]] #{i}"
        if not isinstance(c, dict):
            raise ScenarioError(f"{where}: expected a table")
        name = _require(c, "name", where, str)
        where = f"{source}: [[container]] {name!r}"
        cid = c.get("id") or hashlib.sha256(name.encode()).hexdigest()
        if not isinstance(cid, str) or not _HEX64.match(cid):
            raise ScenarioError(f"{where}.id: expected 64 lowercase hex digits, got {cid!r}")
        state = c.get("state", "running")
        if state not in CONTAINER_STATES:
            raise ScenarioError(f"{where}.state: expected one of {', '.join(CONTAINER_STATES)}, got {state!r}")
        runtime = c.get("runtime")
        if runtime is not None and (not isinstance(runtime, str) or runtime not in runtimes):
            raise ScenarioError(
                f"{where}.runtime: {runtime!r} is not a runtime of the engine ({', '.join(sorted(runtimes))})"
            )
        devs = c.get("devices", [])
        if not isinstance(devs, list):
            raise ScenarioError(f"{where}.devices: expected a list")
        drs = c.get("device_requests", [])
        if not isinstance(drs, list):
            raise ScenarioError(f"{where}.device_requests: expected a list of tables")
        pids_raw = c.get("pids", [])
        pids = []
        if not isinstance(pids_raw, list):
            raise ScenarioError(f"{where}.pids: expected a list of [host PID, container PID] pairs")
        for j, pair in enumerate(pids_raw):
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in pair)
            ):
                raise ScenarioError(
                    f"{where}.pids[{j}]: expected [host PID, container PID] (positive integers), got {pair!r}"
                )
            host_pid, in_pid = pair
            if host_pid not in gpu_pids:
                raise ScenarioError(f"{where}.pids[{j}]: PID {host_pid} is not the pid of any [[gpu.process]]")
            if host_pid in owner:
                raise ScenarioError(f"{where}.pids[{j}]: PID {host_pid} already runs in container {owner[host_pid]!r}")
            owner[host_pid] = name
            pids.append((host_pid, in_pid))
        running = state in ("running", "paused", "restarting")
        if pids and not running:
            raise ScenarioError(f"{where}.pids: a {state} container runs no processes")
        pid = c.get("pid")
        if pid is not None and (not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0):
            raise ScenarioError(f"{where}.pid: expected a positive integer, got {pid!r}")
        if running and pid is None:
            pid = next((h for h, inside in pids if inside == 1), None) or 3_700_000 + 100 * i
        created = c.get("created", _DEFAULT_CREATED)
        started = c.get("started")
        created = _rfc3339(created, f"{where}.created")
        if started is not None:
            started = _rfc3339(started, f"{where}.started")
        elif state not in ("created", "removing"):
            started = created  # it has run: started when created, unless the file says otherwise
        image = c.get("image", "ubuntu:22.04")
        if not isinstance(image, str):
            raise ScenarioError(f"{where}.image: expected a string, got {image!r}")
        command = c.get("command", "")
        if not isinstance(command, str):
            raise ScenarioError(f"{where}.command: expected a string, got {command!r}")
        exit_code = c.get("exit_code", 0)
        if not isinstance(exit_code, int) or isinstance(exit_code, bool):
            raise ScenarioError(f"{where}.exit_code: expected an integer, got {exit_code!r}")
        containers.append(
            SimContainer(
                id=cid,
                name=name,
                image=image,
                state=state,
                runtime=runtime,
                env=_str_list(c.get("env", []), f"{where}.env"),
                devices=tuple(_device(d, f"{where}.devices[{j}]") for j, d in enumerate(devs)),
                device_requests=tuple(_device_request(d, f"{where}.device_requests[{j}]") for j, d in enumerate(drs)),
                labels=_labels(c.get("labels", {}), f"{where}.labels"),
                pid=pid if running else None,
                pids=tuple(pids),
                created=created,
                started=started,
                command=command,
                exit_code=exit_code,
            )
        )
    for kind, values in (("name", [c.name for c in containers]), ("id", [c.id for c in containers])):
        if len(set(values)) != len(values):
            raise ScenarioError(f"{source}: two containers share a {kind}")
    return engine, tuple(images), tuple(containers)


def image_ref(name: str) -> str:
    """``name`` with ``:latest`` when it has no tag (and no digest)."""
    last = name.rsplit("/", 1)[-1]
    return name if (":" in last or "@" in name) else name + ":latest"


def _rfc3339(value, where: str) -> str:
    """Docker's time form (RFC 3339, UTC, ``Z``) from a string or a TOML date-time (a local one
    is taken as UTC)."""
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat() + "Z"
    raise ScenarioError(f'{where}: expected an RFC 3339 time ("2026-11-20T08:14:03Z"), got {value!r}')


# A scenario describes a host in a few KiB; more is not a scenario (and --sim /dev/zero never ends).
MAX_SCENARIO_BYTES = 4 << 20


def _read_scenario_file(p: Path) -> bytes:
    """The file's bytes: only a regular file (a FIFO would block, a device never end), at most
    MAX_SCENARIO_BYTES."""
    from gpudock.host.root import HostRoot, NotRegularFileError

    try:
        raw = HostRoot("/").read_bytes(os.path.abspath(p), limit=MAX_SCENARIO_BYTES + 1)
    except NotRegularFileError as e:
        raise ScenarioError(f"{p}: cannot read the scenario file: it is {e.kind}, not a regular file") from None
    except IsADirectoryError:
        raise ScenarioError(f"{p}: cannot read the scenario file: it is a directory; name the .toml file") from None
    except OSError as e:
        raise ScenarioError(f"{p}: cannot read the scenario file: {e.strerror or e}") from None
    if raw is None:
        raise ScenarioError(f"{p}: cannot read the scenario file: it does not exist")
    if len(raw) > MAX_SCENARIO_BYTES:
        raise ScenarioError(
            f"{p}: cannot read the scenario file: it is larger than {MAX_SCENARIO_BYTES >> 20} MiB, "
            "far more than any scenario; is it the right file?"
        )
    return raw


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    raw = _read_scenario_file(p)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ScenarioError(f"{p}: not UTF-8 text ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{p}: {e}") from None
    return parse_scenario(data, str(p))


def builtin_names() -> tuple[str, ...]:
    """The built-in scenarios (``gpudock/sim/scenarios/*.toml``), demo first."""
    names = sorted(
        p.name[: -len(".toml")]
        for p in (resources.files("gpudock.sim") / "scenarios").iterdir()
        if p.name.endswith(".toml")
    )
    return tuple(sorted(names, key=lambda n: n != "demo"))


def builtin_scenario(name: str = "demo") -> Scenario:
    if name not in builtin_names():
        raise ScenarioError(
            f"there is no built-in scenario {name!r}; the built-in ones are: {', '.join(builtin_names())} "
            "(or give a scenario file's path)"
        )
    ref = resources.files("gpudock.sim") / "scenarios" / f"{name}.toml"
    data = tomllib.loads(ref.read_text(encoding="utf-8"))
    return parse_scenario(data, f"built-in:{name}")


def resolve_scenario(name_or_path: str) -> Scenario:
    """``--sim``'s argument: a built-in scenario's name, else a scenario file. A name that is
    neither is refused with the built-in names."""
    if name_or_path in builtin_names():
        return builtin_scenario(name_or_path)
    looks_like_path = "/" in name_or_path or name_or_path.endswith(".toml") or os.path.exists(name_or_path)
    if not looks_like_path:
        raise ScenarioError(
            f"--sim {name_or_path}: no built-in scenario of that name and no such file; the built-in ones are: "
            f"{', '.join(builtin_names())} (gpudock scenarios lists them)"
        )
    return load_scenario(name_or_path)
