"""The exporter's core: one host's poll and doctor findings as Prometheus series.

This module owns turning what the dashboard already reads (a ``poll()`` that returns a
:class:`~gpudock.model.HostSnapshot` and its :class:`~gpudock.host.holders.HoldersMap`, or None
when no Docker engine is watched) and the doctor's findings into metric families
(:mod:`gpudock.fleet.metrics` names them), and keeping them fresh: a background thread polls every
``interval`` seconds (the next poll starts when the last is done, so a slow host stretches the
period), and another runs the doctor every ``doctor_period`` seconds (a doctor run reads files,
the loader cache and the engine: far too heavy for every scrape).

A scrape never polls: :class:`HostCollector` is a ``prometheus_client`` collector whose
``collect()`` hands out the families built at the last poll, so its cost is the text formatting
alone, however often Prometheus scrapes, and however many Prometheus servers do.

Use::

    core = HostCollector(poll, findings, hostname="gpu-07")
    core.refresh()                       # one poll now (the first scrape then has data)
    registry = CollectorRegistry(); registry.register(core)
    core.start(interval=5.0)             # polls and doctor runs in the background
    ...
    core.stop()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gpudock.fleet import metrics as m
from gpudock.model import Gpu, HostSnapshot

__all__ = ["HostCollector", "Poll", "Findings", "build_families", "doctor_families"]

log = logging.getLogger(__name__)

MIB = 1024 * 1024

# poll() -> (snapshot, holders map or None); findings() -> the doctor's findings.
Poll = Callable[[], tuple[HostSnapshot, object | None]]
Findings = Callable[[], Sequence[object]]
PollListener = Callable[[HostSnapshot, object | None], None]


def _s(v) -> str:
    return "" if v is None else str(v)


def gpu_labels(hostname: str, g: Gpu) -> list[str]:
    """The labels every per-GPU series carries, in :data:`gpudock.fleet.metrics.GPU_LABELS` order."""
    return [
        hostname,
        str(g.index),
        _s(g.uuid),
        _s(g.pci_bus_id),
        f"nvidia{g.minor}" if g.minor is not None else "",
        _s(g.name),
    ]


def _gauge(name: str, doc: str, labels: Sequence[str], unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels), unit=unit)


def build_families(
    hostname: str,
    snap: HostSnapshot,
    holders=None,
    poll_seconds: float | None = None,
    taken_at: float | None = None,
) -> list[Metric]:
    """Every series of one poll: GPUs, MIG devices, holders, processes, driver, NVML and Docker state.
    ``holders``: the :class:`~gpudock.host.holders.HoldersMap` joined with ``snap`` (None: no engine
    watched); ``taken_at``: when the poll read the GPUs (default: the snapshot's time, else now)."""
    gl = m.GPU_LABELS
    info = _gauge(m.GPU_INFO, "A GPU as NVML enumerates it (value 1); minor is /dev/nvidia<minor>.", [*gl, "minor"])
    util = _gauge(m.UTILIZATION, "GPU utilization (%), as nvidia-smi shows it.", gl)
    mem_util = _gauge(m.MEMORY_UTILIZATION, "Memory controller utilization (%).", gl)
    used = _gauge(m.MEMORY_USED, "GPU memory used (bytes).", gl)
    total = _gauge(m.MEMORY_TOTAL, "GPU memory total (bytes).", gl)
    temp = _gauge(m.TEMPERATURE, "GPU temperature (C).", gl)
    power = _gauge(m.POWER, "Power draw (W).", gl)
    limit = _gauge(m.POWER_LIMIT, "Power limit (W).", gl)
    err = _gauge(m.GPU_ERROR, "1 while NVML answers an error for this GPU (e.g. GPU is lost).", [*gl, "error"])
    ml = m.MIG_LABELS
    mig = _gauge(m.MIG_INFO, "A MIG device of a GPU (value 1).", [*ml, "GPU_CI_ID", "mig_index"])
    mig_used = _gauge(m.MIG_MEMORY_USED, "MIG device memory used (bytes).", ml)
    mig_total = _gauge(m.MIG_MEMORY_TOTAL, "MIG device memory total (bytes).", ml)
    holder = _gauge(
        m.HOLDER,
        "A running container holding this GPU (value 1); mechanism: how (device, runtime-env, "
        "device-request, cdi); mig_uuids: the MIG devices it holds, empty for the whole GPU.",
        m.HOLDER_LABELS,
    )
    proc = _gauge(
        m.PROCESS_MEMORY, "GPU memory used by a process (host pid) and its container (bytes).", m.PROCESS_LABELS
    )

    for g in snap.gpus:
        labels = gpu_labels(hostname, g)
        info.add_metric([*labels, _s(g.minor)], 1)
        if g.error:
            err.add_metric([*labels, g.error], 1)
        for fam, v, scale in (
            (util, g.utilization_gpu, 1),
            (mem_util, g.utilization_memory, 1),
            (used, g.memory_used_mib, MIB),
            (total, g.memory_total_mib, MIB),
            (temp, g.temperature_c, 1),
            (power, g.power_w, 1),
            (limit, g.power_limit_w, 1),
        ):
            if v is not None:
                fam.add_metric(labels, v * scale)
        for d in g.mig_devices:
            mlabels = [hostname, str(g.index), _s(g.uuid), _s(d.gpu_instance_id), _s(d.profile), d.uuid]
            mig.add_metric([*mlabels, _s(d.compute_instance_id), str(d.index)], 1)
            if d.memory_used_mib is not None:
                mig_used.add_metric(mlabels, d.memory_used_mib * MIB)
            if d.memory_total_mib is not None:
                mig_total.add_metric(mlabels, d.memory_total_mib * MIB)

    by_uuid = {g.uuid: g for g in snap.gpus if g.uuid}
    if holders is not None:
        images = {c.id: c.container.image for c in holders.containers}
        for gh in holders.gpus:
            g = by_uuid.get(gh.uuid)
            dev = f"nvidia{gh.minor}" if gh.minor is not None else ""
            for h in gh.holders:
                if not h.running:
                    continue
                holder.add_metric(
                    [
                        hostname,
                        str(gh.index),
                        _s(gh.uuid),
                        _s(gh.pci_bus_id),
                        dev,
                        _s(gh.minor),
                        h.name,
                        h.container_id,
                        images.get(h.container_id, ""),
                        ",".join(h.mechanisms),
                        ",".join(h.mig_uuids),
                    ],
                    1,
                )
            for p in gh.processes:
                if p.used_memory_mib is None:
                    continue
                proc.add_metric(
                    [
                        hostname,
                        str(gh.index),
                        _s(gh.uuid),
                        str(p.pid),
                        _s(p.container_name),
                        _s(p.container_id),
                        _s(p.container_pid),
                        _s(p.mig_uuid),
                    ],
                    p.used_memory_mib * MIB,
                )
    else:  # no engine watched: the processes still have their NVML memory, without containers
        for g in snap.gpus:
            for p in g.processes:
                if p.used_memory_mib is not None:
                    proc.add_metric(
                        [hostname, str(g.index), _s(g.uuid), str(p.pid), "", _s(p.container_id), "", _s(p.mig_uuid)],
                        p.used_memory_mib * MIB,
                    )

    host = [m.HOST_LABEL]
    driver = _gauge(
        m.DRIVER,
        "The NVIDIA driver (value 1): its version, the CUDA version it supports, NVML's version; "
        "source is nvml, or sim:<scenario> on a simulated host.",
        [*host, "driver_version", "cuda_driver_version", "nvml_version", "source"],
    )
    driver.add_metric(
        [hostname, _s(snap.driver_version), _s(snap.cuda_driver_version), _s(snap.nvml_version), snap.source], 1
    )
    nvml_up = _gauge(m.NVML_UP, "1 when NVML answers, 0 when it cannot start (see gpudock_nvml_error_info).", host)
    nvml_up.add_metric([hostname], 0 if snap.nvml_failure else 1)
    out: list[Metric] = [info, util, mem_util, used, total, temp, power, limit, err, mig, mig_used, mig_total]
    out += [holder, proc, driver, nvml_up]
    if snap.nvml_failure:
        f = snap.nvml_failure
        nvml_err = _gauge(m.NVML_ERROR, "Why NVML cannot start (value 1), and what to do.", [*host, "error", "message"])
        nvml_err.add_metric([hostname, f.nvml_text, f.message], 1)
        out.append(nvml_err)
    status = getattr(holders, "docker", None) if holders is not None else None
    if status is not None:
        docker_up = _gauge(m.DOCKER_UP, "1 when the Docker engine answers (the holders are known), else 0.", host)
        docker_up.add_metric([hostname], 1 if getattr(status, "ok", False) else 0)
        out.append(docker_up)
    last = _gauge(m.LAST_POLL, "When the exporter last read the GPUs (unix time).", host)
    last.add_metric([hostname], taken_at or snap.taken_at or time.time())
    out.append(last)
    if poll_seconds is not None:
        dur = _gauge(m.POLL_DURATION, "How long the last read of the GPUs and holders took (s).", host)
        dur.add_metric([hostname], poll_seconds)
        out.append(dur)
    return out


def doctor_families(hostname: str, findings: Iterable, taken_at: float) -> list[Metric]:
    """One series per doctor finding (value 1, with its id, severity and title) and the run's time."""
    fam = _gauge(
        m.DOCTOR_FINDING,
        "A finding of gpudock's doctor (value 1); severity is ok, info, warning or error.",
        [m.HOST_LABEL, "id", "severity", "title"],
    )
    for f in findings:
        fam.add_metric([hostname, f.id, f.severity, f.title], 1)
    last = _gauge(m.DOCTOR_LAST_RUN, "When the doctor last ran on this host (unix time).", [m.HOST_LABEL])
    last.add_metric([hostname], taken_at)
    return [fam, last]


@dataclass
class _State:
    families: list[Metric]
    snapshot: HostSnapshot | None = None
    holders: object | None = None


class HostCollector(Collector):
    """A ``prometheus_client`` collector serving the families of the last poll and doctor run.

    ``poll`` and ``findings`` are the host's (the dashboard's poll; ``findings`` may be None: no
    doctor series). ``listeners`` are called after each good poll with (snapshot, holders), in the
    poll thread (the HPC job files writer is one). A poll that raises keeps the last good series
    (their ``gpudock_exporter_last_poll_timestamp_seconds`` ages, which the fleet view marks stale)
    and counts ``gpudock_exporter_poll_errors_total``.
    """

    def __init__(
        self,
        poll: Poll,
        findings: Findings | None = None,
        *,
        hostname: str,
        doctor_period: float = 300.0,
        listeners: Sequence[PollListener] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.poll = poll
        self.findings = findings
        self.hostname = hostname
        self.doctor_period = doctor_period
        self.listeners = list(listeners)
        self.clock = clock
        self._poll_state = _State([])
        self._doctor: list[Metric] = []
        self.poll_errors = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._poll_lock = threading.Lock()

    # -- what a scrape gets -------------------------------------------------------------------------

    def collect(self) -> Iterable[Metric]:
        yield from self._poll_state.families
        yield from self._doctor
        errors = CounterMetricFamily(m.POLL_ERRORS, "Polls of the GPUs that failed.", labels=[m.HOST_LABEL])
        errors.add_metric([self.hostname], self.poll_errors)
        yield errors

    def describe(self) -> Iterable[Metric]:
        return ()  # the names depend on the host (no MIG, no Docker): nothing to check at register time

    @property
    def snapshot(self) -> HostSnapshot | None:
        return self._poll_state.snapshot

    @property
    def holders(self):
        return self._poll_state.holders

    # -- keeping it fresh ---------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Poll once and rebuild the series; True when the poll worked."""
        with self._poll_lock:
            t0, taken_at = time.monotonic(), self.clock()
            try:
                snap, holders = self.poll()
            except Exception as e:  # noqa: BLE001 - keep serving the last good series, count the failure
                self.poll_errors += 1
                self.last_error = f"{type(e).__name__}: {e}"
                log.warning("poll failed: %s", self.last_error)
                return False
            families = build_families(self.hostname, snap, holders, time.monotonic() - t0, taken_at)
            self._poll_state = _State(families, snap, holders)  # one reference swap: scrapes see old or new
            self.last_error = None
        for listener in self.listeners:
            try:
                listener(snap, holders)
            except Exception as e:  # noqa: BLE001 - a listener's fault must not stop the polls
                log.warning("after the poll: %s: %s", type(e).__name__, e)
        return True

    def refresh_findings(self) -> bool:
        """Run the doctor once and rebuild its series; True when it ran."""
        if self.findings is None:
            return False
        try:
            found = tuple(self.findings())
        except Exception as e:  # noqa: BLE001 - the last findings stay; the run's time says how old they are
            log.warning("doctor failed: %s: %s", type(e).__name__, e)
            return False
        self._doctor = doctor_families(self.hostname, found, self.clock())
        return True

    def start(self, interval: float = 5.0) -> None:
        """Poll every ``interval`` seconds and run the doctor every ``doctor_period``, in background threads."""
        self._stop.clear()
        self._threads = [threading.Thread(target=self._every, args=(interval, self.refresh), daemon=True)]
        self._threads[0].name = "gpudock-exporter-poll"
        if self.findings is not None and self.doctor_period > 0:
            t = threading.Thread(
                target=self._every, args=(self.doctor_period, self.refresh_findings, True), daemon=True
            )
            t.name = "gpudock-exporter-doctor"
            self._threads.append(t)
        for t in self._threads:
            t.start()

    def _every(self, period: float, what: Callable[[], bool], now: bool = False) -> None:
        delay = 0.0 if now else period
        while not self._stop.wait(delay):
            t0 = time.monotonic()
            what()
            delay = max(0.0, period - (time.monotonic() - t0))

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        self._threads = []
