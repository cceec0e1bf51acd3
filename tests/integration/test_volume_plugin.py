"""nvidia-docker-plugin 1.0's volume plugin: its answers on the socket, then the seed documents'
commands verbatim on the private Docker engine.

The host root is helpers.driverhost's (real ELF libraries of driver 535.129.03 and 470.57.02
leftovers, a real ld.so.cache); volumes are built under the test's directory; the GPUs are
helpers.gpus.shuffled_host's (index 0 is /dev/nvidia3, index 2 is /dev/nvidia1), their nodes
the engine's fake ones."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from gpudock.host.root import HostRoot
from gpudock.launch.httpserve import SocketInUse
from gpudock.launch.plugin_server import DEFAULT_PORT, PluginServer
from gpudock.launch.spec import LaunchError
from gpudock.launch.volume_plugin import DriverVolumePlugin, is_mount_point
from helpers.driverhost import CURRENT, STALE, driver_host
from helpers.gpus import shuffled_host
from helpers.plugin import global_plugin_socket, plugin_call

VOLUME = f"nvidia_driver_{CURRENT}"


@pytest.fixture
def plugin_here(tmp_path):
    """A plugin serving on a socket of the test's own (no engine involved)."""
    root = driver_host(tmp_path)
    lines: list[str] = []
    plugin = DriverVolumePlugin(HostRoot(root), str(tmp_path / "volumes"), lambda: CURRENT, log=lines.append)
    sock = str(tmp_path / "plugin.sock")
    srv = PluginServer(lambda: shuffled_host(), port=0, root=HostRoot(root), volume_plugin=plugin, plugin_socket=sock)
    srv.start_background()
    srv.lines = lines
    srv.sock = sock
    srv.volumes = tmp_path / "volumes"
    yield srv
    srv.shutdown()
    srv.server_close()


def test_activate_and_capabilities(plugin_here):
    status, ctype, body = plugin_call(plugin_here.sock, "Plugin.Activate")
    assert (status, ctype, body) == (200, "application/vnd.docker.plugins.v1+json", {"Implements": ["VolumeDriver"]})
    assert plugin_call(plugin_here.sock, "VolumeDriver.Capabilities")[2] == {"Capabilities": {"Scope": "local"}}


def test_only_the_plugin_api_versions_are_accepted(plugin_here):
    assert plugin_call(plugin_here.sock, "Plugin.Activate", accept=None)[0] == 406
    assert plugin_call(plugin_here.sock, "Plugin.Activate", accept="application/json")[0] == 406


def test_create_get_mount_unmount_remove_round_trip(plugin_here):
    sock, vdir = plugin_here.sock, plugin_here.volumes
    assert plugin_call(sock, "VolumeDriver.Get", {"Name": VOLUME})[2] == {"Err": f"no such volume: {VOLUME}"}
    assert plugin_call(sock, "VolumeDriver.Create", {"Name": VOLUME, "Opts": None})[2] == {"Err": None}
    built = vdir / "nvidia_driver" / CURRENT
    assert (built / "lib64/libcuda.so.535.129.03").is_file()
    assert not any(STALE in n for n in os.listdir(built / "lib64"))

    got = plugin_call(sock, "VolumeDriver.Get", {"Name": VOLUME})[2]
    assert got == {"Volume": {"Name": VOLUME, "Mountpoint": str(built), "Status": {}}, "Err": None}
    mounted = plugin_call(sock, "VolumeDriver.Mount", {"Name": VOLUME, "ID": "c1"})[2]
    mp = mounted["Mountpoint"]
    assert mounted["Err"] is None and mp == str(vdir / ".mounts" / VOLUME)
    assert is_mount_point(mp) and "libcuda.so.1" in os.listdir(f"{mp}/lib64")
    with pytest.raises(OSError) as e:
        open(f"{mp}/lib64/x", "w")
    assert e.value.strerror == "Read-only file system"  # the host's driver files are hard links: never writable
    assert plugin_call(sock, "VolumeDriver.Path", {"Name": VOLUME})[2] == {"Mountpoint": mp, "Err": None}
    assert plugin_call(sock, "VolumeDriver.List")[2] == {"Volumes": [{"Name": VOLUME, "Mountpoint": mp}], "Err": None}
    # a second container's mount gets the same read-only mount; unmounting keeps it for the next one
    assert plugin_call(sock, "VolumeDriver.Mount", {"Name": VOLUME, "ID": "c2"})[2]["Mountpoint"] == mp
    assert plugin_call(sock, "VolumeDriver.Unmount", {"Name": VOLUME, "ID": "c1"})[2] == {"Err": None}
    assert is_mount_point(mp)

    assert plugin_call(sock, "VolumeDriver.Remove", {"Name": VOLUME})[2] == {"Err": None}
    assert not os.path.exists(mp) and not built.exists()
    assert plugin_call(sock, "VolumeDriver.Mount", {"Name": VOLUME, "ID": "c3"})[2] == {
        "Err": f"no such volume: {VOLUME}"
    }
    assert plugin_call(sock, "VolumeDriver.List")[2] == {"Volumes": None, "Err": None}
    # the driver's own files are untouched by the removal of their hard links
    assert os.listdir(vdir / "nvidia_driver") == []


