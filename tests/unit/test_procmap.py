"""Unit tests for gpudock.host.procmap: real cgroup file contents of each form, in fake /proc trees."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpudock.host.procmap import ContainerPid, PidMapper, container_of, parse_cgroup, parse_nspid

A = "3f5b8a6e2c9d4e1f0a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f"
B = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

# cgroup v1, cgroupfs driver (Docker on CentOS 7 / Ubuntu 18.04)
V1_DOCKER = f"""12:pids:/docker/{A}
11:hugetlb:/docker/{A}
10:net_cls,net_prio:/docker/{A}
9:perf_event:/docker/{A}
8:freezer:/docker/{A}
7:cpu,cpuacct:/docker/{A}
6:devices:/docker/{A}
5:blkio:/docker/{A}
4:memory:/docker/{A}
3:cpuset:/docker/{A}
2:rdma:/
1:name=systemd:/docker/{A}
0::/system.slice/containerd.service
"""
# cgroup v1, systemd driver
V1_SYSTEMD = f"""11:devices:/system.slice/docker-{A}.scope
10:memory:/system.slice/docker-{A}.scope
1:name=systemd:/system.slice/docker-{A}.scope
"""
# cgroup v2, systemd driver (Ubuntu 22.04 default)
V2_SYSTEMD = f"0::/system.slice/docker-{A}.scope\n"
# cgroup v2, cgroupfs driver
V2_CGROUPFS = f"0::/docker/{A}\n"
# container running systemd inside (v2): the process is below the scope
V2_SYSTEMD_INIT = f"0::/system.slice/docker-{A}.scope/init.scope\n"
# Kubernetes + containerd, systemd driver, cgroup v2
V2_K8S_CONTAINERD = (
    "0::/kubepods.slice/kubepods-burstable.slice/"
    f"kubepods-burstable-pod7c1a5b9e_1d2f_4a3b_8c7d_6e5f4a3b2c1d.slice/cri-containerd-{A}.scope\n"
)
# Kubernetes, cgroupfs driver, cgroup v1
V1_KUBEPODS = f"""11:devices:/kubepods/besteffort/pod7c1a5b9e-1d2f-4a3b-8c7d-6e5f4a3b2c1d/{A}
1:name=systemd:/kubepods/besteffort/pod7c1a5b9e-1d2f-4a3b-8c7d-6e5f4a3b2c1d/{A}
"""
# CRI-O, systemd driver, v2
V2_CRIO = f"0::/kubepods.slice/kubepods-pod1234.slice/crio-{A}.scope\n"
V2_CRIO_CONMON = f"0::/machine.slice/crio-conmon-{A}.scope\n"
# Docker-in-Docker, v1: inner container below the outer one
V1_NESTED = f"""6:devices:/docker/{A}/docker/{B}
1:name=systemd:/docker/{A}/docker/{B}
"""
V2_NESTED = f"0::/system.slice/docker-{A}.scope/docker/{B}\n"
# podman
V2_PODMAN = f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{A}.scope/container\n"
# host processes
V2_HOST = "0::/user.slice/user-1000.slice/session-3.scope\n"
V1_HOST = "12:pids:/user.slice\n4:memory:/process_api/54616c328eac85d23ebb89ba1f6acc27\n1:name=systemd:/\n0::/\n"


@pytest.mark.parametrize(
    "text, ids, runtime",
    [
        (V1_DOCKER, (A,), "docker"),
        (V1_SYSTEMD, (A,), "docker"),
        (V2_SYSTEMD, (A,), "docker"),
        (V2_CGROUPFS, (A,), "docker"),
        (V2_SYSTEMD_INIT, (A,), "docker"),
        (V2_K8S_CONTAINERD, (A,), "cri-containerd"),
        (V1_KUBEPODS, (A,), "kubepods"),
        (V2_CRIO, (A,), "crio"),
        (V1_NESTED, (A, B), "docker"),
        (V2_NESTED, (A, B), "docker"),
        (V2_PODMAN, (A,), "libpod"),
        (V2_CRIO_CONMON, (), None),
        (V2_HOST, (), None),
        (V1_HOST, (), None),
        ("", (), None),
        ("garbage\n::\n", (), None),
    ],
)
def test_parse_cgroup(text, ids, runtime):
    assert parse_cgroup(text) == (ids, runtime)


def test_v2_line_preferred():
    text = f"1:name=systemd:/docker/{B}\n0::/system.slice/docker-{A}.scope\n"
    assert parse_cgroup(text)[0] == (A,)


def test_uppercase_hex_is_not_an_id():
    assert parse_cgroup(f"0::/docker/{A.upper()}\n") == ((), None)


def test_parse_nspid():
    assert parse_nspid("Name:\tpython\nNSpid:\t4242\t17\n") == (4242, 17)
    assert parse_nspid("NSpid:\t4242\n") == (4242,)
    assert parse_nspid("NSpid:\t4242\t100\t7\n") == (4242, 100, 7)
    assert parse_nspid("Name:\tx\n") == ()
    assert parse_nspid("NSpid:\tx y\n") == ()


def make_proc(tmp_path, pid, cgroup=None, status=None):
    d = tmp_path / str(pid)
    d.mkdir(parents=True)
    if cgroup is not None:
        (d / "cgroup").write_text(cgroup)
    if status is not None:
        (d / "status").write_text(status)
    return d


STATUS = "Name:\tpython3\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{p}\nNgid:\t0\nPid:\t{p}\nPPid:\t1\nNSpid:\t{ns}\n"


def test_container_of_docker(tmp_path):
    make_proc(tmp_path, 4242, V2_SYSTEMD, STATUS.format(p=4242, ns="4242\t17"))
    r = container_of(4242, str(tmp_path))
    assert r == ContainerPid(4242, (A,), (4242, 17), "docker")
    assert r.container_id == A and r.container_pid() == 17


def test_container_of_host_process(tmp_path):
    make_proc(tmp_path, 10, V2_HOST, STATUS.format(p=10, ns="10"))
    r = container_of(10, str(tmp_path))
    assert r.container_id is None and r.container_pid() == 10


def test_container_of_nested(tmp_path):
    make_proc(tmp_path, 500, V1_NESTED, STATUS.format(p=500, ns="500\t90\t3"))
    r = container_of(500, str(tmp_path))
    assert r.ids == (A, B)
    assert r.container_pid(0) == 90 and r.container_pid(1) == 3 and r.container_pid(5) == 3


def test_container_of_pid_host_namespace(tmp_path):
    make_proc(tmp_path, 77, V1_DOCKER, STATUS.format(p=77, ns="77"))
    assert container_of(77, str(tmp_path)).container_pid() == 77


def test_vanished_pid(tmp_path):
    assert container_of(999999, str(tmp_path)) is None


def test_unreadable_cgroup(tmp_path):
    d = make_proc(tmp_path, 5, None, STATUS.format(p=5, ns="5"))
    (d / "cgroup").mkdir()  # reading a directory fails with EISDIR
    assert container_of(5, str(tmp_path)) is None


def test_missing_status_keeps_container(tmp_path):
    make_proc(tmp_path, 6, V2_CGROUPFS, None)
    r = container_of(6, str(tmp_path))
    assert r.container_id == A and r.container_pid() is None


def test_binary_garbage(tmp_path):
    d = make_proc(tmp_path, 8)
    (d / "cgroup").write_bytes(b"\xff\xfe\x00:\x00:/docker/\xff\n")
    (d / "status").write_bytes(b"\xff\xfe")
    r = container_of(8, str(tmp_path))
    assert r is not None and r.ids == ()


def test_live_self():
    r = container_of(os.getpid())
    assert r is not None and r.pid == os.getpid()
    assert r.nspid and r.nspid[0] > 0


def test_pid_mapper_caches_per_refresh(tmp_path):
    make_proc(tmp_path, 4242, V2_SYSTEMD, STATUS.format(p=4242, ns="4242\t17"))
    m = PidMapper(str(tmp_path))
    assert m(4242).container_id == A
    (tmp_path / "4242" / "cgroup").write_text(V2_HOST)
    assert m(4242).container_id == A  # cached within a refresh
    m.begin()
    assert m(4242).container_id is None
    assert m(1234) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_parse_cgroup_never_raises(text):
    ids, rt = parse_cgroup(text)
    assert all(len(i) == 64 for i in ids)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_parse_nspid_never_raises(text):
    parse_nspid(text)
