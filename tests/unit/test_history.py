"""The readings' history (gpudock.host.history): filled from snapshots, bounded, shown as sparklines."""

from __future__ import annotations

import dataclasses
import itertools

from gpudock.host.history import BLOCKS, History, history_key, sparkline
from gpudock.model import Gpu, HostSnapshot, MigDevice, NvmlFailure
from helpers.sim import frozen_demo, session


def snap(*gpus: Gpu) -> HostSnapshot:
    return HostSnapshot("535.129.03", "12.2", "12.535.129.03", gpus=tuple(gpus))


def card(i: int = 0, util: int | None = 50, mem: int | None = 40960, power: float | None = 350.0, **over) -> Gpu:
    return Gpu(
        index=i,
        uuid=f"GPU-{i}",
        memory_total_mib=81920,
        memory_used_mib=mem,
        utilization_gpu=util,
        power_w=power,
        power_limit_w=700.0,
        **over,
    )


def stepping(step: float = 1.0):
    counter = itertools.count()
    return lambda: next(counter) * step


def test_the_demo_hosts_readings_fill_each_gpus_series_without_an_nvml_call_of_its_own():
    nvml = session(frozen_demo())
    history = History(clock=stepping())
    for _ in range(5):
        history.add(nvml.snapshot())
    first = nvml.snapshot().gpus[0]
    util = history.series(history_key(first), "util")
    assert len(util) == 5 and util.values == (float(first.utilization_gpu),) * 5 and util.scale == 100
    mem = history.series(first.uuid, "mem")
    assert mem.values[-1] == first.memory_used_mib and mem.scale == first.memory_total_mib
    power = history.series(first.uuid, "power")
    assert power.values[-1] == first.power_w and power.scale == first.power_limit_w
    # the demo's MIG card: each MIG device's memory, by its UUID
    mig_card = next(g for g in nvml.snapshot().gpus if g.mig_devices)
    for m in mig_card.mig_devices:
        s = history.series(m.uuid, "mem")
        assert len(s) == 5 and s.values[-1] == m.memory_used_mib and s.scale == m.memory_total_mib
        assert history.series(m.uuid, "util") is None  # NVML gives no per-MIG utilization here
    # a snapshot is all it reads: one built by hand, with no NVML session behind it, is enough
    bare = History(clock=stepping())
    bare.add(snap(card(0, util=7)))
    assert bare.series("GPU-0", "util").values == (7.0,)


def test_the_history_is_bounded_by_the_window_and_by_its_ring():
    history = History(window=300, period=1.0, clock=stepping(1.0))
    for _ in range(1000):
        history.add(snap(card(0), card(1)))
    s = history.series("GPU-0", "util")
    assert len(s) == 301  # the last five minutes at one a second (both ends in)
    assert s.times[-1] - s.times[0] == 300
    # polled far faster than the period it was made for: the ring, not the window, bounds it
    fast = History(window=300, period=1.0, clock=stepping(0.01))
    for _ in range(2000):
        fast.add(snap(card(0)))
    assert fast.max_samples == 301 and fast.samples("GPU-0", "power") == 301


def test_a_gpu_that_goes_away_drops_its_history_and_an_nvml_failure_keeps_it():
    history = History(clock=stepping())
    mig = MigDevice(index=0, uuid="MIG-a", profile="1g.10gb", memory_total_mib=9984, memory_used_mib=100)
    history.add(snap(card(0), card(1, mig_devices=(mig,))))
    history.add(snap(card(0), card(1, mig_devices=(mig,))))
    assert sorted(history.keys()) == ["GPU-0", "GPU-1", "MIG-a"]
    history.add(HostSnapshot(None, None, None, nvml_failure=NvmlFailure(18, "Driver/library version mismatch", "")))
    assert history.samples("GPU-1", "util") == 2  # nothing was read: nothing is known to be gone
    history.add(snap(card(0), card(1)))  # the MIG device was destroyed
    assert sorted(history.keys()) == ["GPU-0", "GPU-1"]
    history.add(snap(card(0)))  # GPU 1 fell off the bus
    assert list(history.keys()) == ["GPU-0"] and history.series("GPU-1", "util") is None
    assert history.samples("GPU-0", "util") == 4


def test_a_failed_gpu_records_gaps_and_a_gpu_without_uuid_is_kept_by_index():
    history = History(clock=stepping())
    history.add(snap(card(0, util=80)))
    history.add(snap(card(0, util=80, error="GPU is lost")))
    assert history.series("GPU-0", "util").values == (80.0, None)
    history.add(snap(Gpu(index=3, uuid=None, utilization_gpu=10)))
    assert history.series("index-3", "util").values == (10.0,)


def test_cells_are_the_mean_of_their_samples_and_move_one_cell_at_a_time():
    history = History(window=60, clock=stepping(1.0))  # 6 cells of 10 s
    for util in (0, 20, 40, 60):  # t = 0..3: all in the first cell
        history.add(snap(card(0, util=util)))
    s = history.series("GPU-0", "util")
    assert s.cells(6) == [None] * 5 + [30.0]
    line = s.sparkline(6)
    assert line == "     " + BLOCKS[2]
    for _ in range(6):  # t = 4..9: still the first cell, only its level may change
        history.add(snap(card(0, util=100)))
        assert history.series("GPU-0", "util").sparkline(6)[:5] == "     "
    history.add(snap(card(0, util=100)))  # t = 10: a new cell; the line moves left by one
    after = history.series("GPU-0", "util").sparkline(6)
    assert after[:4] == "    " and after[5] == BLOCKS[-1]
    assert history.series("GPU-0", "util").peak() == 100


def test_sparkline_levels_on_a_fixed_scale():
    assert sparkline([0, 50, 100, None], 100) == BLOCKS[0] + BLOCKS[4] + BLOCKS[-1] + " "
    assert sparkline([200.0, 400.0], None) == BLOCKS[4] + BLOCKS[-1]  # no scale: the highest is the top
    assert sparkline([], 100) == ""


def test_a_reading_nvml_does_not_give_is_a_blank_and_keeps_the_last_known_scale():
    history = History(clock=stepping())
    history.add(snap(card(0, power=None)))
    s = history.series("GPU-0", "power")
    assert s.values == (None,) and s.sparkline(4) == "    " and s.peak() is None
    history.add(snap(dataclasses.replace(card(0), power_limit_w=None)))
    assert history.series("GPU-0", "power").scale == 700.0
