"""A fleet for the fleet screen's tests: views built from a Prometheus answer, and a reader that
hands them out in turn (no network)."""

from __future__ import annotations

import dataclasses

from gpudock.fleet.reader import PART, FleetView, assemble

NOW = 1_800_000_000.0


def _s(part, value=1, **labels):
    return {"metric": {PART: part, **labels}, "value": [NOW, str(value)]}


def _uuid(host: int, i: int) -> str:
    return f"GPU-{host:08x}-0000-4000-8000-{i:012x}"


def gpudock_series(name: str, n: int, host: int, util: int, fresh: bool = True, holders=None, errors=()) -> list:
    """What Prometheus answers for one gpudock host of ``n`` H100s: GPU i at ``util + i`` percent,
    held by ``holders[i]`` (a container name, or None)."""
    holders = holders or {}
    out = [
        _s("poll", NOW - 2, hostname=name, instance=f"{name}:10940"),
        _s("driver", hostname=name, driver_version="535.129.03", source="nvml"),
        _s("docker", 1, hostname=name),
    ]
    if fresh:
        out.append(_s("fresh", hostname=name))
    for e in errors:
        out.append(_s("doctor", hostname=name, id=e, severity="error", title=f"{e} is broken"))
    for i in range(n):
        u = _uuid(host, i)
        out += [
            _s("info", hostname=name, UUID=u, gpu=str(i), pci_bus_id=f"00000000:{0x10 + i * 0x10:02X}:00.0",
               device=f"nvidia{(i + 1) % n}", modelName="NVIDIA H100 80GB HBM3"),
            _s("util", util + i, hostname=name, gpu=str(i)),
            _s("used", (10 + i) * 1024**3, hostname=name, gpu=str(i)),
            _s("total", 80 * 1024**3, hostname=name, gpu=str(i)),
            _s("temp", 40 + i, hostname=name, gpu=str(i)),
            _s("power", 200 + 10 * i, hostname=name, gpu=str(i)),
            _s("limit", 700, hostname=name, gpu=str(i)),
        ]  # fmt: skip
        if holders.get(i):
            out.append(
                _s("holder", hostname=name, gpu=str(i), container=holders[i], container_id=f"{host:02x}" * 32,
                   image="nvcr.io/nvidia/pytorch:24.01-py3", mechanism="device-request")
            )  # fmt: skip
    return out


def dcgm_series(name: str, n: int, host: int, util: int) -> list:
    out = [_s("dcgm_fresh", Hostname=name, instance=f"{name}:9400")]
    for i in range(n):
        lab = {"Hostname": name, "UUID": _uuid(host, i), "instance": f"{name}:9400"}
        out += [
            _s("dcgm_util", util, gpu=str(i), pci_bus_id=f"00000000:{0x10 + i:02X}:00.0", device=f"nvidia{i}",
               modelName="NVIDIA A100-SXM4-80GB", **lab),
            _s("dcgm_used", 1024, **lab),
            _s("dcgm_free", 80896, **lab),
            _s("dcgm_temp", 50, **lab),
            _s("dcgm_power", 250, **lab),
            _s("dcgm_xid", 79 if i == 1 else 0, **lab),
        ]  # fmt: skip
    return out


def demo_fleet_view(prometheus: str = "http://prometheus:9090") -> FleetView:
    result = []
    result += gpudock_series("gpu-a01", 8, 1, 80, holders={0: "train-llama", 1: "train-llama", 2: "triton"})
    result += gpudock_series("gpu-a02", 4, 2, 5, holders={3: "notebook"}, errors=("driver-library-mismatch",))
    result += gpudock_series("gpu-b07", 8, 3, 40, fresh=False, holders={0: "burn-in"})
    result += dcgm_series("dgx-legacy", 2, 4, 12)
    hosts, problems = assemble(result, NOW)
    return FleetView(prometheus, hosts, problems=problems, taken_at=None, queries=1)


class FakeReader:
    """``read()`` returns the given views in turn (the last one again and again), whole or (``only``)
    for one host; counts the reads of the whole fleet, and records the hosts read alone."""

    def __init__(self, *views: FleetView) -> None:
        self.views = list(views)
        self.reads = 0
        self.host_reads: list[str] = []

    def read(self, detailed: bool = True, only: str | None = None) -> FleetView:
        if only is not None:
            self.host_reads.append(only)
            view = self.views[max(0, min(self.reads, len(self.views)) - 1)]
            return dataclasses.replace(view, hosts=tuple(h for h in view.hosts if h.hostname == only))
        self.reads += 1
        return self.views[min(self.reads, len(self.views)) - 1]
