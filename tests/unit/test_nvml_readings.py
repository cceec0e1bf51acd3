"""Every reading an operator compares cards by, through the real pynvml bindings over the simulated
library: on a card that has it, a card that lacks it (NVML answers NOT_SUPPORTED) and a driver too
old to export the function (FUNCTION_NOT_FOUND). The last two are null, never an error."""

from __future__ import annotations

import pynvml
import pytest

from gpudock.model import EccErrors, RemappedRows, RetiredPages
from helpers.sim import frozen_demo, gpu, scenario, session


@pytest.fixture(autouse=True)
def _no_leaked_session():
    yield
    pynvml.nvmlLib = None
    pynvml._nvmlGetFunctionPointer_cache.clear()


def _one_process(**over) -> list[dict]:
    p = {"pid": 4242, "used_memory_mib": 1000, "command": "python train.py"}
    p.update(over)
    return [p]


# (what, the NVML functions behind it, [[gpu]] keys of a card that has it, the value read, expected)
READINGS = [
    ("fan", ["nvmlDeviceGetFanSpeed"], {"fan_speed": 55}, lambda g: g.fan_speed_pct, 55),
    ("P-state", ["nvmlDeviceGetPerformanceState"], {"performance_state": 2}, lambda g: g.performance_state, 2),
    (
        "clocks event reasons",
        ["nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"],
        {"clock_event_reasons": ["sw_power_cap", "hw_thermal_slowdown"]},
        lambda g: g.clock_event_reasons,
        ("SW Power Cap", "HW Thermal Slowdown"),
    ),
    (
        "ECC mode",
        ["nvmlDeviceGetEccMode"],
        {"ecc_mode": False, "ecc_mode_pending": True},
        lambda g: (g.ecc_mode_current, g.ecc_mode_pending),
        (False, True),
    ),
    (
        "ECC error counts",
        ["nvmlDeviceGetTotalEccErrors"],
        {"ecc_errors": {"volatile_corrected": 3, "volatile_uncorrected": 1, "aggregate_corrected": 40}},
        lambda g: g.ecc_errors,
        EccErrors(3, 1, 40, 0),
    ),
    (
        "retired pages",
        ["nvmlDeviceGetRetiredPages", "nvmlDeviceGetRetiredPagesPendingStatus"],
        {"retired_pages": {"single_bit": 2, "double_bit": 1, "pending": True}},
        lambda g: g.retired_pages,
        RetiredPages(2, 1, True),
    ),
    (
        "remapped rows",
        ["nvmlDeviceGetRemappedRows"],
        {"remapped_rows": {"correctable": 4, "uncorrectable": 1, "pending": True}},
        lambda g: g.remapped_rows,
        RemappedRows(4, 1, True, False),
    ),
    (
        "PCIe generation and width",
        [
            "nvmlDeviceGetCurrPcieLinkGeneration",
            "nvmlDeviceGetMaxPcieLinkGeneration",
            "nvmlDeviceGetCurrPcieLinkWidth",
            "nvmlDeviceGetMaxPcieLinkWidth",
        ],
        {"pcie": {"gen": 3, "gen_max": 5, "width": 8, "width_max": 16}},
        lambda g: (g.pcie_gen, g.pcie_gen_max, g.pcie_width, g.pcie_width_max),
        (3, 5, 8, 16),
    ),
    (
        "PCIe throughput",
        ["nvmlDeviceGetPcieThroughput"],
        {"pcie": {"rx_kib_s": 123456, "tx_kib_s": 7890}},
        lambda g: (g.pcie_rx_kib_s, g.pcie_tx_kib_s),
        (123456, 7890),
    ),
    (
        "BAR1",
        ["nvmlDeviceGetBAR1MemoryInfo"],
        {"bar1_total_mib": 32768, "bar1_used_mib": 5},
        lambda g: (g.bar1_total_mib, g.bar1_used_mib),
        (32768, 5),
    ),
    (
        "encoder/decoder",
        ["nvmlDeviceGetEncoderUtilization", "nvmlDeviceGetDecoderUtilization"],
        {"encoder_utilization": 12, "decoder_utilization": 34},
        lambda g: (g.encoder_utilization, g.decoder_utilization),
        (12, 34),
    ),
    (
        "per-process SM share",
        ["nvmlDeviceGetProcessUtilization"],
        {"process": _one_process(sm_util=37, mem_util=21, dec_util=5)},
        lambda g: (g.processes[0].sm_util, g.processes[0].mem_util, g.processes[0].dec_util),
        (37, 21, 5),
    ),
    (
        "NVLinks up",
        ["nvmlDeviceGetNvLinkState"],
        {"nvlink": {"links": 4, "down": [1]}},
        lambda g: (g.nvlinks, g.nvlinks_up),
        (4, 3),
    ),
    (
        "NUMA node and CPU affinity",
        ["nvmlDeviceGetCpuAffinity", "nvmlDeviceGetMemoryAffinity"],
        {"numa_node": 1, "cpu_affinity": "8-15,72-79"},
        lambda g: (g.numa_node, g.cpu_affinity),
        (1, "8-15,72-79"),
    ),
]
NULL = {
    "fan": None,
    "P-state": None,
    "clocks event reasons": None,
    "ECC mode": (None, None),
    "ECC error counts": None,
    "retired pages": None,
    "remapped rows": None,
    "PCIe generation and width": (None, None, None, None),
    "PCIe throughput": (None, None),
    "BAR1": (None, None),
    "encoder/decoder": (None, None),
    "per-process SM share": (None, None, None),
    "NVLinks up": (None, None),
    "NUMA node and CPU affinity": (None, None),
}
IDS = [r[0] for r in READINGS]