def test_create_of_another_version_is_refused_naming_both(plugin_here):
    err = plugin_call(plugin_here.sock, "VolumeDriver.Create", {"Name": f"nvidia_driver_{STALE}"})[2]["Err"]
    assert err == (
        f"invalid volume version (the running driver is {CURRENT}, so this plugin makes nvidia_driver_{CURRENT}, "
        f"not {STALE}): nvidia_driver_{STALE}"
    )
    assert not (plugin_here.volumes / "nvidia_driver" / STALE).exists()


@pytest.mark.parametrize(
    "name, err",
    [
        ("nvidia_driver", "bad volume format: nvidia_driver"),
        ("nvidia_driver_..", "bad volume format: nvidia_driver_.."),  # 1.0 removed <dir>/nvidia_driver/..
        ("nvidia_driver_1..2", "bad volume format: nvidia_driver_1..2"),
        ("cuda_8.0", "unsupported volume: cuda_8.0"),
        ("", "bad volume format: "),
    ],
)
def test_bad_names_are_refused_and_nothing_is_removed(plugin_here, name, err):
    (plugin_here.volumes / "nvidia_driver").mkdir(parents=True)
    for call in ("Create", "Remove", "Mount", "Get", "Path"):
        assert plugin_call(plugin_here.sock, f"VolumeDriver.{call}", {"Name": name})[2] == {"Err": err}
    assert (plugin_here.volumes / "nvidia_driver").is_dir()


def test_an_empty_version_directory_is_rebuilt_on_create(plugin_here):
    d = plugin_here.volumes / "nvidia_driver" / CURRENT
    d.mkdir(parents=True)
    assert plugin_call(plugin_here.sock, "VolumeDriver.Create", {"Name": VOLUME})[2] == {"Err": None}
    assert (d / "lib64/libnvidia-ml.so.535.129.03").is_file()


def test_a_rebuild_is_what_the_next_mount_shows(plugin_here):
    sock = plugin_here.sock
    plugin_call(sock, "VolumeDriver.Create", {"Name": VOLUME})
    mp = plugin_call(sock, "VolumeDriver.Mount", {"Name": VOLUME, "ID": "a"})[2]["Mountpoint"]
    built = plugin_here.volumes / "nvidia_driver" / CURRENT
    shutil.rmtree(built / "lib64")
    shutil.rmtree(built / "lib")
    assert plugin_call(sock, "VolumeDriver.Create", {"Name": VOLUME})[2] == {"Err": None}
    assert plugin_call(sock, "VolumeDriver.Mount", {"Name": VOLUME, "ID": "b"})[2]["Mountpoint"] == mp
    assert is_mount_point(mp) and "libcuda.so.535.129.03" in os.listdir(f"{mp}/lib64")


