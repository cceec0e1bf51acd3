"""A `--device` holder is the host node's major:minor, not its name.

An operator's story: someone ran `docker run --device=/srv/gpus/gpu-a:/dev/nvidia0 …`, where
/srv/gpus/gpu-a is the character device 195:2. Inside the container it is called /dev/nvidia0, but
what the container can open is 195:2 (Docker stats PathOnHost and writes that number into the
device cgroup rule): the GPU of minor 2. gpudock reads the node on the engine's host, through the
session's root (the live host, a --root copy, or the simulated host's device table), and uses the
names only when the node cannot be read, saying so on the claim."""

from __future__ import annotations

import errno
import os

import pytest

from gpudock.host.claims import claims_from_inspect
from gpudock.host.docker import DockerWatcher, host_node_reader, remote_node_reader
from gpudock.host.root import HostRoot
from gpudock.model import Gpu
from gpudock.session import Options, open_scenario, open_session
from gpudock.sim.dockerd import SimDockerd
from gpudock.sim.scenario import parse_scenario
from helpers.sim import gpu


def U(i: int) -> str:
    return f"GPU-{i:08x}-5555-4000-8000-0000000000{i:02x}"


# minor = 7 - index: the GPU of minor 2 is index 5, of minor 0 index 7
GPUS = tuple(Gpu(index=i, uuid=U(i), minor=7 - i) for i in range(8))
NODES = {
    "/srv/gpus/gpu-a": (195, 2),
    "/dev/nvidia0": (195, 0),
    "/srv/gpus/ctl": (195, 255),
    "/srv/gpus/modeset": (195, 254),
    "/dev/null": (1, 3),
    "/srv/gpus/file": None,  # a regular file: Docker refuses it ("not a device node")
}


def read(path: str):
    if path in NODES:
        return NODES[path]
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)


def claims(host: str, cont: str, reader=read):
    ins = {"HostConfig": {"Devices": [{"PathOnHost": host, "PathInContainer": cont, "CgroupPermissions": "rwm"}]}}
    return claims_from_inspect(ins, GPUS, read_node=reader)


def test_the_host_node_195_2_called_nvidia0_in_the_container_holds_the_gpu_of_minor_2():
    (c,) = claims("/srv/gpus/gpu-a", "/dev/nvidia0")
    assert (c.mechanism, c.selector, c.gpu_uuid, c.error) == ("device", "/srv/gpus/gpu-a:/dev/nvidia0", U(5), None)
    # before, the container's name won: minor 0, index 7
    (by_name,) = claims("/srv/gpus/gpu-a", "/dev/nvidia0", reader=None)
    assert by_name.gpu_uuid == U(7)


@pytest.mark.parametrize("host", ["/srv/gpus/ctl", "/srv/gpus/modeset", "/dev/null", "/srv/gpus/file"])
def test_a_node_that_is_no_gpu_holds_none_whatever_the_container_calls_it(host):
    assert claims(host, "/dev/nvidia3") == ()


def test_a_node_that_cannot_be_read_is_mapped_by_its_name_and_the_claim_says_so():
    (c,) = claims("/gone/nvidia3", "/dev/nvidia3")
    assert c.gpu_uuid == U(4)
    assert (
        c.error
        == "the host node /gone/nvidia3 could not be read (No such file or directory): its GPU is taken from the name"
    )
    (bad,) = claims("/gone/nvidia9", "/dev/nvidia9")
    assert bad.gpu_uuid is None
    assert bad.error == (
        "no GPU on this host has minor 9 (/dev/nvidia9) (the host node /gone/nvidia9 could not be read "
        "(No such file or directory): its GPU is taken from the name)"
    )


def test_an_engine_on_another_machine_is_read_by_names_and_says_so():
    (c,) = claims("/dev/nvidia0", "/dev/nvidia0", reader=remote_node_reader("tcp://10.0.0.7:2375"))
    assert c.gpu_uuid == U(7)
    assert "the engine at tcp://10.0.0.7:2375 runs on another machine" in c.error


