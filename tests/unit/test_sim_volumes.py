"""The simulated engine's volumes (local driver), through the real docker SDK, and legacy launches on
the demo: `gpudock --demo run --mode legacy` uses the demo host's driver volume."""

from __future__ import annotations

import os

import docker
import docker.errors
import pytest

from gpudock.cli import main
from gpudock.sim.host import SimHost
from gpudock.sim.scenario import builtin_scenario

DEMO = builtin_scenario("demo")
DRIVER_VOLUME = f"nvidia_driver_{DEMO.driver_version}"


@pytest.fixture
def sim():
    with SimHost(DEMO) as h:
        yield h


@pytest.fixture
def client(sim):
    c = docker.DockerClient(base_url=sim.docker_base_url, version="auto", timeout=10)
    yield c
    c.close()


def test_the_demo_host_has_its_driver_volume(client, sim):
    v = client.volumes.get(DRIVER_VOLUME)
    assert v.attrs["Driver"] == "local" and v.attrs["Labels"] == {"gpudock.driver-volume": "535.129.03"}
    opts = v.attrs["Options"]
    # built by gpudock from the simulated host's own driver files, where gpudock builds them
    assert opts["type"] == "none" and opts["o"] == "bind,ro"
    assert opts["device"] == "/var/lib/gpudock/volumes/nvidia_driver/535.129.03"
    lib64 = set(os.listdir(sim.root.real(opts["device"] + "/lib64")))
    assert {"libcuda.so.535.129.03", "libcuda.so.1", "libnvidia-ml.so.535.129.03", "libnvidia-ml.so.1"} <= lib64
    assert [x.name for x in client.volumes.list()] == [DRIVER_VOLUME]


def test_create_inspect_list_remove(client, sim):
    v = client.volumes.create(name="scratch", driver="local", labels={"team": "vision"})
    assert v.attrs["Scope"] == "local" and v.attrs["Labels"] == {"team": "vision"}
    assert v.attrs["Mountpoint"] == "/var/lib/docker/volumes/scratch/_data"  # a path on the simulated host
    assert os.path.isdir(sim.root.real(v.attrs["Mountpoint"]))
    assert client.volumes.create(name="scratch").attrs["Labels"] == {"team": "vision"}  # the existing one
    assert {x.name for x in client.volumes.list(filters={"label": "team=vision"})} == {"scratch"}
    assert {x.name for x in client.volumes.list(filters={"name": "scr"})} == {"scratch"}
    v.remove()
    assert not os.path.exists(sim.root.real(v.attrs["Mountpoint"]))
    with pytest.raises(docker.errors.NotFound) as e:
        client.volumes.get("scratch")
    assert "get scratch: no such volume" in e.value.explanation


def test_refusals_read_like_dockerds(client):
    with pytest.raises(docker.errors.NotFound) as e:
        client.volumes.create(name="nvidia_driver_535.129.03", driver="nvidia-docker")
    assert 'error looking up volume plugin nvidia-docker: plugin "nvidia-docker" not found' in e.value.explanation
    with pytest.raises(docker.errors.APIError) as e:
        client.volumes.create(name="bad/name")
    assert e.value.status_code == 400 and "includes invalid characters" in e.value.explanation
    with pytest.raises(docker.errors.APIError) as e:
        client.volumes.create(name="x1", driver_opts={"colour": "red"})
    assert e.value.status_code == 400 and 'invalid option key: "colour"' in e.value.explanation


def test_a_container_naming_a_missing_volume_makes_an_empty_one_and_holds_it(client, sim):
    c = client.containers.create(
        "redis:7", ["true"], volumes={"nvidia_driver_999.1": {"bind": "/usr/local/nvidia", "mode": "ro"}}
    )
    made = client.volumes.get("nvidia_driver_999.1").attrs
    assert made["Labels"] is None and made["Options"] is None and os.listdir(sim.root.real(made["Mountpoint"])) == []
    (mount,) = c.attrs["Mounts"]
    assert mount["Name"] == "nvidia_driver_999.1" and mount["Destination"] == "/usr/local/nvidia"
    assert mount["RW"] is False and mount["Source"] == made["Mountpoint"]
    assert [x.name for x in client.containers.list(all=True, filters={"volume": "nvidia_driver_999.1"})] == [c.name]
    with pytest.raises(docker.errors.APIError) as e:
        client.volumes.get("nvidia_driver_999.1").remove()
    assert e.value.status_code == 409 and "volume is in use" in e.value.explanation
    with pytest.raises(docker.errors.NotFound) as e:
        client.api.create_container("redis:7", host_config={"Binds": ["nv_x:/x"], "VolumeDriver": "nvidia-docker"})
    assert 'plugin "nvidia-docker" not found' in e.value.explanation
    c.remove()
    client.volumes.get("nvidia_driver_999.1").remove()


def test_gpudock_run_legacy_on_the_demo(capsys, monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("NV_GPU", raising=False)
    rc = main(
        ["--demo", "run", "--mode", "legacy", "--gpu", "2,0", "--name", "leg", "nvcr.io/nvidia/pytorch:24.01-py3", "ls"]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.startswith("leg ") and " running" in out.splitlines()[0]
    assert "driver volume" not in err  # it was there and held the driver's files: nothing to say
