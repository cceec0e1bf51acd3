"""Scenario files: a simulated GPU host described in TOML.

A scenario is what a customer's host looks like to NVML: driver and CUDA versions, an init failure
to play, GPUs (index order is file order) with bus id, minor, memory, utilization behaviour,
temperature, power, MIG instances and processes. The format is documented in README.md
("Scenario files"); ``gpudock/sim/scenarios/demo.toml`` is the built-in 8-GPU server.

Bad files are refused with the file, the TOML line/column or the key path, and what is expected.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from gpudock.model import nvml_bus_id

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
            raise ScenarioError(f"{where}: a moving value needs 'base' (and optionally amplitude, period, phase)")
        except (TypeError, ValueError):
            raise ScenarioError(f"{where}: base/amplitude/period/phase must be numbers")
    raise ScenarioError(f"{where}: expected a number or a table {{base=, amplitude=, period=}}, got {value!r}")


def _cuda_int(text: str, where: str) -> int:
    try:
        major, _, minor = str(text).partition(".")
        return int(major) * 1000 + int(minor or 0) * 10
    except ValueError:
        raise ScenarioError(f"{where}: CUDA version must look like '12.2', got {text!r}")


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
            raise ScenarioError(f"{where}.compute_mode: expected one of {', '.join(COMPUTE_MODES)}, got {compute_mode!r}")
        bus = _require(g, "pci_bus_id", where, str)
        try:
            bus = nvml_bus_id(bus)
        except ValueError:
            raise ScenarioError(f"{where}.pci_bus_id: {bus!r} is not a PCI bus id like 0000:05:00.0")
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
    return Scenario(
        name=str(data.get("name", Path(source).stem)),
        description=str(data.get("description", "")),
        driver_version=version,
        cuda_version=_cuda_int(driver.get("cuda", "12.2"), f"{source}: [driver].cuda"),
        nvml_version=str(driver.get("nvml", "12." + version)),
        init_error=init_error,
        missing_functions=frozenset(driver.get("missing_functions", [])),
        gpus=tuple(gpus),
        frozen=bool(data.get("frozen", False)),
    )


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ScenarioError(f"{p}: cannot read the scenario file: {e.strerror or e}")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ScenarioError(f"{p}: not UTF-8 text ({e})")
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{p}: {e}")
    return parse_scenario(data, str(p))


def builtin_scenario(name: str = "demo") -> Scenario:
    ref = resources.files("gpudock.sim") / "scenarios" / f"{name}.toml"
    data = tomllib.loads(ref.read_text(encoding="utf-8"))
    return parse_scenario(data, f"built-in:{name}")