def test_a_root_with_a_real_node_is_read_by_rdev(tmp_path):
    """A --root copy of a host with a real char node (made with mknod: the tests run as root); a
    link to it is followed inside the root, as Docker follows PathOnHost's links."""
    (tmp_path / "dev").mkdir()
    os.mknod(tmp_path / "dev" / "gpu-a", 0o666 | 0o020000, os.makedev(195, 2))
    os.symlink("/dev/gpu-a", tmp_path / "dev" / "by-name")
    reader = host_node_reader(HostRoot(tmp_path))
    assert reader("/dev/gpu-a") == (195, 2) and reader("/dev/by-name") == (195, 2)
    (c,) = claims("/dev/by-name", "/dev/nvidia0", reader=reader)
    assert c.gpu_uuid == U(5) and c.error is None
    with pytest.raises(FileNotFoundError):
        reader("/dev/nvidia7")


def _scenario(**host):
    return parse_scenario(
        {
            "name": "nodes",
            "frozen": True,
            "driver": {"version": "535.129.03"},
            "gpu": [gpu(i) for i in range(4)],  # minors 1, 2, 3, 0
            "host": host,
            "container": [
                {"name": "swapped", "devices": ["/dev/nvidia1:/dev/nvidia0"]},
                {"name": "ctl-as-gpu", "devices": ["/dev/nvidiactl:/dev/nvidia0"]},
                {"name": "missing", "devices": ["/dev/nvidia2"]},
            ],
        },
        "nodes.toml",
    )


def test_the_simulated_host_reads_its_device_table():
    with open_scenario(_scenario(missing_nodes=["/dev/nvidia2"])) as s:
        hmap = s.holders(s.snapshot())
        got = {c.container.name: [(cl.gpu_uuid, cl.error) for cl in c.container.claims] for c in hmap.containers}
    minor_gpu = {(i + 1) % 4: gpu(i)["uuid"] for i in range(4)}
    assert got["swapped"] == [(minor_gpu[1], None)]  # the node is 195:1, whatever the container calls it
    assert got["ctl-as-gpu"] == []  # 195:255 is nvidiactl
    ((uuid, note),) = got["missing"]
    assert uuid == minor_gpu[2]
    assert note.startswith("the host node /dev/nvidia2 could not be read (No such file or directory)")


def test_the_session_reads_nodes_on_the_engines_host(tmp_path):
    """--root DIR with its own engine: the nodes under DIR; an engine over TCP: nowhere."""
    (tmp_path / "dev").mkdir()
    os.mknod(tmp_path / "dev" / "nvidia1", 0o666 | 0o020000, os.makedev(195, 6))
    sc = _scenario()
    with SimDockerd.start(sc) as d:
        with open_session(Options(root=str(tmp_path), docker_host=d.base_url)) as s:
            w = s.watcher()
            assert w.connect().ok
            by_name = {c.name: c for c in w.snapshot(GPUS, all=True)}
            assert [cl.gpu_uuid for cl in by_name["swapped"].claims] == [U(1)]  # 195:6 is index 1 here
            assert "could not be read" in by_name["missing"].claims[0].error  # no /dev/nvidia2 under DIR
    with open_session(Options(root=str(tmp_path), docker_host="tcp://127.0.0.1:9")) as s:
        with pytest.raises(OSError, match="runs on another machine"):
            s.watcher()._read_node("/dev/nvidia1")


def test_without_a_reader_the_watcher_reads_names_as_before():
    with SimDockerd.start(_scenario()) as d:
        w = DockerWatcher(d.base_url)
        assert w.connect().ok
        by_name = {c.name: c for c in w.snapshot(GPUS, all=True)}
    assert [cl.gpu_uuid for cl in by_name["swapped"].claims] == [U(6)]  # from the host name /dev/nvidia1
    assert [cl.gpu_uuid for cl in by_name["ctl-as-gpu"].claims] == [U(7)]  # from /dev/nvidia0 inside: wrong
