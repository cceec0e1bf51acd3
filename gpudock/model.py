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


# NVML's clocks event (throttle) reasons: (bit, scenario key, the words nvidia-smi -q uses).
CLOCK_EVENT_REASONS: tuple[tuple[int, str, str], ...] = (
    (0x1, "gpu_idle", "Idle"),
    (0x2, "applications_clocks_setting", "Applications Clocks Setting"),
    (0x4, "sw_power_cap", "SW Power Cap"),
    (0x8, "hw_slowdown", "HW Slowdown"),
    (0x10, "sync_boost", "Sync Boost"),
    (0x20, "sw_thermal_slowdown", "SW Thermal Slowdown"),
    (0x40, "hw_thermal_slowdown", "HW Thermal Slowdown"),
    (0x80, "hw_power_brake_slowdown", "HW Power Brake Slowdown"),
    (0x100, "display_clock_setting", "Display Clock Setting"),
)


def clock_event_words(mask: int) -> tuple[str, ...]:
    """The reasons in a clocks event mask, in words ("SW Power Cap"); () when the clocks run free."""
    known = tuple(words for bit, _key, words in CLOCK_EVENT_REASONS if mask & bit)
    unknown = mask & ~sum(bit for bit, _k, _w in CLOCK_EVENT_REASONS)
    return known + ((f"other (0x{unknown:x})",) if unknown else ())


def cpu_list(cpus) -> str:
    """CPU numbers as the kernel and nvidia-smi print them: "0-55,112-167"."""
    out: list[str] = []
    run: list[int] = []
    for c in sorted(set(cpus)):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [c]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """The inverse of :func:`cpu_list`; raises ValueError on anything else."""
    cpus: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first or first < 0:
            raise ValueError(part)
        cpus.extend(range(first, last + 1))
    return tuple(cpus)


def short_bus_id(bus_id: str | None) -> str:
    """The bus id where columns are few: the tail of NVML's form ("00000000:0A:00.0" -> "0A:00.0"),
    with the domain only when it is not 0. The one short form every narrow view shows."""
    if not bus_id:
        return "N/A"
    try:
        full = nvml_bus_id(bus_id)
    except (ValueError, IndexError):
        return bus_id
    domain, _, rest = full.partition(":")
    return rest if int(domain, 16) == 0 else full


# How a container came by a GPU, named as it was started (the docker run flag): the one name per
# mechanism that every view shows (the JSON keeps the ids on the left).
MECHANISM_LABELS = {
    "device": "--device",
    "runtime-env": "--runtime",
    "device-request": "--gpus",
    "cdi": "CDI",
    "privileged": "--privileged",
}