@pytest.mark.parametrize("what, functions, keys, read, expected", READINGS, ids=IDS)
def test_a_card_that_has_the_reading_shows_the_scenarios_value(what, functions, keys, read, expected):
    with session(scenario([gpu(0, **keys)])) as s:
        g = s.snapshot().gpus[0]
    assert g.error is None
    assert read(g) == expected


@pytest.mark.parametrize("what, functions, keys, read, expected", READINGS, ids=IDS)
def test_a_card_that_lacks_the_reading_shows_null(what, functions, keys, read, expected):
    with session(scenario([gpu(0, unsupported=functions, **keys)])) as s:
        g = s.snapshot().gpus[0]
        for name in functions:  # the card answers NOT_SUPPORTED, through the real bindings
            with pytest.raises(pynvml.NVMLError_NotSupported):
                _ask(name)
    assert g.error is None
    assert read(g) == NULL[what]
    assert g.utilization_gpu == 0 and g.memory_total_mib == 81920  # the rest still reads


@pytest.mark.parametrize("what, functions, keys, read, expected", READINGS, ids=IDS)
def test_an_old_driver_without_the_function_shows_null(what, functions, keys, read, expected):
    with session(scenario([gpu(0, **keys)], missing_functions=functions)) as s:
        g = s.snapshot().gpus[0]
        with pytest.raises(pynvml.NVMLError_FunctionNotFound):
            _ask(functions[0])
    assert g.error is None
    assert read(g) == NULL[what]
    assert g.to_json()["index"] == 0  # and the JSON has it as null


def _ask(name: str):
    """Call the pynvml wrapper of ``name`` on GPU 0 with plausible arguments."""
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    extra = {
        "nvmlDeviceGetTotalEccErrors": (1, 0),
        "nvmlDeviceGetRetiredPages": (0,),
        "nvmlDeviceGetPcieThroughput": (0,),
        "nvmlDeviceGetProcessUtilization": (0,),
        "nvmlDeviceGetNvLinkState": (0,),
        "nvmlDeviceGetCpuAffinity": (1,),
        "nvmlDeviceGetMemoryAffinity": (1, 0),
    }.get(name, ())
    return getattr(pynvml, name)(h, *extra)


