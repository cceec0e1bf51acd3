"""`gpudock sim-exec`: other people's NVML programs (nvitop, gpustat, a script) run unchanged on a
simulated host, through the real nvidia-ml-py bindings, and show the scenario's values.

nvitop and gpustat are test dependencies (pyproject's test extras, pinned in tests/constraints.txt).
Each run is a fresh `python -m gpudock` process, as an operator would start it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gpudock.sim.scenario import Scenario, Wave, builtin_scenario, load_scenario

SMALL = """
name = "two-l40s"
frozen = true
[driver]
version = "550.54.15"
cuda = "12.4"
[[gpu]]
uuid = "GPU-cccccccc-0000-4000-8000-000000000001"
name = "NVIDIA L40S"
pci_bus_id = "0000:3b:00.0"
minor = 1
memory_total_mib = 46068
memory_used_mib = 12288
utilization_gpu = 37
utilization_memory = 12
temperature_c = 51
power_w = 120
power_limit_w = 350
fan_speed = 44
performance_state = 2
encoder_utilization = 7
decoder_utilization = 19
ecc_errors = { volatile_uncorrected = 2 }
compute_mode = "exclusive_process"
[[gpu]]
uuid = "GPU-cccccccc-0000-4000-8000-000000000002"
name = "NVIDIA L40S"
pci_bus_id = "0000:5e:00.0"
minor = 0
memory_total_mib = 46068
memory_used_mib = 4
temperature_c = 33
power_w = 60
power_limit_w = 350
persistence_mode = false
ecc_mode = false
fans = 0                                       # passively cooled: no fan to report
"""


def sim_exec(*argv: str, sim: str | None = None) -> subprocess.CompletedProcess:
    host = ["--sim", sim] if sim else ["--demo"]
    return subprocess.run(
        [sys.executable, "-m", "gpudock", "sim-exec", *host, "--", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )


def within(wave: Wave, value: float, slack: float = 1.0) -> bool:
    return wave.base - wave.amplitude - slack <= value <= wave.base + wave.amplitude + slack


@pytest.fixture
def small(tmp_path) -> tuple[str, Scenario]:
    f = tmp_path / "two-l40s.toml"
    f.write_text(SMALL)
    return str(f), load_scenario(f)


# -- gpustat --------------------------------------------------------------------------------------


def check_gpustat(out: dict, sc: Scenario) -> None:
    assert out["driver_version"] == sc.driver_version
    assert [g["index"] for g in out["gpus"]] == list(range(len(sc.gpus)))
    for g, s in zip(out["gpus"], sc.gpus):
        assert (g["uuid"], g["name"], g["memory.total"]) == (s.uuid, s.name, s.memory_total_mib)
        assert g["enforced.power.limit"] == s.power_limit_w
        assert within(s.temperature_c, g["temperature.gpu"])
        assert within(s.utilization_gpu, g["utilization.gpu"])
        assert within(s.power_w, g["power.draw"])
        assert within(s.memory_used_mib, g["memory.used"])
        assert within(s.encoder_utilization, g["utilization.enc"])
        assert within(s.decoder_utilization, g["utilization.dec"])
        if s.fans:
            assert within(s.fan_speed, g["fan.speed"])
        else:
            assert g["fan.speed"] is None


def test_gpustat_json_on_the_demo_shows_every_card_as_the_scenario_has_it():
    r = sim_exec("gpustat", "--json")
    assert r.returncode == 0, r.stderr
    check_gpustat(json.loads(r.stdout), builtin_scenario("demo"))


def test_gpustat_json_on_a_scenario(small):
    path, sc = small
    r = sim_exec("gpustat", "--json", sim=path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    check_gpustat(out, sc)
    g0, g1 = out["gpus"]
    assert (g0["fan.speed"], g0["utilization.enc"], g0["utilization.dec"], g0["power.draw"]) == (44, 7, 19, 120)
    assert g1["fan.speed"] is None  # the card has no fan: NVML says NOT_SUPPORTED, gpustat shows null


# -- nvitop ---------------------------------------------------------------------------------------

_ROW1 = re.compile(
    r"│\s+(?P<index>\d+)\s+(?P<name>.+?)\s+(?P<persistence>On|Off|N/A)\s*│\s*(?P<bus>[0-9A-F:.]+)\s+"
    r"(?P<display>On|Off|N/A)\s*│\s*(?:(?P<mig>Enabled|Disabled|N/A)\s+)?(?P<ecc>\d+|N/A)\s*│"
)
_ROW2 = re.compile(
    r"│\s*(?P<fan>\d+%|MAX|N/A)\s+(?P<temp>\d+)C\s+(?P<perf>P\d+|N/A)\s+(?P<power>\d+)W\s*/\s*(?P<limit>\d+)W\s*│"
    r"\s*(?P<used>[\d.]+\w+)\s*/\s*(?P<total>[\d.]+\w+)\s*│\s*(?P<util>\d+)%\s+(?P<compute>.+?)\s*│"
)
_MIG = re.compile(
    r"│\s*(?P<gpu>\d+):(?P<mig>\d+)\s+(?P<profile>\S+)\s+@ GI/CI:\s*(?P<gi>\d+)/(?P<ci>\d+)\s*│"
    r"\s*(?P<used>[\d.]+\w+)\s*/\s*(?P<total>[\d.]+\w+)\s*│\s*BAR1:"
)


def nvitop_devices(text: str) -> tuple[list[dict], list[dict]]:
    lines = text.splitlines()
    devices, migs = [], []
    for i, line in enumerate(lines):
        m = _ROW1.match(line)
        if m:
            m2 = _ROW2.match(lines[i + 1])
            assert m2, lines[i + 1]
            devices.append({**m.groupdict(), **m2.groupdict()})
        m = _MIG.match(line)
        if m:
            migs.append(m.groupdict())
    return devices, migs


def _gib(mib: int) -> str:
    """nvitop's bytes2human for a size of at least 1000 MiB."""
    return f"{mib / 1024:.2f}GiB" if mib >= 20 * 1024 else f"{mib}MiB"


