"""The fleet reader: hosts x GPUs, holders and doctor errors, read from the Prometheus HTTP API.

This module owns asking Prometheus (``POST /api/v1/query``: two instant queries per read, sent
together so that Prometheus evaluates them on two cores, and one more only when some hosts went
stale, whatever the number of hosts; the PromQL is :mod:`gpudock.fleet.promql`'s), turning the
answer into :mod:`gpudock.fleet.view` values, and saying in an operator's words what went wrong
when it cannot: Prometheus unreachable, slow, answering errors, refusing the credentials, or
holding series of other exporters whose labels clash with what gpudock expects. A read that
fails keeps the last good view, marked stale.

What it reads: gpudock exporters' series (:mod:`gpudock.fleet.metrics`) and dcgm-exporter's
(``DCGM_FI_DEV_GPU_UTIL``, ``_FB_USED``, ``_FB_FREE``, ``_GPU_TEMP``, ``_POWER_USAGE``,
``_XID_ERRORS``; the host as ``Hostname`` or ``hostname``, both accepted), joined on the GPU's
``UUID``: a GPU both report is one GPU, with gpudock's numbers where it has them and
dcgm-exporter's otherwise, and gpudock's holders; it belongs to gpudock's host.

Freshness: a host Prometheus scrapes now shows its current series; a host whose series went stale
(its target is down or gone) within ``window`` still shows the last values it had, marked stale;
a gpudock host whose exporter answers but has not read its GPUs for ``stale_after`` seconds is
marked stale too (NVML hung?).

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
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from gpudock.fleet.promql import PART, Scope, check_window, detail_parts, freshness_parts, summary_parts, union
from gpudock.fleet.view import (
    SORT_KEYS,
    DoctorError,
    FleetGpu,
    FleetHolder,
    FleetHost,
    FleetView,
    filter_hosts,
    host_from_gpus,
    sort_hosts,
)

__all__ = [
    "Auth",
    "AuthError",
    "FleetError",
    "FleetGpu",
    "FleetHolder",
    "FleetHost",
    "FleetReader",
    "FleetView",
    "PART",
    "SORT_KEYS",
    "assemble",
    "auth_from",
    "check_url",
    "filter_hosts",
    "sort_hosts",
]

MIB = 1024 * 1024


class FleetError(Exception):
    """Prometheus could not be read; the message says what is wrong and what to do."""


class AuthError(ValueError):
    """Credentials given in a way gpudock refuses, or a credentials file that cannot be read."""


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


# ---------------------------------------------------------------------------------------- the answer


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or math.isinf(f) else f


def _int(v) -> int | None:
    f = _num(v)
    return int(f) if f is not None else None


def _mib(v) -> float | None:
    f = _num(v)
    return round(f / MIB, 1) if f is not None else None


def dcgm_host(labels: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(host, clash) of a dcgm-exporter series: ``hostname``, else ``Hostname``, else the target's
    address without its port. ``clash``: both spellings, with different values."""
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
class _Gpu:
    vals: dict = field(default_factory=dict)
    holders: dict = field(default_factory=dict)


@dataclass
class _Host:
    name: str
    gpus: dict = field(default_factory=dict)  # gpu index (str) -> _Gpu
    summary: dict = field(default_factory=dict)
    holders: set = field(default_factory=set)  # (container, image) in a summary
    models: set = field(default_factory=set)
    doctor_errors: dict = field(default_factory=dict)
    doctor_warnings: set = field(default_factory=set)
    driver: str | None = None
    source: str | None = None
    nvml_error: str | None = None
    docker: float | None = None
    instances: set = field(default_factory=set)
    fresh: bool = False
    seen: bool = False
    last_poll: float | None = None


@dataclass
class _DcgmHost:
    name: str
    gpus: dict = field(default_factory=dict)  # uuid -> {part: value, "labels": …}
    summary: dict = field(default_factory=dict)
    models: set = field(default_factory=set)
    instances: set = field(default_factory=set)
    fresh: bool = False
    seen: bool = False


