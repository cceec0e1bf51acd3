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
    c_ulonglong,
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

# nvmlGpuTopologyLevel_t
TOPOLOGY_SINGLE, TOPOLOGY_MULTIPLE, TOPOLOGY_HOSTBRIDGE, TOPOLOGY_NODE, TOPOLOGY_SYSTEM = 10, 20, 30, 40, 50
NVLINK_DEVICE_GPU, NVLINK_DEVICE_SWITCH = 0, 2

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

# C signatures: u = unsigned int by value, p = pointer (incl. handles and buffers), i = int,
# Q = unsigned long long by value.
_CTYPES = {"u": c_uint, "p": c_void_p, "i": c_int, "Q": c_ulonglong}


def _proto(sig: str, restype=c_int):
    return CFUNCTYPE(restype, *(_CTYPES[ch] for ch in sig))


# from_address is the cheapest way to store through a pointer from Python (cast() builds a pointer
# object per call); the simulated library's own cost is what both sides of the benchmarks share.
def _put_uint(addr: int, value: int) -> None:
    c_uint.from_address(addr).value = int(value)


def _put_ull(addr: int, value: int) -> None:
    c_ulonglong.from_address(addr).value = int(value)


def _put_int(addr: int, value: int) -> None:
    c_int.from_address(addr).value = int(value)


def _put_ptr(addr: int, value: int) -> None:
    c_void_p.from_address(addr).value = value


def _put_str(buf: int, length: int, text: str) -> int:
    data = text.encode() + b"\0"
    if len(data) > length:
        return ERROR_INSUFFICIENT_SIZE
    memmove(buf, data, len(data))
    return SUCCESS


