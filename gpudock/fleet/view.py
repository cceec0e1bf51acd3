"""The fleet as values: hosts, their GPUs and holders, one read's view; sorting and filtering them.

Immutable, JSON-ready (``to_json``), and the same whichever way they were read: a *detailed*
read (``gpudock fleet --json``, one host's screen) fills :attr:`FleetHost.gpus`; a *summary* read
(the fleet screen's host list, which must stay fast on thousands of hosts) fills only the host's
own figures (:attr:`FleetHost.gpu_count`, :attr:`FleetHost.utilization`, …), which a detailed
read fills too, from its GPUs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "DoctorError",
    "FleetGpu",
    "FleetHolder",
    "FleetHost",
    "FleetView",
    "SORT_KEYS",
    "filter_hosts",
    "host_from_gpus",
    "sort_hosts",
]


@dataclass(frozen=True, slots=True)
class FleetHolder:
    container: str
    container_id: str
    image: str
    mechanism: str

    def to_json(self) -> dict:
        return {
            "container": self.container,
            "container_id": self.container_id,
            "image": self.image,
            "mechanism": self.mechanism,
        }


@dataclass(frozen=True, slots=True)
class FleetGpu:
    uuid: str
    index: int | None = None
    name: str | None = None
    pci_bus_id: str | None = None
    device: str | None = None  # gpudock's: /dev/nvidia<minor>'s name; dcgm-exporter's: nvidia<DCGM id>
    utilization_gpu: float | None = None
    memory_used_mib: float | None = None
    memory_total_mib: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    xid: int | None = None  # dcgm-exporter's last Xid (0: none)
    error: str | None = None  # NVML's error for this GPU (gpudock)
    holders: tuple[FleetHolder, ...] = ()
    sources: tuple[str, ...] = ()  # "gpudock", "dcgm-exporter"

    @property
    def holder_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(h.container for h in self.holders))

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "uuid": self.uuid,
            "name": self.name,
            "pci_bus_id": self.pci_bus_id,
            "device": self.device,
            "utilization_gpu": self.utilization_gpu,
            "memory_used_mib": self.memory_used_mib,
            "memory_total_mib": self.memory_total_mib,
            "temperature_c": self.temperature_c,
            "power_w": self.power_w,
            "power_limit_w": self.power_limit_w,
            "xid": self.xid,
            "error": self.error,
            "sources": list(self.sources),
            "holders": [h.to_json() for h in self.holders],
        }


@dataclass(frozen=True, slots=True)
class DoctorError:
    id: str
    title: str

    def to_json(self) -> dict:
        return {"id": self.id, "title": self.title}


@dataclass(frozen=True, slots=True)
class FleetHost:
    """One host. The figures (GPU count to ``xid_gpus``) are the host's whole: averages, sums and
    maxima over its GPUs, whether or not ``gpus`` lists them (``detailed``)."""

    hostname: str
    gpus: tuple[FleetGpu, ...] = ()
    detailed: bool = False
    gpu_count: int = 0
    held: int | None = None  # GPUs some running container holds; None: unknown (no gpudock exporter)
    utilization: float | None = None  # average
    memory_used_mib: float | None = None  # sum
    memory_total_mib: float | None = None  # sum
    temperature_c: float | None = None  # hottest
    power_w: float | None = None  # sum
    holder_names: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    gpu_errors: int = 0  # GPUs NVML answers an error for
    xid_gpus: int = 0  # GPUs whose last Xid (dcgm-exporter) is not 0
    doctor_errors: tuple[DoctorError, ...] = ()
    doctor_warnings: int = 0
    driver_version: str | None = None
    source: str | None = None  # gpudock's: "nvml", or "sim:<scenario>" for a simulated host
    nvml_error: str | None = None
    docker_up: bool | None = None  # None: gpudock does not watch an engine there (or no gpudock)
    instances: tuple[str, ...] = ()  # the scrape targets it came from
    sources: tuple[str, ...] = ()
    stale: bool = False
    stale_reason: str | None = None
    last_poll: float | None = None  # when its gpudock exporter last read the GPUs (its clock)

    @property
    def ssh_command(self) -> str:
        return f"ssh -t {self.hostname} gpudock"

    @property
    def errors(self) -> int:
        """What the ERR column counts: doctor errors, NVML failing, GPUs in error, GPUs with an Xid."""
        return len(self.doctor_errors) + (1 if self.nvml_error else 0) + self.gpu_errors + self.xid_gpus

    def to_json(self) -> dict:
        out = {
            "hostname": self.hostname,
            "stale": self.stale,
            "stale_reason": self.stale_reason,
            "last_poll": self.last_poll,
            "sources": list(self.sources),
            "instances": list(self.instances),
            "driver_version": self.driver_version,
            "source": self.source,
            "nvml_error": self.nvml_error,
            "docker_up": self.docker_up,
            "doctor": {"errors": [e.to_json() for e in self.doctor_errors], "warnings": self.doctor_warnings},
            "ssh": self.ssh_command,
            "summary": {
                "gpus": self.gpu_count,
                "held": self.held,
                "utilization_gpu": self.utilization,
                "memory_used_mib": self.memory_used_mib,
                "memory_total_mib": self.memory_total_mib,
                "temperature_c": self.temperature_c,
                "power_w": self.power_w,
                "holders": list(self.holder_names),
                "gpu_errors": self.gpu_errors,
                "xid_gpus": self.xid_gpus,
            },
        }
        if self.detailed:
            out["gpus"] = [g.to_json() for g in self.gpus]
        return out


def _avg(vals: list) -> float | None:
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def _sum(vals: list) -> float | None:
    vals = [v for v in vals if v is not None]
    return sum(vals) if vals else None


def _max(vals: list) -> float | None:
    vals = [v for v in vals if v is not None]
    return max(vals) if vals else None


def host_from_gpus(hostname: str, gpus: tuple[FleetGpu, ...], **rest) -> FleetHost:
    """A detailed host, its figures worked out from its GPUs."""
    gpudock = any("gpudock" in g.sources for g in gpus) or "gpudock" in rest.get("sources", ())
    return FleetHost(
        hostname=hostname,
        gpus=gpus,
        detailed=True,
        gpu_count=len(gpus),
        held=sum(1 for g in gpus if g.holders) if gpudock else None,
        utilization=_avg([g.utilization_gpu for g in gpus]),
        memory_used_mib=_sum([g.memory_used_mib for g in gpus]),
        memory_total_mib=_sum([g.memory_total_mib for g in gpus]),
        temperature_c=_max([g.temperature_c for g in gpus]),
        power_w=_sum([g.power_w for g in gpus]),
        holder_names=tuple(sorted({n for g in gpus for n in g.holder_names})),
        images=tuple(sorted({h.image for g in gpus for h in g.holders if h.image})),
        models=tuple(sorted({g.name for g in gpus if g.name})),
        gpu_errors=sum(1 for g in gpus if g.error),
        xid_gpus=sum(1 for g in gpus if (g.xid or 0) > 0),
        **rest,
    )


@dataclass(frozen=True, slots=True)
class FleetView:
    """One read of the fleet. ``ok`` False: this read failed (``error`` says why) and ``hosts`` are
    the last good read's, all marked stale (``stale`` True)."""

    prometheus: str
    hosts: tuple[FleetHost, ...] = ()
    ok: bool = True
    error: str | None = None
    stale: bool = False
    problems: tuple[str, ...] = ()  # clashing series, left-out series: in words
    taken_at: float | None = None  # Prometheus's evaluation time of the data shown
    read_at: float = field(default=0.0, compare=False)  # when this read was made (local clock)
    queries: int = 0
    seconds: float = field(default=0.0, compare=False)
    detailed: bool = True

    def host(self, name: str) -> FleetHost | None:
        for h in self.hosts:
            if h.hostname == name:
                return h
        return None

    def to_json(self) -> dict:
        return {
            "prometheus": self.prometheus,
            "ok": self.ok,
            "error": self.error,
            "stale": self.stale,
            "taken_at": self.taken_at,
            "queries": self.queries,
            "problems": list(self.problems),
            "hosts": [h.to_json() for h in self.hosts],
        }


