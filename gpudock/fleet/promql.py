"""The PromQL the fleet reader sends: every part of a read in one instant query.

Each *part* is one aggregation over one kind of series, tagged with a ``fleet_part`` label
(``label_replace``) so that the parts can travel in one query joined with ``or`` (their label sets
differ by the tag, so ``or`` keeps them all) and be told apart in the answer. A read is one query
for every host Prometheus scrapes now, and, only when some hosts' series went stale, one more for
those hosts' last values (``last_over_time`` over the window, restricted to them by name): one or
two queries whatever the number of hosts, never one per host.

Two sets of parts:

* :func:`detail_parts`: per GPU (``gpudock fleet --json``, one host's screen);
* :func:`summary_parts`: per host — counts, averages, sums, maxima and the holders' names, which
  is what the fleet screen's host list shows, for a fraction of the answer's size.

gpudock's series carry the host as ``hostname``; dcgm-exporter's as ``Hostname`` (before its 4.x
late releases) or ``hostname`` (after), or neither (then the scrape target, ``instance``, names
the host): its parts group by all three. A GPU both report is joined on ``UUID``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpudock.fleet import metrics as m

__all__ = ["PART", "Scope", "detail_parts", "summary_parts", "freshness_parts", "union", "check_window"]

PART = "fleet_part"
H = "hostname"  # gpudock's host label
DH = "hostname, Hostname, instance"  # dcgm-exporter's host labels, both spellings, else the target
DCGM_LABELS = ("hostname", "Hostname", "instance")


def check_window(window: str) -> str:
    if not re.fullmatch(r"\d+[smhd]", window):
        raise ValueError(f"window {window!r}: give a Prometheus duration such as 10m, 1h")
    return window


def _str(s: str) -> str:
    """A PromQL double-quoted string literal."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _alternatives(names) -> str:
    """An RE2 alternation matching exactly these names."""
    return "|".join(re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", n) for n in sorted(names))


@dataclass(frozen=True, slots=True)
class Scope:
    """Which hosts a query reads (None: all) and how: now (``window`` None) or their last values
    in ``window`` (their series went stale)."""

    hosts: tuple[str, ...] | None = None
    window: str | None = None

    def _sel(self, metric: str, matchers: list[str], window: str | None) -> str:
        sel = f"{metric}{{{', '.join(matchers)}}}" if matchers else metric
        return f"last_over_time({sel}[{window}])" if window else sel

    def g(self, metric: str, extra: str | None = None, window: str | None = None) -> str:
        """A gpudock series, restricted to the scope's hosts."""
        matchers = [extra] if extra else []
        if self.hosts is not None:
            matchers.append(f"{H}=~{_str(_alternatives(self.hosts))}")
        return self._sel(metric, matchers, window if window is not None else self.window)

    def d(self, metric: str, window: str | None = None) -> str:
        """A dcgm-exporter series of the scope's hosts: by its host label (either spelling), by
        its target's address, or by the UUID of a GPU a gpudock exporter of those hosts reports."""
        w = window if window is not None else self.window
        if self.hosts is None:
            return self._sel(metric, [], w)
        alt = _alternatives(self.hosts)
        by_name = [self._sel(metric, [f"{label}=~{_str(alt)}"], w) for label in ("hostname", "Hostname")]
        by_target = self._sel(metric, ["instance=~" + _str("(" + alt + ")(:[0-9]+)?")], w)
        by_gpu = f"({self._sel(metric, [], w)} and on(UUID) group by (UUID) ({self.g(m.GPU_INFO)}))"
        return "(" + " or ".join([*by_name, by_target, by_gpu]) + ")"

    def dj(self, metric: str) -> str:
        """A dcgm-exporter series of any host (its side of a join on UUID with gpudock's)."""
        return self._sel(metric, [], self.window)


_NOT_OK = 'severity=~"error|warning"'


def _tag(expr: str, tag: str) -> str:
    return f'label_replace({expr}, "{PART}", "{tag}", "", "")'


def union(parts: list[tuple[str, str]]) -> str:
    return " or ".join(_tag(expr, tag) for tag, expr in parts)


def _host_parts(s: Scope) -> list[tuple[str, str]]:
    """What is per host in both sets: doctor, driver, NVML, Docker, the exporter's last poll."""
    return [
        ("doctor", f"max by ({H}, id, severity, title) ({s.g(m.DOCTOR_FINDING, _NOT_OK)})"),
        ("driver", f"max by ({H}, driver_version, source) ({s.g(m.DRIVER)})"),
        ("nvml_error", f"max by ({H}, error) ({s.g(m.NVML_ERROR)})"),
        ("docker", f"min by ({H}) ({s.g(m.DOCKER_UP)})"),
        ("poll", f"max by ({H}, instance) ({s.g(m.LAST_POLL)})"),
    ]


def detail_parts(s: Scope) -> list[tuple[str, str]]:
    """Per GPU: gpudock's (keyed by host and GPU index; ``info`` maps them to the UUID) and
    dcgm-exporter's (keyed by its host labels and the UUID)."""
    key = f"{H}, gpu"
    parts = [
        ("info", f"max by ({key}, UUID, pci_bus_id, device, modelName) ({s.g(m.GPU_INFO)})"),
        ("util", f"max by ({key}) ({s.g(m.UTILIZATION)})"),
        ("used", f"max by ({key}) ({s.g(m.MEMORY_USED)})"),
        ("total", f"max by ({key}) ({s.g(m.MEMORY_TOTAL)})"),
        ("temp", f"max by ({key}) ({s.g(m.TEMPERATURE)})"),
        ("power", f"max by ({key}) ({s.g(m.POWER)})"),
        ("limit", f"max by ({key}) ({s.g(m.POWER_LIMIT)})"),
        ("gpu_error", f"max by ({key}, error) ({s.g(m.GPU_ERROR)})"),
        ("holder", f"max by ({key}, container, container_id, image, mechanism) ({s.g(m.HOLDER)})"),
        *_host_parts(s),
        ("dcgm_util", f"max by ({DH}, UUID, gpu, pci_bus_id, device, modelName) ({s.d(m.DCGM_UTIL)})"),
    ]
    for tag, metric in (
        ("dcgm_used", m.DCGM_FB_USED),
        ("dcgm_free", m.DCGM_FB_FREE),
        ("dcgm_temp", m.DCGM_TEMP),
        ("dcgm_power", m.DCGM_POWER),
        ("dcgm_xid", m.DCGM_XID),
    ):
        parts.append((tag, f"max by ({DH}, UUID) ({s.d(metric)})"))
    return parts


def summary_parts(s: Scope, window: str) -> list[tuple[str, str]]:
    """Per host: gpudock hosts' figures (with dcgm-exporter's Xids joined on UUID), and
    dcgm-exporter hosts' own, with how many of their GPUs a gpudock exporter also reports (those
    hosts are gpudock's, under another name: a dcgm-exporter in a container, say)."""
    info = s.g(m.GPU_INFO)
    return [
        ("s_models", f"count by ({H}, modelName) ({info})"),
        ("s_util", f"avg by ({H}) ({s.g(m.UTILIZATION)})"),
        ("s_used", f"sum by ({H}) ({s.g(m.MEMORY_USED)})"),
        ("s_total", f"sum by ({H}) ({s.g(m.MEMORY_TOTAL)})"),
        ("s_temp", f"max by ({H}) ({s.g(m.TEMPERATURE)})"),
        ("s_power", f"sum by ({H}) ({s.g(m.POWER)})"),
        ("s_held", f"count by ({H}) (count by ({H}, UUID) ({s.g(m.HOLDER)}))"),
        ("s_holders", f"group by ({H}, container, image) ({s.g(m.HOLDER)})"),
        ("s_gpu_errors", f"count by ({H}) ({s.g(m.GPU_ERROR)})"),
        # per host, its GPUs dcgm-exporter also reports, counted by whether their last Xid is 0 (xid="0") or not
        (
            "s_xid",
            f'count_values by ({H}) ("xid", {info} * on(UUID) group_left() '
            f"(max by (UUID) ({s.dj(m.DCGM_XID)}) > bool 0))",
        ),
        ("s_clash", f"count by (UUID) ({info}) > 1"),
        *_host_parts(s),
        ("s_dmodels", f"count by ({DH}, modelName) ({s.d(m.DCGM_UTIL)})"),
        ("s_dutil", f"avg by ({DH}) ({s.d(m.DCGM_UTIL)})"),
        ("s_dused", f"sum by ({DH}) ({s.d(m.DCGM_FB_USED)})"),
        ("s_dfree", f"sum by ({DH}) ({s.d(m.DCGM_FB_FREE)})"),
        ("s_dtemp", f"max by ({DH}) ({s.d(m.DCGM_TEMP)})"),
        ("s_dpower", f"sum by ({DH}) ({s.d(m.DCGM_POWER)})"),
        ("s_dxid", f"count by ({DH}) ({s.d(m.DCGM_XID)} > 0)"),
        ("s_dcovered", f"count by ({DH}) ({s.d(m.DCGM_UTIL)} and on(UUID) {info})"),
    ]


def freshness_parts(hosts: tuple[str, ...] | None, window: str) -> list[tuple[str, str]]:
    """Which hosts Prometheus scrapes now (``fresh``) and which it had within ``window`` (``seen``)."""
    s = Scope(hosts)
    return [
        ("fresh", f"group by ({H}) ({s.g(m.LAST_POLL)})"),
        ("seen", f"group by ({H}) ({s.g(m.LAST_POLL, window=window)})"),
        ("dcgm_fresh", f"group by ({DH}) ({s.d(m.DCGM_UTIL)})"),
        ("dcgm_seen", f"group by ({DH}) ({s.d(m.DCGM_UTIL, window=window)})"),
    ]
