"""scripts/device-check's comparison: gpudock against nvidia-smi -q -x and ldconfig -p.

The nvidia-smi output is tests/data/nvidia-smi/hgx-h100-2gpu-q-x.xml, written after NVIDIA's
nvsmi_device_v12.dtd layout (not recorded on a GPU): two H100s, index 0 at bus 05 being
/dev/nvidia3. gpudock's side is gpudock itself on a simulated host shaped like it, and the loader's
side a real ld.so.cache written by ldconfig over real driver-named ELF libraries.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pynvml
import pytest

from gpudock import devicecheck
from gpudock.cli import main as gpudock_main
from helpers.libroot import make_driver_root
from helpers.sim import gpu, scenario, session

XML = (Path(__file__).resolve().parents[1] / "data" / "nvidia-smi" / "hgx-h100-2gpu-q-x.xml").read_text()
LIBDIR = "/usr/lib/x86_64-linux-gnu"


@pytest.fixture(autouse=True)
def _no_leaked_session():
    yield
    pynvml.nvmlLib = None
    pynvml._nvmlGetFunctionPointer_cache.clear()


def the_same_host(over: dict | None = None):
    """gpudock's view of the XML's host, through the simulated library (``over``: per-index GPU keys,
    "driver": driver keys)."""
    over = over or {}
    cards = [
        ("GPU-4f3a1c2e-9b7d-4e21-8a55-0c1d2e3f4a01", "0000:05:00.0", 3),
        ("GPU-a81c77d0-3e5f-4b6a-9c2d-1e0f2a3b4c02", "0000:0a:00.0", 0),
    ]
    gpus = []
    for i, (u, b, m) in enumerate(cards):
        keys = dict(uuid=u, pci_bus_id=b, minor=m, name="NVIDIA H100 80GB HBM3", memory_total_mib=81559)
        keys.update(bar1_total_mib=131072, pcie={"gen": 5, "width": 16}, **over.get(i, {}))
        gpus.append(gpu(i, **keys))
    with session(scenario(gpus, **over.get("driver", {}))) as s:
        return json.dumps(s.snapshot().to_json())


@pytest.fixture(scope="module")
def driver_root(tmp_path_factory):
    return make_driver_root(tmp_path_factory.mktemp("root"), {"535.129.03": [LIBDIR]})


def libs_json(root: str, capsys) -> str:
    capsys.readouterr()
    assert gpudock_main(["libs", "--json", "--root", root]) == 0
    return capsys.readouterr().out


def ldconfig_p(cache: str) -> str:
    return subprocess.run(["ldconfig", "-C", cache, "-p"], capture_output=True, text=True, check=True).stdout


def test_the_recorded_xml_reads_as_nvidia_smi_q_shows_it():
    log = devicecheck.parse_smi_xml(XML)
    assert (log.driver_version, log.cuda_version) == ("535.129.03", "12.2")
    g0, g1 = log.gpus
    assert (g0.index, g0.pci_bus_id, g0.minor) == (0, "00000000:05:00.0", 3)  # index 0 is /dev/nvidia3
    assert (g1.index, g1.pci_bus_id, g1.minor) == (1, "00000000:0A:00.0", 0)
    assert (g0.memory_total_mib, g0.bar1_total_mib, g0.pcie_gen_max, g0.pcie_width_max) == (81559, 131072, 5, 16)
    assert g0.uuid == "GPU-4f3a1c2e-9b7d-4e21-8a55-0c1d2e3f4a01"


def test_ldconfig_p_gives_the_loaders_pick_per_soname(driver_root):
    picks = devicecheck.ldconfig_picks(ldconfig_p(driver_root.cache))
    assert picks["libnvidia-ml.so.1"] == f"{LIBDIR}/libnvidia-ml.so.1"
    assert picks["libcuda.so.1"] == f"{LIBDIR}/libcuda.so.1"


def test_every_fact_agrees_on_a_host_gpudock_reads_right(driver_root, capsys):
    rows = devicecheck.compare(
        the_same_host(),
        libs_json(driver_root.root, capsys),
        None,
        None,
        XML,
        ldconfig_p(driver_root.cache),
    )
    bad = [r for r in rows if not r.ok]
    assert bad == []
    what = {r.what: r for r in rows}
    assert what["GPU 0 minor (/dev/nvidiaN)"].gpudock == "3" == what["GPU 0 minor (/dev/nvidiaN)"].reference
    assert what["GPU 1 bus id"].reference == "00000000:0A:00.0"
    assert what["libnvidia-ml.so.1: its driver version"].gpudock == "535.129.03"
    assert what["libcuda.so.1: the loader's pick"].source == "ldconfig -p"
    table = devicecheck.render(rows)
    assert "all agree" in table and "DIFF" not in table


def test_a_minor_read_wrong_is_a_disagreement(driver_root, capsys):
    # gpudock says bus 05 is /dev/nvidia0, as a tool that maps by index would: the classic mistake
    rows = devicecheck.compare(
        the_same_host({0: {"minor": 7}}), libs_json(driver_root.root, capsys), None, None, XML, ""
    )
    bad = {r.what: r for r in rows if not r.ok}
    assert bad["GPU 0 minor (/dev/nvidiaN)"].gpudock == "7"
    assert bad["GPU 0 minor (/dev/nvidiaN)"].reference == "3"
    assert "DIFF" in devicecheck.render(rows)


def test_other_driver_versions_and_loader_picks_are_disagreements(tmp_path, capsys):
    # the loader resolves 470's libraries while the running driver is 535 (an upgrade half done)
    old = make_driver_root(tmp_path / "old", {"470.57.02": [LIBDIR]})
    rows = devicecheck.compare(
        the_same_host({"driver": {"version": "470.57.02", "cuda": "11.4"}}),
        libs_json(old.root, capsys),
        None,
        None,
        XML,
        "\tlibnvidia-ml.so.1 (libc6,x86-64) => /usr/lib64/nvidia/libnvidia-ml.so.1\n",
    )
    bad = {r.what for r in rows if not r.ok}
    assert {"driver version", "CUDA version (driver's)", "libnvidia-ml.so.1: its driver version"} <= bad
    assert "libnvidia-ml.so.1: the loader's pick" in bad
    assert "GPU 0 UUID" not in bad


def test_doctor_and_holders_rows():
    smi = devicecheck.parse_smi_xml(XML)
    ok = {"findings": [{"id": "driver-library-mismatch", "severity": "ok", "title": "driver and libraries agree"}]}
    assert devicecheck._doctor_row(json.dumps(ok), smi).ok
    bad = {"findings": [{"id": "driver-library-mismatch", "severity": "error", "title": "mismatch"}]}
    assert not devicecheck._doctor_row(json.dumps(bad), smi).ok
    assert devicecheck._holders_row(json.dumps({"gpus": [{}, {}]}), smi).ok
    assert not devicecheck._holders_row(json.dumps({"gpus": [{}]}), smi).ok
    assert not devicecheck._holders_row("not json", smi).ok


class FakeTools:
    """The commands main() runs, answered from recorded outputs."""

    def __init__(self, outputs: dict[str, tuple[int, str]]):
        self.outputs = outputs
        self.ran: list[list[str]] = []

    def __call__(self, cmd: list[str]) -> subprocess.CompletedProcess:
        self.ran.append(cmd)
        key = " ".join(cmd[2:4]) if cmd[1:3] == ["-m", "gpudock"] else " ".join(cmd[:2])
        rc, out = self.outputs[key]
        return subprocess.CompletedProcess(cmd, rc, out, "")


def test_main_prints_the_table_and_exits_0_when_all_agree(driver_root, capsys):
    libs = libs_json(driver_root.root, capsys)
    doctor = {"findings": [{"id": "driver-library-mismatch", "severity": "ok", "title": "agree"}]}
    tools = FakeTools(
        {
            "nvidia-smi -q": (0, XML),
            "gpudock gpus": (0, the_same_host()),
            "gpudock libs": (0, libs),
            "gpudock doctor": (0, json.dumps(doctor)),
            "gpudock holders": (0, json.dumps({"gpus": [{}, {}]})),
            "ldconfig -p": (0, ldconfig_p(driver_root.cache)),
        }
    )
    rc = devicecheck.main([], runner=tools, which=lambda name: "/usr/bin/" + name)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "2 GPU(s): NVIDIA H100 80GB HBM3, NVIDIA H100 80GB HBM3" in out and "all agree" in out
    assert ["gpus", "libs", "doctor", "holders"] == [c[3] for c in tools.ran if c[1:3] == ["-m", "gpudock"]]


def test_main_exits_1_on_a_disagreement(driver_root, capsys):
    libs = libs_json(driver_root.root, capsys)
    tools = FakeTools(
        {
            "nvidia-smi -q": (0, XML.replace("<minor_number>0</minor_number>", "<minor_number>5</minor_number>")),
            "gpudock gpus": (0, the_same_host()),
            "gpudock libs": (0, libs),
            "gpudock doctor": (1, "{}"),
            "gpudock holders": (0, json.dumps({"gpus": [{}, {}]})),
            "ldconfig -p": (0, ldconfig_p(driver_root.cache)),
        }
    )
    assert devicecheck.main([], runner=tools, which=lambda name: "/usr/bin/" + name) == 1
    out = capsys.readouterr().out
    assert any(line.startswith("DIFF") and "GPU 1 minor" in line for line in out.splitlines())


def test_without_a_gpu_it_says_so_and_exits_2(capsys):
    assert devicecheck.main([], runner=FakeTools({}), which=lambda name: None) == 2
    assert "no NVIDIA driver on this machine" in capsys.readouterr().out
    failing = FakeTools(
        {
            "nvidia-smi -q": (
                9,
                "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
                "Make sure that the latest NVIDIA driver is installed and running.\n",
            )
        }
    )
    assert devicecheck.main([], runner=failing, which=lambda name: "/usr/bin/" + name) == 2
    assert "couldn't communicate with the NVIDIA driver" in capsys.readouterr().out
    empty = FakeTools({"nvidia-smi -q": (0, "<nvidia_smi_log><driver_version>535</driver_version></nvidia_smi_log>")})
    assert devicecheck.main([], runner=empty, which=lambda name: "/usr/bin/" + name) == 2
    assert "lists no GPU" in capsys.readouterr().out


def test_the_script_on_this_machine_without_a_gpu_exits_2():
    script = Path(__file__).resolve().parents[2] / "scripts" / "device-check"
    r = subprocess.run([str(script)], capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "nothing to compare" in r.stdout