_GPU_VALUE = {"util": "utilization_gpu", "temp": "temperature_c", "power": "power_w", "limit": "power_limit_w"}
_DCGM_VALUE = {"dcgm_util": "utilization_gpu", "dcgm_temp": "temperature_c", "dcgm_power": "power_w"}
_PART_METRIC = {
    "info": "gpudock_gpu_info",
    "s_models": "gpudock_gpu_info",
    "util": "gpudock_gpu_utilization_percent",
    "s_util": "gpudock_gpu_utilization_percent",
    "holder": "gpudock_gpu_holder_info",
    "s_holders": "gpudock_gpu_holder_info",
    "poll": "gpudock_exporter_last_poll_timestamp_seconds",
    "dcgm_util": "DCGM_FI_DEV_GPU_UTIL",
    "s_dmodels": "DCGM_FI_DEV_GPU_UTIL",
}


class _Answer:
    """Sorts a query's result vector into hosts, and what is wrong with it into problems."""

    def __init__(self) -> None:
        self.hosts: dict[str, _Host] = {}
        self.dcgm: dict[str, _DcgmHost] = {}
        self.problems: dict[str, None] = {}
        self.unnamed: dict[str, int] = {}
        self.clashing_uuids: dict[str, int] = {}

    def host(self, name: str) -> _Host:
        h = self.hosts.get(name)
        if h is None:
            h = self.hosts[name] = _Host(name)
        return h

    def dhost(self, name: str) -> _DcgmHost:
        h = self.dcgm.get(name)
        if h is None:
            h = self.dcgm[name] = _DcgmHost(name)
        return h

    def add(self, item: dict) -> None:
        labels = item.get("metric") or {}
        value = (item.get("value") or [None, None])[1]
        part = labels.get(PART)
        if part is None:
            return
        if part == "s_clash":
            self.clashing_uuids[labels.get("UUID", "?")] = _int(value) or 2
        elif part.startswith(("dcgm", "s_d")):
            self._dcgm(part, labels, value)
        else:
            self._gpudock(part, labels, value)

    def _gpudock(self, part: str, labels: dict, value) -> None:
        name = labels.get("hostname")
        if not name:
            if part in _PART_METRIC:  # count each kind of series once, not each part over it
                self.unnamed[_PART_METRIC[part]] = self.unnamed.get(_PART_METRIC[part], 0) + 1
            return
        h = self.host(name)
        if part == "fresh":
            h.fresh = True
        elif part == "seen":
            h.seen = True
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
        elif part.startswith("s_"):
            if part == "s_models":
                if labels.get("modelName"):
                    h.models.add(labels["modelName"])
                h.summary["count"] = h.summary.get("count", 0) + (_int(value) or 0)
            elif part == "s_holders":
                h.holders.add((labels.get("container", ""), labels.get("image", "")))
            elif part == "s_xid":  # GPUs dcgm-exporter also reports, by whether their last Xid is 0
                n = _int(value) or 0
                h.summary["s_with_dcgm"] = h.summary.get("s_with_dcgm", 0) + n
                if labels.get("xid") == "1":
                    h.summary["s_xid"] = n
            else:
                h.summary[part] = _num(value)
        else:
            g = h.gpus.get(labels.get("gpu", "?"))
            if g is None:
                g = h.gpus[labels.get("gpu", "?")] = _Gpu()
            if part == "info":
                if not labels.get("UUID"):
                    self.unnamed["gpudock_gpu_info (UUID)"] = self.unnamed.get("gpudock_gpu_info (UUID)", 0) + 1
                g.vals.update(
                    uuid=labels.get("UUID") or "",
                    index=_int(labels.get("gpu")),
                    name=labels.get("modelName") or None,
                    pci_bus_id=labels.get("pci_bus_id") or None,
                    device=labels.get("device") or None,
                )
            elif part in _GPU_VALUE:
                g.vals[_GPU_VALUE[part]] = _num(value)
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

    def _dcgm(self, part: str, labels: dict, value) -> None:
        name, clash = dcgm_host(labels)
        if clash:
            self.problems[f"dcgm-exporter series carry {clash}: shown under {name!r}"] = None
        if not name:
            self.unnamed[_PART_METRIC.get(part, "DCGM_FI_DEV_*")] = 1
            return
        uuid = labels.get("UUID") or labels.get("uuid")
        per_gpu = part.startswith("dcgm_") and part not in ("dcgm_fresh", "dcgm_seen")
        if per_gpu and not uuid:
            key = _PART_METRIC.get(part, "DCGM_FI_DEV_*") + " (UUID)"
            self.unnamed[key] = self.unnamed.get(key, 0) + 1
            return
        h = self.dhost(name)
        if labels.get("instance"):
            h.instances.add(labels["instance"])
        if part == "dcgm_fresh":
            h.fresh = True
        elif part == "dcgm_seen":
            h.seen = True
        elif part.startswith("s_"):
            if part == "s_dmodels":
                if labels.get("modelName"):
                    h.models.add(labels["modelName"])
                h.summary["count"] = h.summary.get("count", 0) + (_int(value) or 0)
            else:
                h.summary[part] = _num(value)
        else:
            acc = h.gpus.setdefault(uuid, {})
            acc[part] = value
            if part == "dcgm_util":
                acc["labels"] = labels

    # -- into values ------------------------------------------------------------------------------

    def result(self, detailed: bool, taken_at: float | None, stale_after: float):
        owner: dict[str, str] = {}  # GPU UUID -> the gpudock host reporting it
        for h in self.hosts.values():
            for g in h.gpus.values():
                uuid = g.vals.get("uuid")
                if not uuid:
                    continue
                if uuid in owner and owner[uuid] != h.name:
                    self.problems[f"GPU {uuid} is reported by two gpudock hosts: {owner[uuid]} and {h.name}"] = None
                owner.setdefault(uuid, h.name)
            if len(h.instances) > 1:
                self.problems[
                    f"host {h.name} is reported by {len(h.instances)} scrape targets "
                    f"({', '.join(sorted(h.instances))}): give each exporter its own --hostname"
                ] = None
        for uuid, n in sorted(self.clashing_uuids.items()):
            self.problems[
                f"GPU {uuid} is reported by {n} gpudock hosts (a cloned machine, or two exporters on one host "
                "with different --hostname?)"
            ] = None

        dcgm_extra: dict[str, dict[str, dict]] = {}  # gpudock host -> uuid -> dcgm values
        out: list[FleetHost] = []
        for d in self.dcgm.values():
            if d.name in self.hosts:  # gpudock's host under the same name: one host, gpudock's figures
                for u, v in d.gpus.items():
                    dcgm_extra.setdefault(d.name, {})[u] = v
                continue
            mine = {u: v for u, v in d.gpus.items() if u not in owner}
            for u, v in d.gpus.items():
                if u in owner:
                    dcgm_extra.setdefault(owner[u], {})[u] = v
            covered = int(d.summary.get("s_dcovered") or 0)
            if detailed and (mine or not d.gpus):
                gpus = tuple(sorted((_dcgm_gpu(u, v) for u, v in mine.items()), key=_gpu_order))
                if gpus or not d.gpus:
                    out.append(host_from_gpus(d.name, gpus, **self._dcgm_rest(d)))
            elif not detailed and d.summary and covered < d.summary.get("count", 0):
                if covered:
                    self.problems[
                        f"dcgm-exporter host {d.name} reports {d.summary.get('count', 0)} GPUs, of which gpudock "
                        f"reports {covered} under another host name"
                    ] = None
                out.append(self._dcgm_summary(d))

        for h in self.hosts.values():
            stale, reason = self._staleness(h.fresh, h.last_poll, taken_at, stale_after, gpudock=True)
            rest = {
                "doctor_errors": tuple(DoctorError(i, t) for i, t in sorted(h.doctor_errors.items())),
                "doctor_warnings": len(h.doctor_warnings),
                "driver_version": h.driver,
                "source": h.source,
                "nvml_error": h.nvml_error,
                "docker_up": None if h.docker is None else h.docker >= 1,
                "instances": tuple(sorted(h.instances)),
                "stale": stale,
                "stale_reason": reason,
                "last_poll": h.last_poll,
            }
            if detailed:
                extra = dcgm_extra.get(h.name, {})
                gpus = []
                for g in h.gpus.values():
                    uuid = g.vals.get("uuid") or ""
                    gpus.append(_gpudock_gpu(g, extra.get(uuid)))
                own = {g.uuid for g in gpus}
                # GPUs only its dcgm-exporter reports (gpudock's exporter does not see them: NVML fails?)
                gpus += [_dcgm_gpu(u, v) for u, v in extra.items() if u not in own]
                gpus.sort(key=_gpu_order)
                src = ("gpudock", "dcgm-exporter") if extra else ("gpudock",)
                out.append(host_from_gpus(h.name, tuple(gpus), sources=src, **rest))
            else:
                out.append(self._gpudock_summary(h, rest))
        out.sort(key=lambda x: x.hostname)
        for part, n in sorted(self.unnamed.items()):
            what, _, lab = part.partition(" (")
            label = lab.rstrip(")") if lab else ("hostname" if what.startswith("gpudock") else "UUID or host")
            self.problems[
                f"{n} series of {what} have no {label} label (another exporter's, with the same name?): left out"
            ] = None
        return tuple(out), tuple(self.problems)

    @staticmethod
    def _staleness(fresh: bool, last_poll, taken_at, stale_after: float, gpudock: bool):
        if not fresh:
            return True, "Prometheus has no current series of it (its exporter is down, or no longer scraped)"
        if gpudock and last_poll is not None and taken_at is not None and taken_at - last_poll > stale_after:
            return True, f"its exporter has not read the GPUs for {taken_at - last_poll:.0f} s (NVML hung?)"
        return False, None

    def _dcgm_rest(self, d: _DcgmHost) -> dict:
        stale, reason = self._staleness(d.fresh, None, None, 0, gpudock=False)
        return {"instances": tuple(sorted(d.instances)), "sources": ("dcgm-exporter",), "stale": stale,
                "stale_reason": reason}  # fmt: skip

    def _dcgm_summary(self, d: _DcgmHost) -> FleetHost:
        s = d.summary
        used, free = s.get("s_dused"), s.get("s_dfree")
        return FleetHost(
            hostname=d.name,
            gpu_count=s.get("count", 0),
            held=None,
            utilization=s.get("s_dutil"),
            memory_used_mib=used,
            memory_total_mib=used + free if used is not None and free is not None else None,
            temperature_c=s.get("s_dtemp"),
            power_w=s.get("s_dpower"),
            models=tuple(sorted(d.models)),
            xid_gpus=int(s.get("s_dxid") or 0),
            **self._dcgm_rest(d),
        )

    @staticmethod
    def _gpudock_summary(h: _Host, rest: dict) -> FleetHost:
        s = h.summary
        used, total = s.get("s_used"), s.get("s_total")
        return FleetHost(
            hostname=h.name,
            gpu_count=s.get("count", 0),
            held=int(s.get("s_held") or 0),
            utilization=s.get("s_util"),
            memory_used_mib=round(used / MIB, 1) if used is not None else None,
            memory_total_mib=round(total / MIB, 1) if total is not None else None,
            temperature_c=s.get("s_temp"),
            power_w=s.get("s_power"),
            holder_names=tuple(sorted({c for c, _ in h.holders if c})),
            images=tuple(sorted({i for _, i in h.holders if i})),
            models=tuple(sorted(h.models)),
            gpu_errors=int(s.get("s_gpu_errors") or 0),
            xid_gpus=int(s.get("s_xid") or 0),
            sources=("gpudock", "dcgm-exporter") if s.get("s_with_dcgm") else ("gpudock",),
            **rest,
        )


