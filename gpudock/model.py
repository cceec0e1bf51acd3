"""One model of the host for everyone: the CLI, the TUI, the doctor, the launcher and the tests.

Probes (``gpudock.host``) produce these immutable values; nothing downstream mutates them. A value
NVML does not support is ``None`` (shown as "N/A" / JSON ``null``), never an error; an error is a
string an operator can act on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


def sysfs_bus_id(bus_id: str) -> str:
    """Normalise an NVML bus id ("00000000:3B:00.0") to the sysfs/procfs form ("0000:3b:00.0").

    nvidia-docker 1.0 lowercased the NVML id and missed sysfs when NVML started printing an
    8-digit domain; we always go through this function instead.
    """
    domain, _, rest = bus_id.strip().rpartition(":")
    # rest is "00.0"; domain holds "dddddddd:bb"
    dom, _, bus = domain.rpartition(":")
    if not dom:
        dom = "0"
    return f"{int(dom, 16):04x}:{int(bus, 16):02x}:{rest.lower()}"


def nvml_bus_id(bus_id: str) -> str:
    """The NVML form ("00000000:3B:00.0") of any bus id spelling."""
    s = sysfs_bus_id(bus_id)
    dom, bus, rest = s.split(":")
    return f"{int(dom, 16):08X}:{bus.upper()}:{rest.upper()}"


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A process NVML reports on a GPU (host PID), enriched from /proc and the container map."""

    pid: int
    used_memory_mib: int | None
    kind: Literal["compute", "graphics"] = "compute"
    command: str | None = None  # from the host's /proc/<pid>/cmdline; None when unreadable or gone
    container_id: str | None = None
    container_pid: int | None = None  # NSpid: the PID as seen inside the container
    mig_uuid: str | None = None  # MIG device the process runs on, when MIG is on

    def to_json(self) -> dict:
        return {
            "pid": self.pid,
            "used_memory_mib": self.used_memory_mib,
            "type": self.kind,
            "command": self.command,
            "container_id": self.container_id,
            "container_pid": self.container_pid,
            "mig_uuid": self.mig_uuid,
        }


@dataclass(frozen=True, slots=True)
class MigDevice:
    index: int
    uuid: str
    profile: str | None  # e.g. "1g.10gb"
    memory_total_mib: int | None
    memory_used_mib: int | None
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "uuid": self.uuid,
            "profile": self.profile,
            "memory_total_mib": self.memory_total_mib,
            "memory_used_mib": self.memory_used_mib,
            "gpu_instance_id": self.gpu_instance_id,
            "compute_instance_id": self.compute_instance_id,
        }


@dataclass(frozen=True, slots=True)
class Gpu:
    """One physical GPU as NVML enumerates it. ``index`` is NVML's; ``minor`` is /dev/nvidia<minor>."""

    index: int
    uuid: str | None
    name: str | None = None
    pci_bus_id: str | None = None  # NVML form, "00000000:05:00.0"
    minor: int | None = None
    serial: str | None = None
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None
    utilization_gpu: int | None = None
    utilization_memory: int | None = None
    temperature_c: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    persistence_mode: bool | None = None
    compute_mode: str | None = None  # "Default", "Exclusive_Process", "Prohibited"
    mig_mode_current: bool | None = None
    mig_mode_pending: bool | None = None
    mig_devices: tuple[MigDevice, ...] = ()
    clock_sm_mhz: int | None = None
    clock_mem_mhz: int | None = None
    clock_sm_max_mhz: int | None = None
    clock_mem_max_mhz: int | None = None
    processes: tuple[GpuProcess, ...] = ()
    error: str | None = None  # this GPU failed on its own ("GPU is lost"); the others still update

    @property
    def device(self) -> str | None:
        return f"/dev/nvidia{self.minor}" if self.minor is not None else None

    @property
    def sysfs_bus_id(self) -> str | None:
        return sysfs_bus_id(self.pci_bus_id) if self.pci_bus_id else None

    def to_json(self, detail: bool = True) -> dict:
        out = {
            "index": self.index,
            "uuid": self.uuid,
            "name": self.name,
            "pci_bus_id": self.pci_bus_id,
            "minor": self.minor,
            "device": self.device,
            "memory_total_mib": self.memory_total_mib,
            "memory_used_mib": self.memory_used_mib,
            "utilization_gpu": self.utilization_gpu,
            "utilization_memory": self.utilization_memory,
            "temperature_c": self.temperature_c,
            "power_w": self.power_w,
            "power_limit_w": self.power_limit_w,
            "error": self.error,
        }
        if detail:
            out.update(
                serial=self.serial,
                persistence_mode=self.persistence_mode,
                compute_mode=self.compute_mode,
                mig_mode_current=self.mig_mode_current,
                mig_mode_pending=self.mig_mode_pending,
                mig_devices=[m.to_json() for m in self.mig_devices],
                clocks={
                    "sm_mhz": self.clock_sm_mhz,
                    "mem_mhz": self.clock_mem_mhz,
                    "sm_max_mhz": self.clock_sm_max_mhz,
                    "mem_max_mhz": self.clock_mem_max_mhz,
                },
                processes=[p.to_json() for p in self.processes],
            )
        return out


