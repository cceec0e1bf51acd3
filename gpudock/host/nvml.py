"""One NVML session per process, over the real nvidia-ml-py bindings: the GPU inventory.

The library under pynvml is chosen once, at the library boundary: the host's libnvidia-ml.so.1,
a given file (a driver root, a customer's copy), or the simulated library of ``gpudock.sim``. All
code above that boundary is the same in every case.

Like nvitop's libnvml: errors become values at one choke point (``_call``): a function the driver
does not support gives None; a GPU that fails on its own gets an ``error`` and the other GPUs go on;
versioned calls (the running-processes struct changed in R535, the throttle reasons became "clocks
event reasons" in R535) are probed once and the choice cached, and a function the driver lacks is
asked for once, logged once, and never again.

Three cadences keep a refresh cheap:

* static, once per session: name, UUID, bus id, minor, serial, limits, max clocks, BAR1 size, the
  PCIe link's maximum generation and width, compute capability, NUMA node and CPU affinity, the
  NVLinks the card has, and the GPU-to-GPU topology (:meth:`NvmlSession.topology`);
* slow, every ``slow_interval`` seconds (default 5): ECC error counts, the PCIe link's current
  generation and width, and PCIe throughput (the driver samples each counter over 20 ms, so
  reading it every second would stretch every refresh by 40 ms per GPU on a real host);
* health, every ``health_interval`` seconds (default 30): ECC mode, retired pages, remapped rows
  and NVLinks up, which change only when a card fails (18 calls per card for the links alone);
* fast, every refresh: memory, utilization, encoder/decoder, temperature, fan, power, P-state,
  clocks and why they are held down, BAR1 in use, MIG, processes and their SM share.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pynvml

from gpudock.host.root import HostRoot
from gpudock.model import (
    EccErrors,
    Gpu,
    GpuProcess,
    HostSnapshot,
    MigDevice,
    NvmlFailure,
    RemappedRows,
    RetiredPages,
    Topology,
    clock_event_words,
    cpu_list,
)

log = logging.getLogger(__name__)

# NVML return code -> (what NVML says, what it means and what the operator does).
FAILURE_TEXT: dict[int, tuple[str, str]] = {
    pynvml.NVML_ERROR_LIBRARY_NOT_FOUND: (
        "NVML Shared Library Not Found",
        "libnvidia-ml.so.1 is not installed or not in the loader's cache: install the NVIDIA driver "
        "(or its user-space package, e.g. libnvidia-ml1 / nvidia-utils) and run ldconfig. "
        "Run 'gpudock --demo' to see the simulated host.",
    ),
    pynvml.NVML_ERROR_DRIVER_NOT_LOADED: (
        "Driver Not Loaded",
        "The NVIDIA kernel module is not loaded: check 'lsmod | grep nvidia' and 'dmesg | grep -i nvrm'; "
        "load it with 'modprobe nvidia', or rebuild it for the running kernel (dkms status) and reboot. "
        "'gpudock doctor' shows what the host has.",
    ),
    pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH: (
        "Driver/library version mismatch",
        "The loaded kernel module and the user-space NVIDIA libraries are different driver versions, "
        "usually after a driver upgrade without a reboot. Reboot, or stop every GPU user and reload the "
        "nvidia modules. 'gpudock doctor' shows both versions and any stray libraries.",
    ),
    pynvml.NVML_ERROR_NO_PERMISSION: (
        "Insufficient Permissions",
        "This user cannot open /dev/nvidiactl: run gpudock as root, or add the user to the group that "
        "owns /dev/nvidia* (see DeviceFileGID in /proc/driver/nvidia/params).",
    ),
    pynvml.NVML_ERROR_FUNCTION_NOT_FOUND: (
        "Function Not Found",
        "libnvidia-ml.so.1 lacks a function NVML needs to start: the library is from another (older) "
        "driver than expected. 'gpudock doctor' lists the NVIDIA libraries the loader resolves.",
    ),
    pynvml.NVML_ERROR_OPERATING_SYSTEM: (
        "The operating system has blocked the request.",
        "The OS refused access to the GPU devices (device cgroup, SELinux/AppArmor, or a container "
        "without the device nodes). Check that /dev/nvidia* exist and are allowed here.",
    ),
    pynvml.NVML_ERROR_UNKNOWN: (
        "Unknown Error",
        "NVML failed without saying why. Inside a container this is the classic loss of GPU access after "
        "'systemctl daemon-reload' (recreate the container); on the host check dmesg for NVRM/Xid errors.",
    ),
}

COMPUTE_MODES = {0: "Default", 1: "Exclusive_Thread", 2: "Prohibited", 3: "Exclusive_Process"}

LibraryLoader = Callable[[], object]


def failure_for(code: int | None, detail: str | None = None) -> NvmlFailure:
    text, message = FAILURE_TEXT.get(code, (detail or f"NVML error {code}", "NVML could not start."))
    return NvmlFailure(code=code, nvml_text=text, message=message)


def system_loader(path: str = "libnvidia-ml.so.1") -> LibraryLoader:
    """The host's libnvidia-ml (or a given file, e.g. under a driver root)."""
    return lambda: ctypes.CDLL(path)


