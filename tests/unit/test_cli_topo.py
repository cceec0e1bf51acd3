"""`gpudock topo [--json]`: the GPU-to-GPU matrix as `nvidia-smi topo -m` prints it, with affinity."""

from __future__ import annotations

import json

import pynvml
import pytest

from gpudock.cli import main

PCIE_HOST = """
name = "pcie-box"
frozen = true
[driver]
version = "550.54.15"
[[gpu]]
uuid = "GPU-bbbbbbbb-0000-4000-8000-000000000001"
name = "NVIDIA L40S"
pci_bus_id = "0000:05:00.0"
minor = 2
memory_total_mib = 46068
numa_node = 0
cpu_affinity = "0-15"
pcie = { path = ["pci0000:00", "plx0"] }
[[gpu]]
uuid = "GPU-bbbbbbbb-0000-4000-8000-000000000002"
name = "NVIDIA L40S"
pci_bus_id = "0000:06:00.0"
minor = 0
memory_total_mib = 46068
numa_node = 0
cpu_affinity = "0-15"
pcie = { path = ["pci0000:00", "plx0"] }
[[gpu]]
uuid = "GPU-bbbbbbbb-0000-4000-8000-000000000003"
name = "NVIDIA L40S"
pci_bus_id = "0000:85:00.0"
minor = 1
memory_total_mib = 46068
numa_node = 1
cpu_affinity = "16-31"
pcie = { path = ["pci0000:80"] }
"""


@pytest.fixture(autouse=True)
def _no_leaked_session():
    yield
    pynvml.nvmlLib = None
    pynvml._nvmlGetFunctionPointer_cache.clear()


def test_topo_text_is_the_nvidia_smi_matrix(tmp_path, capsys):
    f = tmp_path / "host.toml"
    f.write_text(PCIE_HOST)
    assert main(["topo", "--sim", str(f)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["GPU0", "GPU1", "GPU2", "CPU", "Affinity", "NUMA", "Affinity"]
    assert out[1].split() == ["GPU0", "X", "PIX", "SYS", "0-15", "0"]
    assert out[2].split() == ["GPU1", "PIX", "X", "SYS", "0-15", "0"]
    assert out[3].split() == ["GPU2", "SYS", "SYS", "X", "16-31", "1"]
    assert any(line.strip().startswith("NV#") for line in out)


def test_topo_json(tmp_path, capsys):
    f = tmp_path / "host.toml"
    f.write_text(PCIE_HOST)
    assert main(["topo", "--json", "--sim", str(f)]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["matrix"] == [["X", "PIX", "SYS"], ["PIX", "X", "SYS"], ["SYS", "SYS", "X"]]
    assert j["pcie_levels"][0][1] == 10 and j["pcie_levels"][0][2] == 50
    assert [g["cpu_affinity"] for g in j["gpus"]] == ["0-15", "0-15", "16-31"]
    assert [g["numa_node"] for g in j["gpus"]] == [0, 0, 1]
    assert j["legend"]["PIX"].startswith("Connection traversing at most a single PCIe bridge")


def test_topo_on_the_demo_shows_the_nvswitch_fabric(capsys):
    assert main(["topo", "--json", "--demo"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["matrix"][0][1] == "NV18" and j["matrix"][0][4] == "NV17"
    assert j["source"] == "sim:demo"


def test_topo_without_nvml_says_why_and_exits_2(tmp_path, capsys):
    f = tmp_path / "broken.toml"
    f.write_text('[driver]\nversion = "535.129.03"\ninit_error = "driver_not_loaded"\n')
    assert main(["topo", "--sim", str(f)]) == 2
    assert "Driver Not Loaded" in capsys.readouterr().out
