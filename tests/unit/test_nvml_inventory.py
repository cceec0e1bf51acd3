"""The NVML layer against simulated hosts: the real pynvml bindings over the simulated library."""

from __future__ import annotations

import pynvml
import pytest

from gpudock.sim.libnvml import SimNvmlLibrary
from gpudock.sim.scenario import ScenarioError, builtin_scenario, load_scenario, parse_scenario
from helpers.sim import frozen_demo, gpu, scenario, session


@pytest.fixture(autouse=True)
def _no_leaked_session():
    yield
    pynvml.nvmlLib = None
    pynvml._nvmlGetFunctionPointer_cache.clear()


def test_gpu_at_bus_05_is_index_0_but_dev_nvidia3():
    with session(frozen_demo()) as s:
        snap = s.snapshot()
    g = snap.gpus[0]
    assert (g.index, g.pci_bus_id, g.minor, g.device) == (0, "00000000:05:00.0", 3, "/dev/nvidia3")
    assert g.sysfs_bus_id == "0000:05:00.0"
    # no card of the demo has minor == index except by accident of the layout: the map is explicit
    assert [x.minor for x in snap.gpus] == [3, 0, 1, 2, 7, 4, 5, 6]


def test_demo_host_versions_and_values_come_through_pynvml():
    with session(frozen_demo()) as s:
        snap = s.snapshot()
        assert isinstance(pynvml.nvmlLib, SimNvmlLibrary)  # the boundary is the library object
    assert (snap.driver_version, snap.cuda_driver_version, snap.nvml_version) == ("535.129.03", "12.2", "12.535.129.03")
    assert len(snap.gpus) == 8 and snap.nvml_failure is None
    g0 = snap.gpus[0]
    assert g0.memory_total_mib == 81559 and g0.power_limit_w == 700.0
    assert 0 <= g0.utilization_gpu <= 100 and g0.temperature_c > 0 and g0.power_w > 0
    assert [p.pid for p in g0.processes] == [3904121]
    assert g0.processes[0].command == "python train.py --config llama-70b.yaml --rank 0"
    assert g0.processes[0].used_memory_mib == 71240


def test_mig_instances_and_the_processes_on_them():
    with session(frozen_demo()) as s:
        g = s.snapshot().gpus[6]
    assert g.mig_mode_current is True
    assert [(m.profile, m.memory_total_mib) for m in g.mig_devices] == [
        ("3g.40gb", 40192),
        ("2g.20gb", 19968),
        ("1g.10gb", 9856),
    ]
    assert g.mig_devices[0].uuid.startswith("MIG-")
    assert {p.pid: p.mig_uuid for p in g.processes} == {
        3931007: g.mig_devices[0].uuid,
        3931544: g.mig_devices[1].uuid,
    }


def test_a_lost_gpu_shows_its_error_and_the_others_keep_updating():
    sc = scenario([gpu(0), gpu(1, lost=True), gpu(2)])
    with session(sc) as s:
        snap = s.snapshot()
    assert snap.gpus[1].error.startswith("GPU is lost")
    assert "Xid 79" in snap.gpus[1].error
    assert snap.gpus[0].error is None and snap.gpus[2].error is None
    assert snap.gpus[2].utilization_gpu == 20


def test_a_gpu_lost_while_running_keeps_its_identity():
    sc = scenario([gpu(0), gpu(1), gpu(2)])
    with session(sc) as s:
        first = s.snapshot()
        pynvml.nvmlLib.lose_gpu(1)
        second = s.snapshot()
    assert first.gpus[1].error is None
    lost = second.gpus[1]
    assert lost.error.startswith("GPU is lost")
    assert (lost.uuid, lost.pci_bus_id, lost.minor) == (
        first.gpus[1].uuid,
        first.gpus[1].pci_bus_id,
        first.gpus[1].minor,
    )
    assert lost.utilization_gpu is None
    assert second.gpus[2].utilization_gpu == 20


@pytest.mark.parametrize(
    "init_error, code, nvml_text, advice",
    [
        ("driver_not_loaded", 9, "Driver Not Loaded", "modprobe nvidia"),
        ("lib_rm_version_mismatch", 18, "Driver/library version mismatch", "Reboot"),
        ("no_permission", 4, "Insufficient Permissions", "run gpudock as root"),
        ("library_not_found", 12, "NVML Shared Library Not Found", "install the NVIDIA driver"),
        ("unknown", 999, "Unknown Error", "daemon-reload"),
    ],
)
def test_each_init_failure_is_explained(init_error, code, nvml_text, advice):
    with session(scenario(init_error=init_error)) as s:
        snap = s.snapshot()
    assert snap.gpus == ()
    f = snap.nvml_failure
    assert (f.code, f.nvml_text) == (code, nvml_text)
    assert advice in f.message