def test_a_host_without_the_drivers_libraries_is_refused(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/ld.so.cache").write_bytes(b"")
    plugin = DriverVolumePlugin(HostRoot(tmp_path), str(tmp_path / "v"), lambda: CURRENT)
    err = plugin.answer("/VolumeDriver.Create", {"Name": VOLUME})["Err"]
    assert err.startswith("cannot build the driver volume: ") and err.endswith(f": {VOLUME}")
    assert not (tmp_path / "v/nvidia_driver" / CURRENT).exists()


def test_a_live_plugin_socket_is_not_taken_over(tmp_path):
    import socket

    sock = str(tmp_path / "nvidia-docker.sock")
    other = socket.socket(socket.AF_UNIX)
    other.bind(sock)
    other.listen(1)
    try:
        plugin = DriverVolumePlugin(HostRoot(tmp_path), str(tmp_path / "v"), lambda: CURRENT)
        with pytest.raises(SocketInUse, match="another server is answering"):
            PluginServer(lambda: shuffled_host(), port=0, volume_plugin=plugin, plugin_socket=sock)
        assert os.path.exists(sock)
    finally:
        other.close()


# -- the seed documents' commands, on the private engine -------------------------------------------


@pytest.fixture
def plugin_on_engine(engine, tmp_path):
    """``gpudock serve`` as nvidia-docker-plugin was: REST on 127.0.0.1 and the plugin on
    /run/docker/plugins/nvidia-docker.sock, where the private engine looks for it."""
    root = driver_host(tmp_path)
    lines: list[str] = []
    with global_plugin_socket() as sock:
        plugin = DriverVolumePlugin(HostRoot(root), str(tmp_path / "volumes"), lambda: CURRENT, log=lines.append)
        kw = dict(root=HostRoot(root), dev_dir=str(engine.dev_dir), volume_plugin=plugin, plugin_socket=sock)
        try:  # the plugin's own port, so the seed commands run as written, when nothing else has it
            srv = PluginServer(lambda: shuffled_host(), port=DEFAULT_PORT, **kw)
        except LaunchError:
            srv = PluginServer(lambda: shuffled_host(), port=0, **kw)
        srv.start_background()
        srv.lines, srv.volumes = lines, tmp_path / "volumes"
        try:
            yield srv
        finally:
            # while the plugin still answers: dockerd asks it when these go
            api = engine.client.api
            for v in api.volumes(filters={"driver": "nvidia-docker"}).get("Volumes") or ():
                for c in api.containers(all=True, filters={"volume": v["Name"]}):
                    api.remove_container(c["Id"], force=True)
                api.remove_volume(v["Name"], force=True)
            srv.shutdown()
            srv.server_close()
            # dockerd keeps a plugin it once used among its volume drivers, and then asks it at every
            # `docker volume ls` (15 s of retries when it is gone): a restart makes it forget
            engine.restart()
        assert not os.path.exists(sock)


def sh(engine, cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    """``cmd`` as the operator types it, in a shell, against the private engine."""
    env = dict(os.environ, DOCKER_HOST=engine.base_url)
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert p.returncode == 0, f"{cmd}\n{p.stdout}\n{p.stderr}"
    return p


LIST = "ls /usr/local/nvidia/lib64 /usr/local/nvidia/bin; ls -l /dev"


def test_docker_volume_create_with_the_plugin(engine, plugin_on_engine):
    out = sh(engine, f"docker volume create --driver=nvidia-docker --name=nvidia_driver_{CURRENT}").stdout
    assert out.strip() == VOLUME
    attrs = engine.client.api.inspect_volume(VOLUME)
    assert attrs["Driver"] == "nvidia-docker"
    assert (plugin_on_engine.volumes / "nvidia_driver" / CURRENT / "lib64/libcuda.so.535.129.03").is_file()
    listed = sh(engine, "docker volume ls --format '{{.Driver}} {{.Name}}'").stdout.split("\n")
    assert f"nvidia-docker {VOLUME}" in listed
    out = sh(engine, f"docker run --rm -v {VOLUME}:/usr/local/nvidia:ro {engine.image} sh -c '{LIST}'").stdout
    assert {"libcuda.so.535.129.03", "libnvidia-ml.so.1", "libcuda.so", "nvidia-smi"} <= set(out.split())


def test_docker_volume_create_of_another_version_is_refused(engine, plugin_on_engine):
    p = sh(engine, f"docker volume create --driver=nvidia-docker --name=nvidia_driver_{STALE}", check=False)
    assert p.returncode != 0
    assert "invalid volume version" in p.stderr and CURRENT in p.stderr and STALE in p.stderr
    assert VOLUME not in sh(engine, "docker volume ls -q").stdout


def test_docker_run_with_the_plugins_cli_line(engine, plugin_on_engine):
    port = plugin_on_engine.port
    cmd = (
        f"docker run --rm $(curl -s localhost:{port}/v1.0/docker/cli?dev=0+2\\&vol=nvidia_driver) "
        f"{engine.image} sh -c '{LIST}'"
    )
    out = sh(engine, cmd).stdout
    names = out.split()
    assert "libcuda.so.535.129.03" in names and "libnvidia-ml.so.1" in names and "nvidia-smi" in names
    assert not any(STALE in n for n in names)
    devs = {ln.split()[-1]: ln for ln in out.splitlines() if ln.startswith("c")}
    # GPU 0 is /dev/nvidia3 and GPU 2 is /dev/nvidia1 on this host: by minor, never by index
    assert set(devs) >= {"nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia3", "nvidia1"}
    assert "nvidia0" not in devs and "nvidia2" not in devs
    assert "195,   3" in devs["nvidia3"] and "195,   1" in devs["nvidia1"]
    assert engine.client.api.inspect_volume(VOLUME)["Driver"] == "nvidia-docker"  # the plugin made it


def test_docker_run_with_volume_driver_and_volume(engine, plugin_on_engine):
    cmd = (
        f"docker run --rm --volume-driver=nvidia-docker --volume=nvidia_driver_{CURRENT}:/usr/local/nvidia:ro "
        f"{engine.image} sh -c 'ls /usr/local/nvidia/lib64; touch /usr/local/nvidia/x 2>&1; true'"
    )
    out = sh(engine, cmd).stdout
    assert "libcuda.so.535.129.03" in out.split() and "Read-only file system" in out


def test_the_volume_is_read_only_even_without_ro(engine, plugin_on_engine):
    sh(engine, f"docker volume create --driver=nvidia-docker --name={VOLUME}")
    out = sh(
        engine,
        f"docker run --rm -v {VOLUME}:/usr/local/nvidia {engine.image} "
        "sh -c 'touch /usr/local/nvidia/lib64/libcuda.so.1 2>&1; true'",
    ).stdout
    assert "Read-only file system" in out


def test_docker_volume_rm_goes_through_the_plugin(engine, plugin_on_engine):
    sh(engine, f"docker volume create --driver=nvidia-docker --name={VOLUME}")
    sh(engine, f"docker run --rm -v {VOLUME}:/usr/local/nvidia:ro {engine.image} true")
    mp = plugin_on_engine.volumes / ".mounts" / VOLUME
    assert is_mount_point(mp)
    inspect = json.loads(sh(engine, f"docker volume inspect {VOLUME}").stdout)[0]
    assert inspect["Mountpoint"] == str(mp)
    sh(engine, f"docker volume rm {VOLUME}")
    assert not (plugin_on_engine.volumes / "nvidia_driver" / CURRENT).exists() and not mp.exists()
    assert any("removed " + VOLUME in ln for ln in plugin_on_engine.lines)