class SimNvmlLibrary:
    """The library object handed to pynvml in place of ``CDLL("libnvidia-ml.so.1")``."""

    def __init__(self, scenario: Scenario, clock=time.monotonic, ended: set[int] | None = None):
        self.scenario = scenario
        # PIDs whose container the simulated engine stopped (SimHost shares the set): NVML no longer
        # lists them, as it stops listing a process that exited.
        self.ended: set[int] = ended if ended is not None else set()
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
                mig = s._mig_by_handle.get(handle)
                if mig:  # a MIG device lists the processes in its instance
                    g, mi = mig
                    procs = [p for p in g.processes if p.kind == kind and p.mig_index == mi and p.pid not in s.ended]
                else:
                    g, rc = s._device_call(handle, "processes")
                    if g is None:
                        return rc
                    procs = [p for p in g.processes if p.kind == kind and p.pid not in s.ended]
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

        # -- the readings nvitop, gpustat and nvidia-smi -q show ------------------------------------

        def uint_reading(fn_name: str, value):
            """A per-device call that writes one unsigned int: ``value(g)`` (None: NOT_SUPPORTED)."""

            def impl(handle, out):
                g, rc = s._device_call(handle, fn_name)
                if g is None:
                    return rc
                v = value(g)
                if v is None:
                    return ERROR_NOT_SUPPORTED
                _put_uint(out, v)
                return SUCCESS

            return impl

        def wave_pct(g: SimGpu, wave: Wave, salt: int) -> int:
            return int(min(100, max(0, round(s._value(wave, salt)))))

        def fan_v2(handle, fan, out):
            g, rc = s._device_call(handle, "nvmlDeviceGetFanSpeed")
            if g is None:
                return rc
            if not g.fans:
                return ERROR_NOT_SUPPORTED
            if fan >= g.fans:
                return ERROR_INVALID_ARGUMENT
            _put_uint(out, wave_pct(g, g.fan_speed, 6 + fan))
            return SUCCESS

        def event_reasons(fn_name: str):
            def impl(handle, out):
                g, rc = s._device_call(handle, fn_name)
                if g is None:
                    return rc
                mask = g.clock_event_reasons
                if mask is None:  # an idle card says so; a busy one runs free
                    mask = 0x1 if wave_pct(g, g.utilization_gpu, 1) == 0 else 0
                _put_ull(out, mask)
                return SUCCESS

            return impl

        def ecc_mode(handle, cur, pend):
            g, rc = s._device_call(handle, "nvmlDeviceGetEccMode")
            if g is None:
                return rc
            _put_uint(cur, int(g.ecc_mode))
            _put_uint(pend, int(g.ecc_mode_pending))
            return SUCCESS

        def ecc_count(g: SimGpu, error_type: int, counter: int) -> int | None:
            e = g.ecc_errors
            return {
                (0, 0): e.volatile_corrected,
                (1, 0): e.volatile_uncorrected,
                (0, 1): e.aggregate_corrected,
                (1, 1): e.aggregate_uncorrected,
            }.get((error_type, counter))

        def total_ecc(handle, error_type, counter, out):
            g, rc = s._device_call(handle, "nvmlDeviceGetTotalEccErrors")
            if g is None:
                return rc
            if not g.ecc_mode:
                return ERROR_NOT_SUPPORTED
            v = ecc_count(g, error_type, counter)
            if v is None:
                return ERROR_INVALID_ARGUMENT
            _put_ull(out, v)
            return SUCCESS

        def memory_error_counter(handle, error_type, counter, location, out):
            g, rc = s._device_call(handle, "nvmlDeviceGetMemoryErrorCounter")
            if g is None:
                return rc
            if not g.ecc_mode:
                return ERROR_NOT_SUPPORTED
            v = ecc_count(g, error_type, counter)
            if v is None or location > 7:
                return ERROR_INVALID_ARGUMENT
            # Every counted error is in device memory (location 2, DRAM); the caches count none.
            _put_ull(out, v if location == 2 else 0)
            return SUCCESS

        def retired_pages(handle, cause, count_ptr, addresses):
            g, rc = s._device_call(handle, "nvmlDeviceGetRetiredPages")
            if g is None:
                return rc
            if cause not in (0, 1):
                return ERROR_INVALID_ARGUMENT
            n = g.retired_pages.single_bit if cause == 0 else g.retired_pages.double_bit
            have = cast(count_ptr, POINTER(c_uint))[0]
            _put_uint(count_ptr, n)
            if n == 0:
                return SUCCESS
            if not addresses or have < n:
                return ERROR_INSUFFICIENT_SIZE
            arr = cast(addresses, POINTER(c_ulonglong))
            for i in range(n):
                arr[i] = 0x7F000000 + (cause << 20) + i * 0x1000
            return SUCCESS

        def remapped_rows(handle, corr, unc, pending, failed):
            g, rc = s._device_call(handle, "nvmlDeviceGetRemappedRows")
            if g is None:
                return rc
            r = g.remapped_rows
            for addr, v in ((corr, r.correctable), (unc, r.uncorrectable), (pending, r.pending), (failed, r.failed)):
                _put_uint(addr, int(v))
            return SUCCESS

        def pcie_throughput(handle, counter, out):
            g, rc = s._device_call(handle, "nvmlDeviceGetPcieThroughput")
            if g is None:
                return rc
            if counter not in (0, 1):  # NVML_PCIE_UTIL_TX_BYTES, NVML_PCIE_UTIL_RX_BYTES
                return ERROR_INVALID_ARGUMENT
            wave = g.pcie_tx_kib_s if counter == 0 else g.pcie_rx_kib_s
            _put_uint(out, max(0, round(s._value(wave, 7 + counter))))
            return SUCCESS

        def bar1(handle, out):
            mig = s._mig_by_handle.get(handle)
            if mig:
                g, mi = mig
                if "nvmlDeviceGetBAR1MemoryInfo" in g.unsupported:
                    return ERROR_NOT_SUPPORTED
                m = g.mig[mi]
                total = m.bar1_total_mib
                if total is None:
                    total = g.bar1_total_mib * m.memory_total_mib // max(1, g.memory_total_mib)
                used = min(total, m.bar1_used_mib)
            else:
                g, rc = s._device_call(handle, "nvmlDeviceGetBAR1MemoryInfo")
                if g is None:
                    return rc
                total = g.bar1_total_mib
                used = min(total, max(0, round(s._value(g.bar1_used_mib, 8))))
            info = cast(out, POINTER(pynvml.c_nvmlBAR1Memory_t)).contents
            info.bar1Total, info.bar1Used, info.bar1Free = total << 20, used << 20, (total - used) << 20
            return SUCCESS

        def codec(fn_name: str, attr: str, salt: int):
            def impl(handle, util, period):
                g, rc = s._device_call(handle, fn_name)
                if g is None:
                    return rc
                _put_uint(util, wave_pct(g, getattr(g, attr), salt))
                _put_uint(period, 167000)  # microseconds, as the driver samples
                return SUCCESS

            return impl

        def process_utilization(handle, samples, count_ptr, last_seen):
            g, rc = s._device_call(handle, "nvmlDeviceGetProcessUtilization")
            if g is None:
                return rc
            if g.mig_current:
                return ERROR_NOT_SUPPORTED  # per-process samples are not kept with MIG on
            procs = list({p.pid: p for p in g.processes if p.pid not in s.ended}.values())
            # Samples carry the CPU's wall clock in microseconds, as the driver's do, even when the
            # scenario's values are frozen: callers ask for "samples after <now - 1 s>".
            stamp = time.time_ns() // 1000
            if not procs or last_seen >= stamp:
                return ERROR_NOT_FOUND
            have = cast(count_ptr, POINTER(c_uint))[0]
            _put_uint(count_ptr, len(procs))
            if not samples or have < len(procs):
                return ERROR_INSUFFICIENT_SIZE
            n_compute = max(1, sum(1 for p in procs if p.kind == "compute"))
            sm_share = wave_pct(g, g.utilization_gpu, 1) // n_compute
            mem_share = wave_pct(g, g.utilization_memory, 2) // n_compute
            arr = cast(samples, POINTER(pynvml.c_nvmlProcessUtilizationSample_t))
            for i, p in enumerate(procs):
                arr[i].pid = p.pid
                arr[i].timeStamp = stamp
                arr[i].smUtil = p.sm_util if p.sm_util is not None else (sm_share if p.kind == "compute" else 0)
                arr[i].memUtil = p.mem_util if p.mem_util is not None else (mem_share if p.kind == "compute" else 0)
                arr[i].encUtil = p.enc_util
                arr[i].decUtil = p.dec_util
            return SUCCESS

        def driver_model(handle, cur, pend):
            g, rc = s._device_call(handle, "nvmlDeviceGetDriverModel")
            return rc if g is None else ERROR_NOT_SUPPORTED  # a Windows-only notion

        def compute_capability(handle, major, minor):
            g, rc = s._device_call(handle, "nvmlDeviceGetCudaComputeCapability")
            if g is None:
                return rc
            _put_int(major, g.compute_capability[0])
            _put_int(minor, g.compute_capability[1])
            return SUCCESS

        def memory_v2(handle, out):
            mem = cast(out, POINTER(pynvml.c_nvmlMemory_v2_t)).contents
            if mem.version != pynvml.nvmlMemory_v2:
                return 25  # NVML_ERROR_ARGUMENT_VERSION_MISMATCH
            v1 = pynvml.c_nvmlMemory_t()
            rc = memory(handle, ctypes.addressof(v1))
            if rc != SUCCESS:
                return rc
            mem.total, mem.reserved, mem.free, mem.used = v1.total, 0, v1.free, v1.used
            return SUCCESS

        # -- NVLink and topology (static: the board's wiring) ---------------------------------------

        def nvlink_link(handle, link, fn_name):
            g, rc = s._device_call(handle, fn_name)
            if g is None:
                return None, rc
            if not g.nvlink_links:
                return None, ERROR_NOT_SUPPORTED
            if link >= g.nvlink_links:
                return None, ERROR_INVALID_ARGUMENT
            return g, SUCCESS

        def nvlink_state(handle, link, out):
            g, rc = nvlink_link(handle, link, "nvmlDeviceGetNvLinkState")
            if g is None:
                return rc
            _put_uint(out, 0 if link in g.nvlink_down else 1)
            return SUCCESS

        def nvlink_remote_pci(handle, link, out):
            g, rc = nvlink_link(handle, link, "nvmlDeviceGetNvLinkRemotePciInfo_v2")
            if g is None:
                return rc
            bus = g.nvlink_peers[link] if g.nvlink_peers else nvswitch_bus(link)
            info = cast(out, POINTER(pynvml.nvmlPciInfo_t)).contents
            dom, b, rest = bus.split(":")
            info.domain, info.bus, info.device = int(dom, 16), int(b, 16), int(rest.split(".")[0], 16)
            info.busId = bus.encode()
            info.busIdLegacy = f"{int(dom, 16):04X}:{b}:{rest}".encode()
            return SUCCESS

        def nvlink_remote_type(handle, link, out):
            g, rc = nvlink_link(handle, link, "nvmlDeviceGetNvLinkRemoteDeviceType")
            if g is None:
                return rc
            _put_uint(out, NVLINK_DEVICE_GPU if g.nvlink_peers else NVLINK_DEVICE_SWITCH)
            return SUCCESS

        def common_ancestor(h1, h2, out):
            a, rc = s._device_call(h1, "nvmlDeviceGetTopologyCommonAncestor")
            if a is None:
                return rc
            b, rc = s._device_call(h2, "nvmlDeviceGetTopologyCommonAncestor")
            if b is None:
                return rc
            if a is b:
                return ERROR_INVALID_ARGUMENT
            _put_uint(out, topology_level(a, b))
            return SUCCESS

        def cpu_affinity(handle, words, out):
            g, rc = s._device_call(handle, "nvmlDeviceGetCpuAffinity")
            if g is None:
                return rc
            arr = cast(out, POINTER(c_ulonglong))
            for w in range(words):
                arr[w] = sum(1 << (c - 64 * w) for c in g.cpu_affinity if 64 * w <= c < 64 * (w + 1))
            return SUCCESS

        def memory_affinity(handle, words, out, scope):
            g, rc = s._device_call(handle, "nvmlDeviceGetMemoryAffinity")
            if g is None:
                return rc
            if g.numa_node is None:
                return ERROR_NOT_SUPPORTED
            arr = cast(out, POINTER(c_ulonglong))
            for w in range(words):
                arr[w] = (1 << (g.numa_node - 64 * w)) if 64 * w <= g.numa_node < 64 * (w + 1) else 0
            return SUCCESS

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
            "nvmlDeviceGetMemoryInfo_v2": ("pp", memory_v2),
            "nvmlDeviceGetFanSpeed": ("pp", lambda h, out: fan_v2(h, 0, out)),
            "nvmlDeviceGetFanSpeed_v2": ("pup", fan_v2),
            "nvmlDeviceGetNumFans": ("pp", uint_reading("nvmlDeviceGetNumFans", lambda g: g.fans)),
            "nvmlDeviceGetPerformanceState": (
                "pp",
                uint_reading("nvmlDeviceGetPerformanceState", lambda g: g.performance_state),
            ),
            "nvmlDeviceGetCurrentClocksEventReasons": ("pp", event_reasons("nvmlDeviceGetCurrentClocksEventReasons")),
            "nvmlDeviceGetCurrentClocksThrottleReasons": (
                "pp",
                event_reasons("nvmlDeviceGetCurrentClocksThrottleReasons"),
            ),
            "nvmlDeviceGetEccMode": ("ppp", ecc_mode),
            "nvmlDeviceGetTotalEccErrors": ("puup", total_ecc),
            "nvmlDeviceGetMemoryErrorCounter": ("puuup", memory_error_counter),
            "nvmlDeviceGetRetiredPages": ("pupp", retired_pages),
            "nvmlDeviceGetRetiredPagesPendingStatus": (
                "pp",
                uint_reading("nvmlDeviceGetRetiredPagesPendingStatus", lambda g: int(g.retired_pages.pending)),
            ),
            "nvmlDeviceGetRemappedRows": ("ppppp", remapped_rows),
            "nvmlDeviceGetCurrPcieLinkGeneration": (
                "pp",
                uint_reading("nvmlDeviceGetCurrPcieLinkGeneration", lambda g: g.pcie_gen),
            ),
            "nvmlDeviceGetMaxPcieLinkGeneration": (
                "pp",
                uint_reading("nvmlDeviceGetMaxPcieLinkGeneration", lambda g: g.pcie_gen_max),
            ),
            "nvmlDeviceGetCurrPcieLinkWidth": (
                "pp",
                uint_reading("nvmlDeviceGetCurrPcieLinkWidth", lambda g: g.pcie_width),
            ),
            "nvmlDeviceGetMaxPcieLinkWidth": (
                "pp",
                uint_reading("nvmlDeviceGetMaxPcieLinkWidth", lambda g: g.pcie_width_max),
            ),
            "nvmlDeviceGetPcieThroughput": ("pup", pcie_throughput),
            "nvmlDeviceGetBAR1MemoryInfo": ("pp", bar1),
            "nvmlDeviceGetEncoderUtilization": (
                "ppp",
                codec("nvmlDeviceGetEncoderUtilization", "encoder_utilization", 9),
            ),
            "nvmlDeviceGetDecoderUtilization": (
                "ppp",
                codec("nvmlDeviceGetDecoderUtilization", "decoder_utilization", 10),
            ),
            "nvmlDeviceGetProcessUtilization": ("pppQ", process_utilization),
            "nvmlDeviceGetDisplayActive": (
                "pp",
                uint_reading("nvmlDeviceGetDisplayActive", lambda g: int(g.display_active)),
            ),
            "nvmlDeviceGetDisplayMode": (
                "pp",
                uint_reading("nvmlDeviceGetDisplayMode", lambda g: int(g.display_active)),
            ),
            "nvmlDeviceGetDriverModel": ("ppp", driver_model),
            "nvmlDeviceGetCudaComputeCapability": ("ppp", compute_capability),
            "nvmlDeviceGetNvLinkState": ("pup", nvlink_state),
            "nvmlDeviceGetNvLinkRemotePciInfo_v2": ("pup", nvlink_remote_pci),
            "nvmlDeviceGetNvLinkRemoteDeviceType": ("pup", nvlink_remote_type),
            "nvmlDeviceGetTopologyCommonAncestor": ("ppp", common_ancestor),
            "nvmlDeviceGetCpuAffinity": ("pup", cpu_affinity),
            "nvmlDeviceGetMemoryAffinity": ("pupu", memory_affinity),
        }


