"""The last minutes of each GPU's readings, kept from the snapshots a poll already takes.

:class:`History` is fed one :class:`gpudock.model.HostSnapshot` per refresh (``add``) and keeps, per
GPU (keyed as the GPU table keys its rows: the UUID, else ``index-N``), three series: utilization
(%), memory used (MiB) and power (W); per MIG device (keyed by its UUID), its memory used. It makes
no NVML call of its own. Memory is bounded twice: each series is a ring buffer (``max_samples``)
and samples older than the window (5 minutes) are dropped; a GPU or MIG device that is gone from a
snapshot loses its history. A snapshot in which NVML could not start says nothing about the GPUs
and changes nothing.

:meth:`Series.cells` turns a series into a fixed number of cells over the window, the mean of each
cell's samples, newest last. Cell boundaries are counted from the history's first sample, not
from "now", so a sparkline moves by one cell when a cell's time is up and, in between, only its
newest cell changes: over a slow link that repaints one character a second, not the line.

Samples are stamped with ``clock()`` (monotonic by default): a history is about how long ago, and
a wall clock stepped by NTP would fold it. Thread-safe: the poll worker adds, the UI reads.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from gpudock.model import Gpu, HostSnapshot

__all__ = ["History", "Series", "WINDOW_S", "BLOCKS", "history_key", "sparkline"]

WINDOW_S = 300.0  # five minutes
# Eight levels, lowest to highest; a cell without samples is a space (so 0 % still draws a line).
BLOCKS = "▁▂▃▄▅▆▇█"
GPU_SERIES = ("util", "mem", "power")
MIG_SERIES = ("mem",)


def history_key(g: Gpu) -> str:
    """A GPU's key in the history: the GPU table's row key (its UUID, else its index)."""
    return g.uuid or f"index-{g.index}"


@dataclass(frozen=True, slots=True)
class Series:
    """One reading's samples over the window, oldest first (a copy: the history goes on)."""

    times: tuple[float, ...]
    values: tuple[float | None, ...]  # None: not read (N/A, or the GPU failed that refresh)
    scale: float | None  # what fills a cell: 100 (%), the memory total (MiB), the power limit (W)
    start: float  # the history's first sample: cells are counted from it
    window: float = WINDOW_S

    def __len__(self) -> int:
        return len(self.values)

    @property
    def known(self) -> list[float]:
        return [v for v in self.values if v is not None]

    def peak(self) -> float | None:
        known = self.known
        return max(known) if known else None

    def mean(self) -> float | None:
        known = self.known
        return sum(known) / len(known) if known else None

    def cells(self, count: int) -> list[float | None]:
        """The window in ``count`` cells, newest last: the mean of each cell's samples (None where a
        cell has none: before the history began, or while the reading was N/A)."""
        if count <= 0 or not self.times:
            return [None] * max(0, count)
        step = self.window / count
        newest = math.floor((self.times[-1] - self.start) / step)
        first = newest - count + 1
        sums = [0.0] * count
        ns = [0] * count
        for t, v in zip(self.times, self.values):
            if v is None:
                continue
            i = math.floor((t - self.start) / step) - first
            if 0 <= i < count:
                sums[i] += v
                ns[i] += 1
        return [s / n if n else None for s, n in zip(sums, ns)]

    def sparkline(self, count: int) -> str:
        """The window as ``count`` block characters, newest on the right."""
        return sparkline(self.cells(count), self.scale)


def sparkline(cells: list[float | None], scale: float | None) -> str:
    """Block characters for cells on a fixed scale (0 is the lowest block, ``scale`` the highest);
    without a scale, the highest cell is the top. A cell of None is a space."""
    known = [c for c in cells if c is not None]
    top = scale if scale else (max(known) if known else 0)
    out = []
    for c in cells:
        if c is None:
            out.append(" ")
        elif top <= 0:
            out.append(BLOCKS[0])
        else:
            out.append(BLOCKS[max(0, min(len(BLOCKS) - 1, round(c / top * (len(BLOCKS) - 1))))])
    return "".join(out)


class History:
    """Per GPU and per MIG device, the last ``window`` seconds of its readings (see the module)."""

    def __init__(
        self,
        window: float = WINDOW_S,
        period: float = 1.0,
        max_samples: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        # a refresh every `period` seconds fills the window with this many samples; a ring never holds more
        self.max_samples = max_samples or math.ceil(window / max(period, 0.05)) + 1
        self._clock = clock
        self._rings: dict[str, dict[str, deque[tuple[float, float | None]]]] = {}
        self._scales: dict[str, dict[str, float | None]] = {}
        self._start: float | None = None
        self._lock = threading.Lock()

    def add(self, snap: HostSnapshot) -> None:
        """One refresh's readings; GPUs and MIG devices not in it lose their history."""
        if snap.nvml_failure is not None:
            return
        now = self._clock()
        with self._lock:
            if self._start is None:
                self._start = now
            seen: set[str] = set()
            for g in snap.gpus:
                key = history_key(g)
                seen.add(key)
                failed = g.error is not None
                self._append(key, "util", now, None if failed else g.utilization_gpu, 100.0)
                self._append(key, "mem", now, None if failed else g.memory_used_mib, g.memory_total_mib)
                self._append(key, "power", now, None if failed else g.power_w, g.power_limit_w)
                for m in g.mig_devices:
                    seen.add(m.uuid)
                    self._append(m.uuid, "mem", now, None if failed else m.memory_used_mib, m.memory_total_mib)
            for key in [k for k in self._rings if k not in seen]:
                del self._rings[key]
                del self._scales[key]

    def _append(self, key: str, name: str, now: float, value: float | None, scale: float | None) -> None:
        rings = self._rings.setdefault(key, {})
        ring = rings.get(name)
        if ring is None:
            ring = rings[name] = deque(maxlen=self.max_samples)
        ring.append((now, None if value is None else float(value)))
        while ring and ring[0][0] < now - self.window:
            ring.popleft()
        if scale:  # a total or limit NVML did not give keeps the last one known
            self._scales.setdefault(key, {})[name] = float(scale)
        else:
            self._scales.setdefault(key, {}).setdefault(name, None)

    def series(self, key: str, name: str) -> Series | None:
        """A copy of one series (``name``: "util", "mem", "power"; a MIG device: "mem"), or None."""
        with self._lock:
            ring = self._rings.get(key, {}).get(name)
            if ring is None or self._start is None:
                return None
            return Series(
                times=tuple(t for t, _ in ring),
                values=tuple(v for _, v in ring),
                scale=self._scales[key].get(name),
                start=self._start,
                window=self.window,
            )

    def samples(self, key: str, name: str) -> int:
        with self._lock:
            ring = self._rings.get(key, {}).get(name)
            return len(ring) if ring is not None else 0

    def keys(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._rings))
