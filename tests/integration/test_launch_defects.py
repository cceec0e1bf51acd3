"""`gpudock run` against the private engine: the launch defects of issue 13, each as an operator
meets it. The driver root is helpers.driverhost's (535.129.03 running, 470.57.02 leftovers); the
GPUs are the demo host's (NVML says driver 535.129.03; GPU 0 is /dev/nvidia3)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import docker.errors
import pytest

from gpudock.cli import main
from gpudock.host.root import HostRoot
from gpudock.launch.run import launch
from gpudock.launch.selection import parse_selection
from gpudock.launch.spec import LaunchError, build_spec
from gpudock.launch.volume import build_driver_volume, ensure_docker_volume, ensure_driver_volume
from helpers.driverhost import CURRENT, STALE, driver_host
from helpers.gpus import shuffled_host
from helpers.mountedhost import mounted_host
from helpers.sim import demo_on_root

VOLUME = f"nvidia_driver_{CURRENT}"


@pytest.fixture
def host(engine, tmp_path, monkeypatch):
    """The operator's shell: DOCKER_HOST is the private engine; the host's root is
    helpers.mountedhost's (the driver root, with the engine's volumes in it)."""
    monkeypatch.setenv("DOCKER_HOST", engine.base_url)
    monkeypatch.delenv("NV_GPU", raising=False)
    with mounted_host(engine, tmp_path) as (root, vdir):
        yield root, vdir


def gpudock_run(engine, root, vdir, *argv) -> list[str]:
    # the demo's GPUs on the driver root (a scenario whose [host] root names it), the private engine
    return [
        "--sim",
        demo_on_root(root.parent, root),
        "--docker-host",
        engine.base_url,
        "run",
        "--mode",
        "legacy",
        "--dev-dir",
        str(engine.dev_dir),
        "--volume-dir",
        str(vdir),
        "--wait",
        "10",
        "--logs",
        "100",
        *argv,
    ]


def docker_cli(engine, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, env=dict(os.environ, DOCKER_HOST=engine.base_url)
    )


def count_containers(engine) -> int:
    return len(engine.client.api.containers(all=True))


def test_an_empty_volume_made_by_docker_run_is_replaced_saying_so(engine, host, capsys):
    root, vdir = host
    # `docker run -v nvidia_driver_X:…` before the volume existed: Docker made an empty local one
    assert docker_cli(engine, "run", "--rm", "-v", f"{VOLUME}:/usr/local/nvidia", engine.image, "true").returncode == 0
    assert engine.client.api.inspect_volume(VOLUME)["Driver"] == "local"
    rc = main(gpudock_run(engine, root, vdir, "--gpu", "0", engine.image, "ls", "/usr/local/nvidia/lib64"))
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert f"driver volume {VOLUME} (local, " in err and "is empty" in err and "replaced it with gpudock's" in err
    assert "  libcuda.so.535.129.03" in out.splitlines()
    assert engine.client.api.inspect_volume(VOLUME)["Options"]["device"] == f"{vdir}/nvidia_driver/{CURRENT}"


def test_gpudocks_own_volume_emptied_is_rebuilt_saying_so(engine, host, capsys):
    root, vdir = host
    vol = build_driver_volume(HostRoot(root), str(vdir))
    ensure_docker_volume(engine.client, vol)
    shutil.rmtree(os.path.join(vol.path, "lib64"))
    shutil.rmtree(os.path.join(vol.path, "lib"))
    rc = main(gpudock_run(engine, root, vdir, "--gpu", "0", engine.image, "ls", "/usr/local/nvidia/lib64"))
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "holds no driver library" in err and "rebuilt its files" in err
    assert "  libnvidia-ml.so.1" in out.splitlines()


def test_a_volume_holding_another_drivers_files_is_refused(engine, host, capsys, tmp_path):
    root, vdir = host
    stale = build_driver_volume(HostRoot(root), str(vdir / "someone-elses"), version=STALE)
    engine.client.volumes.create(
        VOLUME, driver="local", driver_opts={"type": "none", "o": "bind", "device": stale.path}
    )
    before = count_containers(engine)
    rc = main(gpudock_run(engine, root, vdir, "--gpu", "0", engine.image, "true"))
    _, err = capsys.readouterr()
    assert rc == 2 and err.count("\n") == 1
    assert f"holds no library of driver {CURRENT}, only of {STALE}" in err
    assert f"'docker volume rm {VOLUME}'" in err
    assert count_containers(engine) == before
    assert os.listdir(os.path.join(stale.path, "lib64")), "a volume gpudock did not make is never emptied"


def test_an_empty_volume_in_use_is_refused_naming_the_container(engine, host, capsys):
    root, vdir = host
    engine.client.containers.run(
        engine.image, ["sleep", "300"], name="holds-it", detach=True, volumes={VOLUME: {"bind": "/x", "mode": "ro"}}
    )
    rc = main(gpudock_run(engine, root, vdir, "--gpu", "0", engine.image, "true"))
    _, err = capsys.readouterr()
    assert rc == 2 and "is empty" in err and "containers use it (holds-it)" in err


def test_a_driver_volume_without_the_drivers_files_is_refused(engine, host, capsys, tmp_path):
    _, vdir = host
    bare = tmp_path / "bare"
    (bare / "etc").mkdir(parents=True)
    shutil.copy(driver_host(tmp_path / "other") / "etc/ld.so.cache", bare / "etc/ld.so.cache")  # names, no files
    (bare / "sys/module/nvidia").mkdir(parents=True)
    (bare / "sys/module/nvidia/version").write_text(CURRENT + "\n")
    rc = main(gpudock_run(engine, bare, vdir, "--gpu", "0", engine.image, "true"))
    _, err = capsys.readouterr()
    assert rc == 2 and f"no library of driver {CURRENT} was found" in err
    with pytest.raises(docker.errors.NotFound):
        engine.client.volumes.get(VOLUME)
    assert not (vdir / "nvidia_driver" / CURRENT).exists()


def test_a_container_the_engine_will_not_start_is_removed(engine, host, capsys):
    argv = ["--demo", "--docker-host", engine.base_url, "run", "--mode", "runtime", "--gpu", "0", "--name", "retry-me"]
    argv.append(engine.image)
    before = count_containers(engine)
    rc = main([*argv, "/no/such/binary"])
    _, err = capsys.readouterr()
    assert rc == 2 and "Docker created the container but would not start it" in err and "removed again" in err
    assert count_containers(engine) == before
    rc = main([*argv, "true"])  # the same name again
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.startswith("retry-me ")


def test_the_missing_volume_message_names_commands_that_exist(engine, host):
    snap = shuffled_host()
    spec = build_spec(
        snap, parse_selection("0", snap), "legacy", image=engine.image, dev_dir=str(engine.dev_dir), command=["true"]
    )
    with pytest.raises(LaunchError) as e:
        launch(engine.client, spec, snap, holders={})
    msg = str(e.value)
    assert "gpudock volume create" not in msg
    assert "'gpudock run --mode legacy' builds it" in msg
    assert f"'docker volume create --driver=nvidia-docker --name={VOLUME}'" in msg
    # both exist: the run option, and docker's flags
    assert (
        "legacy"
        in subprocess.run([sys.executable, "-m", "gpudock.cli", "run", "--help"], capture_output=True, text=True).stdout
    )
    assert "--driver" in docker_cli(engine, "volume", "create", "--help").stdout


def test_run_takes_docker_host(engine, capsys, monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("NV_GPU", raising=False)
    rc = main(
        [
            "--demo",
            "run",
            "--docker-host",
            engine.base_url,
            "--mode",
            "runtime",
            "--gpu",
            "1",
            "--name",
            "on-the-engine",
        ]
        + [engine.image, "echo", "hello"]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert engine.client.containers.get("on-the-engine").attrs["HostConfig"]["Runtime"] == "nvidia"
    assert "  hello" in out.splitlines()


def test_a_volume_bound_to_a_missing_directory_is_refused(engine, host):
    root, vdir = host
    engine.client.volumes.create(VOLUME, driver="local", driver_opts={"type": "none", "o": "bind", "device": "/x/y"})
    with pytest.raises(LaunchError) as e:
        ensure_driver_volume(engine.client, HostRoot(root), VOLUME, str(vdir))
    assert f"its directory {root}/x/y does not exist" in str(e.value)
    assert f"'docker volume rm {VOLUME}'" in str(e.value)
