"""dcgm-exporter's HPC job mapping files, from the holders map (gpudock.fleet.hpc)."""

from __future__ import annotations

import os
import re

import pytest

from gpudock.fleet.hpc import HpcJobDir, job_files
from gpudock.host.docker import DockerStatus
from gpudock.host.holders import build_holders
from gpudock.model import Claim, Container, Gpu, HostSnapshot, MigDevice
from gpudock.toolkit.atomic import LOCK_SUFFIX

OK = DockerStatus("ok", "unix:///run/docker.sock")


def U(i):
    return f"GPU-{i:08x}-0000-4000-8000-000000000000"


def snapshot():
    migs = (
        MigDevice(0, "MIG-a", "3g.40gb", 40192, 0, gpu_instance_id=1),
        MigDevice(1, "MIG-b", "2g.20gb", 20096, 0, gpu_instance_id=5),
    )
    gpus = (
        Gpu(0, U(0), minor=3),
        Gpu(1, U(1), minor=0),
        Gpu(2, U(2), minor=1, mig_mode_current=True, mig_devices=migs),
        Gpu(3, U(3), minor=2),
    )
    return HostSnapshot("535.129.03", "12.2", None, gpus)


def cont(cid, name, claims, status="running"):
    return Container(cid * 64, name, "img", status, claims=tuple(claims))


def holders(containers, status=OK):
    return build_holders(snapshot(), containers, pid_mapper=lambda pid: None, docker_status=status)


def test_one_file_per_gpu_index_and_gpu_dot_gi_for_mig_one_name_per_line():
    hm = holders(
        [
            cont("a", "train-b", [Claim("device", "/dev/nvidia3", U(0))]),
            cont("b", "train-a", [Claim("device-request", "0", U(0)), Claim("device-request", "1", U(1))]),
            cont("c", "mistral-mig", [Claim("runtime-env", "MIG-b", U(2), mig_uuid="MIG-b")]),
            cont("d", "stopped", [Claim("device-request", "3", U(3))], status="exited"),
        ]
    )
    assert job_files(snapshot(), hm) == {
        "0": "train-a\ntrain-b\n",  # sorted, one per line
        "1": "train-a\n",
        "2.5": "mistral-mig\n",  # GPU 2, GPU instance 5: the MIG device it holds
    }


def test_a_whole_mig_enabled_gpu_is_written_into_each_instance():
    # dcgm-exporter reports a MIG-enabled GPU per instance (file "<gpu>.<gi>"), never as "<gpu>"
    hm = holders([cont("a", "all-of-it", [Claim("runtime-env", "2", U(2))])])
    assert job_files(snapshot(), hm) == {"2.1": "all-of-it\n", "2.5": "all-of-it\n"}


def test_update_writes_changed_files_removes_released_ones_and_leaves_others(tmp_path):
    d = HpcJobDir(str(tmp_path))
    (tmp_path / "README").write_text("not ours\n")  # no GPU file name: dcgm-exporter skips it, so do we
    (tmp_path / "3").write_text("gone-job\n")  # a GPU nobody holds any more
    a = cont("a", "train-a", [Claim("device", "/dev/nvidia3", U(0))])
    b = cont("b", "mistral-mig", [Claim("runtime-env", "MIG-a", U(2), mig_uuid="MIG-a")])
    assert d.update(snapshot(), holders([a, b]))
    assert _files(tmp_path) == {"0": "train-a\n", "2.1": "mistral-mig\n", "README": "not ours\n"}
    inode = os.stat(tmp_path / "0").st_ino

    assert not d.update(snapshot(), holders([a, b]))  # nothing changed: nothing written
    assert os.stat(tmp_path / "0").st_ino == inode

    c = cont("c", "train-c", [Claim("device", "/dev/nvidia3", U(0))])
    assert d.update(snapshot(), holders([a, c]))
    assert _files(tmp_path) == {"0": "train-a\ntrain-c\n", "README": "not ours\n"}
    assert os.stat(tmp_path / "0").st_ino != inode  # replaced by a rename, never rewritten in place
    # no temp file left behind; beside the GPU files only atomic_write's lock files (which
    # dcgm-exporter skips, as it skips every name that is not a GPU's)
    assert all(re.fullmatch(r"\d+(\.\d+)?|README|\.[\d.]+\.gpudock-lock", n) for n in os.listdir(tmp_path))


def test_files_stay_while_the_engine_cannot_be_read(tmp_path):
    d = HpcJobDir(str(tmp_path))
    d.update(snapshot(), holders([cont("a", "train-a", [Claim("device", "/dev/nvidia3", U(0))])]))
    down = DockerStatus("unavailable", "unix:///run/docker.sock", "Docker is not running")
    assert not d.update(snapshot(), holders([], status=down))
    assert _files(tmp_path) == {"0": "train-a\n"}


def test_a_missing_directory_is_refused_in_words(tmp_path):
    with pytest.raises(OSError, match="no such directory; create it"):
        HpcJobDir(str(tmp_path / "nope")).check()


def _files(d) -> dict[str, str]:
    return {p.name: p.read_text() for p in d.iterdir() if not p.name.endswith(LOCK_SUFFIX)}