@dataclass
class _Static:
    """Per-GPU facts read once per session."""

    uuid: str | None
    name: str | None
    pci_bus_id: str | None
    minor: int | None
    serial: str | None
    memory_total_mib: int | None
    power_limit_w: float | None
    clock_sm_max_mhz: int | None
    clock_mem_max_mhz: int | None
    bar1_total_mib: int | None = None
    pcie_gen_max: int | None = None
    pcie_width_max: int | None = None
    compute_capability: str | None = None
    numa_node: int | None = None
    cpu_affinity: str | None = None
    nvlinks: int | None = None  # links that answer nvmlDeviceGetNvLinkState; None: no NVLink


@dataclass
class _Slow:
    """Per-GPU readings refreshed every ``slow_interval`` seconds (see the module docstring)."""

    taken_at: float
    health_at: float  # when the health fields (ECC mode, retired pages, remapped rows, NVLinks) were read
    ecc_mode_current: bool | None
    ecc_mode_pending: bool | None
    ecc_errors: EccErrors | None
    retired_pages: RetiredPages | None
    remapped_rows: RemappedRows | None
    pcie_gen: int | None
    pcie_width: int | None
    pcie_rx_kib_s: int | None
    pcie_tx_kib_s: int | None
    nvlinks_up: int | None


class _GpuFailed(Exception):
    """A per-GPU call failed in a way that makes the whole GPU unusable (lost, reset required)."""

    def __init__(self, err: pynvml.NVMLError):
        self.err = err


_GPU_FATAL = {pynvml.NVML_ERROR_GPU_IS_LOST, pynvml.NVML_ERROR_RESET_REQUIRED, pynvml.NVML_ERROR_UNKNOWN}
_ABSENT = {
    pynvml.NVML_ERROR_NOT_SUPPORTED,
    pynvml.NVML_ERROR_FUNCTION_NOT_FOUND,
    pynvml.NVML_ERROR_NOT_FOUND,
    pynvml.NVML_ERROR_NO_PERMISSION,
    pynvml.NVML_ERROR_INVALID_ARGUMENT,
}


def _call(fn, *args):
    """The choke point: a value, None when NVML cannot give it, _GpuFailed when the GPU is gone."""
    try:
        return fn(*args)
    except pynvml.NVMLError as e:
        if e.value in _GPU_FATAL:
            raise _GpuFailed(e) from None
        if e.value in _ABSENT:
            _note_absent(fn, e)
            return None
        raise _GpuFailed(e) from None


_noted: set[tuple[str, int]] = set()


def _note_absent(fn, e: pynvml.NVMLError) -> None:
    """Say once per function and error (``gpudock --debug``) what the driver does not give."""
    key = (getattr(fn, "__name__", repr(fn)), e.value)
    if key not in _noted:
        _noted.add(key)
        log.debug("%s: %s (shown as N/A)", key[0], e)


def _text(v) -> str | None:
    if v is None:
        return None
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


