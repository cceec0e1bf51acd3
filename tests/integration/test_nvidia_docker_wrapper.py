"""`gpudock nvidia-docker`, nvidia-docker 1.0's wrapper, running the real docker CLI against the
private engine. The GPUs are the demo host's (GPU 0 is /dev/nvidia3, GPU 2 is /dev/nvidia1); the
host root is helpers.mountedhost's (driver 535.129.03's real libraries)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from helpers.driverhost import CURRENT
from helpers.mountedhost import mounted_host
from helpers.sim import demo_on_root

VOLUME = f"nvidia_driver_{CURRENT}"


@pytest.fixture
def host(engine, tmp_path):
    with mounted_host(engine, tmp_path) as (root, vdir):
        yield root, vdir, tmp_path


def wrapper(engine, host, *docker_args: str, nv_gpu: str | None = None, options=()) -> subprocess.CompletedProcess:
    root, vdir, tmp = host
    env = dict(os.environ, DOCKER_HOST=engine.base_url)
    env.pop("NV_GPU", None)
    if nv_gpu is not None:
        env["NV_GPU"] = nv_gpu
    sim = demo_on_root(tmp, root)  # the demo's GPUs on the driver root
    cmd = [sys.executable, "-m", "gpudock.cli", "--sim", sim, "--docker-host", engine.base_url, "nvidia-docker"]
    cmd += ["--dev-dir", str(engine.dev_dir), "--volume-dir", str(vdir), "--plugin-socket", str(tmp / "no.sock")]
    return subprocess.run([*cmd, *options, *docker_args], capture_output=True, text=True, env=env, timeout=120)


def test_nv_gpu_2_0_gives_those_cards_in_that_order_and_the_driver_volume(engine, host):
    p = wrapper(engine, host, "create", "--name", "wrapped", "-e", "A=b c", engine.image, "true", nv_gpu="2,0")
    assert p.returncode == 0, p.stderr
    attrs = engine.client.api.inspect_container("wrapped")
    dev = str(engine.dev_dir)
    assert [d["PathOnHost"] for d in attrs["HostConfig"]["Devices"]] == [
        f"{dev}/nvidiactl",
        f"{dev}/nvidia-uvm",
        f"{dev}/nvidia-uvm-tools",
        f"{dev}/nvidia1",  # GPU 2
        f"{dev}/nvidia3",  # GPU 0
    ]
    assert attrs["HostConfig"]["Binds"] == [f"{VOLUME}:/usr/local/nvidia:ro"]
    assert "A=b c" in attrs["Config"]["Env"]  # the user's arguments, unchanged

    p = wrapper(
        engine, host, "run", "--rm", engine.image, "sh", "-c", "ls /dev; ls /usr/local/nvidia/lib64", nv_gpu="2,0"
    )
    assert p.returncode == 0, p.stderr
    names = p.stdout.split()
    assert {"nvidiactl", "nvidia-uvm", "nvidia1", "nvidia3", "libcuda.so.535.129.03", "libcuda.so.1"} <= set(names)
    assert "nvidia0" not in names and "nvidia2" not in names


def test_without_nv_gpu_every_gpu(engine, host):
    p = wrapper(engine, host, "create", "--name", "all-of-them", engine.image, "true")
    assert p.returncode == 0, p.stderr
    devices = [d["PathOnHost"] for d in engine.client.api.inspect_container("all-of-them")["HostConfig"]["Devices"]]
    assert len(devices) == 3 + 8 and devices[3] == f"{engine.dev_dir}/nvidia3"  # index order: GPU 0 first


def test_an_image_needing_a_newer_cuda_is_refused_naming_both(engine, host):
    engine.make_image("gpudock-test/cuda-label:12.4", labels={"com.nvidia.cuda.version": "12.4"})
    before = len(engine.client.api.containers(all=True))
    p = wrapper(engine, host, "run", "--rm", "gpudock-test/cuda-label:12.4", "true", nv_gpu="0")
    assert p.returncode == 2
    assert "12.4" in p.stderr and "12.2" in p.stderr and p.stderr.startswith("gpudock: ")
    assert len(engine.client.api.containers(all=True)) == before


def test_other_commands_pass_straight_through(engine, host):
    engine.client.containers.create(engine.image, ["true"], name="just-there")
    p = wrapper(engine, host, "ps", "-a", "--filter", "name=just-there", "--format", "{{.Names}} {{.Image}}")
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"just-there {engine.image}\n"
    p = wrapper(engine, host, "version", "--format", "{{.Server.Version}}")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("NVIDIA Docker: gpudock ") and p.stdout.splitlines()[2].startswith("20.10")


def test_the_plugin_builds_a_missing_volume_when_it_answers(engine, host):
    _, _, tmp = host
    sock = tmp / "no.sock"  # the wrapper's --plugin-socket: a plugin answers there now
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(sock))
    listening.listen(1)
    try:
        p = wrapper(engine, host, "run", "--rm", engine.image, "true", nv_gpu="1", options=["--dry-run"])
    finally:
        listening.close()
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [
        "docker",
        "run",
        "--rm",
        f"--device={engine.dev_dir}/nvidiactl:/dev/nvidiactl",
        f"--device={engine.dev_dir}/nvidia-uvm:/dev/nvidia-uvm",
        f"--device={engine.dev_dir}/nvidia-uvm-tools:/dev/nvidia-uvm-tools",
        f"--device={engine.dev_dir}/nvidia0:/dev/nvidia0",  # the demo's GPU 1 is minor 0
        "--volume-driver=nvidia-docker",
        f"--volume={VOLUME}:/usr/local/nvidia:ro",
        engine.image,
        "true",
    ]


def test_a_bad_nv_gpu_is_refused(engine, host):
    p = wrapper(engine, host, "run", "--rm", engine.image, "true", nv_gpu="0,9")
    assert p.returncode == 2 and "unknown GPU '9'" in p.stderr
