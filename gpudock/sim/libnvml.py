"""A simulated libnvidia-ml.so.1: the NVML C library boundary, played from a scenario.

``pynvml`` (nvidia-ml-py) resolves every NVML function by name on its loaded library object and
calls it with ctypes arguments. ``SimNvmlLibrary`` is such an object: each attribute is a real
ctypes C function pointer (a ``CFUNCTYPE`` callback with NVML's C signature), so the real bindings
marshal real pointers and structs, and every line above them runs as on a GPU host. A function the
simulation does not export raises ``AttributeError``, which pynvml turns into NVML's "Function Not
Found", exactly as an old driver would; a scenario can also remove functions on purpose to play an
older driver.
"""

from __future__ import annotations

import ctypes
import functools
import math
import time
from ctypes import (
    CFUNCTYPE,
    POINTER,
    c_int,
    c_uint,
    c_void_p,
    cast,
    create_string_buffer,
    memmove,
)

import pynvml

from gpudock.sim.scenario import Scenario, SimGpu, Wave

SUCCESS = 0
ERROR_UNINITIALIZED = 1
ERROR_INVALID_ARGUMENT = 2
ERROR_NOT_SUPPORTED = 3
ERROR_NOT_FOUND = 6
ERROR_INSUFFICIENT_SIZE = 7
ERROR_GPU_IS_LOST = 15

# What libnvidia-ml's nvmlErrorString answers (nvidia-smi prints these after "Failed to initialize NVML: ").
ERROR_STRINGS = {
    0: b"Success",
    1: b"Uninitialized",
    2: b"Invalid Argument",
    3: b"Not Supported",
    4: b"Insufficient Permissions",
    5: b"Already Initialized",
    6: b"Not Found",
    7: b"Insufficient Size",
    8: b"Insufficient External Power",
    9: b"Driver Not Loaded",
    10: b"Timeout",
    11: b"Interrupt Request Issue",
    12: b"NVML Shared Library Not Found",
    13: b"Function Not Found",
    14: b"Corrupted infoROM",
    15: b"GPU is lost",
    16: b"GPU requires restart",
    17: b"The operating system has blocked the request.",
    18: b"Driver/library version mismatch",
    999: b"Unknown Error",
}

_GPU_BASE = 0x5100_0000
_MIG_BASE = 0x5200_0000

# C signatures: u = unsigned int by value, p = pointer (incl. handles and buffers), i = int.
_CTYPES = {"u": c_uint, "p": c_void_p, "i": c_int}


def _proto(sig: str, restype=c_int):
    return CFUNCTYPE(restype, *(_CTYPES[ch] for ch in sig))


def _put_uint(addr: int, value: int) -> None:
    cast(addr, POINTER(c_uint))[0] = int(value)


def _put_int(addr: int, value: int) -> None:
    cast(addr, POINTER(c_int))[0] = int(value)


def _put_ptr(addr: int, value: int) -> None:
    cast(addr, POINTER(c_void_p))[0] = value


def _put_str(buf: int, length: int, text: str) -> int:
    data = text.encode() + b"\0"
    if len(data) > length:
        return ERROR_INSUFFICIENT_SIZE
    memmove(buf, data, len(data))
    return SUCCESS