def check_nvitop(text: str, sc: Scenario) -> None:
    devices, migs = nvitop_devices(text)
    assert len(devices) == len(sc.gpus)
    for d, s in zip(devices, sc.gpus):
        assert d["name"] == s.name.removeprefix("NVIDIA ")
        assert d["bus"] == s.pci_bus_id
        assert d["persistence"] == ("On" if s.persistence_mode else "Off")
        assert d["display"] == ("On" if s.display_active else "Off")
        if any(x.mig_current is not None for x in sc.gpus):  # nvitop shows the column only then
            assert d["mig"] == {True: "Enabled", False: "Disabled", None: "N/A"}[s.mig_current]
        else:
            assert d["mig"] is None
        assert d["ecc"] == (str(s.ecc_errors.volatile_uncorrected) if s.ecc_mode else "N/A")
        if s.fans:
            assert within(s.fan_speed, int(d["fan"].rstrip("%")))
        else:
            assert d["fan"] == "N/A"
        assert within(s.temperature_c, int(d["temp"]))
        assert d["perf"] == f"P{s.performance_state}"
        assert within(s.power_w, int(d["power"])) and int(d["limit"]) == s.power_limit_w
        assert d["total"] == _gib(s.memory_total_mib)
        assert within(s.utilization_gpu, int(d["util"]))
        compute = {0: "Default", 2: "Prohibited", 3: "E. Process"}[s.compute_mode]
        assert d["compute"] == compute
    expected_migs = [(gi, mi, m) for gi, s in enumerate(sc.gpus) for mi, m in enumerate(s.mig) if s.mig_current]
    assert len(migs) == len(expected_migs)
    for row, (gi, mi, m) in zip(migs, expected_migs):
        assert (int(row["gpu"]), int(row["mig"]), row["profile"]) == (gi, mi, m.profile)
        assert (int(row["gi"]), int(row["ci"])) == (m.gpu_instance_id, m.compute_instance_id)
        assert row["total"] == _gib(m.memory_total_mib)