def test_an_old_driver_without_v3_process_calls_falls_back_to_v2():
    sc = scenario(
        [gpu(0, process=[{"pid": 4242, "used_memory_mib": 100, "command": "a.out"}])],
        missing_functions=["nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetGraphicsRunningProcesses_v3"],
    )
    with session(sc) as s:
        procs = s.snapshot().gpus[0].processes
        assert s._proc_fns["compute"] is pynvml.nvmlDeviceGetComputeRunningProcesses_v2
    assert [(p.pid, p.used_memory_mib) for p in procs] == [(4242, 100)]


def test_functions_the_driver_lacks_answer_function_not_found_and_become_null():
    sc = scenario([gpu(0)], missing_functions=["nvmlDeviceGetMinorNumber", "nvmlSystemGetCudaDriverVersion"])
    with session(sc) as s:
        snap = s.snapshot()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        with pytest.raises(pynvml.NVMLError_FunctionNotFound):
            pynvml.nvmlDeviceGetMinorNumber(handle)
        with pytest.raises(pynvml.NVMLError_FunctionNotFound):
            pynvml.nvmlDeviceGetVbiosVersion(handle)  # never simulated: what an old driver answers
    g = snap.gpus[0]
    assert g.minor is None and g.device is None and g.error is None
    assert snap.cuda_driver_version is None
    assert g.to_json()["minor"] is None


def test_values_a_gpu_does_not_support_are_null_not_errors():
    sc = scenario([gpu(0, unsupported=["nvmlDeviceGetPowerUsage", "nvmlDeviceGetTemperature"], serial=None)])
    with session(sc) as s:
        g = s.snapshot().gpus[0]
    assert g.power_w is None and g.temperature_c is None and g.serial is None
    assert g.error is None and g.utilization_gpu == 0


def test_mig_mode_unsupported_on_older_cards():
    with session(scenario([gpu(0)])) as s:
        g = s.snapshot().gpus[0]
    assert g.mig_mode_current is None and g.mig_devices == ()


def test_moving_values_move_and_stay_in_range():
    sc = parse_scenario(
        {
            "driver": {"version": "550.54.15"},
            "gpu": [gpu(0, utilization_gpu={"base": 50, "amplitude": 80, "period": 1})],
        }
    )
    t = [0.0]
    lib = SimNvmlLibrary(sc, clock=lambda: t[0])
    seen = set()
    from gpudock.host.nvml import NvmlSession

    with NvmlSession(lambda: lib) as s:
        for i in range(8):
            t[0] = i / 8
            seen.add(s.snapshot().gpus[0].utilization_gpu)
    assert len(seen) > 3 and min(seen) == 0 and max(seen) == 100


def test_the_built_in_demo_scenario_parses_and_has_eight_gpus():
    sc = builtin_scenario("demo")
    assert len(sc.gpus) == 8 and not sc.frozen
    assert sc.gpus[0].pci_bus_id == "00000000:05:00.0" and sc.gpus[0].minor == 3


def test_scenario_errors_say_where(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[driver]\nversion = "535"\n[[gpu]]\nuuid = \n')
    with pytest.raises(ScenarioError) as e:
        load_scenario(bad)
    assert "bad.toml" in str(e.value) and "line 4" in str(e.value)
    with pytest.raises(ScenarioError, match=r"\[\[gpu\]\] #0: missing required key 'memory_total_mib'"):
        parse_scenario(
            {"driver": {"version": "1"}, "gpu": [{"uuid": "GPU-1", "name": "x", "pci_bus_id": "0000:01:00.0"}]}
        )
    with pytest.raises(ScenarioError, match="two GPUs share a device minor"):
        parse_scenario({"driver": {"version": "1"}, "gpu": [gpu(0, minor=1), gpu(1, minor=1)]})
    with pytest.raises(ScenarioError, match="init_error 'oops' is not one of"):
        parse_scenario({"driver": {"version": "1", "init_error": "oops"}})
    with pytest.raises(ScenarioError, match="cannot read the scenario file"):
        load_scenario(tmp_path / "missing.toml")