# "privileged": a --privileged container, which can open every GPU's device node (one Claim per
# GPU, selector "--privileged"). It means "can reach", not "holds": gpu_uuids leaves it out, and
# gpudock.host.holders keeps it out of the holders (see gpudock.host.claims).
ClaimMechanism = Literal["device", "runtime-env", "device-request", "cdi", "privileged"]


@dataclass(frozen=True, slots=True)
class Claim:
    """A container's claim on one GPU, and how it got it.

    ``selector`` is what the container asked for, verbatim ("/dev/nvidia3", "GPU-…", "2", "all",
    "nvidia.com/gpu=0"). ``gpu_uuid`` is the GPU it resolves to on this host, or None with
    ``error`` saying why (e.g. "index 9 does not exist on this host").
    """

    mechanism: ClaimMechanism
    selector: str
    gpu_uuid: str | None
    error: str | None = None
    mig_uuid: str | None = None  # the MIG device asked for ("MIG-…", "0:1"); gpu_uuid is its parent

    def to_json(self) -> dict:
        return {
            "mechanism": self.mechanism,
            "selector": self.selector,
            "gpu_uuid": self.gpu_uuid,
            "mig_uuid": self.mig_uuid,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class Container:
    id: str
    name: str
    image: str
    status: str  # Docker's State.Status: running, exited, created, ...
    runtime: str | None = None
    pid: int | None = None  # State.Pid on the host, 0/None when not running
    started_at: str | None = None
    claims: tuple[Claim, ...] = ()
    error: str | None = None  # e.g. "gone while being inspected"

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def privileged(self) -> bool:
        """Started with ``--privileged`` (it has ``privileged`` claims: every GPU it can reach)."""
        return any(c.mechanism == "privileged" for c in self.claims)

    @property
    def gpu_uuids(self) -> tuple[str, ...]:
        """The GPUs it holds (explicit claims); a ``--privileged`` container's reach is not holding."""
        seen: dict[str, None] = {}
        for c in self.claims:
            if c.gpu_uuid and c.mechanism != "privileged":
                seen.setdefault(c.gpu_uuid, None)
        return tuple(seen)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "image": self.image,
            "status": self.status,
            "runtime": self.runtime,
            "pid": self.pid,
            "started_at": self.started_at,
            "claims": [c.to_json() for c in self.claims],
            "gpus": list(self.gpu_uuids),
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class NvmlFailure:
    """NVML could not start. ``code`` is NVML's return code; ``message`` says what to do."""

    code: int | None
    nvml_text: str  # NVML's own words, e.g. "Driver/library version mismatch"
    message: str  # what it means and what the operator does about it

    def to_json(self) -> dict:
        return {"code": self.code, "nvml_error": self.nvml_text, "message": self.message}


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    """Everything one refresh learned about the GPUs. Immutable; a new one per refresh."""

    driver_version: str | None
    cuda_driver_version: str | None  # "12.2", what the driver supports
    nvml_version: str | None
    gpus: tuple[Gpu, ...] = ()
    nvml_failure: NvmlFailure | None = None
    source: str = "nvml"  # "nvml" on a real host, "sim:<scenario>" on a simulated one
    taken_at: float = field(default=0.0, compare=False)

    def gpu_by_uuid(self, uuid: str) -> Gpu | None:
        for g in self.gpus:
            if g.uuid == uuid:
                return g
        return None

    def to_json(self, detail: bool = True) -> dict:
        return {
            "driver_version": self.driver_version,
            "cuda_driver_version": self.cuda_driver_version,
            "nvml_version": self.nvml_version,
            "source": self.source,
            "nvml_error": self.nvml_failure.to_json() if self.nvml_failure else None,
            "gpus": [g.to_json(detail) for g in self.gpus],
        }
