"""One NVML session per process, over the real nvidia-ml-py bindings: the GPU inventory.

The library under pynvml is chosen once, at the library boundary: the host's libnvidia-ml.so.1,
a given file (a driver root, a customer's copy), or the simulated library of ``gpudock.sim``. All
code above that boundary is the same in every case.

Like nvitop's libnvml: errors become values at one choke point (``_call``): a function the driver
does not support gives None; a GPU that fails on its own gets an ``error`` and the other GPUs go on;
versioned calls (the running-processes struct changed in R535) are probed once and the choice
cached. Fields that never change (name, UUID, bus id, minor, serial, limits) are read once per GPU.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pynvml

from gpudock.host.root import HostRoot
from gpudock.model import Gpu, GpuProcess, HostSnapshot, MigDevice, NvmlFailure

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

    def __init__(self, loader: LibraryLoader | None = None, source: str = "nvml", root: HostRoot | None = None):
        self._loader = loader or system_loader()
        self.source = source
        # The host whose /proc names the processes NVML reports (a simulated host has its own).
        self.root = root or HostRoot("/")
        self._lock = self._active_lock
        self._started = False
        self.failure: NvmlFailure | None = None
        self._static: dict[int, _Static] = {}
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
            return HostSnapshot(driver, cuda, nvml, gpus, None, self.source, time.time())

    def _gpu(self, index: int, processes: bool) -> Gpu:
        st = self._static.get(index)
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except pynvml.NVMLError as e:
            return self._failed(index, st, e)
        try:
            if st is None:
                st = self._static[index] = self._read_static(handle)
            mem = _call(pynvml.nvmlDeviceGetMemoryInfo, handle)
            util = _call(pynvml.nvmlDeviceGetUtilizationRates, handle)
            power = _call(pynvml.nvmlDeviceGetPowerUsage, handle)
            mig = _call(pynvml.nvmlDeviceGetMigMode, handle)
            migs = self._mig_devices(handle) if mig and mig[0] else ()
            procs = self._processes(handle, migs) if processes else ()
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
            )
        except _GpuFailed as f:
            return self._failed(index, st, f.err)

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
        return _Static(
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
        return tuple(out)

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