class NvmlSession:
    """The process's NVML session. pynvml keeps one global library, so one session is active at a time.

    ``loader`` returns the library object (``ctypes.CDLL`` or a simulated library); it is called at
    ``start()``. Thread-safe: the dashboard's worker and the doctor may both ask for snapshots.
    """

    _active_lock = threading.RLock()

    def __init__(
        self,
        loader: LibraryLoader | None = None,
        source: str = "nvml",
        slow_interval: float = 5.0,
        health_interval: float = 30.0,
        root: HostRoot | None = None,
    ):
        self._loader = loader or system_loader()
        self.source = source
        self.slow_interval = slow_interval
        self.health_interval = health_interval
        # The host whose /proc names the processes NVML reports (a simulated host has its own).
        self.root = root or HostRoot("/")
        self._lock = self._active_lock
        self._started = False
        self.failure: NvmlFailure | None = None
        self._static: dict[int, _Static] = {}
        self._slow: dict[int, _Slow] = {}
        self._topology: Topology | None = None
        self._missing: set[str] = set()  # functions the driver lacks: asked once, never again
        self._probed: dict[tuple[str, ...], Callable | None] = {}
        self._proc_fns: dict[str, Callable | None] = {}
        self._cmd_cache: dict[int, tuple[float, str | None]] = {}
        self._versions: tuple[str | None, str | None, str | None] = (None, None, None)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> NvmlFailure | None:
        with self._lock:
            if self._started:
                return None
            try:
                lib = self._loader()
            except OSError as e:
                self.failure = failure_for(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
                self.failure = NvmlFailure(
                    self.failure.code, self.failure.nvml_text, f"{self.failure.message} (loader said: {e})"
                )
                return self.failure
            # The library boundary: pynvml resolves every function by name on this object.
            pynvml.nvmlLib = lib
            pynvml._nvmlGetFunctionPointer_cache.clear()
            try:
                pynvml.nvmlInit()
            except pynvml.NVMLError as e:
                self.failure = failure_for(e.value, _text(str(e)))
                pynvml.nvmlLib = None
                pynvml._nvmlGetFunctionPointer_cache.clear()
                return self.failure
            self._started = True
            self.failure = None
            self._versions = (
                _text(_safe(pynvml.nvmlSystemGetDriverVersion)),
                _cuda_text(_safe(pynvml.nvmlSystemGetCudaDriverVersion)),
                _text(_safe(pynvml.nvmlSystemGetNVMLVersion)),
            )
            return None

    def shutdown(self) -> None:
        with self._lock:
            if self._started:
                try:
                    pynvml.nvmlShutdown()
                except pynvml.NVMLError:
                    pass
                self._started = False
            pynvml.nvmlLib = None
            pynvml._nvmlGetFunctionPointer_cache.clear()
            self._static.clear()
            self._slow.clear()
            self._topology = None
            self._missing.clear()
            self._probed.clear()
            self._proc_fns.clear()

    def __enter__(self) -> NvmlSession:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    # -- inventory -------------------------------------------------------------------------------

    def snapshot(self, processes: bool = True) -> HostSnapshot:
        with self._lock:
            failure = self.start()
            if failure is not None:
                return HostSnapshot(None, None, None, (), failure, self.source, time.time())
            driver, cuda, nvml = self._versions
            try:
                count = pynvml.nvmlDeviceGetCount()
            except pynvml.NVMLError as e:
                return HostSnapshot(driver, cuda, nvml, (), failure_for(e.value, str(e)), self.source, time.time())
            gpus = tuple(self._gpu(i, processes) for i in range(count))
            if self._topology is None or len(self._topology.gpus) != count:
                self._topology = self._read_topology(gpus)
            return HostSnapshot(driver, cuda, nvml, gpus, None, self.source, time.time(), self._topology)

    def topology(self) -> Topology | None:
        """How the GPUs reach each other (static: read with the first snapshot); None when NVML
        cannot start."""
        return self.snapshot(processes=False).topology

    def _gpu(self, index: int, processes: bool) -> Gpu:
        st = self._static.get(index)
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except pynvml.NVMLError as e:
            return self._failed(index, st, e)
        try:
            if st is None:
                st = self._static[index] = self._read_static(handle)
            now = time.monotonic()
            slow = self._slow.get(index)
            if slow is None or now - slow.taken_at >= self.slow_interval:
                slow = self._slow[index] = self._read_slow(handle, st, now, slow)
            mem = _call(pynvml.nvmlDeviceGetMemoryInfo, handle)
            util = _call(pynvml.nvmlDeviceGetUtilizationRates, handle)
            power = _call(pynvml.nvmlDeviceGetPowerUsage, handle)
            mig = _call(pynvml.nvmlDeviceGetMigMode, handle)
            migs = self._mig_devices(handle) if mig and mig[0] else ()
            procs = self._processes(handle, migs) if processes else ()
            reasons_fn = self._probe(
                "nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"
            )
            reasons = self._opt(reasons_fn, handle) if reasons_fn else None
            bar1 = self._opt(pynvml.nvmlDeviceGetBAR1MemoryInfo, handle)
            enc = self._opt(pynvml.nvmlDeviceGetEncoderUtilization, handle)
            dec = self._opt(pynvml.nvmlDeviceGetDecoderUtilization, handle)
            return Gpu(
                index=index,
                uuid=st.uuid,
                name=st.name,
                pci_bus_id=st.pci_bus_id,
                minor=st.minor,
                serial=st.serial,
                memory_total_mib=st.memory_total_mib,
                memory_used_mib=(mem.used >> 20) if mem else None,
                utilization_gpu=util.gpu if util else None,
                utilization_memory=util.memory if util else None,
                temperature_c=_call(pynvml.nvmlDeviceGetTemperature, handle, pynvml.NVML_TEMPERATURE_GPU),
                power_w=round(power / 1000, 1) if power is not None else None,
                power_limit_w=st.power_limit_w,
                persistence_mode=_bool(_call(pynvml.nvmlDeviceGetPersistenceMode, handle)),
                compute_mode=COMPUTE_MODES.get(_call(pynvml.nvmlDeviceGetComputeMode, handle)),
                mig_mode_current=bool(mig[0]) if mig else None,
                mig_mode_pending=bool(mig[1]) if mig else None,
                mig_devices=migs,
                clock_sm_mhz=_call(pynvml.nvmlDeviceGetClockInfo, handle, pynvml.NVML_CLOCK_SM),
                clock_mem_mhz=_call(pynvml.nvmlDeviceGetClockInfo, handle, pynvml.NVML_CLOCK_MEM),
                clock_sm_max_mhz=st.clock_sm_max_mhz,
                clock_mem_max_mhz=st.clock_mem_max_mhz,
                processes=procs,
                fan_speed_pct=self._opt(pynvml.nvmlDeviceGetFanSpeed, handle),
                performance_state=_pstate(self._opt(pynvml.nvmlDeviceGetPerformanceState, handle)),
                clock_event_reasons=clock_event_words(reasons) if reasons is not None else None,
                ecc_mode_current=slow.ecc_mode_current,
                ecc_mode_pending=slow.ecc_mode_pending,
                ecc_errors=slow.ecc_errors,
                retired_pages=slow.retired_pages,
                remapped_rows=slow.remapped_rows,
                pcie_gen=slow.pcie_gen,
                pcie_gen_max=st.pcie_gen_max,
                pcie_width=slow.pcie_width,
                pcie_width_max=st.pcie_width_max,
                pcie_rx_kib_s=slow.pcie_rx_kib_s,
                pcie_tx_kib_s=slow.pcie_tx_kib_s,
                bar1_total_mib=st.bar1_total_mib,
                bar1_used_mib=(bar1.bar1Used >> 20) if bar1 else None,
                encoder_utilization=enc[0] if enc else None,
                decoder_utilization=dec[0] if dec else None,
                nvlinks=st.nvlinks,
                nvlinks_up=slow.nvlinks_up,
                numa_node=st.numa_node,
                cpu_affinity=st.cpu_affinity,
                compute_capability=st.compute_capability,
            )
        except _GpuFailed as f:
            return self._failed(index, st, f.err)

    def _opt(self, fn, *args, not_found=None):
        """``_call`` for a function an older driver may lack: asked once, logged once, then skipped.
        ``not_found``: what NVML_ERROR_NOT_FOUND means here (default: no value)."""
        name = fn.__name__
        if name in self._missing:
            return None
        try:
            return fn(*args)
        except pynvml.NVMLError as e:
            if e.value == pynvml.NVML_ERROR_FUNCTION_NOT_FOUND:
                self._missing.add(name)
                log.info("%s: the NVML library does not export it (older driver); shown as N/A", name)
                return None
            if e.value == pynvml.NVML_ERROR_NOT_FOUND:
                return not_found
            if e.value in _GPU_FATAL:
                raise _GpuFailed(e) from None
            if e.value in _ABSENT:
                return None
            raise _GpuFailed(e) from None

    def _probe(self, *names: str):
        """The first of ``names`` (newest first) that the library exports, as a pynvml function;
        probed once per session."""
        if names not in self._probed:
            chosen = None
            for name in names:
                try:
                    pynvml._nvmlGetFunctionPointer(name)
                except pynvml.NVMLError:
                    continue
                chosen = getattr(pynvml, name, None)
                if chosen is not None:
                    break
            self._probed[names] = chosen
        return self._probed[names]

    def _failed(self, index: int, st: _Static | None, err: pynvml.NVMLError) -> Gpu:
        what = _error_text(err)
        hint = {
            pynvml.NVML_ERROR_GPU_IS_LOST: "the GPU fell off the bus: check 'dmesg | grep -i xid' (Xid 79); a reset or reboot is needed",  # noqa: E501
            pynvml.NVML_ERROR_RESET_REQUIRED: "reset the GPU ('nvidia-smi -r -i N' with no processes on it) or reboot",
        }.get(err.value, "check 'dmesg | grep -i nvrm'")
        if st is None:
            return Gpu(index=index, uuid=None, error=f"{what}: {hint}")
        return Gpu(
            index=index,
            uuid=st.uuid,
            name=st.name,
            pci_bus_id=st.pci_bus_id,
            minor=st.minor,
            serial=st.serial,
            memory_total_mib=st.memory_total_mib,
            power_limit_w=st.power_limit_w,
            error=f"{what}: {hint}",
        )

    def _read_static(self, handle) -> _Static:
        pci = _call(pynvml.nvmlDeviceGetPciInfo, handle)
        mem = _call(pynvml.nvmlDeviceGetMemoryInfo, handle)
        limit = _call(pynvml.nvmlDeviceGetEnforcedPowerLimit, handle)
        bar1 = self._opt(pynvml.nvmlDeviceGetBAR1MemoryInfo, handle)
        cc = self._opt(pynvml.nvmlDeviceGetCudaComputeCapability, handle)
        cpus = self._opt(pynvml.nvmlDeviceGetCpuAffinity, handle, _CPU_SET_WORDS)
        nodes = self._opt(pynvml.nvmlDeviceGetMemoryAffinity, handle, 1, pynvml.NVML_AFFINITY_SCOPE_NODE)
        node_list = _bits(nodes) if nodes is not None else ()
        return _Static(
            bar1_total_mib=(bar1.bar1Total >> 20) if bar1 else None,
            pcie_gen_max=self._opt(pynvml.nvmlDeviceGetMaxPcieLinkGeneration, handle),
            pcie_width_max=self._opt(pynvml.nvmlDeviceGetMaxPcieLinkWidth, handle),
            compute_capability=f"{cc[0]}.{cc[1]}" if cc else None,
            numa_node=node_list[0] if len(node_list) == 1 else None,
            cpu_affinity=(cpu_list(_bits(cpus)) or None) if cpus is not None else None,
            nvlinks=self._nvlink_count(handle),
            uuid=_text(_call(pynvml.nvmlDeviceGetUUID, handle)),
            name=_text(_call(pynvml.nvmlDeviceGetName, handle)),
            pci_bus_id=_text(pci.busId) if pci else None,
            minor=_call(pynvml.nvmlDeviceGetMinorNumber, handle),
            serial=_text(_call(pynvml.nvmlDeviceGetSerial, handle)),
            memory_total_mib=(mem.total >> 20) if mem else None,
            power_limit_w=round(limit / 1000, 1) if limit is not None else None,
            clock_sm_max_mhz=_call(pynvml.nvmlDeviceGetMaxClockInfo, handle, pynvml.NVML_CLOCK_SM),
            clock_mem_max_mhz=_call(pynvml.nvmlDeviceGetMaxClockInfo, handle, pynvml.NVML_CLOCK_MEM),
        )

    def _nvlink_count(self, handle) -> int | None:
        """The NVLinks the card has: the links that answer, counted once (None: no NVLink)."""
        n = 0
        for link in range(pynvml.NVML_NVLINK_MAX_LINKS):
            if self._opt(pynvml.nvmlDeviceGetNvLinkState, handle, link) is None:
                break
            n += 1
        return n or None

    def _read_slow(self, handle, st: _Static, now: float, prev: _Slow | None) -> _Slow:
        if prev is not None and now - prev.health_at < self.health_interval:
            health_at, ecc = prev.health_at, (prev.ecc_mode_current, prev.ecc_mode_pending)
            retired, rows, up = prev.retired_pages, prev.remapped_rows, prev.nvlinks_up
        else:
            health_at, (ecc, retired, rows, up) = now, self._read_health(handle, st)
        counts = None
        if ecc[0]:
            q = self._opt
            fn = pynvml.nvmlDeviceGetTotalEccErrors
            corr, unc = pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
            vol, agg = pynvml.NVML_VOLATILE_ECC, pynvml.NVML_AGGREGATE_ECC
            values = [q(fn, handle, kind, counter) for counter in (vol, agg) for kind in (corr, unc)]
            counts = EccErrors(*values) if any(v is not None for v in values) else None
        return _Slow(
            taken_at=now,
            health_at=health_at,
            ecc_mode_current=ecc[0],
            ecc_mode_pending=ecc[1],
            ecc_errors=counts,
            retired_pages=retired,
            remapped_rows=rows,
            pcie_gen=self._opt(pynvml.nvmlDeviceGetCurrPcieLinkGeneration, handle),
            pcie_width=self._opt(pynvml.nvmlDeviceGetCurrPcieLinkWidth, handle),
            pcie_rx_kib_s=self._opt(pynvml.nvmlDeviceGetPcieThroughput, handle, pynvml.NVML_PCIE_UTIL_RX_BYTES),
            pcie_tx_kib_s=self._opt(pynvml.nvmlDeviceGetPcieThroughput, handle, pynvml.NVML_PCIE_UTIL_TX_BYTES),
            nvlinks_up=up,
        )

    def _read_health(self, handle, st: _Static):
        """ECC mode, retired pages, remapped rows, NVLinks up: what changes only when a card fails."""
        mode = self._opt(pynvml.nvmlDeviceGetEccMode, handle)
        ecc = (_bool(mode[0]), _bool(mode[1])) if mode else (None, None)
        retired = None
        sbe = self._opt(
            pynvml.nvmlDeviceGetRetiredPages, handle, pynvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS
        )
        if sbe is not None:
            dbe = self._opt(
                pynvml.nvmlDeviceGetRetiredPages, handle, pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR
            )
            pending = self._opt(pynvml.nvmlDeviceGetRetiredPagesPendingStatus, handle)
            retired = RetiredPages(len(sbe), len(dbe) if dbe is not None else None, _bool(pending))
        r = self._opt(pynvml.nvmlDeviceGetRemappedRows, handle)
        rows = RemappedRows(r[0], r[1], bool(r[2]), bool(r[3])) if r else None
        up = None
        if st.nvlinks:
            states = [self._opt(pynvml.nvmlDeviceGetNvLinkState, handle, link) for link in range(st.nvlinks)]
            up = sum(1 for v in states if v)
        return ecc, retired, rows, up

    def _read_topology(self, gpus: tuple[Gpu, ...]) -> Topology:
        """The PCIe common ancestor of every pair, and the NVLinks between them: direct links are
        counted per peer; links to NVSwitches join every pair of cards on the fabric (as
        ``nvidia-smi topo -m`` prints NV18 between every pair of an HGX H100 board)."""
        n = len(gpus)
        handles = []
        for i in range(n):
            try:
                handles.append(pynvml.nvmlDeviceGetHandleByIndex(i))
            except pynvml.NVMLError:
                handles.append(None)
        pcie = [[None] * n for _ in range(n)]
        direct = [[0] * n for _ in range(n)]
        to_switch = [0] * n
        by_bus = {g.pci_bus_id: g.index for g in gpus if g.pci_bus_id}
        for i in range(n):
            for j in range(i + 1, n):
                if handles[i] is None or handles[j] is None:
                    continue
                try:
                    level = self._opt(pynvml.nvmlDeviceGetTopologyCommonAncestor, handles[i], handles[j])
                except _GpuFailed:
                    level = None
                pcie[i][j] = pcie[j][i] = level
            st = self._static.get(i)
            if handles[i] is None or st is None or not st.nvlinks:
                continue
            try:
                for link in range(st.nvlinks):
                    if not self._opt(pynvml.nvmlDeviceGetNvLinkState, handles[i], link):
                        continue
                    kind = self._opt(pynvml.nvmlDeviceGetNvLinkRemoteDeviceType, handles[i], link)
                    if kind == pynvml.NVML_NVLINK_DEVICE_TYPE_SWITCH:
                        to_switch[i] += 1
                        continue
                    remote = self._opt(pynvml.nvmlDeviceGetNvLinkRemotePciInfo, handles[i], link)
                    peer = by_bus.get(_text(remote.busId)) if remote is not None else None
                    if peer is not None and peer != i:
                        direct[i][peer] += 1
            except _GpuFailed:
                continue
        nvlinks = [
            [0 if i == j else direct[i][j] + (min(to_switch[i], to_switch[j])) for j in range(n)] for i in range(n)
        ]
        static_gpus = tuple(
            Gpu(index=g.index, uuid=g.uuid, pci_bus_id=g.pci_bus_id, numa_node=g.numa_node, cpu_affinity=g.cpu_affinity)
            for g in gpus
        )
        return Topology(static_gpus, tuple(tuple(r) for r in pcie), tuple(tuple(r) for r in nvlinks))

    def _proc_fn(self, kind: str):
        """Probe once which running-processes call the driver exports (v3 since R510, then v2, v1)."""
        if kind not in self._proc_fns:
            base = "Compute" if kind == "compute" else "Graphics"
            chosen = None
            for suffix in ("_v3", "_v2", ""):
                name = f"nvmlDevice{base}RunningProcesses{suffix}".replace("Device", "DeviceGet", 1)
                try:
                    pynvml._nvmlGetFunctionPointer(name)
                except pynvml.NVMLError:
                    continue
                chosen = getattr(pynvml, name, None)
                if chosen is not None:
                    break
            self._proc_fns[kind] = chosen
        return self._proc_fns[kind]

    def _processes(self, handle, migs: tuple[MigDevice, ...] = ()) -> tuple[GpuProcess, ...]:
        # With MIG on, NVML reports processes on the parent GPU with their GPU/compute instance ids.
        mig_of = {(m.gpu_instance_id, m.compute_instance_id): m.uuid for m in migs}
        out: list[GpuProcess] = []
        now = time.monotonic()
        shares: dict[int, tuple[int, int, int, int]] | None = None
        for kind in ("compute", "graphics"):
            fn = self._proc_fn(kind)
            if fn is None:
                continue
            for p in _call(fn, handle) or ():
                used = p.usedGpuMemory
                out.append(
                    GpuProcess(
                        pid=p.pid,
                        used_memory_mib=(used >> 20) if used is not None else None,
                        kind=kind,
                        command=self._command(p.pid, now),
                        mig_uuid=mig_of.get((getattr(p, "gpuInstanceId", None), getattr(p, "computeInstanceId", None))),
                    )
                )
        if out:
            shares = self._process_shares(handle)
        if shares is None:
            return tuple(out)
        return tuple(
            dataclasses.replace(
                p, **dict(zip(("sm_util", "mem_util", "enc_util", "dec_util"), shares.get(p.pid, (0, 0, 0, 0))))
            )
            for p in out
        )

    def _process_shares(self, handle) -> dict[int, tuple[int, int, int, int]] | None:
        """Each process's latest SM/memory/encoder/decoder share from NVML's utilization samples of the
        last second (as nvitop asks); a process with no sample used none. None: not supported."""
        since = time.time_ns() // 1000 - 1_000_000
        # NOT_FOUND: no sample in the last second, so nothing ran
        samples = self._opt(pynvml.nvmlDeviceGetProcessUtilization, handle, since, not_found=())
        if samples is None:
            return None
        latest: dict[int, tuple[int, tuple[int, int, int, int]]] = {}
        for smp in samples:
            if smp.pid not in latest or smp.timeStamp >= latest[smp.pid][0]:
                latest[smp.pid] = (smp.timeStamp, (smp.smUtil, smp.memUtil, smp.encUtil, smp.decUtil))
        return {pid: v for pid, (_t, v) in latest.items()}

    def _command(self, pid: int, now: float) -> str | None:
        """The command line from the host's /proc; NVML's process name when /proc has no such PID."""
        hit = self._cmd_cache.get(pid)
        if hit and now - hit[0] < 10.0:
            return hit[1]
        cmd: str | None = None
        try:
            data = self.root.read_bytes(f"/proc/{pid}/cmdline", 1 << 16)
            if data:
                cmd = " ".join(a.decode(errors="replace") for a in data.split(b"\0") if a) or None
        except OSError:
            cmd = None
        if cmd is None:
            cmd = _text(_safe(pynvml.nvmlSystemGetProcessName, pid))
        if len(self._cmd_cache) > 4096:
            self._cmd_cache.clear()
        self._cmd_cache[pid] = (now, cmd)
        return cmd

    def _mig_devices(self, handle) -> tuple[MigDevice, ...]:
        n = _call(pynvml.nvmlDeviceGetMaxMigDeviceCount, handle) or 0
        out = []
        for i in range(n):
            mh = _call(pynvml.nvmlDeviceGetMigDeviceHandleByIndex, handle, i)
            if mh is None:
                continue
            name = _text(_call(pynvml.nvmlDeviceGetName, mh)) or ""
            mem = _call(pynvml.nvmlDeviceGetMemoryInfo, mh)
            out.append(
                MigDevice(
                    index=i,
                    uuid=_text(_call(pynvml.nvmlDeviceGetUUID, mh)) or "",
                    profile=name.rsplit(" MIG ", 1)[1] if " MIG " in name else None,
                    memory_total_mib=(mem.total >> 20) if mem else None,
                    memory_used_mib=(mem.used >> 20) if mem else None,
                    gpu_instance_id=_call(pynvml.nvmlDeviceGetGpuInstanceId, mh),
                    compute_instance_id=_call(pynvml.nvmlDeviceGetComputeInstanceId, mh),
                )
            )
        return tuple(out)


_CPU_SET_WORDS = 16  # 64-bit words of CPU mask asked for: 1024 CPUs


def _bits(words) -> tuple[int, ...]:
    """The set bits of an array of 64-bit words (NVML's CPU and NUMA node masks)."""
    return tuple(w * 64 + b for w, word in enumerate(words) for b in range(64) if word >> b & 1)


def _pstate(v: int | None) -> int | None:
    return None if v is None or v > 15 else v  # 32: NVML_PSTATE_UNKNOWN


def _safe(fn, *args):
    try:
        return fn(*args)
    except pynvml.NVMLError:
        return None


def _bool(v):
    return None if v is None else bool(v)


def _cuda_text(v: int | None) -> str | None:
    if not v:
        return None
    return f"{v // 1000}.{(v % 1000) // 10}"


def _error_text(err: pynvml.NVMLError) -> str:
    return FAILURE_TEXT.get(err.value, (None,))[0] or {
        pynvml.NVML_ERROR_GPU_IS_LOST: "GPU is lost",
        pynvml.NVML_ERROR_RESET_REQUIRED: "GPU requires reset",
    }.get(err.value, str(err))
