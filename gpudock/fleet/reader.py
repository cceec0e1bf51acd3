"""The fleet reader: hosts x GPUs, holders and doctor errors, read from the Prometheus HTTP API.

This module owns asking Prometheus (``POST /api/v1/query``, one instant query per read whatever
the number of hosts), turning the answer into immutable :class:`FleetView` values, and saying in
an operator's words what went wrong when it cannot: Prometheus unreachable, slow, answering
errors, refusing the credentials, or holding series of other exporters whose labels clash with
what gpudock expects. A read that fails keeps the last good view, marked stale.

What it reads: gpudock exporters' series (:mod:`gpudock.fleet.metrics`) and dcgm-exporter's
(``DCGM_FI_DEV_GPU_UTIL``, ``_FB_USED``, ``_FB_FREE``, ``_GPU_TEMP``, ``_POWER_USAGE``,
``_XID_ERRORS``; the host as ``Hostname`` or ``hostname``, both accepted), joined on the GPU's
``UUID``: a GPU both report is one GPU, with gpudock's numbers where it has them and
dcgm-exporter's otherwise, and gpudock's holders.

Freshness: a host whose exporter Prometheus scrapes now is fresh and shows its current series; a
host whose series went stale (its target is down or gone) within ``window`` still shows the last
values it had, marked stale; a gpudock host whose exporter answers but has not read its GPUs for
``stale_after`` seconds is marked stale too (NVML hung?).

Credentials never come from the command line (they would show in ``ps``): a bearer token from
``$GPUDOCK_PROMETHEUS_TOKEN`` or a file, basic auth from ``$GPUDOCK_PROMETHEUS_USER`` and
``$GPUDOCK_PROMETHEUS_PASSWORD`` or a password file (:func:`auth_from`).

Plain Python and the standard library (``urllib``): no Textual; the fleet screen only renders
what :meth:`FleetReader.read` returns, from a thread worker.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from gpudock.fleet import metrics as m

__all__ = [
    "Auth",
    "AuthError",
    "FleetError",
    "FleetGpu",
    "FleetHolder",
    "FleetHost",
    "FleetReader",
    "FleetView",
    "assemble",
    "auth_from",
    "fleet_query",
    "filter_hosts",
    "sort_hosts",
    "SORT_KEYS",
]

MIB = 1024 * 1024
PART = "fleet_part"  # the label each part of the one query is tagged with


class FleetError(Exception):
    """Prometheus could not be read; the message says what is wrong and what to do."""


class AuthError(ValueError):
    """Credentials given in a way gpudock refuses, or a credentials file that cannot be read."""


# ---------------------------------------------------------------------------------------- values


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
    hostname: str
    gpus: tuple[FleetGpu, ...] = ()
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
    def utilization(self) -> float | None:
        vals = [g.utilization_gpu for g in self.gpus if g.utilization_gpu is not None]
        return sum(vals) / len(vals) if vals else None

    @property
    def memory_used_mib(self) -> float | None:
        vals = [g.memory_used_mib for g in self.gpus if g.memory_used_mib is not None]
        return sum(vals) if vals else None

    @property
    def memory_total_mib(self) -> float | None:
        vals = [g.memory_total_mib for g in self.gpus if g.memory_total_mib is not None]
        return sum(vals) if vals else None

    @property
    def temperature_c(self) -> float | None:
        vals = [g.temperature_c for g in self.gpus if g.temperature_c is not None]
        return max(vals) if vals else None

    @property
    def power_w(self) -> float | None:
        vals = [g.power_w for g in self.gpus if g.power_w is not None]
        return sum(vals) if vals else None

    @property
    def holder_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n for g in self.gpus for n in g.holder_names))

    @property
    def errors(self) -> int:
        """What the ERRORS column counts: doctor errors, NVML failing, GPUs in error, Xid errors."""
        return (
            len(self.doctor_errors)
            + (1 if self.nvml_error else 0)
            + sum(1 for g in self.gpus if g.error or (g.xid or 0) > 0)
        )

    def to_json(self) -> dict:
        return {
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
            "gpus": [g.to_json() for g in self.gpus],
        }


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


# ---------------------------------------------------------------------------------------- the query

# (part, metric, labels kept): gpudock's series; the host is "hostname".
_GPUDOCK_PARTS = (
    ("info", m.GPU_INFO, ("UUID", "gpu", "pci_bus_id", "device", "modelName")),
    ("util", m.UTILIZATION, ("UUID",)),
    ("used", m.MEMORY_USED, ("UUID",)),
    ("total", m.MEMORY_TOTAL, ("UUID",)),
    ("temp", m.TEMPERATURE, ("UUID",)),
    ("power", m.POWER, ("UUID",)),
    ("limit", m.POWER_LIMIT, ("UUID",)),
    ("gpu_error", m.GPU_ERROR, ("UUID", "error")),
    ("holder", m.HOLDER, ("UUID", "container", "container_id", "image", "mechanism")),
    ("doctor", m.DOCTOR_FINDING + '{severity=~"error|warning"}', ("id", "severity", "title")),
    ("driver", m.DRIVER, ("driver_version", "source")),
    ("nvml_error", m.NVML_ERROR, ("error",)),
    ("docker", m.DOCKER_UP, ()),
    ("poll", m.LAST_POLL, ("instance",)),
)
# dcgm-exporter's series; the host is "Hostname", "hostname", or else the scrape target.
_DCGM_HOST = ("hostname", "Hostname", "instance")
_DCGM_PARTS = (
    ("dcgm_util", m.DCGM_UTIL, ("UUID", "gpu", "pci_bus_id", "device", "modelName")),
    ("dcgm_used", m.DCGM_FB_USED, ("UUID",)),
    ("dcgm_free", m.DCGM_FB_FREE, ("UUID",)),
    ("dcgm_temp", m.DCGM_TEMP, ("UUID",)),
    ("dcgm_power", m.DCGM_POWER, ("UUID",)),
    ("dcgm_xid", m.DCGM_XID, ("UUID",)),
)


def _part(tag: str, selector: str, by: Iterable[str], fresh: str, on: Iterable[str], window: str) -> str:
    """Current values for hosts scraped now; for the others (stale), the last values in ``window``."""
    by_s = ", ".join(by)
    on_s = ", ".join(on)
    now = f"max by ({by_s}) ({selector})"
    last = f"(max by ({by_s}) (last_over_time({selector}[{window}])) unless on({on_s}) {fresh})"
    return f'label_replace({now} or {last}, "{PART}", "{tag}", "", "")'


def fleet_query(window: str = "10m") -> str:
    """The one PromQL query a read sends: every part tagged with ``fleet_part``."""
    if not re.fullmatch(r"\d+[smhd]", window):
        raise ValueError(f"window {window!r}: give a Prometheus duration such as 10m, 1h")
    g_fresh = f"group by (hostname) ({m.LAST_POLL})"
    d_fresh = f"group by ({', '.join(_DCGM_HOST)}) ({m.DCGM_UTIL})"
    parts = [_part(t, sel, ("hostname", *labels), g_fresh, ("hostname",), window) for t, sel, labels in _GPUDOCK_PARTS]
    parts += [_part(t, sel, (*_DCGM_HOST, *labels), d_fresh, _DCGM_HOST, window) for t, sel, labels in _DCGM_PARTS]
    parts.append(f'label_replace({g_fresh}, "{PART}", "fresh", "", "")')
    parts.append(f'label_replace({d_fresh}, "{PART}", "dcgm_fresh", "", "")')
    return " or ".join(parts)


# ---------------------------------------------------------------------------------------- credentials


@dataclass(frozen=True, slots=True)
class Auth:
    bearer: str | None = None
    basic: tuple[str, str] | None = None

    def header(self) -> str | None:
        if self.bearer:
            return f"Bearer {self.bearer}"
        if self.basic:
            return "Basic " + base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
        return None

    def describe(self) -> str:
        if self.bearer:
            return "a bearer token"
        if self.basic:
            return f"basic auth as {self.basic[0]!r}"
        return "no credentials"


def _read_secret(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except OSError as e:
        raise AuthError(f"cannot read the {what} file {path}: {e.strerror or e}") from None
    if not text:
        raise AuthError(f"the {what} file {path} is empty")
    return text


def auth_from(
    environ: Mapping[str, str] | None = None,
    *,
    token_file: str | None = None,
    user: str | None = None,
    password_file: str | None = None,
) -> Auth:
    """Credentials from the environment or files (never from an argument's value).

    Bearer token: ``token_file``, else ``$GPUDOCK_PROMETHEUS_TOKEN_FILE``, else
    ``$GPUDOCK_PROMETHEUS_TOKEN``. Basic auth: ``user`` or ``$GPUDOCK_PROMETHEUS_USER``, with the
    password from ``password_file``, ``$GPUDOCK_PROMETHEUS_PASSWORD_FILE`` or
    ``$GPUDOCK_PROMETHEUS_PASSWORD``. Both given: refused (say which one to use).
    """
    env = os.environ if environ is None else environ
    token = None
    tf = token_file or env.get("GPUDOCK_PROMETHEUS_TOKEN_FILE")
    if tf:
        token = _read_secret(tf, "bearer token")
    elif env.get("GPUDOCK_PROMETHEUS_TOKEN"):
        token = env["GPUDOCK_PROMETHEUS_TOKEN"].strip()
    name = user or env.get("GPUDOCK_PROMETHEUS_USER")
    password = None
    pf = password_file or env.get("GPUDOCK_PROMETHEUS_PASSWORD_FILE")
    if pf:
        password = _read_secret(pf, "password")
    elif env.get("GPUDOCK_PROMETHEUS_PASSWORD") is not None:
        password = env["GPUDOCK_PROMETHEUS_PASSWORD"]
    if password is not None and not name:
        raise AuthError("a Prometheus password is given but no user: set GPUDOCK_PROMETHEUS_USER or --user NAME")
    if name and password is None:
        raise AuthError(
            f"user {name!r} is given but no password: set GPUDOCK_PROMETHEUS_PASSWORD, or "
            "GPUDOCK_PROMETHEUS_PASSWORD_FILE / --password-file FILE"
        )
    if token and name:
        raise AuthError("both a bearer token and basic auth are given: keep the one your Prometheus expects")
    return Auth(bearer=token, basic=(name, password) if name else None)


def check_url(url: str) -> str:
    """The base URL (no trailing slash); refused when it is not http(s) or carries a password."""
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.netloc:
        raise ValueError(f"{url!r}: give Prometheus's address as http://HOST:PORT (e.g. http://prometheus:9090)")
    if u.password is not None:
        raise ValueError(
            f"{u.scheme}://{u.hostname}…: a password in the URL shows in ps and shell history; put it in "
            "GPUDOCK_PROMETHEUS_PASSWORD (or a file named by --password-file) and the user in --user"
        )
    return url.rstrip("/")


# ---------------------------------------------------------------------------------------- reading


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or math.isinf(f) else f


def _int(v) -> int | None:
    f = _num(v)
    return int(f) if f is not None else None


def _host_of(labels: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(host, clash) of a dcgm-exporter series: ``hostname``, else ``Hostname``, else the target's
    address without its port. ``clash``: both spellings with different values."""
    a, b = labels.get("hostname"), labels.get("Hostname")
    clash = f"hostname={a!r} and Hostname={b!r}" if a and b and a != b else None
    if a or b:
        return a or b, clash
    inst = labels.get("instance")
    if not inst:
        return None, clash
    if inst.startswith("["):  # [v6]:port
        return inst[1:].split("]", 1)[0], clash
    return (inst.rsplit(":", 1)[0] if inst.count(":") == 1 else inst), clash


@dataclass
class _GpuAcc:
    uuid: str
    vals: dict = field(default_factory=dict)
    dcgm: dict = field(default_factory=dict)
    holders: dict = field(default_factory=dict)


@dataclass
class _HostAcc:
    name: str
    gpus: dict = field(default_factory=dict)  # uuid -> _GpuAcc
    doctor_errors: dict = field(default_factory=dict)
    doctor_warnings: set = field(default_factory=set)
    driver: str | None = None
    source: str | None = None
    nvml_error: str | None = None
    docker: float | None = None
    instances: set = field(default_factory=set)
    sources: set = field(default_factory=set)
    fresh: bool = False
    last_poll: float | None = None


_GPUDOCK_VALUE = {"util": "utilization_gpu", "temp": "temperature_c", "power": "power_w", "limit": "power_limit_w"}
_DCGM_VALUE = {"dcgm_util": "utilization_gpu", "dcgm_temp": "temperature_c", "dcgm_power": "power_w"}


def assemble(
    result: list[dict], taken_at: float | None, *, prometheus: str = "", stale_after: float = 60.0
) -> tuple[tuple[FleetHost, ...], tuple[str, ...]]:
    """The hosts (sorted by name) and the problems found, from the query's result vector."""
    hosts: dict[str, _HostAcc] = {}
    problems: dict[str, None] = {}
    unnamed: dict[str, int] = {}
    dcgm_gpus: dict[str, tuple[str, dict]] = {}  # uuid -> (host, labels+values) from dcgm-exporter
    dcgm_fresh: set[str] = set()  # hosts whose dcgm-exporter Prometheus scrapes now

    def host(name: str) -> _HostAcc:
        h = hosts.get(name)
        if h is None:
            h = hosts[name] = _HostAcc(name)
        return h

    for item in result:
        labels = item.get("metric") or {}
        value = (item.get("value") or [None, None])[1]
        part = labels.get(PART)
        if part is None:
            continue
        if part.startswith("dcgm"):
            name, clash = _host_of(labels)
            if clash:
                problems[f"dcgm-exporter series carry {clash}: shown under {name!r}"] = None
            if part == "dcgm_fresh":
                if name:
                    dcgm_fresh.add(name)
                continue
            uuid = labels.get("UUID") or labels.get("uuid")
            if not name or not uuid:
                unnamed[part] = unnamed.get(part, 0) + 1
                continue
            hname, acc = dcgm_gpus.setdefault(uuid, (name, {}))
            if hname != name:
                problems[f"GPU {uuid} is reported by dcgm-exporter on two hosts: {hname} and {name}"] = None
            acc[part] = value
            if part == "dcgm_util":
                acc["labels"] = labels
            continue
        name = labels.get("hostname")
        if not name:
            unnamed[part] = unnamed.get(part, 0) + 1
            continue
        h = host(name)
        h.sources.add("gpudock")
        if part == "fresh":
            h.fresh = True
        elif part == "poll":
            h.last_poll = max(filter(None, (h.last_poll, _num(value))), default=None)
            if labels.get("instance"):
                h.instances.add(labels["instance"])
        elif part == "driver":
            h.driver, h.source = labels.get("driver_version") or None, labels.get("source") or None
        elif part == "nvml_error":
            h.nvml_error = labels.get("error") or "NVML cannot start"
        elif part == "docker":
            h.docker = _num(value)
        elif part == "doctor":
            if labels.get("severity") == "error":
                h.doctor_errors[labels.get("id", "?")] = labels.get("title", "")
            else:
                h.doctor_warnings.add(labels.get("id", "?"))
        else:
            uuid = labels.get("UUID")
            if not uuid:
                unnamed[part] = unnamed.get(part, 0) + 1
                continue
            g = h.gpus.get(uuid)
            if g is None:
                g = h.gpus[uuid] = _GpuAcc(uuid)
            if part == "info":
                g.vals.update(
                    index=_int(labels.get("gpu")),
                    name=labels.get("modelName") or None,
                    pci_bus_id=labels.get("pci_bus_id") or None,
                    device=labels.get("device") or None,
                )
            elif part in _GPUDOCK_VALUE:
                g.vals[_GPUDOCK_VALUE[part]] = _num(value)
            elif part == "used":
                g.vals["memory_used_mib"] = _mib(value)
            elif part == "total":
                g.vals["memory_total_mib"] = _mib(value)
            elif part == "gpu_error":
                g.vals["error"] = labels.get("error") or "error"
            elif part == "holder":
                key = (labels.get("container_id", ""), labels.get("container", ""))
                g.holders[key] = FleetHolder(
                    labels.get("container", ""),
                    labels.get("container_id", ""),
                    labels.get("image", ""),
                    labels.get("mechanism", ""),
                )

    # A UUID two gpudock hosts report: a cloned VM, a copied scenario, or two exporters on one host
    # with different --hostname. Both keep it; the operator is told.
    owner: dict[str, str] = {}
    for h in hosts.values():
        for uuid in h.gpus:
            if uuid in owner and owner[uuid] != h.name:
                problems[f"GPU {uuid} is reported by two gpudock hosts: {owner[uuid]} and {h.name}"] = None
            owner.setdefault(uuid, h.name)
        if len(h.instances) > 1:
            problems[
                f"host {h.name} is reported by {len(h.instances)} scrape targets ({', '.join(sorted(h.instances))}): "
                "give each exporter its own --hostname"
            ] = None

    # dcgm-exporter's GPUs: onto gpudock's GPU with the same UUID, else onto their own host.
    for uuid, (name, acc) in dcgm_gpus.items():
        target = hosts.get(owner[uuid]) if uuid in owner else host(name)
        target.sources.add("dcgm-exporter")
        if uuid not in owner:
            target.fresh = target.fresh or name in dcgm_fresh
            if acc.get("labels", {}).get("instance"):
                target.instances.add(acc["labels"]["instance"])
        g = target.gpus.get(uuid)
        if g is None:
            g = target.gpus[uuid] = _GpuAcc(uuid)
        g.dcgm = acc

    for part, n in sorted(unnamed.items()):
        what = "hostname" if not part.startswith("dcgm") else "UUID or host"
        problems[
            f"{n} series of {_part_metric(part)} have no {what} label (another exporter's, with the same "
            "name?): left out"
        ] = None

    out = []
    for name in sorted(hosts):
        h = hosts[name]
        gpus = tuple(sorted((_gpu(g) for g in h.gpus.values()), key=lambda g: (g.index is None, g.index, g.uuid)))
        stale, reason = not h.fresh, None
        if stale:
            reason = "Prometheus has no current series of it (its exporter is down, or no longer scraped)"
        elif "gpudock" in h.sources and h.last_poll is not None and taken_at is not None:
            age = taken_at - h.last_poll
            if age > stale_after:
                stale, reason = True, f"its exporter has not read the GPUs for {age:.0f} s (NVML hung?)"
        out.append(
            FleetHost(
                hostname=name,
                gpus=gpus,
                doctor_errors=tuple(DoctorError(i, t) for i, t in sorted(h.doctor_errors.items())),
                doctor_warnings=len(h.doctor_warnings),
                driver_version=h.driver,
                source=h.source,
                nvml_error=h.nvml_error,
                docker_up=None if h.docker is None else h.docker >= 1,
                instances=tuple(sorted(h.instances)),
                sources=tuple(s for s in ("gpudock", "dcgm-exporter") if s in h.sources),
                stale=stale,
                stale_reason=reason,
                last_poll=h.last_poll,
            )
        )
    return tuple(out), tuple(problems)


def _part_metric(part: str) -> str:
    for t, sel, _ in (*_GPUDOCK_PARTS, *_DCGM_PARTS):
        if t == part:
            return sel.split("{")[0]
    return part


def _mib(v) -> float | None:
    f = _num(v)
    return round(f / MIB, 1) if f is not None else None


def _gpu(g: _GpuAcc) -> FleetGpu:
    v, d = dict(g.vals), g.dcgm
    sources = []
    if v:
        sources.append("gpudock")
    if d:
        sources.append("dcgm-exporter")
        lab = d.get("labels", {})
        v.setdefault("index", _int(lab.get("gpu")))
        v.setdefault("name", lab.get("modelName") or None)
        v.setdefault("pci_bus_id", lab.get("pci_bus_id") or None)
        v.setdefault("device", lab.get("device") or None)
        for part, key in _DCGM_VALUE.items():
            if v.get(key) is None and part in d:
                v[key] = _num(d[part])
        used, free = _num(d.get("dcgm_used")), _num(d.get("dcgm_free"))
        if v.get("memory_used_mib") is None and used is not None:
            v["memory_used_mib"] = used
        if v.get("memory_total_mib") is None and used is not None and free is not None:
            v["memory_total_mib"] = used + free
        if "dcgm_xid" in d:
            v["xid"] = _int(d["dcgm_xid"])
    holders = tuple(sorted(g.holders.values(), key=lambda h: (h.container, h.container_id)))
    return FleetGpu(uuid=g.uuid, holders=holders, sources=tuple(sources), **v)


class FleetReader:
    """Reads the fleet from one Prometheus; keeps the last good view for when a read fails."""

    def __init__(
        self,
        url: str,
        *,
        auth: Auth | None = None,
        timeout: float = 10.0,
        window: str = "10m",
        stale_after: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = check_url(url)
        self.auth = auth or Auth()
        self.timeout = timeout
        self.window = window
        self.stale_after = stale_after
        self.query = fleet_query(window)
        self.ssl_context = ssl_context
        self.last_good: FleetView | None = None

    def read(self) -> FleetView:
        """One read: a fresh view, or (on failure) the last good one marked stale with the reason."""
        t0 = time.monotonic()
        try:
            result, taken_at = self._query(self.query)
            hosts, problems = assemble(result, taken_at, prometheus=self.url, stale_after=self.stale_after)
        except FleetError as e:
            last = self.last_good
            hosts = (
                tuple(replace(h, stale=True, stale_reason=h.stale_reason or "not read") for h in last.hosts)
                if last
                else ()
            )
            return FleetView(
                self.url,
                hosts,
                ok=False,
                error=str(e),
                stale=True,
                problems=last.problems if last else (),
                taken_at=last.taken_at if last else None,
                read_at=time.time(),
                queries=1,
                seconds=time.monotonic() - t0,
            )
        view = FleetView(
            self.url,
            hosts,
            problems=problems,
            taken_at=taken_at,
            read_at=time.time(),
            queries=1,
            seconds=time.monotonic() - t0,
        )
        self.last_good = view
        return view

    def _query(self, query: str) -> tuple[list[dict], float | None]:
        """POST /api/v1/query: (result vector, evaluation time). FleetError in an operator's words."""
        body = urllib.parse.urlencode({"query": query, "timeout": f"{max(1, int(self.timeout))}s"}).encode()
        req = urllib.request.Request(f"{self.url}/api/v1/query", data=body, method="POST")
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
        req.add_header("Accept", "application/json")
        header = self.auth.header()
        if header:
            req.add_header("Authorization", header)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.ssl_context) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise FleetError(self._http_error(e)) from None
        except TimeoutError:
            raise FleetError(self._slow()) from None
        except urllib.error.URLError as e:
            raise FleetError(self._unreachable(e.reason)) from None
        except (ConnectionError, OSError) as e:
            raise FleetError(self._unreachable(e)) from None
        try:
            doc = json.loads(raw)
        except ValueError:
            raise FleetError(self._not_prometheus()) from None
        if not isinstance(doc, dict) or doc.get("status") != "success":
            err = doc.get("error") if isinstance(doc, dict) else None
            raise FleetError(self._query_error(err or "no status"))
        data = doc.get("data") or {}
        if data.get("resultType") != "vector":
            raise FleetError(self._not_prometheus())
        result = data.get("result") or []
        taken_at = None
        if result:
            taken_at = _num((result[0].get("value") or [None])[0])
        return result, taken_at

    # -- what went wrong, in words ----------------------------------------------------------------

    def _unreachable(self, reason) -> str:
        if isinstance(reason, TimeoutError):
            return self._slow()
        if isinstance(reason, ConnectionRefusedError):
            return (
                f"Prometheus at {self.url} does not answer (connection refused): is it running, and is this "
                "its address and port?"
            )
        if isinstance(reason, socket.gaierror):
            host = urllib.parse.urlsplit(self.url).hostname
            return f"cannot find the host {host!r} of {self.url} (name lookup failed): check the URL"
        if isinstance(reason, ssl.SSLError):
            why = getattr(reason, "reason", None) or reason
            return f"TLS with {self.url} failed ({why}): check the URL's scheme (http/https) and the certificate"
        text = getattr(reason, "strerror", None) or str(reason)
        return f"cannot reach Prometheus at {self.url}: {text}"

    def _slow(self) -> str:
        return (
            f"Prometheus at {self.url} did not answer within {self.timeout:g} s (overloaded, or a slow link?): "
            "try again, or give it longer with --timeout"
        )

    def _not_prometheus(self) -> str:
        return (
            f"{self.url} answered, but not as the Prometheus HTTP API does: is this Prometheus's own address "
            "(e.g. http://prometheus:9090), not Grafana's or an exporter's?"
        )

    def _query_error(self, err: str) -> str:
        if "many-to-many" in err or "same labelset" in err or "duplicate series" in err:
            return (
                f"Prometheus could not join the fleet's series: series of another exporter clash with gpudock's "
                f"or dcgm-exporter's names and labels ({err}); rename them at scrape time (metric_relabel_configs)"
            )
        return f"Prometheus could not run the fleet query: {err}"

    def _http_error(self, e: urllib.error.HTTPError) -> str:
        code = e.code
        try:
            doc = json.loads(e.read() or b"{}")
            err = doc.get("error") if isinstance(doc, dict) else None
        except ValueError:
            err = None
        if code in (401, 403):
            return (
                f"Prometheus at {self.url} refused the request (HTTP {code}) with {self.auth.describe()}: set "
                "GPUDOCK_PROMETHEUS_TOKEN (or --token-file) for a bearer token, or GPUDOCK_PROMETHEUS_USER and "
                "GPUDOCK_PROMETHEUS_PASSWORD (or --user and --password-file) for basic auth"
            )
        if code == 404:
            return (
                f"{self.url} has no /api/v1/query (HTTP 404): give Prometheus's base URL, e.g. http://prometheus:9090"
            )
        if code in (400, 422) and err:
            return self._query_error(err)
        if code == 503:
            return f"Prometheus at {self.url} is not ready (HTTP 503: starting, or shutting down): try again shortly"
        if code in (502, 504):
            return (
                f"the proxy in front of Prometheus at {self.url} answered HTTP {code} ({e.reason}): "
                "Prometheus is down or slow behind it"
            )
        if code == 408 or (err and "timeout" in err.lower()):
            return self._slow()
        return f"Prometheus at {self.url} answered HTTP {code} ({e.reason})" + (f": {err}" if err else "")


# ---------------------------------------------------------------------------------------- sort, filter

SORT_KEYS = ("host", "util", "mem", "temp", "power", "errors", "stale")


def sort_hosts(hosts: Iterable[FleetHost], key: str = "host", reverse: bool = False) -> list[FleetHost]:
    """Hosts by a column (unknown values last whatever the direction); ties by name."""
    if key not in SORT_KEYS:
        raise ValueError(f"sort by one of {', '.join(SORT_KEYS)}, not {key!r}")
    hosts = list(hosts)
    if key == "host":
        return sorted(hosts, key=lambda h: h.hostname, reverse=reverse)

    def value(h: FleetHost):
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

    known = [h for h in hosts if value(h) is not None]
    unknown = [h for h in hosts if value(h) is None]
    # the busiest first by default: an operator sorts by a number to find the top of it
    known.sort(key=lambda h: (-value(h), h.hostname) if not reverse else (value(h), h.hostname))
    return known + sorted(unknown, key=lambda h: h.hostname)


def filter_hosts(hosts: Iterable[FleetHost], text: str) -> list[FleetHost]:
    """Hosts matching every word of ``text``: a part of the host's name, a GPU model, a holding
    container's name or image; or ``is:stale``, ``is:errors``, ``is:held``, ``is:free`` (a GPU
    nobody holds)."""
    words = text.lower().split()
    out = []
    for h in hosts:
        hay = [h.hostname.lower()]
        hay += [(g.name or "").lower() for g in h.gpus]
        hay += [x.lower() for g in h.gpus for hd in g.holders for x in (hd.container, hd.image)]
        ok = True
        for w in words:
            if w == "is:stale":
                ok = h.stale
            elif w == "is:errors":
                ok = h.errors > 0
            elif w == "is:held":
                ok = any(g.holders for g in h.gpus)
            elif w == "is:free":
                ok = any(not g.holders for g in h.gpus)
            else:
                ok = any(w in s for s in hay)
            if not ok:
                break
        if ok:
            out.append(h)
    return out
