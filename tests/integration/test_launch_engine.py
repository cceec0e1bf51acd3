"""Real launches against the test set-up's Docker engine, checked from inside the containers.

The private engine has the `nvidia` runtime registered (runc underneath) and a stand-in
nvidia-container-runtime-hook, so runtime and --gpus containers really start; legacy containers
get the fake /dev/nvidia* nodes of `engine.dev_dir` and a driver volume built from a host root
with real driver libraries.
"""

from __future__ import annotations

import re
import time

import pytest

from gpudock.cli import main
from gpudock.host.root import HostRoot
from gpudock.launch.run import first_logs, holders_by_gpu, launch
from gpudock.launch.selection import parse_selection
from gpudock.launch.spec import LaunchError, build_spec
from gpudock.launch.volume import build_driver_volume, ensure_docker_volume
from helpers.driverhost import driver_host
from helpers.gpus import UUIDS, shuffled_host

SLEEP = ["sleep", "300"]


def exec_out(container, cmd: list[str]) -> str:
    code, out = container.exec_run(cmd)
    assert code == 0, out
    return out.decode()


def dev_listing(container) -> dict[str, tuple[str, int, int]]:
    """`ls -l /dev` inside the container: name -> (type char, major, minor) for device nodes."""
    out = {}
    for line in exec_out(container, ["ls", "-l", "/dev"]).splitlines():
        m = re.match(r"^([cb])\S+\s+\d+\s+\S+\s+\S+\s+(\d+),\s+(\d+)\s+.*\s(\S+)$", line)
        if m:
            out[m.group(4)] = (m.group(1), int(m.group(2)), int(m.group(3)))
    return out


def container_env(container) -> dict[str, str]:
    """The environment of the container's PID 1 (what the OCI spec gave it; `docker exec env`
    would show Config.Env, which lacks what the engine adds for --gpus)."""
    # Right after start, PID 1 may still be runc's init, before it execs the command with the
    # container's environment (Docker always sets HOSTNAME there): read until it is the command.
    deadline = time.monotonic() + 10
    while True:
        raw = exec_out(container, ["cat", "/proc/1/environ"])
        env = dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
        if "HOSTNAME" in env or time.monotonic() > deadline:
            return env
        time.sleep(0.1)


def count_containers(engine) -> int:
    return len(engine.client.api.containers(all=True))


def spec_for(engine, gpus: str, mode: str, snap=None, **kw):
    snap = snap or shuffled_host()
    kw.setdefault("image", engine.image)
    kw.setdefault("command", SLEEP)
    return snap, build_spec(snap, parse_selection(gpus, snap), mode, dev_dir=str(engine.dev_dir), **kw)


@pytest.fixture
def driver_volume(engine, tmp_path):
    root = driver_host(tmp_path)
    vol = build_driver_volume(HostRoot(root), str(tmp_path / "volumes"))
    dv = ensure_docker_volume(engine.client, vol)
    yield vol
    # the engine fixture removes containers after this teardown: free the volume first
    for c in engine.client.api.containers(all=True, filters={"volume": vol.name}):
        engine.client.api.remove_container(c["Id"], force=True)
    dv.remove(force=True)


def test_legacy_launch_gives_the_cards_by_minor_and_the_driver_volume(engine, driver_volume):
    snap, spec = spec_for(engine, "0,2", "legacy", name="legacy-a")
    container, warnings = launch(engine.client, spec, snap, holders={})
    assert warnings == ()
    container.reload()
    assert container.status == "running"
    devs = dev_listing(container)
    # GPU 0 is /dev/nvidia3 and GPU 2 is /dev/nvidia1 on this host: by minor, never by index
    assert devs["nvidia3"] == ("c", 195, 3)
    assert devs["nvidia1"] == ("c", 195, 1)
    assert "nvidia0" not in devs and "nvidia2" not in devs
    assert devs["nvidiactl"] == ("c", 195, 255)
    assert devs["nvidia-uvm"][0] == "c" and devs["nvidia-uvm-tools"][0] == "c"
    lib64 = exec_out(container, ["ls", "/usr/local/nvidia/lib64"]).split()
    assert "libcuda.so.535.129.03" in lib64 and "libcuda.so.1" in lib64
    assert not any("470.57.02" in n for n in lib64)
    assert "nvidia-smi" in exec_out(container, ["ls", "/usr/local/nvidia/bin"]).split()
    code, out = container.exec_run(["touch", "/usr/local/nvidia/lib64/x"])
    assert code != 0 and b"Read-only file system" in out
    assert container.attrs["HostConfig"]["Privileged"] is False


