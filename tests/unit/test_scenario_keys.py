"""A scenario file with a bad key is refused up front, with the file, the key path and what is
expected; never a traceback, a garbage value or a silent "Unknown Error" further in.

An operator's story: someone writes `period = 0` for a temperature that moves, `minor = "three"`,
`memory_total_mib = -5`, copies a [[gpu]] table and forgets to change its UUID, or saves the file
as Latin-1. `gpudock --sim FILE` says which line or key is wrong and exits 2."""

from __future__ import annotations

import copy
import tomllib
from importlib import resources

import pytest

from gpudock.cli import main
from gpudock.sim.scenario import GPU_KEYS, ScenarioError, load_scenario, parse_scenario
from helpers.sim import gpu

DEMO = tomllib.loads((resources.files("gpudock.sim") / "scenarios" / "demo.toml").read_text(encoding="utf-8"))


def _refused(doc: dict) -> str:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(doc, "bad.toml")
    msg = str(e.value)
    assert msg.startswith("bad.toml: "), msg
    return msg


def _demo(**gpu3) -> dict:
    doc = copy.deepcopy(DEMO)
    doc["gpu"][3].update(gpu3)
    return doc


@pytest.mark.parametrize(
    "change, message",
    [
        # the cases of issue 16, each of which got through before
        (
            {"temperature_c": {"base": 40, "amplitude": 3, "period": 0}},
            "[[gpu]] #3.temperature_c.period: expected seconds from 0.1 to 1000000, got 0",
        ),
        (
            {"minor": "three"},
            "[[gpu]] #3.minor: expected a device minor from 0 to 253 (/dev/nvidiaN; 254 and 255 are not GPUs), "
            "got 'three'",
        ),
        ({"power_limit_w": "x"}, "[[gpu]] #3.power_limit_w: expected a number from 1 to 10000, got 'x'"),
        ({"memory_total_mib": -5}, "[[gpu]] #3.memory_total_mib: expected an integer from 1 to 16777216, got -5"),
        ({"unsupported": 5}, "[[gpu]] #3.unsupported: expected a list of strings, got 5"),
        # more of the same kind
        ({"minor": 255}, "[[gpu]] #3.minor: expected a device minor from 0 to 253"),
        ({"minor": True}, "[[gpu]] #3.minor: expected a device minor"),
        ({"power_limit_w": float("inf")}, "[[gpu]] #3.power_limit_w: expected a number from 1 to 10000, got inf"),
        ({"utilization_gpu": 150}, "[[gpu]] #3.utilization_gpu: expected a number from 0 to 100"),
        ({"temperature_c": -40}, "[[gpu]] #3.temperature_c: expected a number from 0 to 200"),
        ({"power_w": {"amplitude": 3}}, "[[gpu]] #3.power_w: missing required key 'base'"),
        (
            {"power_w": {"base": 70, "wobble": 3}},
            "[[gpu]] #3.power_w: unknown key(s) wobble; expected: amplitude, base",
        ),
        ({"memory_used_mib": 90000}, "[[gpu]] #3.memory_used_mib: 90000 MiB is more than memory_total_mib (81559 MiB)"),
        pytest.param(
            {"clock_sm_mhz": 10**5000},
            "[[gpu]] #3.clock_sm_mhz: expected an integer from 0 to 100000, got an integer of",
            id="5000-digit clock",
        ),
        # found by the fuzz test: TOML's inf and nan in a moving value failed in the library
        (
            {"pcie": {"rx_kib_s": float("inf")}},
            "[[gpu]] #3.pcie.rx_kib_s: must be a finite number below 4294967296, got inf",
        ),
        (
            {"pcie": {"tx_kib_s": {"base": 5, "amplitude": float("nan")}}},
            "#3.pcie.tx_kib_s.amplitude: must be a finite",
        ),
        ({"pcie": {"rx_kib_s": 2**40}}, "#3.pcie.rx_kib_s: must be a finite number below 4294967296"),
        ({"persistence_mode": "yes"}, "[[gpu]] #3.persistence_mode: expected true or false, got 'yes'"),
        ({"pci_bus_id": "0000:1e:00.0.0"}, "[[gpu]] #3.pci_bus_id: expected a PCI bus id such as 0000:05:00.0"),
        ({"uuid": "4f3a1c2e"}, "[[gpu]] #3.uuid: expected a GPU UUID such as GPU-"),
        ({"name": "N" * 96}, "[[gpu]] #3.name: at most 95 bytes (NVML's buffer), got 96"),
        ({"serial": "1\x002"}, "[[gpu]] #3.serial: a NUL character"),
        ({"name": "H100 \ud800"}, "[[gpu]] #3.name: not UTF-8 text (a lone surrogate)"),
        (
            {"unsupported": ["nvmlDeviceGetPowerUsge"]},
            "[[gpu]] #3.unsupported[0]: 'nvmlDeviceGetPowerUsge' is not an NVML function of the simulated library "
            "(did you mean nvmlDeviceGetPowerUsage?)",
        ),
        ({"fan": 30}, "[[gpu]] #3: unknown key(s) fan; expected: bar1_total_mib, bar1_used_mib"),
        ({"process": {"pid": 5}}, "[[gpu]] #3.process: expected an array of tables ([[gpu.process]]), got {'pid': 5}"),
        (
            {"process": [{"pid": 0, "used_memory_mib": 1}]},
            "[[gpu.process]] #0.pid: expected an integer from 1 to 4194304",
        ),
        ({"process": [{"pid": 9, "used_memory_mib": 1, "mig_index": 0}]}, "mig_index: 0, but this GPU has 0 MIG"),
    ],
)
def test_a_bad_gpu_key_is_refused_with_its_path_and_what_it_takes(change, message):
    assert message in _refused(_demo(**change))