def _gpu_order(g: FleetGpu):
    return (g.index is None, g.index if g.index is not None else 0, g.uuid)


def _dcgm_values(d: dict, v: dict) -> None:
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


def _gpudock_gpu(g: _Gpu, dcgm: dict | None) -> FleetGpu:
    v = dict(g.vals)
    v.setdefault("uuid", "")
    sources = ["gpudock"]
    if dcgm:
        sources.append("dcgm-exporter")
        _dcgm_values(dcgm, v)
    holders = tuple(sorted(g.holders.values(), key=lambda h: (h.container, h.container_id)))
    return FleetGpu(holders=holders, sources=tuple(sources), **v)


def _dcgm_gpu(uuid: str, d: dict) -> FleetGpu:
    v: dict = {}
    _dcgm_values(d, v)
    return FleetGpu(uuid=uuid, sources=("dcgm-exporter",), **v)


def assemble(
    result: list[dict], taken_at: float | None, *, detailed: bool = True, stale_after: float = 60.0
) -> tuple[tuple[FleetHost, ...], tuple[str, ...]]:
    """The hosts (sorted by name) and the problems found, from the answer's result vector(s)."""
    ans = _Answer()
    for item in result:
        ans.add(item)
    return ans.result(detailed, taken_at, stale_after)