def mechanism_label(mechanism: str) -> str:
    return MECHANISM_LABELS.get(mechanism, mechanism)


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
    # Its share of the GPU in %, from NVML's latest utilization sample (None: not supported here)
    sm_util: int | None = None
    mem_util: int | None = None
    enc_util: int | None = None
    dec_util: int | None = None
    # When it started (clock ticks since boot, /proc/<pid>/stat), read with the snapshot: what tells
    # this process from a later one with the same PID (gpudock.host.signals). Not in the JSON.
    start_time: int | None = None

    def to_json(self) -> dict:
        return {
            "pid": self.pid,
            "used_memory_mib": self.used_memory_mib,
            "type": self.kind,
            "command": self.command,
            "container_id": self.container_id,
            "container_pid": self.container_pid,
            "mig_uuid": self.mig_uuid,
            "sm_util": self.sm_util,
            "mem_util": self.mem_util,
            "enc_util": self.enc_util,
            "dec_util": self.dec_util,
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
class EccErrors:
    """ECC error counts: volatile since the driver loaded, aggregate over the card's life."""

    volatile_corrected: int | None = None
    volatile_uncorrected: int | None = None
    aggregate_corrected: int | None = None
    aggregate_uncorrected: int | None = None

    def to_json(self) -> dict:
        return {
            "volatile": {"corrected": self.volatile_corrected, "uncorrected": self.volatile_uncorrected},
            "aggregate": {"corrected": self.aggregate_corrected, "uncorrected": self.aggregate_uncorrected},
        }


@dataclass(frozen=True, slots=True)
class RetiredPages:
    """Pages retired for ECC errors (cards before Ampere)."""

    single_bit: int | None  # for multiple single-bit errors
    double_bit: int | None  # for a double-bit error
    pending: bool | None  # a retirement waits for the next driver load (reboot or GPU reset)

    def to_json(self) -> dict:
        return {"single_bit": self.single_bit, "double_bit": self.double_bit, "pending": self.pending}


@dataclass(frozen=True, slots=True)
class RemappedRows:
    """Memory rows remapped for ECC errors (Ampere and later)."""

    correctable: int
    uncorrectable: int
    pending: bool  # a remap waits for the next GPU reset
    failed: bool  # a remap failed: the card should be replaced

    def to_json(self) -> dict:
        return {
            "correctable": self.correctable,
            "uncorrectable": self.uncorrectable,
            "pending": self.pending,
            "failed": self.failed,
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
    fan_speed_pct: int | None = None
    performance_state: int | None = None  # 0 for P0 (the most performance) to 15
    clock_event_reasons: tuple[str, ...] | None = None  # why the clocks are held down, in words; () none
    ecc_mode_current: bool | None = None
    ecc_mode_pending: bool | None = None
    ecc_errors: EccErrors | None = None
    retired_pages: RetiredPages | None = None
    remapped_rows: RemappedRows | None = None
    pcie_gen: int | None = None
    pcie_gen_max: int | None = None
    pcie_width: int | None = None
    pcie_width_max: int | None = None
    pcie_rx_kib_s: int | None = None  # NVML's KB/s, sampled over 20 ms
    pcie_tx_kib_s: int | None = None
    bar1_total_mib: int | None = None
    bar1_used_mib: int | None = None
    encoder_utilization: int | None = None
    decoder_utilization: int | None = None
    nvlinks: int | None = None  # the links the card has
    nvlinks_up: int | None = None
    numa_node: int | None = None
    cpu_affinity: str | None = None  # "0-55,112-167": the CPUs close to the card
    compute_capability: str | None = None  # "9.0"

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
                fan_speed_pct=self.fan_speed_pct,
                performance_state=self.performance_state,
                clock_event_reasons=list(self.clock_event_reasons) if self.clock_event_reasons is not None else None,
                ecc={
                    "mode_current": self.ecc_mode_current,
                    "mode_pending": self.ecc_mode_pending,
                    **(self.ecc_errors or EccErrors()).to_json(),
                },
                retired_pages=self.retired_pages.to_json() if self.retired_pages else None,
                remapped_rows=self.remapped_rows.to_json() if self.remapped_rows else None,
                pcie={
                    "gen": self.pcie_gen,
                    "gen_max": self.pcie_gen_max,
                    "width": self.pcie_width,
                    "width_max": self.pcie_width_max,
                    "rx_kib_s": self.pcie_rx_kib_s,
                    "tx_kib_s": self.pcie_tx_kib_s,
                },
                bar1={"total_mib": self.bar1_total_mib, "used_mib": self.bar1_used_mib},
                encoder_utilization=self.encoder_utilization,
                decoder_utilization=self.decoder_utilization,
                nvlink={"links": self.nvlinks, "up": self.nvlinks_up},
                numa_node=self.numa_node,
                cpu_affinity=self.cpu_affinity,
                compute_capability=self.compute_capability,
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


# nvmlGpuTopologyLevel_t -> what `nvidia-smi topo -m` prints for a PCIe path between two GPUs.
TOPOLOGY_WORDS = {0: "PIX", 10: "PIX", 20: "PXB", 30: "PHB", 40: "NODE", 50: "SYS"}
TOPOLOGY_LEGEND = (
    ("X", "Self"),
    ("SYS", "Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)"),
    ("NODE", "Connection traversing PCIe as well as the interconnect between PCIe Host Bridges within a NUMA node"),
    ("PHB", "Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)"),
    ("PXB", "Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)"),
    ("PIX", "Connection traversing at most a single PCIe bridge"),
    ("NV#", "Connection traversing a bonded set of # NVLinks"),
)


@dataclass(frozen=True, slots=True)
class Topology:
    """How the GPUs reach each other, as ``nvidia-smi topo -m`` shows it; read once per session.

    ``pcie[i][j]`` is NVML's common-ancestor level between GPU i and j (None: unknown, or i == j);
    ``nvlinks[i][j]`` the NVLinks joining them (direct, or both through the NVSwitch fabric).
    """

    gpus: tuple[Gpu, ...]  # index, uuid, bus id, numa_node, cpu_affinity come from here
    pcie: tuple[tuple[int | None, ...], ...]
    nvlinks: tuple[tuple[int, ...], ...]

    def link(self, i: int, j: int) -> str:
        if i == j:
            return "X"
        if self.nvlinks[i][j]:
            return f"NV{self.nvlinks[i][j]}"
        level = self.pcie[i][j]
        return TOPOLOGY_WORDS.get(level, "N/A") if level is not None else "N/A"

    def matrix(self) -> list[list[str]]:
        n = len(self.gpus)
        return [[self.link(i, j) for j in range(n)] for i in range(n)]

    def table_lines(self, pad: int = 2, numa_head: str = "NUMA Affinity") -> list[str]:
        """The matrix as ``nvidia-smi topo -m`` lays it out: GPU rows and columns, then each GPU's
        CPU and NUMA affinity (``pad`` spaces between columns)."""
        heads = [f"GPU{g.index}" for g in self.gpus]
        w = max([4, *(len(h) for h in heads), *(len(c) for row in self.matrix() for c in row)]) + pad
        cpu_w = max([12, *(len(g.cpu_affinity or "N/A") for g in self.gpus)]) + pad
        lines = [" " * w + "".join(f"{h:<{w}}" for h in heads) + f"{'CPU Affinity':<{cpu_w}}{numa_head}"]
        for g, row in zip(self.gpus, self.matrix()):
            cells = "".join(f"{c:<{w}}" for c in row)
            numa = "N/A" if g.numa_node is None else str(g.numa_node)
            lines.append(f"{'GPU' + str(g.index):<{w}}{cells}{g.cpu_affinity or 'N/A':<{cpu_w}}{numa}")
        return [ln.rstrip() for ln in lines]

    def to_json(self) -> dict:
        return {
            "gpus": [
                {
                    "index": g.index,
                    "uuid": g.uuid,
                    "pci_bus_id": g.pci_bus_id,
                    "cpu_affinity": g.cpu_affinity,
                    "numa_node": g.numa_node,
                }
                for g in self.gpus
            ],
            "matrix": self.matrix(),
            "pcie_levels": [list(r) for r in self.pcie],
            "nvlinks": [list(r) for r in self.nvlinks],
            "legend": dict(TOPOLOGY_LEGEND),
        }


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
    topology: Topology | None = field(default=None, compare=False)  # static: read once per session

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