def test_every_gpu_key_of_the_demo_is_in_the_key_table():
    """Adding a [[gpu]] key is one line in GPU_KEYS; the parser refuses any key not there."""
    used = {k for g in DEMO["gpu"] for k in g}
    assert used <= set(GPU_KEYS)
    assert parse_scenario(_demo(clock_sm_mhz=1500, lost=False, compute_mode="Exclusive_Process"), "ok.toml")


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("driver", "cuda"), "12.2.1", "[driver].cuda: CUDA version must look like '12.2', got '12.2.1'"),
        pytest.param(
            ("driver", "cuda"), 10**5000, "[driver].cuda: CUDA version must look like '12.2', got an integer", id="cuda"
        ),
        (("driver", "missing_functions"), "nvmlInit_v2", "[driver].missing_functions: expected a list of strings"),
        (("driver", "vendor"), "x", "[driver]: unknown key(s) vendor; expected: cuda, init_error"),
        (("gpu", 6, "mig", 0, "memory_used_mib"), 50000, "[[gpu.mig]] #0.memory_used_mib: 50000 MiB is more than"),
        (("gpu", 6, "mig", 0, "uuid"), "GPU-x", "[[gpu.mig]] #0.uuid: expected a MIG device UUID such as MIG-"),
        (("gpu", 6, "mig", 1, "gpu_instance_id"), 1, "[[gpu.mig]] #0 has the same gpu_instance_id 1"),
        (("docker", "api_version"), "1.12", "[docker].api_version: expected an Engine API version from 1.24"),
        (("docker", "cgroup_driver"), "none", "[docker].cgroup_driver: expected one of systemd, cgroupfs"),
        (("docker", "version"), 26, "[docker].version: expected an engine version such as 26.1.5, got 26"),
        (("image", 0, "size"), "big", "[[image]] #0.size: expected an integer from 0 to"),
        (("container", 0, "name"), "train llama", "[[container]] #0.name: expected a container name"),
        (("container", 0, "exit_code"), 300, "[[container]] #0.exit_code: expected an integer from 0 to 255"),
        (("container", 0, "created"), "yesterday", "'train-llama'.created: expected an RFC 3339 time"),
        (("container", 0, "created"), "2026-13-20T08:14:03Z", "'train-llama'.created: expected an RFC 3339 time"),
        (("container", 2, "devices", 2), "/dev/nvidia1:nvidia0", "the container side must be an absolute path"),
        (("container", 2, "devices", 2), "/dev/nvidia1:/dev/nvidia1:rwx", "permissions must be some of r, w and m"),
        (("container", 0, "device_requests", 0, "count"), 10**9, "count: expected an integer >= -1 (-1: all)"),
        (("container", 0, "privileged"), True, "[[container]] #0: unknown key(s) privileged; expected: command"),
        pytest.param(
            ("host", "boot_time"),
            10**5000,
            "[host].boot_time: expected seconds since the epoch, got an integer of",
            id="5000-digit boot time",
        ),
        (("frozen",), "no", "bad.toml: frozen: expected true or false, got 'no'"),
        (("gpus",), [], "bad.toml: unknown key(s) gpus; expected: container, description, docker, driver"),
    ],
)
def test_a_bad_key_anywhere_is_refused_with_its_path(path, value, message):
    doc = copy.deepcopy(DEMO)
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    assert message in _refused(doc)