# ---------------------------------------------------------------------------------------- sort, filter

SORT_KEYS = ("host", "util", "mem", "temp", "power", "errors", "stale")


def _key(h: FleetHost, key: str):
    if key == "util":
        return h.utilization
    if key == "mem":
        return h.memory_used_mib
    if key == "temp":
        return h.temperature_c
    if key == "power":
        return h.power_w
    if key == "errors":
        return h.errors
    return 1 if h.stale else 0


def sort_hosts(hosts: Iterable[FleetHost], key: str = "host", reverse: bool = False) -> list[FleetHost]:
    """Hosts by a column: by name A to Z, numbers highest first (an operator sorts by a number to
    find the top of it); ``reverse`` turns it round; unknown values last either way; ties by name."""
    if key not in SORT_KEYS:
        raise ValueError(f"sort by one of {', '.join(SORT_KEYS)}, not {key!r}")
    hosts = list(hosts)
    if key == "host":
        return sorted(hosts, key=lambda h: h.hostname, reverse=reverse)
    known = [h for h in hosts if _key(h, key) is not None]
    unknown = [h for h in hosts if _key(h, key) is None]
    known.sort(key=lambda h: (-_key(h, key), h.hostname) if not reverse else (_key(h, key), h.hostname))
    return known + sorted(unknown, key=lambda h: h.hostname)


def filter_hosts(hosts: Iterable[FleetHost], text: str) -> list[FleetHost]:
    """Hosts matching every word of ``text``: a part of the host's name, a GPU model, a holding
    container's name or image; or ``is:stale``, ``is:errors``, ``is:held`` (a GPU is held),
    ``is:free`` (a GPU nobody holds)."""
    words = text.lower().split()
    out = []
    for h in hosts:
        hay = [h.hostname.lower(), *(x.lower() for x in (*h.models, *h.holder_names, *h.images))]
        ok = True
        for w in words:
            if w == "is:stale":
                ok = h.stale
            elif w == "is:errors":
                ok = h.errors > 0
            elif w == "is:held":
                ok = bool(h.held)
            elif w == "is:free":
                ok = h.held is not None and h.held < h.gpu_count
            else:
                ok = any(w in s for s in hay)
            if not ok:
                break
        if ok:
            out.append(h)
    return out