def test_topology_of_a_card_that_lacks_it_and_of_an_old_driver_is_unknown():
    paths = [{"path": ["pci0000:00", "plx0"]}, {"path": ["pci0000:00", "plx0"]}]
    with session(scenario([gpu(i, pcie=paths[i]) for i in range(2)])) as s:
        assert s.topology().matrix() == [["X", "PIX"], ["PIX", "X"]]
    lacks = scenario([gpu(i, pcie=paths[i], unsupported=["nvmlDeviceGetTopologyCommonAncestor"]) for i in range(2)])
    with session(lacks) as s:
        assert s.topology().matrix() == [["X", "N/A"], ["N/A", "X"]]
    old = scenario([gpu(i, pcie=paths[i]) for i in range(2)], missing_functions=["nvmlDeviceGetTopologyCommonAncestor"])
    with session(old) as s:
        assert s.topology().matrix() == [["X", "N/A"], ["N/A", "X"]]


def test_pcie_paths_give_the_words_nvidia_smi_topo_prints():
    # GPU 0 and 1 behind one switch, 2 behind a second switch under the same host bridge as a third
    # switch (3), 4 on another host bridge of NUMA node 0, 5 on NUMA node 1.
    paths = [
        ["pci0000:00", "plx0"],
        ["pci0000:00", "plx0"],
        ["pci0000:00", "plxA", "plx1"],
        ["pci0000:00", "plxA", "plx2"],
        ["pci0000:40"],
        ["pci0000:80"],
    ]
    gpus = [gpu(i, pcie={"path": p}, numa_node=1 if i == 5 else 0) for i, p in enumerate(paths)]
    with session(scenario(gpus)) as s:
        m = s.topology().matrix()
    assert m[0][1] == "PIX"
    assert m[2][3] == "PXB"
    assert m[0][2] == "PHB"
    assert m[0][4] == "NODE"
    assert m[0][5] == "SYS" and m[5][0] == "SYS"
    assert [m[i][i] for i in range(6)] == ["X"] * 6


def test_nvlinks_to_the_switches_join_every_pair_and_a_link_down_shows():
    with session(frozen_demo()) as s:
        snap = s.snapshot()
    topo = snap.topology
    assert topo.link(0, 1) == "NV18"
    assert topo.link(0, 4) == "NV17"  # GPU 4 has link 7 down
    assert (snap.gpus[4].nvlinks, snap.gpus[4].nvlinks_up) == (18, 17)
    assert [g.numa_node for g in topo.gpus] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert topo.gpus[0].cpu_affinity == "0-55,112-167"


def test_direct_nvlinks_are_counted_per_peer():
    b0, b1, b2 = "0000:10:00.0", "0000:20:00.0", "0000:30:00.0"
    gpus = [
        gpu(0, nvlink={"links": 4, "peers": [b1, b1, b2, b2]}),
        gpu(1, nvlink={"links": 2, "peers": [b0, b0]}),
        gpu(2, nvlink={"links": 2, "peers": [b0, b0]}),
    ]
    with session(scenario(gpus)) as s:
        m = s.topology().matrix()
    assert m[0][1] == "NV2" and m[0][2] == "NV2"
    assert m[1][2] != "NV2" and not m[1][2].startswith("NV")


def test_an_old_driver_without_clocks_event_reasons_falls_back_to_throttle_reasons():
    sc = scenario(
        [gpu(0, clock_event_reasons=["hw_slowdown"])], missing_functions=["nvmlDeviceGetCurrentClocksEventReasons"]
    )
    with session(sc) as s:
        g = s.snapshot().gpus[0]
        assert s._probe("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons") is (
            pynvml.nvmlDeviceGetCurrentClocksThrottleReasons
        )
    assert g.clock_event_reasons == ("HW Slowdown",)


def test_an_idle_card_says_idle_and_a_busy_one_runs_free():
    with session(scenario([gpu(0, utilization_gpu=0), gpu(1, utilization_gpu=80)])) as s:
        snap = s.snapshot()
    assert snap.gpus[0].clock_event_reasons == ("Idle",)
    assert snap.gpus[1].clock_event_reasons == ()