def test_duplicate_gpus_name_both_tables():
    doc = copy.deepcopy(DEMO)
    doc["gpu"].append(copy.deepcopy(doc["gpu"][3]))
    assert _refused(doc) == (
        "bad.toml: two GPUs share a UUID: [[gpu]] #3 and [[gpu]] #8 are both 'GPU-77c0ffee-0b1c-4d2e-8f3a-4b5c6d7e8f04'"
    )
    doc["gpu"][8]["uuid"] = "GPU-77c0ffee-0b1c-4d2e-8f3a-4b5c6d7e8f99"
    assert _refused(doc) == "bad.toml: two GPUs share a device minor: [[gpu]] #3 and [[gpu]] #8 are both 2"
    doc["gpu"][8]["minor"] = 8
    assert _refused(doc).startswith("bad.toml: two GPUs share a PCI bus id: [[gpu]] #3 and [[gpu]] #8 are both")
    # a GPU without a minor takes its index: index 1 against an explicit minor 1
    two = [gpu(0, minor=1), {k: v for k, v in gpu(1).items() if k != "minor"}]
    assert "two GPUs share a device minor: [[gpu]] #0 and [[gpu]] #1 are both 1" in _refused(
        {"driver": {"version": "535.129.03"}, "gpu": two}
    )
    doc = copy.deepcopy(DEMO)
    doc["container"].append({"name": "triton"})
    assert "two containers share a name: [[container]] #1 and [[container]] #8 are both 'triton'" in _refused(doc)


def test_invalid_utf8_gives_the_line_and_column(tmp_path):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('[driver]\nversion = "535.129.03"\n[[gpu]]\nname = "Tesla Gr\xfcn"\n'.encode("latin-1"))
    with pytest.raises(ScenarioError) as e:
        load_scenario(bad)
    assert str(e.value).startswith(f"{bad}: line 4, column 17: byte 0xfc is not UTF-8 text")
    # columns count characters, as an editor does, not bytes
    bad.write_bytes('name = "é" # '.encode() + b"\xff\n")
    with pytest.raises(ScenarioError, match=r"line 1, column 14: byte 0xff"):
        load_scenario(bad)


def test_nesting_too_deep_to_read_is_refused(tmp_path):
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ScenarioError) as e:
        load_scenario(deep)
    assert str(e.value).startswith(f"{deep}: ")


def test_the_cli_refuses_a_bad_file_in_one_line_and_exits_2(tmp_path, capsys):
    bad = tmp_path / "host.toml"
    bad.write_text(
        '[driver]\nversion = "535.129.03"\n[[gpu]]\nuuid = "GPU-1"\nname = "x"\npci_bus_id = "0000:05:00.0"\n'
        "memory_total_mib = 81559\ntemperature_c = { base = 40, amplitude = 3, period = 0 }\n"
    )
    rc = main(["--sim", str(bad), "gpus"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert f"{bad}: [[gpu]] #0.temperature_c.period: expected seconds from 0.1 to 1000000, got 0" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_many_unknown_keys_are_named_five_at_a_time():
    doc = copy.deepcopy(DEMO)
    doc["driver"].update({f"k{i:02d}": 1 for i in range(20)})
    doc["driver"]["odd key"] = 1
    msg = _refused(doc)
    assert msg.startswith("bad.toml: [driver]: unknown key(s) k00, k01, k02, k03, k04 and 16 more; expected: cuda")