def nvswitch_bus(link: int) -> str:
    """The NVML bus id of the NVSwitch at the other end of ``link`` on a board without direct
    GPU-to-GPU links (HGX: four switches, a GPU's links spread over them)."""
    return f"00000000:{0xC0 + link % 4:02X}:00.0"


def topology_level(a: SimGpu, b: SimGpu) -> int:
    """nvmlDeviceGetTopologyCommonAncestor from the scenario's ``pcie.path`` (host bridge first,
    then the PCIe switches down to the card) and ``numa_node``."""
    common = 0
    for x, y in zip(a.pcie_path, b.pcie_path):
        if x != y:
            break
        common += 1
    if common == 0:
        same_node = a.numa_node is not None and a.numa_node == b.numa_node
        return TOPOLOGY_NODE if same_node else TOPOLOGY_SYSTEM
    if common == 1:
        return TOPOLOGY_HOSTBRIDGE
    if common == len(a.pcie_path) == len(b.pcie_path):
        return TOPOLOGY_SINGLE  # both hang off the same switch
    return TOPOLOGY_MULTIPLE


@functools.cache
def exported_functions() -> frozenset[str]:
    """The name of every NVML function the simulated library exports (what a scenario's
    ``missing_functions`` and ``unsupported`` may name)."""
    lib = object.__new__(SimNvmlLibrary)  # no scenario: the table's functions are made, never called
    lib.__dict__["scenario"] = None
    return frozenset(lib._table())


def sim_library_loader(scenario: Scenario, ended: set[int] | None = None):
    """A loader for ``NvmlSession``: returns the library, or raises OSError like CDLL would.
    ``ended``: PIDs that have exited since the scenario began (the simulated host's, shared)."""

    def load():
        if scenario.init_error == 12:  # NVML_ERROR_LIBRARY_NOT_FOUND: there is no library to load
            raise OSError("libnvidia-ml.so.1: cannot open shared object file: No such file or directory")
        return SimNvmlLibrary(scenario, ended=ended)

    return load
