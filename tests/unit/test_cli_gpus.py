"""`gpudock gpus [--json]` for scripts: the same inventory as the main screen."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gpudock.cli import main

DEMO_TOML = """
name = "two-cards"
frozen = true
[driver]
version = "550.54.15"
cuda = "12.4"
nvml = "12.550.54.15"
[[gpu]]
uuid = "GPU-aaaaaaaa-0000-4000-8000-000000000001"
name = "NVIDIA L40S"
pci_bus_id = "0000:05:00.0"
minor = 3
memory_total_mib = 46068
memory_used_mib = 1024
utilization_gpu = 37
utilization_memory = 12
temperature_c = 51
power_w = 120.5
power_limit_w = 350
[[gpu]]
uuid = "GPU-aaaaaaaa-0000-4000-8000-000000000002"
name = "NVIDIA L40S"
pci_bus_id = "0000:06:00.0"
minor = 0
memory_total_mib = 46068
lost = true
"""


def run_cli(*argv) -> tuple[int, str, str]:
    p = subprocess.run([sys.executable, "-m", "gpudock.cli", *argv], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def test_gpus_json_has_the_documented_shape(tmp_path):
    sim = tmp_path / "host.toml"
    sim.write_text(DEMO_TOML)
    rc, out, err = run_cli("gpus", "--json", "--sim", str(sim))
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["driver_version"] == "550.54.15"
    assert doc["cuda_driver_version"] == "12.4"
    assert doc["nvml_version"] == "12.550.54.15"
    assert doc["nvml_error"] is None
    g0, g1 = doc["gpus"]
    assert {k: g0[k] for k in ("index", "uuid", "pci_bus_id", "minor", "device")} == {
        "index": 0,
        "uuid": "GPU-aaaaaaaa-0000-4000-8000-000000000001",
        "pci_bus_id": "00000000:05:00.0",
        "minor": 3,
        "device": "/dev/nvidia3",
    }
    assert (
        g0["memory_total_mib"],
        g0["memory_used_mib"],
        g0["utilization_gpu"],
        g0["utilization_memory"],
        g0["temperature_c"],
        g0["power_w"],
        g0["error"],
    ) == (46068, 1024, 37, 12, 51, 120.5, None)
    assert g0["serial"] is None  # not in the scenario: NVML says not supported -> null
    assert g1["error"].startswith("GPU is lost") and g1["utilization_gpu"] is None


def test_global_options_work_before_and_after_the_command(tmp_path, capsys):
    sim = tmp_path / "host.toml"
    sim.write_text(DEMO_TOML)
    assert main(["--sim", str(sim), "gpus", "--json", "--brief"]) == 0
    brief = json.loads(capsys.readouterr().out)
    assert "processes" not in brief["gpus"][0] and brief["gpus"][0]["device"] == "/dev/nvidia3"
    assert main(["gpus", "--demo"]) == 0
    text = capsys.readouterr().out
    assert "00000000:05:00.0  /dev/nvidia3" in text and "sim:demo" in text


def test_no_driver_is_an_error_for_scripts_never_a_silent_simulation(tmp_path):
    rc, out, err = run_cli("gpus", "--json", "--nvml-lib", str(tmp_path / "libnvidia-ml.so.1"))
    assert rc == 2
    doc = json.loads(out)
    assert doc["gpus"] == [] and doc["nvml_error"]["code"] == 12
    assert "install the NVIDIA driver" in doc["nvml_error"]["message"]


def test_a_bad_scenario_file_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[driver\n")
    rc, out, err = run_cli("gpus", "--sim", str(bad))
    assert rc == 2 and "Traceback" not in err
    assert err.startswith("gpudock: ") and "bad.toml" in err


@pytest.mark.parametrize(
    "init_error,text",
    [("lib_rm_version_mismatch", "Driver/library version mismatch"), ("driver_not_loaded", "Driver Not Loaded")],
)
def test_init_failures_in_text_output(tmp_path, init_error, text):
    sim = tmp_path / "f.toml"
    sim.write_text(f'[driver]\nversion = "535.129.03"\ninit_error = "{init_error}"\n')
    rc, out, err = run_cli("gpus", "--sim", str(sim))
    assert rc == 2 and text in out