def test_launching_onto_a_held_card_warns_naming_the_holder(engine, driver_volume, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", engine.base_url)  # launch() reads the holders from DOCKER_HOST's engine
    snap, first = spec_for(engine, "1", "legacy", name="train-a")
    launch(engine.client, first, snap)
    held = holders_by_gpu(snap, engine.base_url)
    assert held == {UUIDS[1]: ("train-a",)}
    _, second = spec_for(engine, "2,1", "runtime", name="train-b")
    container, warnings = launch(engine.client, second, snap)
    assert warnings == (f"GPU 1 ({UUIDS[1]}) is already held by train-a",)
    assert container.status in ("created", "running")


def test_runtime_launch_sets_the_runtime_and_the_env(engine):
    snap, spec = spec_for(engine, "2,0", "runtime", capabilities="compute,utility,video", env=["TEAM=vision"])
    container, _ = launch(engine.client, spec, snap, holders={})
    container.reload()
    assert container.attrs["HostConfig"]["Runtime"] == "nvidia"
    env = container_env(container)
    assert env["NVIDIA_VISIBLE_DEVICES"] == f"{UUIDS[2]},{UUIDS[0]}"
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility,video"
    assert env["TEAM"] == "vision"


def test_gpus_launch_is_a_device_request_the_engine_turns_into_env(engine):
    snap, spec = spec_for(engine, "3,1", "gpus", ids="index")
    container, _ = launch(engine.client, spec, snap, holders={})
    container.reload()
    (req,) = container.attrs["HostConfig"]["DeviceRequests"]
    assert req["DeviceIDs"] == ["3", "1"] and req["Capabilities"] == [["gpu"]]
    # dockerd's NVIDIA device driver sets NVIDIA_VISIBLE_DEVICES from DeviceIDs in the OCI spec
    assert container_env(container)["NVIDIA_VISIBLE_DEVICES"] == "3,1"


def test_mps_launch_shares_host_ipc(engine):
    snap, spec = spec_for(engine, "0", "runtime", mps_thread_percentage=40)
    container, _ = launch(engine.client, spec, snap, holders={})
    container.reload()
    assert container.attrs["HostConfig"]["IpcMode"] == "host"
    assert container_env(container)["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "40"


def test_image_needing_a_newer_cuda_is_refused_naming_both_versions(engine):
    tag = "gpudock-test/cuda124:latest"
    engine.make_image(tag, env={"NVIDIA_REQUIRE_CUDA": "cuda>=12.4"})
    snap, spec = spec_for(engine, "0", "runtime", image=tag)  # the driver supports 12.2
    before = count_containers(engine)
    with pytest.raises(LaunchError) as e:
        launch(engine.client, spec, snap, holders={})
    assert "12.4" in str(e.value) and "12.2" in str(e.value) and e.value.forcible  # the CLI adds "--force"
    assert count_containers(engine) == before, "nothing may be launched"
    container, warnings = launch(engine.client, spec, snap, holders={}, force=True)
    assert container.status in ("created", "running")
    assert len(warnings) == 1 and warnings[0].startswith("forced past the CUDA check") and "12.4" in warnings[0]
    ok_snap = shuffled_host(cuda="12.4")
    _, ok_spec = spec_for(engine, "1", "runtime", snap=ok_snap, image=tag)
    assert launch(engine.client, ok_spec, ok_snap, holders={})[1] == ()


@pytest.mark.parametrize(
    "mode, kw, message",
    [
        ("cdi", {}, "cdi mode needs Docker 25"),
        ("runtime", {"image": "gpudock-test/not-here:1"}, "is not present on this engine; gpudock does not pull"),
        ("legacy", {"driver_volume": "nvidia_driver_999.99"}, "driver volume nvidia_driver_999.99 does not exist"),
    ],
)
def test_refusals_launch_nothing(engine, mode, kw, message):
    snap, spec = spec_for(engine, "0", mode, **kw)
    before = count_containers(engine)
    with pytest.raises(LaunchError, match=message):
        launch(engine.client, spec, snap, holders={})
    assert count_containers(engine) == before


def test_first_logs_and_commands_without_a_shell(engine):
    snap, spec = spec_for(engine, "0", "runtime", command=["echo", "one; $HOME", "two"])
    container, _ = launch(engine.client, spec, snap, holders={})
    container.wait(timeout=30)
    assert first_logs(container, 5) == ["one; $HOME two"]  # no shell expanded or split anything
    _, spec = spec_for(engine, "0", "runtime", command="sh -c 'seq 1 50'")
    container, _ = launch(engine.client, spec, snap, holders={})
    container.wait(timeout=30)
    assert first_logs(container, 3) == ["1", "2", "3"]


# -- the CLI -------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(engine, monkeypatch):
    # DOCKER_HOST names the engine for the real host; --demo's own engine would not have the image,
    # so these tests name the test engine with --docker-host (which takes the simulated one's place)
    monkeypatch.setenv("DOCKER_HOST", engine.base_url)
    monkeypatch.delenv("NV_GPU", raising=False)
    return engine


def test_gpudock_run_on_the_demo_host(cli_env, capsys):
    rc = main(
        [
            "--demo",
            "--docker-host",
            cli_env.base_url,
            "run",
            "--mode",
            "runtime",
            "--gpu",
            "2,0",
            "--name",
            "cli-run",
            "-e",
            "A=b",
            cli_env.image,
            "sh",
            "-c",
            "echo started; env | grep NVIDIA_VISIBLE_DEVICES",
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.startswith("cli-run ")
    assert "  started" in out
    assert (
        "NVIDIA_VISIBLE_DEVICES=GPU-1d2e3f40-5a6b-4c7d-8e9f-a0b1c2d3e403,GPU-4f3a1c2e-9b7d-4e21-8a55-0c1d2e3f4a01"
        in out
    )


def test_gpudock_run_takes_nv_gpu(cli_env, capsys, monkeypatch):
    monkeypatch.setenv("NV_GPU", "3 1")
    rc = main(
        ["--demo", "--docker-host", cli_env.base_url, "run", "--mode", "gpus", "--ids", "index", "--json"]
        + [cli_env.image, "true"]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    import json

    cid = json.loads(out)["id"]
    attrs = cli_env.client.api.inspect_container(cid)
    assert attrs["HostConfig"]["DeviceRequests"][0]["DeviceIDs"] == ["3", "1"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--gpu", "9", "IMAGE"], "unknown GPU '9'"),
        (["run", "--gpu", "0", "--mode", "cdi", "IMAGE"], "cdi mode needs Docker 25"),
        (["run", "--gpu", "0", "gpudock-test/absent:1"], "is not present on this engine"),
        (["run", "--gpu", "0", "-e", "9X=1", "IMAGE"], "invalid env name '9X'"),
        (["run", "IMAGE"], "no GPU selected"),
    ],
)
def test_gpudock_run_refusals_are_one_line_exit_2(cli_env, capsys, argv, message):
    argv = [cli_env.image if a == "IMAGE" else a for a in argv]
    before = count_containers(cli_env)
    rc = main(["--demo", "--docker-host", cli_env.base_url, *argv])
    out, err = capsys.readouterr()
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("gpudock: ") and message in err
    assert count_containers(cli_env) == before