def test_ecc_off_has_no_counts():
    with session(scenario([gpu(0, ecc_mode=False)])) as s:
        g = s.snapshot().gpus[0]
    assert g.ecc_mode_current is False and g.ecc_errors is None


def test_processes_without_a_sample_share_nothing_and_the_default_splits_the_gpu():
    procs = [
        {"pid": 11, "used_memory_mib": 100, "command": "a"},
        {"pid": 12, "used_memory_mib": 100, "command": "b"},
    ]
    with session(scenario([gpu(0, utilization_gpu=80, utilization_memory=40, process=procs)])) as s:
        g = s.snapshot().gpus[0]
    assert [(p.sm_util, p.mem_util) for p in g.processes] == [(40, 20), (40, 20)]


def test_mig_cards_have_no_per_process_samples():
    with session(frozen_demo()) as s:
        g = s.snapshot().gpus[6]
    assert g.mig_mode_current and g.processes
    assert all(p.sm_util is None for p in g.processes)


def test_a_function_the_driver_lacks_is_asked_for_once(monkeypatch):
    asked: list[str] = []
    real = pynvml._nvmlGetFunctionPointer

    def counting(name):
        asked.append(name)
        return real(name)

    monkeypatch.setattr(pynvml, "_nvmlGetFunctionPointer", counting)
    sc = scenario([gpu(0), gpu(1)], missing_functions=["nvmlDeviceGetFanSpeed", "nvmlDeviceGetBAR1MemoryInfo"])
    with session(sc) as s:
        for _ in range(3):
            snap = s.snapshot()
    assert asked.count("nvmlDeviceGetFanSpeed") == 1
    assert asked.count("nvmlDeviceGetBAR1MemoryInfo") == 1
    assert all(g.fan_speed_pct is None and g.bar1_used_mib is None for g in snap.gpus)


def test_slow_readings_are_read_once_per_slow_interval(monkeypatch):
    calls = []
    real = pynvml.nvmlDeviceGetTotalEccErrors
    monkeypatch.setattr(pynvml, "nvmlDeviceGetTotalEccErrors", lambda *a: calls.append(a) or real(*a))
    for interval, expected in ((3600.0, 4), (0.0, 12)):
        calls.clear()
        with session(scenario([gpu(0)]), slow_interval=interval) as s:
            for _ in range(3):
                s.snapshot()
        assert len(calls) == expected  # four counters per slow read


def test_the_json_has_every_reading():
    with session(frozen_demo()) as s:
        j = s.snapshot().to_json()["gpus"][2]
    assert j["ecc"]["volatile"] == {"corrected": 3, "uncorrected": 0}
    assert j["remapped_rows"]["correctable"] == 1
    assert j["pcie"]["gen"] == 5 and j["pcie"]["width_max"] == 16
    assert j["bar1"]["total_mib"] == 131072
    assert j["nvlink"] == {"links": 18, "up": 18}
    assert j["numa_node"] == 0 and j["cpu_affinity"] == "0-55,112-167"
    assert j["compute_capability"] == "9.0"
    assert [p["sm_util"] for p in j["processes"]] == [28, 6]
    assert 0 < j["decoder_utilization"] <= 100  # a moving value: the triton card decodes video


def test_health_readings_are_read_once_per_health_interval(monkeypatch):
    rows, ecc = [], []
    real_rows, real_ecc = pynvml.nvmlDeviceGetRemappedRows, pynvml.nvmlDeviceGetTotalEccErrors
    monkeypatch.setattr(pynvml, "nvmlDeviceGetRemappedRows", lambda *a: rows.append(a) or real_rows(*a))
    monkeypatch.setattr(pynvml, "nvmlDeviceGetTotalEccErrors", lambda *a: ecc.append(a) or real_ecc(*a))
    with session(scenario([gpu(0)]), slow_interval=0.0, health_interval=3600.0) as s:
        for _ in range(3):
            g = s.snapshot().gpus[0]
    assert len(rows) == 1 and len(ecc) == 12  # remapped rows once; ECC counts on every slow read
    assert g.remapped_rows is not None and g.ecc_mode_current is True
