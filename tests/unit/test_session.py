"""The host session: one place decides real or simulated, and a simulated host is whole.

An operator's story: `gpudock --sim driver-mismatch doctor` examines a host whose driver was
upgraded without a reboot; every command and screen sees the same GPUs, engine and files; bad
options are refused with what to do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import docker
import pytest

from gpudock.cli import main
from gpudock.session import Options, SessionError, builtin_scenarios, open_session
from gpudock.sim.host import PREFIX, SimHost, remove_stale
from gpudock.sim.scenario import ScenarioError, builtin_scenario, parse_scenario


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# --------------------------------------------------------------------------- options


def test_demo_and_sim_together_are_refused():
    with pytest.raises(SessionError, match="--demo and --sim name two simulated hosts"):
        Options(demo=True, sim="stray-libs").check()


@pytest.mark.parametrize("flag, value", [("root", "/srv/host"), ("nvml_lib", "/x/libnvidia-ml.so.1")])
def test_a_simulated_host_brings_its_own_files_and_library(flag, value):
    with pytest.raises(SessionError, match=f"leave out --{flag.replace('_', '-')}"):
        Options(demo=True, **{flag: value}).check()


def test_an_unknown_scenario_name_lists_the_built_in_ones(capsys):
    rc, out, err = run(capsys, "--sim", "drvier-mismatch", "gpus")
    assert rc == 2 and out == ""
    assert "no built-in scenario of that name and no such file" in err
    for name in ("demo", "driver-mismatch", "daemon-reload", "stray-libs"):
        assert name in err


def test_a_missing_scenario_file_says_so(capsys, tmp_path):
    rc, _, err = run(capsys, "--sim", str(tmp_path / "nope.toml"), "gpus")
    assert rc == 2 and "cannot read the scenario file" in err


def test_scenarios_lists_every_built_in_host(capsys):
    rc, out, _ = run(capsys, "scenarios", "--json")
    names = [s["name"] for s in json.loads(out)]
    assert rc == 0 and names[0] == "demo" and set(names) == {"demo", "driver-mismatch", "daemon-reload", "stray-libs"}
    assert [n for n, _ in builtin_scenarios()] == names


@pytest.mark.parametrize(
    "argv",
    [
        ["toolkit", "status", "--demo", "--json", "--no-engine"],
        ["--demo", "toolkit", "status", "--json", "--no-engine"],
        ["toolkit", "--demo", "status", "--json", "--no-engine"],
    ],
)
def test_global_options_go_before_or_after_any_command(capsys, argv):
    rc, out, err = run(capsys, *argv)
    assert rc == 0, err
    doc = json.loads(out)
    # the demo's own config.toml, found where the toolkit looks for it on the simulated host
    assert doc["config"]["path"].endswith("/host/etc/nvidia-container-runtime/config.toml")
    assert PREFIX in doc["config"]["path"] and doc["config"]["exists"]


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("gpudock ")


# --------------------------------------------------------------------------- one host for everything


def test_every_command_sees_the_same_simulated_host(capsys):
    rc, out, _ = run(capsys, "--demo", "gpus", "--json")
    gpus = json.loads(out)["gpus"]
    rc, out, _ = run(capsys, "--demo", "holders", "--json")
    holders = json.loads(out)
    assert [g["uuid"] for g in holders["gpus"]] == [g["uuid"] for g in gpus]
    assert holders["docker"]["state"] == "ok" and "/host/run/docker.sock" in holders["docker"]["base_url"]
    rc, out, _ = run(capsys, "--demo", "libs", "--json")
    libs = json.loads(out)
    assert libs["versions"] == ["535.129.03"]
    rc, out, _ = run(capsys, "--demo", "toolkit", "status", "--json")
    status = json.loads(out)
    assert status["engine"]["reachable"] and status["engine"]["knows_runtime"]


def test_the_demo_doctor_gives_the_same_findings_every_time():
    def findings():
        p = subprocess.run(
            [sys.executable, "-m", "gpudock", "--demo", "doctor", "--json"], capture_output=True, text=True, timeout=60
        )
        assert p.returncode == 0, p.stderr  # warnings, but no error: the demo's driver is healthy
        return [(f["id"], f["severity"], f["summary"]) for f in json.loads(p.stdout)["findings"]]

    first = findings()
    assert first == findings()
    sev = {i: s for i, s, _ in first}
    assert sev["device-nodes"] == sev["driver-library-mismatch"] == sev["nvml-init"] == "ok"
    assert sev["cgroup-device-loss"] == "warning" and sev["cuda-compat"] == "warning" and sev["xid"] == "info"


def test_the_session_hands_out_the_engine_it_watches():
    with open_session(Options(demo=True)) as host:
        assert host.simulated and host.hostname == "gpu-demo-01"
        client = host.docker_client()
        assert {c.name for c in client.containers.list()} >= {"train-llama", "triton"}
        assert host.watcher().base_url == host.docker_url
        sock = host.sim.files.docker_socket
        assert sock == host.root.real("/var/run/docker.sock") and os.path.exists(sock)
    assert not os.path.exists(sock)


def test_the_dashboard_falls_back_to_the_demo_only_without_a_driver(tmp_path):
    # a library path that does not exist: "no libnvidia-ml.so.1", as on a laptop
    opts = Options(nvml_lib=str(tmp_path / "libnvidia-ml.so.1"))
    with open_session(opts) as host:
        assert not host.simulated and host.snapshot().nvml_failure.code == 12
    with open_session(opts, fallback_to_demo=True) as host:
        assert host.simulated and "No NVIDIA driver on this machine" in host.banner
    with open_session(Options(nvml_lib=opts.nvml_lib, no_demo=True), fallback_to_demo=True) as host:
        assert not host.simulated


# --------------------------------------------------------------------------- the built-in broken hosts


def _doctor(capsys, name):
    rc, out, err = run(capsys, "--sim", name, "doctor", "--json")
    return rc, {f["id"]: f for f in json.loads(out)["findings"]}


def test_driver_mismatch_host(capsys):
    rc, f = _doctor(capsys, "driver-mismatch")
    assert rc == 1
    m = f["driver-library-mismatch"]
    assert m["severity"] == "error" and "535.129.03" in m["title"] and "550.54.15" in m["title"]
    assert "reboot or module reload pending" in m["title"]
    assert f["nvml-init"]["severity"] == "error" and f["nvml-init"]["data"]["code"] == 18
    assert f["reboot-pending"]["severity"] == "warning"
    rc, out, err = run(capsys, "--sim", "driver-mismatch", "gpus")
    assert rc == 2 and "Driver/library version mismatch" in out


def test_daemon_reload_host(capsys):
    rc, f = _doctor(capsys, "daemon-reload")
    loss = f["cgroup-device-loss"]
    assert loss["severity"] == "warning" and loss["data"]["containers"] == ["finetune", "triton", "render"]
    assert "eval" not in loss["summary"]  # CDI: its devices are in its OCI spec
    assert any(e["source"] == "/dev/char" for e in loss["evidence"])


def test_stray_libs_host(capsys):
    rc, f = _doctor(capsys, "stray-libs")
    assert rc == 1
    assert f["stray-driver-libraries"]["severity"] == "error"
    m = f["driver-library-mismatch"]
    assert m["severity"] == "error" and "loader picks 470.57.02" in m["title"]
    assert f["nvml-init"]["severity"] == "ok"  # libnvidia-ml is the right one: nvidia-smi looks fine


# --------------------------------------------------------------------------- the simulated host's files


def test_the_simulated_loader_cache_is_a_real_one():
    with SimHost(builtin_scenario("stray-libs")) as sim:
        cache = sim.root.real("/etc/ld.so.cache")
        p = subprocess.run(["ldconfig", "-C", cache, "-p"], capture_output=True, text=True, check=True)
    lines = [ln.strip() for ln in p.stdout.splitlines() if "libcuda.so.1" in ln]
    # both installations, the stray one first: the one the loader takes
    assert lines == [
        "libcuda.so.1 (libc6,x86-64) => /usr/local/lib/x86_64-linux-gnu/libcuda.so.1",
        "libcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1",
    ]


def test_a_gpu_container_started_with_debug_on_writes_the_hooks_log(capsys):
    with open_session(Options(demo=True)) as host:
        assert main(["toolkit", "debug", "on", "--yes", "--demo"]) == 0  # (another session: its own host)
        from gpudock.toolkit.config import apply_plan, load_config, locate_config, plan_debug

        loc = locate_config(root=host.root, environ=host.environ)
        apply_plan(plan_debug(load_config(loc.path), "hook", True))
        client = host.docker_client()
        client.containers.run(
            "nvidia/cuda:12.0.1-base-ubuntu22.04",
            "nvidia-smi",
            detach=True,
            device_requests=[docker.types.DeviceRequest(device_ids=["2"], capabilities=[["gpu"]])],
        )
        log = host.root.read_text("/var/log/nvidia-container-toolkit.log")
        assert "nvc.c:396] initializing library context" in log and "requesting device(s) 2" in log
        client.containers.run("redis:7", "redis-server", detach=True)  # not a GPU container: nothing logged
        assert host.root.read_text("/var/log/nvidia-container-toolkit.log") == log


def test_a_killed_dashboards_directory_is_removed_at_the_next_start(tmp_path):
    start = (
        "import os, time; from gpudock.sim.host import SimHost; from gpudock.sim.scenario import builtin_scenario;"
        "h = SimHost(builtin_scenario('demo')).start(); print(h.directory, flush=True); "
    )
    env = dict(os.environ, TMPDIR=str(tmp_path))
    # one still runs
    live_p = subprocess.Popen(
        [sys.executable, "-c", start + "time.sleep(60)"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        live = live_p.stdout.readline().strip()
        # one dies without closing (SIGKILL, a crash): its directory stays behind
        dead = subprocess.run(
            [sys.executable, "-c", start + "os._exit(0)"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        assert os.path.isdir(dead) and os.path.isdir(live)
        assert remove_stale(str(tmp_path)) == [dead]
        assert not os.path.exists(dead) and os.path.isdir(live)  # a live host's directory is never taken
    finally:
        live_p.kill()
        live_p.wait()


@pytest.mark.parametrize(
    "host, message",
    [
        ({"module": 535}, "[host].module: expected a string"),
        ({"module": "five"}, "[host].module: expected a driver version"),
        ({"cgroup": 3}, "[host].cgroup: expected 1 or 2"),
        ({"libraries": [{"dir": "lib"}]}, "[host].libraries[0].dir: expected an absolute host path"),
        ({"libraries": [{"sonames": ["cuda"]}]}, "[host].libraries[0].sonames[0]: expected a soname"),
        ({"files": {"/etc/x": 1}}, "[host].files.'/etc/x': expected the file's text"),
        ({"nodes": True}, "[host]: unknown key(s) nodes; expected:"),
        ({"missing_nodes": ["/etc/passwd"]}, "[host].missing_nodes[0]: expected a /dev path"),
    ],
)
def test_a_malformed_host_section_names_the_key(host, message):
    data = {"name": "t", "driver": {"version": "535.129.03"}, "host": host}
    with pytest.raises(ScenarioError) as e:
        parse_scenario(data, "bad.toml")
    assert str(e.value).startswith("bad.toml: [host]") and message in str(e.value)
