"""Scenario files: a simulated GPU host described in TOML.

A scenario is what a customer's host looks like to NVML: driver and CUDA versions, an init failure
to play, GPUs (index order is file order) with bus id, minor, memory, utilization behaviour,
temperature, power, MIG instances and processes. The format is documented in README.md
("Scenario files"); ``gpudock/sim/scenarios/demo.toml`` is the built-in 8-GPU server.

The readings nvitop, gpustat and ``nvidia-smi -q`` show come from these optional ``[[gpu]]`` keys
(defaults in brackets); a number may also be a moving value ``{base, amplitude, period, phase}``::

    fan_speed = 35                        # % [30]; fans = 0 for a passively cooled card [1]
    performance_state = 0                 # P-state 0..15 [0]
    clock_event_reasons = ["sw_power_cap"] # why clocks are held: gpu_idle, applications_clocks_setting,
                                          # sw_power_cap, hw_slowdown, sync_boost, sw_thermal_slowdown,
                                          # hw_thermal_slowdown, hw_power_brake_slowdown,
                                          # display_clock_setting [gpu_idle when utilization is 0, else none]
    ecc_mode = true                       # [true]; ecc_mode_pending [= ecc_mode]; off: no error counts
    ecc_errors = { volatile_corrected = 0, volatile_uncorrected = 0,
                   aggregate_corrected = 0, aggregate_uncorrected = 0 }      # [all 0]
    retired_pages = { single_bit = 0, double_bit = 0, pending = false }     # [0, 0, false]
    remapped_rows = { correctable = 0, uncorrectable = 0, pending = false, failed = false }
    pcie = { gen = 5, gen_max = 5, width = 16, width_max = 16,              # [4, gen, 16, width]
             rx_kib_s = 0, tx_kib_s = 0,                                    # NVML's KB/s [0]
             path = ["pci0000:00", "plx0"] }  # host bridge, then the PCIe switches down to the card
                                          # [its own root port]: gives PIX/PXB/PHB/NODE/SYS
    bar1_total_mib = 131072               # [256]; bar1_used_mib [2]
    encoder_utilization = 0               # % [0]; decoder_utilization [0]
    display_active = false                # [false]
    compute_capability = "9.0"            # ["9.0"]
    nvlink = { links = 18, down = [7], peers = [] }  # links the card has [0: no NVLink]; links not up;
                                          # per link the bus id of the GPU at its end [NVSwitches]
    numa_node = 0                         # [0]; -1: none
    cpu_affinity = "0-55,112-167"         # [the 16 CPUs 16N..16N+15 of NUMA node N]

``[[gpu.process]]`` takes ``sm_util``, ``mem_util`` (% of the GPU in its utilization sample;
default: the GPU's utilization shared evenly among its compute processes), ``enc_util`` and
``dec_util`` [0]; ``[[gpu.mig]]`` takes ``bar1_total_mib`` [the parent's BAR1 by memory share]
and ``bar1_used_mib`` [0]. ``unsupported = ["nvmlDeviceGetFanSpeed", ...]`` makes a card answer
NOT_SUPPORTED for those functions; ``[driver] missing_functions`` removes them from the library
as an older driver would (FUNCTION_NOT_FOUND).

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

import difflib
import hashlib
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from gpudock.model import CLOCK_EVENT_REASONS, nvml_bus_id, parse_cpu_list
from gpudock.sim.host_spec import HostSpec, parse_host
from gpudock.sim.keys import Key, SpecError, check_table, check_value, key_path, number, shown

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
    # nvmlDeviceGetProcessUtilization's sample; None: the GPU's utilization shared among its processes
    sm_util: int | None = None
    mem_util: int | None = None
    enc_util: int = 0
    dec_util: int = 0


@dataclass(frozen=True)
class SimMig:
    profile: str
    uuid: str
    memory_total_mib: int
    memory_used_mib: int
    gpu_instance_id: int
    compute_instance_id: int = 0
    bar1_total_mib: int | None = None  # None: the parent's BAR1 shared by memory size
    bar1_used_mib: int = 0


@dataclass(frozen=True)
class SimEcc:
    """ECC error counts (nvmlDeviceGetTotalEccErrors); the volatile ones since the last driver load."""

    volatile_corrected: int = 0
    volatile_uncorrected: int = 0
    aggregate_corrected: int = 0
    aggregate_uncorrected: int = 0


@dataclass(frozen=True)
class SimRetiredPages:
    single_bit: int = 0  # pages retired for multiple single-bit ECC errors
    double_bit: int = 0  # pages retired for a double-bit ECC error
    pending: bool = False  # a retirement waits for the next driver load


@dataclass(frozen=True)
class SimRemappedRows:
    correctable: int = 0
    uncorrectable: int = 0
    pending: bool = False
    failed: bool = False


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
    fan_speed: Wave = Wave(30.0)
    fans: int = 1
    performance_state: int = 0
    clock_event_reasons: int | None = None  # bit mask; None: "gpu_idle" when the card is idle, else none
    ecc_mode: bool = True
    ecc_mode_pending: bool = True
    ecc_errors: SimEcc = field(default_factory=lambda: SimEcc())
    retired_pages: SimRetiredPages = field(default_factory=lambda: SimRetiredPages())
    remapped_rows: SimRemappedRows = field(default_factory=lambda: SimRemappedRows())
    pcie_gen: int = 4
    pcie_gen_max: int = 4
    pcie_width: int = 16
    pcie_width_max: int = 16
    pcie_rx_kib_s: Wave = Wave(0.0)
    pcie_tx_kib_s: Wave = Wave(0.0)
    bar1_total_mib: int = 256
    bar1_used_mib: Wave = Wave(2.0)
    encoder_utilization: Wave = Wave(0.0)
    decoder_utilization: Wave = Wave(0.0)
    display_active: bool = False
    compute_capability: tuple[int, int] = (9, 0)
    nvlink_links: int = 0  # links the card has (0: no NVLink: the link calls answer NOT_SUPPORTED)
    nvlink_down: frozenset[int] = frozenset()  # links that are not up
    nvlink_peers: tuple[str, ...] = ()  # per link, the NVML bus id of the GPU at its other end; () = NVSwitch
    numa_node: int | None = 0
    cpu_affinity: tuple[int, ...] = ()  # CPU numbers; () = the numa node's CPUs
    pcie_path: tuple[str, ...] = ()  # bridges from the root complex down to the card; () = its own root port


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


# -- what each key takes ----------------------------------------------------------------------
# One line per key (gpudock.sim.keys.Key): its type and range. Values are checked here, up front,
# so that the simulated NVML library and engine only ever see values they can answer with.

MAX_PID = 4_194_304  # PID_MAX_LIMIT: the most a 64-bit Linux pid_max can be
MAX_MIB = 1 << 24  # 16 TiB: more than any GPU has
MAX_GPU_MINOR = 253  # 195:254 is /dev/nvidia-modeset, 195:255 /dev/nvidiactl
MAX_MIG_DEVICES = 7  # what nvmlDeviceGetMaxMigDeviceCount answers with MIG on
_NVML_NAME = 95  # bytes in NVML's name and UUID buffers (NVML_DEVICE_*_V2_BUFFER_SIZE), less the NUL
_BUS_ID = r"(?:[0-9A-Fa-f]{1,8}:)?[0-9A-Fa-f]{1,2}:[0-9A-Fa-f]{1,2}\.[0-7]"
_CONTAINER_NAME = r"[a-zA-Z0-9][a-zA-Z0-9_.-]*"  # dockerd's rule (it also takes one character)
_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


def _moving(lo: float, hi: float) -> Key:
    """A value that may move (see :class:`Wave`) around a base within ``lo`` to ``hi``."""
    words = f"a number from {number(lo)} to {number(hi)}, or a moving value {{base=, amplitude=, period=}}"
    wave_keys = {
        "base": Key(float, lo, hi, required=True),
        "amplitude": Key(float, 0, hi - lo),
        "period": Key(float, 0.1, 1e6, words="seconds from 0.1 to 1000000"),
        "phase": Key(float, -1e6, 1e6),
    }

    def check(value, where: str) -> None:
        if isinstance(value, dict):
            # A swing past the range saturates there, as a busy card's 100 % does.
            check_table(value, wave_keys, where)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            check_value(value, Key(float, lo, hi), where)
        else:
            raise SpecError(f"{where}: expected {words}, got {shown(value)}")

    return Key(object, check=check, words=words)


def _nvml_functions(extra: frozenset[str] = frozenset()) -> Key:
    """A list of names of functions the simulated NVML library exports (a typo would do nothing)."""

    def check(names: list, where: str) -> None:
        # Imported here: gpudock.sim.libnvml imports this module.
        from gpudock.sim.libnvml import exported_functions

        known = exported_functions() | extra
        for i, name in enumerate(names):
            if name not in known:
                near = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f" (did you mean {near[0]}?)" if near else " (e.g. nvmlDeviceGetPowerUsage)"
                raise SpecError(
                    f"{key_path(where, i)}: {name!r} is not an NVML function of the simulated library{hint}"
                )

    return Key(list, each=Key(str), check=check)


def _tables(what: str, most: int | None = None) -> Key:
    return Key(list, hi=most, each=Key(dict, words=f"a table ([[{what}]])"), words=f"an array of tables ([[{what}]])")


TOP_KEYS = {
    "name": Key(str, empty=False, max_bytes=255),
    "description": Key(str),
    "frozen": Key(bool),
    "driver": Key(dict, words="a table ([driver])"),
    "gpu": _tables("gpu"),
    "docker": Key(dict, words="a table ([docker])"),
    "image": _tables("image"),
    "container": _tables("container"),
    "host": Key(dict, words="a table ([host])"),
}
DRIVER_KEYS = {
    "version": Key(
        str, required=True, max_bytes=64, pattern=r"[0-9A-Za-z.+~-]+", words="a driver version such as 535.129.03"
    ),
    "init_error": Key(str),
    "cuda": Key(object, words="a CUDA version such as '12.2'"),
    "nvml": Key(str, max_bytes=79, pattern=r"[0-9A-Za-z.+~-]+", words="an NVML version such as 12.535.129.03"),
    "missing_functions": _nvml_functions(),
}
GPU_KEYS = {
    "uuid": Key(
        str,
        required=True,
        max_bytes=_NVML_NAME,
        pattern=r"GPU-[0-9A-Za-z-]+",
        words="a GPU UUID such as GPU-4f3a1c2e-9b7d-4e21-8a55-0c1d2e3f4a01",
    ),
    "name": Key(str, required=True, empty=False, max_bytes=_NVML_NAME),
    "pci_bus_id": Key(str, required=True, pattern=_BUS_ID, words="a PCI bus id such as 0000:05:00.0"),
    "minor": Key(int, 0, MAX_GPU_MINOR, words="a device minor from 0 to 253 (/dev/nvidiaN; 254 and 255 are not GPUs)"),
    "serial": Key(str, max_bytes=29),
    "memory_total_mib": Key(int, 1, MAX_MIB, required=True),
    "memory_used_mib": _moving(0, MAX_MIB),
    "utilization_gpu": _moving(0, 100),
    "utilization_memory": _moving(0, 100),
    "temperature_c": _moving(0, 200),
    "power_w": _moving(0, 10_000),
    "power_limit_w": Key(float, 1, 10_000),
    "persistence_mode": Key(bool),
    "compute_mode": Key(str),
    "mig_mode": Key(bool),
    "mig_pending": Key(bool),
    "mig": _tables("gpu.mig", MAX_MIG_DEVICES),
    "process": _tables("gpu.process"),
    "clock_sm_mhz": Key(int, 0, 100_000),
    "clock_mem_mhz": Key(int, 0, 100_000),
    "clock_sm_max_mhz": Key(int, 0, 100_000),
    "clock_mem_max_mhz": Key(int, 0, 100_000),
    "lost": Key(bool),
    "unsupported": _nvml_functions(frozenset({"processes"})),  # "processes": every running-processes call
    # the readings nvitop and nvidia-smi show (their own parsers, _gpu_readings, check the values)
    "fan_speed": _moving(0, 100),
    "fans": Key(int, 0, 32),
    "performance_state": Key(int, 0, 15),
    "clock_event_reasons": Key(list, each=Key(str)),
    "ecc_mode": Key(bool),
    "ecc_mode_pending": Key(bool),
    "ecc_errors": Key(dict),
    "retired_pages": Key(dict),
    "remapped_rows": Key(dict),
    "pcie": Key(dict),
    "bar1_total_mib": Key(int, 1, MAX_MIB),
    "bar1_used_mib": _moving(0, MAX_MIB),
    "encoder_utilization": _moving(0, 100),
    "decoder_utilization": _moving(0, 100),
    "display_active": Key(bool),
    "compute_capability": Key(str, pattern=r"\d+\.\d+", words='a compute capability such as "9.0"'),
    "nvlink": Key(dict),
    "numa_node": Key(int, -1, 1023),
    "cpu_affinity": Key(str),
}
PROCESS_KEYS = {
    "pid": Key(int, 1, MAX_PID, required=True),
    "used_memory_mib": Key(int, 0, MAX_MIB, required=True),
    "command": Key(str, max_bytes=1023),
    "type": Key(str),
    "mig_index": Key(int, 0, MAX_MIG_DEVICES - 1),
    "sm_util": Key(int, 0, 100),
    "mem_util": Key(int, 0, 100),
    "enc_util": Key(int, 0, 100),
    "dec_util": Key(int, 0, 100),
}
MIG_KEYS = {
    "profile": Key(str, required=True, pattern=r"[0-9A-Za-z.+_-]+", words="a MIG profile such as 3g.40gb"),
    "uuid": Key(
        str,
        required=True,
        max_bytes=_NVML_NAME,
        pattern=r"MIG-[0-9A-Za-z/-]+",
        words="a MIG device UUID such as MIG-5d1e6f2a-7b3c-5d4e-9f60-718293a4b5c1",
    ),
    "memory_total_mib": Key(int, 1, MAX_MIB, required=True),
    "memory_used_mib": Key(int, 0, MAX_MIB),
    "gpu_instance_id": Key(int, 0, 1023),
    "compute_instance_id": Key(int, 0, 1023),
    "bar1_total_mib": Key(int, 0, MAX_MIB),
    "bar1_used_mib": Key(int, 0, MAX_MIB),
}
DOCKER_KEYS = {
    "version": Key(str, pattern=r"\d+\.\d+[0-9A-Za-z.+~-]*", words="an engine version such as 26.1.5"),
    "api_version": Key(
        str, pattern=r"1\.(2[4-9]|[3-9]\d)", words="an Engine API version from 1.24 (the SDK's oldest), such as 1.45"
    ),
    "default_runtime": Key(str, empty=False),
    "cgroup_driver": Key(str, choices=("systemd", "cgroupfs")),
    "runtimes": Key(dict),
    "cdi_spec_dirs": Key(list, each=Key(str, pattern=r"/.*", words="an absolute directory such as /etc/cdi")),
}
_IMAGE_REF = "an image reference such as nvidia/cuda:12.2.0-base-ubuntu22.04"
IMAGE_KEYS = {
    "name": Key(str, required=True, pattern=r"\S+", words=_IMAGE_REF),
    "env": Key(list, each=Key(str)),
    "labels": Key(dict),
    "size": Key(int, 0, 1 << 50),
}
CONTAINER_KEYS = {
    "name": Key(
        str,
        required=True,
        pattern=_CONTAINER_NAME,
        words="a container name (letters, digits, '_', '.' and '-', starting with a letter or digit)",
    ),
    "id": Key(str),
    "state": Key(str),
    "runtime": Key(str),
    "devices": Key(list),
    "device_requests": Key(list),
    "pids": Key(list),
    "pid": Key(int, 1, MAX_PID),
    "created": Key(object),
    "started": Key(object),
    "image": Key(str, pattern=r"\S+", words=_IMAGE_REF),
    "command": Key(str),
    "exit_code": Key(int, 0, 255),
    "env": Key(list, each=Key(str)),
    "labels": Key(dict),
}
DEVICE_KEYS = {"host": Key(str, required=True), "container": Key(str), "permissions": Key(str)}


def _finite_wave(w: Wave, where: str) -> Wave:
    """A wave of finite numbers, under 2**32 (what NVML's counters hold); inf and nan, which TOML
    allows, would fail in the simulated library, not here where the file says it."""
    for name in ("base", "amplitude", "period", "phase"):
        v = getattr(w, name)
        if not math.isfinite(v) or abs(v) >= 2**32:
            part = "" if name == "base" and w.amplitude == 0 else f".{name}"
            raise ScenarioError(f"{where}{part}: must be a finite number below 4294967296, got {v!r}")
    if w.period <= 0:
        raise ScenarioError(f"{where}.period: must be more than 0 seconds, got {w.period!r}")
    return w


def _wave(value, where: str) -> Wave:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _finite_wave(Wave(float(value)), where)
    if isinstance(value, dict):
        try:
            w = Wave(
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
        return _finite_wave(w, where)
    raise ScenarioError(f"{where}: expected a number or a table {{base=, amplitude=, period=}}, got {value!r}")


def _cuda_int(text, where: str) -> int:
    m = None
    if isinstance(text, str) or (isinstance(text, (int, float)) and not isinstance(text, bool) and 0 <= text < 100):
        m = re.fullmatch(r"(\d{1,2})(?:\.(\d{1,2}))?", str(text))
    if m is None:
        raise ScenarioError(f"{where}: CUDA version must look like '12.2', got {shown(text)}")
    return int(m.group(1)) * 1000 + int(m.group(2) or 0) * 10


def _require(table: dict, key: str, where: str, kind: type | tuple[type, ...]):
    if key not in table:
        raise ScenarioError(f"{where}: missing required key '{key}'")
    value = table[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ScenarioError(f"{where}.{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def parse_scenario(data: dict, source: str = "<scenario>") -> Scenario:
    """The scenario ``data`` (a TOML document's tables) describes. Every key is checked up front
    (:data:`GPU_KEYS` and the other tables; ``[host]`` by :mod:`gpudock.sim.host_spec`): a bad one
    is refused with a ScenarioError that starts with ``source`` and names the key."""
    try:
        return _parse(data, source)
    except SpecError as e:
        raise ScenarioError(str(e)) from None


def _parse(data: dict, source: str) -> Scenario:
    check_table(data, TOP_KEYS, f"{source}:")
    driver = data.get("driver", {})
    if not isinstance(driver, dict):
        raise ScenarioError(f"{source}: [driver] must be a table")
    check_table(driver, DRIVER_KEYS, f"{source}: [driver]")
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
        check_table(g, GPU_KEYS, where)
        mem_total = _require(g, "memory_total_mib", where, int)
        procs = []
        for j, p in enumerate(g.get("process", [])):
            pw = f"{where} [[gpu.process]] #{j}"
            check_table(p, PROCESS_KEYS, pw)
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
                    sm_util=_opt_int(p, "sm_util", pw, 0, 100),
                    mem_util=_opt_int(p, "mem_util", pw, 0, 100),
                    enc_util=_opt_int(p, "enc_util", pw, 0, 100) or 0,
                    dec_util=_opt_int(p, "dec_util", pw, 0, 100) or 0,
                )
            )
        migs = []
        for j, m in enumerate(g.get("mig", [])):
            mw = f"{where} [[gpu.mig]] #{j}"
            check_table(m, MIG_KEYS, mw)
            migs.append(
                SimMig(
                    profile=_require(m, "profile", mw, str),
                    uuid=_require(m, "uuid", mw, str),
                    memory_total_mib=_require(m, "memory_total_mib", mw, int),
                    memory_used_mib=m.get("memory_used_mib", 0),
                    gpu_instance_id=m.get("gpu_instance_id", j + 1),
                    compute_instance_id=m.get("compute_instance_id", 0),
                    bar1_total_mib=_opt_int(m, "bar1_total_mib", mw, 0),
                    bar1_used_mib=_opt_int(m, "bar1_used_mib", mw, 0) or 0,
                )
            )
        _check_gpu_parts(g, procs, migs, where)
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
                **_gpu_readings(g, where, i),
            )
        )
    _no_duplicates(
        source,
        "GPUs",
        "[[gpu]]",
        [
            ("a UUID", [g.uuid for g in gpus]),
            ("a device minor", [g.minor for g in gpus]),
            ("a PCI bus id", [g.pci_bus_id for g in gpus]),
        ],
    )
    mig_uuids = [(f"[[gpu]] #{i} [[gpu.mig]] #{j}", m.uuid) for i, g in enumerate(gpus) for j, m in enumerate(g.mig)]
    _no_duplicates(source, "MIG devices", None, [("a UUID", mig_uuids)])
    gpu_pids = {p.pid for g in gpus for p in g.processes}
    engine, images, containers = _parse_docker(data, source, gpu_pids)
    name = str(data.get("name", Path(source).stem))
    host = parse_host(data.get("host"), f"{source}: [host]", name=name, driver_version=version)
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


def _opt_int(table: dict, key: str, where: str, lo: int | None = None, hi: int | None = None) -> int | None:
    if key not in table:
        return None
    v = table[key]
    if not isinstance(v, int) or isinstance(v, bool) or (lo is not None and v < lo) or (hi is not None and v > hi):
        bounds = f" from {lo}" if lo is not None else ""
        bounds += f" to {hi}" if hi is not None else ""
        raise ScenarioError(f"{where}.{key}: expected an integer{bounds}, got {v!r}")
    return v


def _opt_bool(table: dict, key: str, where: str, default: bool) -> bool:
    v = table.get(key, default)
    if not isinstance(v, bool):
        raise ScenarioError(f"{where}.{key}: expected true or false, got {v!r}")
    return v


def _sub_table(g: dict, key: str, where: str, keys: set[str]) -> dict:
    t = g.get(key, {})
    if not isinstance(t, dict):
        raise ScenarioError(f"{where}.{key}: expected a table {{{', '.join(f'{k} = …' for k in sorted(keys))}}}")
    unknown = set(t) - keys
    if unknown:
        raise ScenarioError(
            f"{where}.{key}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(keys))})"
        )
    return t


_REASON_BITS = {key: bit for bit, key, _words in CLOCK_EVENT_REASONS}
_CPUS_PER_NODE = 16  # the default affinity: NUMA node N has CPUs 16N..16N+15


def _gpu_readings(g: dict, where: str, index: int) -> dict:
    """The [[gpu]] keys behind nvitop's and nvidia-smi's readings (fan, P-state, ECC, PCIe, BAR1,
    encoder/decoder, NVLink, topology); every one optional (see the module docstring)."""
    out: dict = {}
    if "fan_speed" in g:
        out["fan_speed"] = _wave(g["fan_speed"], f"{where}.fan_speed")
    out["fans"] = _opt_int(g, "fans", where, 0, 32) if "fans" in g else 1
    if "performance_state" in g:
        out["performance_state"] = _opt_int(g, "performance_state", where, 0, 15)
    if "clock_event_reasons" in g:
        names = _str_list(g["clock_event_reasons"], f"{where}.clock_event_reasons")
        bad = [n for n in names if n not in _REASON_BITS]
        if bad:
            raise ScenarioError(f"{where}.clock_event_reasons: {bad[0]!r} is not one of: {', '.join(_REASON_BITS)}")
        out["clock_event_reasons"] = sum(_REASON_BITS[n] for n in set(names))
    out["ecc_mode"] = _opt_bool(g, "ecc_mode", where, True)
    out["ecc_mode_pending"] = _opt_bool(g, "ecc_mode_pending", where, out["ecc_mode"])
    ecc_keys = {"volatile_corrected", "volatile_uncorrected", "aggregate_corrected", "aggregate_uncorrected"}
    ecc = _sub_table(g, "ecc_errors", where, ecc_keys)
    out["ecc_errors"] = SimEcc(**{k: _opt_int(ecc, k, f"{where}.ecc_errors", 0) or 0 for k in ecc_keys})
    rp = _sub_table(g, "retired_pages", where, {"single_bit", "double_bit", "pending"})
    out["retired_pages"] = SimRetiredPages(
        single_bit=_opt_int(rp, "single_bit", f"{where}.retired_pages", 0) or 0,
        double_bit=_opt_int(rp, "double_bit", f"{where}.retired_pages", 0) or 0,
        pending=_opt_bool(rp, "pending", f"{where}.retired_pages", False),
    )
    rr = _sub_table(g, "remapped_rows", where, {"correctable", "uncorrectable", "pending", "failed"})
    out["remapped_rows"] = SimRemappedRows(
        correctable=_opt_int(rr, "correctable", f"{where}.remapped_rows", 0) or 0,
        uncorrectable=_opt_int(rr, "uncorrectable", f"{where}.remapped_rows", 0) or 0,
        pending=_opt_bool(rr, "pending", f"{where}.remapped_rows", False),
        failed=_opt_bool(rr, "failed", f"{where}.remapped_rows", False),
    )
    pcie = _sub_table(g, "pcie", where, {"gen", "gen_max", "width", "width_max", "rx_kib_s", "tx_kib_s", "path"})
    pw = f"{where}.pcie"
    gen_max = _opt_int(pcie, "gen_max", pw, 1, 7) or _opt_int(pcie, "gen", pw, 1, 7) or 4
    width_max = _opt_int(pcie, "width_max", pw, 1, 32) or _opt_int(pcie, "width", pw, 1, 32) or 16
    out.update(
        pcie_gen=_opt_int(pcie, "gen", pw, 1, 7) or gen_max,
        pcie_gen_max=gen_max,
        pcie_width=_opt_int(pcie, "width", pw, 1, 32) or width_max,
        pcie_width_max=width_max,
        pcie_rx_kib_s=_wave(pcie.get("rx_kib_s", 0), f"{pw}.rx_kib_s"),
        pcie_tx_kib_s=_wave(pcie.get("tx_kib_s", 0), f"{pw}.tx_kib_s"),
        pcie_path=_str_list(pcie.get("path", []), f"{pw}.path"),
    )
    if "bar1_total_mib" in g:
        out["bar1_total_mib"] = _opt_int(g, "bar1_total_mib", where, 1)
    if "bar1_used_mib" in g:
        out["bar1_used_mib"] = _wave(g["bar1_used_mib"], f"{where}.bar1_used_mib")
    for key in ("encoder_utilization", "decoder_utilization"):
        if key in g:
            out[key] = _wave(g[key], f"{where}.{key}")
    out["display_active"] = _opt_bool(g, "display_active", where, False)
    cc = g.get("compute_capability", "9.0")
    try:
        major, minor = (int(x) for x in str(cc).split("."))
    except ValueError:
        raise ScenarioError(f'{where}.compute_capability: expected "major.minor" like "9.0", got {cc!r}') from None
    out["compute_capability"] = (major, minor)
    nv = _sub_table(g, "nvlink", where, {"links", "down", "peers"})
    nw = f"{where}.nvlink"
    links = _opt_int(nv, "links", nw, 0, 36) or 0
    down = nv.get("down", [])
    if not isinstance(down, list) or not all(isinstance(x, int) and 0 <= x < max(links, 1) for x in down):
        raise ScenarioError(f"{nw}.down: expected a list of link numbers from 0 to {max(links - 1, 0)}, got {down!r}")
    peers = _str_list(nv.get("peers", []), f"{nw}.peers")
    if peers and len(peers) != links:
        raise ScenarioError(f"{nw}.peers: one bus id per link: {links} link(s), {len(peers)} bus id(s)")
    try:
        peers = tuple(nvml_bus_id(b) for b in peers)
    except ValueError:
        raise ScenarioError(f"{nw}.peers: expected PCI bus ids like 0000:0a:00.0, got {list(peers)!r}") from None
    out.update(nvlink_links=links, nvlink_down=frozenset(down), nvlink_peers=peers)
    numa = g.get("numa_node", 0)
    if numa is not None and (not isinstance(numa, int) or isinstance(numa, bool) or numa < -1):
        raise ScenarioError(f"{where}.numa_node: expected a NUMA node number (or -1: none), got {numa!r}")
    out["numa_node"] = None if numa in (None, -1) else numa
    aff = g.get("cpu_affinity")
    if aff is None:
        node = out["numa_node"] or 0
        out["cpu_affinity"] = tuple(range(node * _CPUS_PER_NODE, (node + 1) * _CPUS_PER_NODE))
    else:
        try:
            out["cpu_affinity"] = parse_cpu_list(str(aff))
        except ValueError:
            raise ScenarioError(f'{where}.cpu_affinity: expected a CPU list like "0-55,112-167", got {aff!r}') from None
    return out


def _check_gpu_parts(g: dict, procs: list[SimProcess], migs: list[SimMig], where: str) -> None:
    """What one GPU's keys must agree on among themselves."""
    total = g["memory_total_mib"]
    used = g.get("memory_used_mib")
    if isinstance(used, (int, float)) and not isinstance(used, bool) and used > total:
        raise ScenarioError(f"{where}.memory_used_mib: {number(used)} MiB is more than memory_total_mib ({total} MiB)")
    for j, p in enumerate(procs):
        pw = f"{where} [[gpu.process]] #{j}"
        if p.used_memory_mib > total:
            raise ScenarioError(
                f"{pw}.used_memory_mib: {p.used_memory_mib} MiB is more than the GPU's memory_total_mib ({total} MiB)"
            )
        if p.mig_index is not None and p.mig_index >= len(migs):
            raise ScenarioError(
                f"{pw}.mig_index: {p.mig_index}, but this GPU has {len(migs)} MIG device(s) "
                "([[gpu.mig]], counted from 0)"
            )
        if any(q.pid == p.pid for q in procs[:j]):
            raise ScenarioError(f"{pw}.pid: PID {p.pid} is listed twice on this GPU")
    seen: dict[tuple[int, int], int] = {}
    for j, m in enumerate(migs):
        mw = f"{where} [[gpu.mig]] #{j}"
        if m.memory_used_mib > m.memory_total_mib:
            raise ScenarioError(
                f"{mw}.memory_used_mib: {m.memory_used_mib} MiB is more than its memory_total_mib "
                f"({m.memory_total_mib} MiB)"
            )
        if m.memory_total_mib > total:
            raise ScenarioError(
                f"{mw}.memory_total_mib: {m.memory_total_mib} MiB is more than the GPU's memory_total_mib ({total} MiB)"
            )
        if len(f"{g['name']} MIG {m.profile}".encode()) > _NVML_NAME:
            raise ScenarioError(
                f"{mw}.profile: the MIG device's name (the GPU's name, ' MIG ', the profile) is over {_NVML_NAME} bytes"
            )
        ids = (m.gpu_instance_id, m.compute_instance_id)
        if ids in seen:
            raise ScenarioError(
                f"{mw}: [[gpu.mig]] #{seen[ids]} has the same gpu_instance_id {ids[0]} and compute_instance_id {ids[1]}"
            )
        seen[ids] = j


def _no_duplicates(source: str, things: str, label: str | None, checks) -> None:
    """Refuse two of ``things`` that share a value, naming both: ``checks`` is (what, values)
    with values in file order (None: not given), or (where, value) pairs when ``label`` is None.
    UUIDs are compared as NVML and the toolkit compare them, ignoring case."""
    for what, values in checks:
        first: dict = {}
        for i, v in enumerate(values):
            place, value = (f"{label} #{i}", v) if label is not None else v
            if value is None:
                continue
            key = value.lower() if what == "a UUID" else value
            if key in first:
                raise ScenarioError(f"{source}: two {things} share {what}: {first[key]} and {place} are both {value!r}")
            first[key] = place


def _str_list(value, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ScenarioError(f"{where}: expected a list of strings, got {value!r}")
    return tuple(value)


def _labels(value, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ScenarioError(f'{where}: expected a table of strings (key = "value"), got {shown(value)}')
    for k, v in value.items():
        check_value(v, Key(str), key_path(where, k))
    return tuple(sorted(value.items()))


def _device(value, where: str) -> SimDevice:
    if isinstance(value, str):
        check_value(value, Key(str), where)
        parts = value.split(":")
        if not parts[0] or len(parts) > 3:
            raise ScenarioError(f"{where}: expected 'host[:container[:permissions]]', got {value!r}")
        host = parts[0]
        cont = parts[1] if len(parts) > 1 and parts[1] else host
        perms = parts[2] if len(parts) > 2 else "rwm"
        return _checked_device(SimDevice(host, cont, perms), where)
    if isinstance(value, dict):
        check_table(value, DEVICE_KEYS, where)
        host = _require(value, "host", where, str)
        cont = value.get("container", host)
        perms = value.get("permissions", "rwm")
        if not isinstance(cont, str) or not isinstance(perms, str):
            raise ScenarioError(f"{where}: container and permissions must be strings")
        return _checked_device(SimDevice(host, cont, perms), where)
    raise ScenarioError(f'{where}: expected "host:container" or {{host=, container=}}, got {shown(value)}')


def _checked_device(d: SimDevice, where: str) -> SimDevice:
    # What dockerd takes (--device): an absolute host path (or, in a scenario, a CDI name the
    # claim rules read), an absolute path in the container, and some of r, w and m.
    if not d.host.startswith("/") and "=" not in d.host:
        raise ScenarioError(f"{where}: the host side must be an absolute path such as /dev/nvidia0, got {d.host!r}")
    if not d.container.startswith("/") and d.container != d.host:
        raise ScenarioError(
            f"{where}: the container side must be an absolute path such as /dev/nvidia0, got {d.container!r}"
        )
    if not d.permissions or set(d.permissions) - set("rwm"):
        raise ScenarioError(f"{where}: permissions must be some of r, w and m (rwm), got {d.permissions!r}")
    return d


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
    if not isinstance(count, int) or isinstance(count, bool) or not -1 <= count <= 1024:
        raise ScenarioError(f"{where}.count: expected an integer >= -1 (-1: all) and at most 1024, got {shown(count)}")
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
    check_table(raw_engine, DOCKER_KEYS, f"{source}: [docker]")
    defaults = SimEngine()
    runtimes = raw_engine.get("runtimes")
    if runtimes is None:
        runtimes = dict(defaults.runtimes)
    elif not isinstance(runtimes, dict) or not all(isinstance(v, str) and v for v in runtimes.values()):
        raise ScenarioError(f'{source}: [docker].runtimes: expected a table name = "path", got {shown(runtimes)}')
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
        check_table(im, IMAGE_KEYS, where)
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
        check_table(c, CONTAINER_KEYS, where)
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
                or not all(isinstance(x, int) and not isinstance(x, bool) and 0 < x <= MAX_PID for x in pair)
            ):
                raise ScenarioError(
                    f"{where}.pids[{j}]: expected [host PID, container PID] (integers from 1 to {MAX_PID}), "
                    f"got {shown(pair)}"
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
    _no_duplicates(
        source,
        "containers",
        "[[container]]",
        [("a name", [c.name for c in containers]), ("an id", [c.id for c in containers])],
    )
    return engine, tuple(images), tuple(containers)


def image_ref(name: str) -> str:
    """``name`` with ``:latest`` when it has no tag (and no digest)."""
    last = name.rsplit("/", 1)[-1]
    return name if (":" in last or "@" in name) else name + ":latest"


def _rfc3339(value, where: str) -> str:
    """Docker's time form (RFC 3339, UTC, ``Z``) from a string or a TOML date-time (a local one
    is taken as UTC)."""
    if isinstance(value, str):
        m = _RFC3339.match(value)
        try:
            if m is None:
                raise ValueError(value)
            datetime.fromisoformat(m.group(1))  # a real date and time of day
        except ValueError:
            raise ScenarioError(
                f'{where}: expected an RFC 3339 time ("2026-11-20T08:14:03Z"), got {shown(value)}'
            ) from None
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
        raise ScenarioError(f"{p}: {_not_utf8(raw, e)}") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{p}: {e}") from None
    except RecursionError:
        raise ScenarioError(f"{p}: arrays or tables nested too deeply to read") from None
    return parse_scenario(data, str(p))


def _not_utf8(raw: bytes, e: UnicodeDecodeError) -> str:
    """Where the first byte that is not UTF-8 is, as an editor counts: line and column."""
    line_start = raw.rfind(b"\n", 0, e.start) + 1
    line = raw.count(b"\n", 0, e.start) + 1
    column = len(raw[line_start : e.start].decode("utf-8", "replace")) + 1
    return (
        f"line {line}, column {column}: byte 0x{raw[e.start]:02x} is not UTF-8 text "
        "(TOML files are UTF-8: convert it, e.g. iconv -f latin1 -t utf-8)"
    )


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