def test_nvitop_once_on_the_demo_prints_all_8_gpus_and_their_mig_rows():
    r = sim_exec("nvitop", "--once")
    assert r.returncode == 0, r.stderr
    assert "FunctionNotFound" not in r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "Driver Version: 535.129.03" in r.stdout and "CUDA Driver Version: 12.2" in r.stdout
    check_nvitop(r.stdout, builtin_scenario("demo"))


def test_nvitop_once_on_a_scenario(small):
    path, sc = small
    r = sim_exec("nvitop", "--once", sim=path)
    assert r.returncode == 0, r.stderr
    assert "FunctionNotFound" not in r.stdout + r.stderr
    check_nvitop(r.stdout, sc)
    devices, _ = nvitop_devices(r.stdout)
    assert (devices[0]["fan"], devices[0]["perf"], devices[0]["ecc"], devices[0]["compute"]) == (
        "44%",
        "P2",
        "2",
        "E. Process",
    )
    assert (devices[1]["fan"], devices[1]["ecc"], devices[1]["persistence"]) == ("N/A", "N/A", "Off")


def test_nvitops_own_bug_on_mig_devices_without_bar1_is_still_there(tmp_path):
    """README says it: nvitop 1.7.2 fails on a MIG card whose devices truly lack BAR1
    (``KeyError: 'bar1_memory_percent_string'``). This pins the claim to the pinned version."""
    src = Path(__file__).resolve().parents[2] / "gpudock" / "sim" / "scenarios" / "demo.toml"
    toml = src.read_text().replace(
        'pci_bus_id = "0000:98:00.0"', 'pci_bus_id = "0000:98:00.0"\nunsupported = ["nvmlDeviceGetBAR1MemoryInfo"]'
    )
    f = tmp_path / "no-bar1.toml"
    f.write_text(toml)
    r = sim_exec("nvitop", "--once", sim=str(f))
    assert r.returncode != 0
    assert "KeyError: 'bar1_memory_percent_string'" in r.stderr


# -- programs of the operator's own ------------------------------------------------------------

SCRIPT = """
import pynvml, sys
pynvml.nvmlInit()
n = pynvml.nvmlDeviceGetCount()
for i in range(n):
    h = pynvml.nvmlDeviceGetHandleByIndex(i)
    bar1 = pynvml.nvmlDeviceGetBAR1MemoryInfo(h)
    try:
        fan = pynvml.nvmlDeviceGetFanSpeed(h)
    except pynvml.NVMLError_NotSupported:
        fan = "N/A"
    print(i, pynvml.nvmlDeviceGetPciInfo(h).busId, fan, bar1.bar1Total >> 20, sys.argv[1:])
pynvml.nvmlShutdown()
"""


def test_a_script_and_a_module_run_with_their_arguments(tmp_path, small):
    path, _sc = small
    script = tmp_path / "mine.py"
    script.write_text(SCRIPT)
    r = sim_exec(str(script), "--flag", "x", sim=path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "0 00000000:3B:00.0 44 256 ['--flag', 'x']"
    (tmp_path / "mymod.py").write_text(SCRIPT)
    r = subprocess.run(
        [sys.executable, "-m", "gpudock", "sim-exec", "--sim", path, "--", "-m", "mymod", "a"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1] == "1 00000000:5E:00.0 N/A 256 ['a']"


def test_the_programs_exit_status_comes_back(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text("import sys\nsys.exit(7)\n")
    assert sim_exec(str(script)).returncode == 7


def test_what_cannot_run_in_process_is_refused_in_words():
    r = sim_exec("ls")
    assert r.returncode == 2 and "not a Python program" in r.stderr
    r = sim_exec("no-such-program-anywhere")
    assert r.returncode == 2 and "pip install" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "gpudock", "sim-exec", "--", "nvitop"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and "--demo, or --sim NAME|FILE" in r.stderr


def test_sim_accepts_a_built_in_name():
    r = subprocess.run(
        [sys.executable, "-m", "gpudock", "sim-exec", "--sim", "demo", "--", "gpustat", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["gpus"]) == 8