class SimNvmlLibrary:
    """The library object handed to pynvml in place of ``CDLL("libnvidia-ml.so.1")``."""

    def __init__(self, scenario: Scenario, clock=time.monotonic):
        self.scenario = scenario
        self._clock = (lambda: 0.0) if scenario.frozen else clock
        self._initialized = 0
        self._lost: set[int] = set()  # handles of GPUs that fell off the bus while running
        self._gpu_by_handle = {_GPU_BASE + i * 64: g for i, g in enumerate(scenario.gpus)}
        self._mig_by_handle: dict[int, tuple[SimGpu, int]] = {}
        for gi, g in enumerate(scenario.gpus):
            for mi, _m in enumerate(g.mig):
                self._mig_by_handle[_MIG_BASE + gi * 4096 + mi * 64] = (g, mi)
        # Error strings must outlive the call: pynvml reads them through the returned char *.
        self._error_buffers = {code: create_string_buffer(text) for code, text in ERROR_STRINGS.items()}
        self._functions: dict[str, object] = {}
        for name, (sig, impl, *rest) in self._table().items():
            if name in scenario.missing_functions:
                continue
            restype = rest[0] if rest else c_int
            self._functions[name] = _proto(sig, restype)(impl)

    def __getattr__(self, name: str):
        try:
            return self.__dict__["_functions"][name]
        except KeyError:
            raise AttributeError(f"undefined symbol: {name}") from None

    def lose_gpu(self, index: int) -> None:
        """Play a GPU falling off the bus while the host runs (Xid 79): every call on it fails."""
        self._lost.add(_GPU_BASE + index * 64)

    # -- the value model -------------------------------------------------------------------------

    def _value(self, wave: Wave, salt: int = 0) -> float:
        if not wave.amplitude:
            return wave.base
        t = self._clock()
        return wave.base + wave.amplitude * math.sin(2 * math.pi * (t / wave.period) + wave.phase + salt)

    def _device_call(self, handle, fn_name: str):
        """Common checks of every per-device call: initialised, a known handle, GPU not lost."""
        if not self._initialized:
            return None, ERROR_UNINITIALIZED
        g = self._gpu_by_handle.get(handle)
        if g is None:
            if handle in self._mig_by_handle:
                return None, ERROR_NOT_SUPPORTED
            return None, ERROR_INVALID_ARGUMENT
        if g.lost or handle in self._lost:
            return None, ERROR_GPU_IS_LOST
        if fn_name in g.unsupported:
            return None, ERROR_NOT_SUPPORTED
        return g, SUCCESS

    # -- NVML functions ---------------------------------------------------------------------------

    def _table(self):
        s = self
        sc = self.scenario

        def init(*_flags):
            if sc.init_error is not None:
                return sc.init_error
            s._initialized += 1
            return SUCCESS

        def shutdown():
            if not s._initialized:
                return ERROR_UNINITIALIZED
            s._initialized -= 1
            return SUCCESS

        def error_string(code):
            buf = s._error_buffers.get(code, s._error_buffers[999])
            return ctypes.addressof(buf)

        def driver_version(buf, length):
            return _put_str(buf, length, sc.driver_version) if s._initialized else ERROR_UNINITIALIZED

        def nvml_version(buf, length):
            return _put_str(buf, length, sc.nvml_version) if s._initialized else ERROR_UNINITIALIZED

        def cuda_version(out):
            # Answers even before init, as the real library does (it reads libcuda).
            _put_int(out, sc.cuda_version)
            return SUCCESS

        def process_name(pid, buf, length):
            if not s._initialized:
                return ERROR_UNINITIALIZED
            for g in sc.gpus:
                for p in g.processes:
                    if p.pid == pid:
                        return _put_str(buf, length, p.command)
            return ERROR_NOT_FOUND

        def count(out):
            if not s._initialized:
                return ERROR_UNINITIALIZED
            _put_uint(out, len(sc.gpus))
            return SUCCESS

        def handle_by_index(index, out):
            if not s._initialized:
                return ERROR_UNINITIALIZED
            if index >= len(sc.gpus):
                return ERROR_INVALID_ARGUMENT
            _put_ptr(out, _GPU_BASE + index * 64)
            return SUCCESS

        def device_index(handle, out):
            g, rc = s._device_call(handle, "nvmlDeviceGetIndex")
            if g is None:
                return rc
            _put_uint(out, sc.gpus.index(g))
            return SUCCESS

        def name(handle, buf, length):
            mig = s._mig_by_handle.get(handle)
            if mig:
                g, mi = mig
                return _put_str(buf, length, f"{g.name} MIG {g.mig[mi].profile}")
            g, rc = s._device_call(handle, "nvmlDeviceGetName")
            return _put_str(buf, length, g.name) if g else rc

        def uuid(handle, buf, length):
            mig = s._mig_by_handle.get(handle)
            if mig:
                g, mi = mig
                return _put_str(buf, length, g.mig[mi].uuid)
            g, rc = s._device_call(handle, "nvmlDeviceGetUUID")
            return _put_str(buf, length, g.uuid) if g else rc

        def serial(handle, buf, length):
            g, rc = s._device_call(handle, "nvmlDeviceGetSerial")
            if g is None:
                return rc
            if g.serial is None:
                return ERROR_NOT_SUPPORTED
            return _put_str(buf, length, g.serial)

        def minor(handle, out):
            g, rc = s._device_call(handle, "nvmlDeviceGetMinorNumber")
            if g is None:
                return rc
            if g.minor is None:
                return ERROR_NOT_SUPPORTED
            _put_uint(out, g.minor)
            return SUCCESS

        def pci_info(handle, out):
            g, rc = s._device_call(handle, "nvmlDeviceGetPciInfo")
            if g is None:
                return rc
            info = cast(out, POINTER(pynvml.nvmlPciInfo_t)).contents
            dom, bus, rest = g.pci_bus_id.split(":")
            dev = rest.split(".")[0]
            info.domain, info.bus, info.device = int(dom, 16), int(bus, 16), int(dev, 16)
            info.busId = g.pci_bus_id.encode()
            info.busIdLegacy = f"{int(dom, 16):04X}:{bus}:{rest}".encode()
            info.pciDeviceId = 0x233010DE
            info.pciSubSystemId = 0x16C110DE
            return SUCCESS

        def memory(handle, out):
            mig = s._mig_by_handle.get(handle)
            if mig:
                g, mi = mig
                m = g.mig[mi]
                total, used = m.memory_total_mib, m.memory_used_mib
            else:
                g, rc = s._device_call(handle, "nvmlDeviceGetMemoryInfo")
                if g is None:
                    return rc
                total = g.memory_total_mib
                used = min(total, max(0, round(s._value(g.memory_used_mib, 3))))
            mem = cast(out, POINTER(pynvml.c_nvmlMemory_t)).contents
            mem.total, mem.used, mem.free = total << 20, used << 20, (total - used) << 20
            return SUCCESS

        def utilization(handle, out):
            g, rc = s._device_call(handle, "nvmlDeviceGetUtilizationRates")
            if g is None:
                return rc
            u = cast(out, POINTER(pynvml.c_nvmlUtilization_t)).contents
            u.gpu = int(min(100, max(0, round(s._value(g.utilization_gpu, 1)))))
            u.memory = int(min(100, max(0, round(s._value(g.utilization_memory, 2)))))
            return SUCCESS

        def temperature(handle, sensor, out):
            g, rc = s._device_call(handle, "nvmlDeviceGetTemperature")
            if g is None:
                return rc
            if sensor != 0:
                return ERROR_INVALID_ARGUMENT
            _put_uint(out, max(0, round(s._value(g.temperature_c, 4))))  # a swing saturates at 0 C
            return SUCCESS

        def power(handle, out):
            g, rc = s._device_call(handle, "nvmlDeviceGetPowerUsage")
            if g is None:
                return rc
            _put_uint(out, max(0, round(s._value(g.power_w, 5) * 1000)))
            return SUCCESS

        def power_limit(handle, out):
            g, rc = s._device_call(handle, "nvmlDeviceGetEnforcedPowerLimit")
            if g is None:
                return rc
            if g.power_limit_w is None:
                return ERROR_NOT_SUPPORTED
            _put_uint(out, round(g.power_limit_w * 1000))
            return SUCCESS

        def persistence(handle, out):
            g, rc = s._device_call(handle, "nvmlDeviceGetPersistenceMode")
            if g is None:
                return rc
            _put_uint(out, 1 if g.persistence_mode else 0)
            return SUCCESS

        def compute_mode(handle, out):
            g, rc = s._device_call(handle, "nvmlDeviceGetComputeMode")
            if g is None:
                return rc
            _put_uint(out, g.compute_mode)
            return SUCCESS

        def clock(which_max: bool):
            def impl(handle, clock_type, out):
                g, rc = s._device_call(handle, "nvmlDeviceGetMaxClockInfo" if which_max else "nvmlDeviceGetClockInfo")
                if g is None:
                    return rc
                # NVML_CLOCK_GRAPHICS 0, SM 1, MEM 2, VIDEO 3
                if clock_type in (0, 1):
                    v = g.clock_sm_max_mhz if which_max else g.clock_sm_mhz
                elif clock_type == 2:
                    v = g.clock_mem_max_mhz if which_max else g.clock_mem_mhz
                else:
                    return ERROR_NOT_SUPPORTED
                _put_uint(out, v)
                return SUCCESS

            return impl

        def mig_mode(handle, cur, pend):
            g, rc = s._device_call(handle, "nvmlDeviceGetMigMode")
            if g is None:
                return rc
            if g.mig_current is None:
                return ERROR_NOT_SUPPORTED
            _put_uint(cur, int(bool(g.mig_current)))
            _put_uint(pend, int(bool(g.mig_pending)))
            return SUCCESS

        def max_mig_count(handle, out):
            g, rc = s._device_call(handle, "nvmlDeviceGetMaxMigDeviceCount")
            if g is None:
                return rc
            if g.mig_current is None:
                return ERROR_NOT_SUPPORTED
            _put_uint(out, 7 if g.mig_current else 0)
            return SUCCESS

        def mig_handle_by_index(handle, index, out):
            g, rc = s._device_call(handle, "nvmlDeviceGetMigDeviceHandleByIndex")
            if g is None:
                return rc
            if not g.mig_current or index >= len(g.mig):
                return ERROR_NOT_FOUND
            gi = sc.gpus.index(g)
            _put_ptr(out, _MIG_BASE + gi * 4096 + index * 64)
            return SUCCESS

        def is_mig_handle(handle, out):
            if handle in s._mig_by_handle:
                _put_uint(out, 1)
                return SUCCESS
            g, rc = s._device_call(handle, "nvmlDeviceIsMigDeviceHandle")
            if g is None:
                return rc
            _put_uint(out, 0)
            return SUCCESS

        def mig_ids(compute: bool):
            def impl(handle, out):
                mig = s._mig_by_handle.get(handle)
                if not mig:
                    return ERROR_INVALID_ARGUMENT if handle not in s._gpu_by_handle else ERROR_NOT_SUPPORTED
                g, mi = mig
                m = g.mig[mi]
                _put_uint(out, m.compute_instance_id if compute else m.gpu_instance_id)
                return SUCCESS

            return impl

        def processes(kind: str, struct):
            def impl(handle, count_ptr, array):
                g, rc = s._device_call(handle, "processes")
                if g is None:
                    return rc
                procs = [p for p in g.processes if p.kind == kind]
                have = cast(count_ptr, POINTER(c_uint))[0]
                if not procs:
                    _put_uint(count_ptr, 0)
                    return SUCCESS
                if array is None or have < len(procs):
                    _put_uint(count_ptr, len(procs))
                    return ERROR_INSUFFICIENT_SIZE
                out = cast(array, POINTER(struct))
                for i, p in enumerate(procs):
                    out[i].pid = p.pid
                    out[i].usedGpuMemory = p.used_memory_mib << 20
                    if p.mig_index is not None and p.mig_index < len(g.mig):
                        out[i].gpuInstanceId = g.mig[p.mig_index].gpu_instance_id
                        out[i].computeInstanceId = g.mig[p.mig_index].compute_instance_id
                    else:
                        out[i].gpuInstanceId = 0xFFFFFFFF
                        out[i].computeInstanceId = 0xFFFFFFFF
                _put_uint(count_ptr, len(procs))
                return SUCCESS

            return impl

        procs_v2 = pynvml.c_nvmlProcessInfo_v2_t
        procs_v1 = getattr(pynvml, "c_nvmlProcessInfo_v1_t", procs_v2)
        return {
            "nvmlInit_v2": ("", init),
            "nvmlInitWithFlags": ("u", init),
            "nvmlShutdown": ("", shutdown),
            "nvmlErrorString": ("i", error_string, c_void_p),
            "nvmlSystemGetDriverVersion": ("pu", driver_version),
            "nvmlSystemGetNVMLVersion": ("pu", nvml_version),
            "nvmlSystemGetCudaDriverVersion": ("p", cuda_version),
            "nvmlSystemGetCudaDriverVersion_v2": ("p", cuda_version),
            "nvmlSystemGetProcessName": ("upu", process_name),
            "nvmlDeviceGetCount_v2": ("p", count),
            "nvmlDeviceGetHandleByIndex_v2": ("up", handle_by_index),
            "nvmlDeviceGetIndex": ("pp", device_index),
            "nvmlDeviceGetName": ("ppu", name),
            "nvmlDeviceGetUUID": ("ppu", uuid),
            "nvmlDeviceGetSerial": ("ppu", serial),
            "nvmlDeviceGetMinorNumber": ("pp", minor),
            "nvmlDeviceGetPciInfo_v3": ("pp", pci_info),
            "nvmlDeviceGetMemoryInfo": ("pp", memory),
            "nvmlDeviceGetUtilizationRates": ("pp", utilization),
            "nvmlDeviceGetTemperature": ("pup", temperature),
            "nvmlDeviceGetPowerUsage": ("pp", power),
            "nvmlDeviceGetEnforcedPowerLimit": ("pp", power_limit),
            "nvmlDeviceGetPowerManagementLimit": ("pp", power_limit),
            "nvmlDeviceGetPersistenceMode": ("pp", persistence),
            "nvmlDeviceGetComputeMode": ("pp", compute_mode),
            "nvmlDeviceGetClockInfo": ("pup", clock(False)),
            "nvmlDeviceGetMaxClockInfo": ("pup", clock(True)),
            "nvmlDeviceGetMigMode": ("ppp", mig_mode),
            "nvmlDeviceGetMaxMigDeviceCount": ("pp", max_mig_count),
            "nvmlDeviceGetMigDeviceHandleByIndex": ("pup", mig_handle_by_index),
            "nvmlDeviceIsMigDeviceHandle": ("pp", is_mig_handle),
            "nvmlDeviceGetGpuInstanceId": ("pp", mig_ids(False)),
            "nvmlDeviceGetComputeInstanceId": ("pp", mig_ids(True)),
            "nvmlDeviceGetComputeRunningProcesses_v3": ("ppp", processes("compute", procs_v2)),
            "nvmlDeviceGetGraphicsRunningProcesses_v3": ("ppp", processes("graphics", procs_v2)),
            "nvmlDeviceGetComputeRunningProcesses_v2": ("ppp", processes("compute", procs_v2)),
            "nvmlDeviceGetGraphicsRunningProcesses_v2": ("ppp", processes("graphics", procs_v2)),
            "nvmlDeviceGetComputeRunningProcesses": ("ppp", processes("compute", procs_v1)),
            "nvmlDeviceGetGraphicsRunningProcesses": ("ppp", processes("graphics", procs_v1)),
        }


@functools.cache
def exported_functions() -> frozenset[str]:
    """The name of every NVML function the simulated library exports (what a scenario's
    ``missing_functions`` and ``unsupported`` may name)."""
    lib = object.__new__(SimNvmlLibrary)  # no scenario: the table's functions are made, never called
    lib.__dict__["scenario"] = None
    return frozenset(lib._table())


def sim_library_loader(scenario: Scenario):
    """A loader for ``NvmlSession``: returns the library, or raises OSError like CDLL would."""

    def load():
        if scenario.init_error == 12:  # NVML_ERROR_LIBRARY_NOT_FOUND: there is no library to load
            raise OSError("libnvidia-ml.so.1: cannot open shared object file: No such file or directory")
        return SimNvmlLibrary(scenario)

    return load