def stale_names(result: list[dict]) -> tuple[str, ...]:
    """Hosts Prometheus had within the window but has no current series of (from the freshness parts)."""
    seen, fresh = set(), set()
    for item in result:
        labels = item.get("metric") or {}
        part = labels.get(PART)
        if part in ("seen", "fresh"):
            name = labels.get("hostname")
        elif part in ("dcgm_seen", "dcgm_fresh"):
            name = dcgm_host(labels)[0]
        else:
            continue
        if name:
            (seen if part.endswith("seen") else fresh).add(name)
    return tuple(sorted(seen - fresh))


# ---------------------------------------------------------------------------------------- reading


class FleetReader:
    """Reads the fleet from one Prometheus; keeps the last good view of each kind of read for when
    a read fails."""

    def __init__(
        self,
        url: str,
        *,
        auth: Auth | None = None,
        timeout: float = 10.0,
        window: str = "10m",
        stale_after: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
        parallel: int = 2,
    ) -> None:
        self.url = check_url(url)
        self.parallel = parallel
        self.auth = auth or Auth()
        self.timeout = timeout
        self.window = check_window(window)
        self.stale_after = stale_after
        self.ssl_context = ssl_context
        self._last: dict[tuple, FleetView] = {}

    def queries_for(self, detailed: bool = True, only: str | None = None) -> list[str]:
        """The first queries of a read (sent together): the parts dealt round ``parallel`` queries,
        so that Prometheus evaluates them on as many cores."""
        hosts = (only,) if only else None
        parts = self._parts(Scope(hosts), detailed) + freshness_parts(hosts, self.window)
        n = max(1, min(self.parallel, len(parts)))
        return [union(parts[i::n]) for i in range(n)]

    def _parts(self, scope: Scope, detailed: bool) -> list[tuple[str, str]]:
        return detail_parts(scope) if detailed else summary_parts(scope, self.window)

    def read(self, detailed: bool = True, only: str | None = None) -> FleetView:
        """One read: every host (``only``: that one), per GPU (``detailed``) or per host; on failure
        the last good view of the same kind, every host marked stale, with the reason."""
        key = (detailed, only)
        t0 = time.monotonic()
        queries = 0
        try:
            first = self.queries_for(detailed, only)
            queries += len(first)
            result, taken_at = self._query_all(first)
            stale = stale_names(result)
            if stale:  # their last values: one more query, for them alone
                queries += 1
                more, _ = self._query(union(self._parts(Scope(stale, self.window), detailed)))
                result = result + more
            hosts, problems = assemble(result, taken_at, detailed=detailed, stale_after=self.stale_after)
        except FleetError as e:
            last = self._last.get(key)
            kept = last.hosts if last else ()
            return FleetView(
                self.url,
                tuple(replace(h, stale=True, stale_reason=h.stale_reason or "this read failed") for h in kept),
                ok=False,
                error=str(e),
                stale=True,
                problems=last.problems if last else (),
                taken_at=last.taken_at if last else None,
                read_at=time.time(),
                queries=queries,
                seconds=time.monotonic() - t0,
                detailed=detailed,
            )
        view = FleetView(
            self.url,
            hosts,
            problems=problems,
            taken_at=taken_at,
            read_at=time.time(),
            queries=queries,
            seconds=time.monotonic() - t0,
            detailed=detailed,
        )
        self._last[key] = view
        return view

    def _query_all(self, queries: list[str]) -> tuple[list[dict], float | None]:
        """Several queries at once, their answers together (the first fault, if any, raised)."""
        if len(queries) == 1:
            return self._query(queries[0])
        with ThreadPoolExecutor(len(queries), thread_name_prefix="gpudock-fleet") as pool:
            answers = list(pool.map(self._query, queries))
        result: list[dict] = []
        for r, _ in answers:
            result += r
        return result, next((t for _, t in answers if t is not None), None)

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
