"""Unit tests for gpudock.host.holders: the join of GPUs, containers and processes."""

from __future__ import annotations

import json

from gpudock.host.claims import claims_from_inspect
from gpudock.host.holders import build_holders, proc_root_for
from gpudock.host.procmap import ContainerPid
from gpudock.model import Claim, Container, Gpu, GpuProcess, HostSnapshot, MigDevice

CA = "a" * 64
CB = "b" * 64
CC = "c" * 64
CX = "f" * 64  # a container Docker does not know


def U(i):
    return f"GPU-{i:08x}-0000-0000-0000-000000000000"


def snap(procs=None, n=4, mig=False):
    procs = procs or {}
    gpus = []
    for i in range(n):
        migs = ()
        if mig and i == 0:
            migs = (MigDevice(0, "MIG-a", "1g", None, None), MigDevice(1, "MIG-b", "1g", None, None))
        gpus.append(Gpu(index=i, uuid=U(i), minor=n - 1 - i, name="H100", mig_devices=migs,
                        processes=tuple(procs.get(i, ()))))
    return HostSnapshot("550.54", "12.4", "12.550", tuple(gpus))


def cont(cid, name, claims, status="running"):
    return Container(id=cid, name=name, image="img", status=status, claims=tuple(claims))


def cl(i, mech="device-request", sel=None, mig=None):
    return Claim(mech, sel or str(i), U(i), None, mig)


def mapper(table):
    return lambda pid: table.get(pid)


def test_basic_map_and_json():
    s = snap({1: [GpuProcess(100, 500, command="python")]})
    cs = [cont(CA, "trainer", [cl(1), cl(2)]), cont(CB, "idle", [])]
    m = build_holders(s, cs, pid_mapper=mapper({100: ContainerPid(100, (CA,), (100, 7), "docker")}))
    g1 = m.gpu(U(1))
    assert [h.name for h in g1.holders] == ["trainer"]
    assert g1.holders[0].mechanisms == ("device-request",)
    assert g1.label() == "trainer"
    p = g1.processes[0]
    assert (p.pid, p.container_id, p.container_name, p.container_pid, p.claimed) == (100, CA, "trainer", 7, True)
    assert m.gpu(U(0)).holders == () and m.gpu(U(0)).label() == ""
    ca = m.container("trainer")
    assert [g.index for g in ca.gpus] == [1, 2] and ca.label() == "1,2"
    assert ca.processes == (p,)
    assert m.container(CA[:12]) is ca
    assert m.conflicts == ()
    j = json.loads(json.dumps(m.to_json()))
    assert j["gpus"][1]["holders"][0]["name"] == "trainer"
    assert j["gpus"][1]["processes"][0]["container_pid"] == 7
    assert j["containers"][0]["gpus"][0] == {"uuid": U(1), "index": 1, "minor": 2,
                                             "mechanisms": ["device-request"], "mig_uuids": []}
    assert j["docker"] is None and j["conflicts"] == []


def test_shared_gpu_conflict_only_for_running():
    cs = [cont(CA, "a", [cl(0)]), cont(CB, "b", [cl(0, "device", "/dev/nvidia3")], status="paused"),
          cont(CC, "c", [cl(0)], status="exited")]
    m = build_holders(snap(), cs, pid_mapper=mapper({}))
    kinds = [c.kind for c in m.conflicts]
    assert kinds == ["shared"]
    c = m.conflicts[0]
    assert set(c.container_ids) == {CA, CB} and c.gpu_index == 0
    assert "2 running containers" in c.message
    g = m.gpu(U(0))
    assert [h.name for h in g.holders] == ["a", "b", "c"]  # running first
    assert g.label() == "a +1"
    assert g.label(width=4) == "… +1" or len(g.label(width=4)) <= 5
    assert g.conflicts == (c,)
    assert m.labels() == {U(0): "a +1", U(1): "", U(2): "", U(3): ""}


def test_different_mig_devices_do_not_clash():
    cs = [cont(CA, "a", [cl(0, sel="0:0", mig="MIG-a")]), cont(CB, "b", [cl(0, sel="0:1", mig="MIG-b")])]
    m = build_holders(snap(mig=True), cs, pid_mapper=mapper({}))
    assert m.conflicts == ()
    assert m.gpu(U(0)).holders[0].mig_uuids == ("MIG-a",)
    cs.append(cont(CC, "c", [cl(0)]))  # whole GPU clashes with both
    m = build_holders(snap(mig=True), cs, pid_mapper=mapper({}))
    assert [c.kind for c in m.conflicts] == ["shared"]
    assert len(m.conflicts[0].container_ids) == 3


def test_holds_all():
    cs = [cont(CA, "greedy", [cl(i, sel="all") for i in range(4)])]
    m = build_holders(snap(), cs, pid_mapper=mapper({}))
    assert [c.kind for c in m.conflicts] == ["holds-all"]
    assert m.container(CA).holds_all and m.container(CA).label() == "all (4)"
    assert m.conflicts_for_gpu(U(2)) == m.conflicts and m.conflicts_for_gpu("GPU-none") == ()
    # one-GPU host: holding all is not a conflict
    m = build_holders(snap(n=1), [cont(CA, "x", [cl(0)])], pid_mapper=mapper({}))
    assert m.conflicts == ()
    # stopped: listed, not a conflict
    m = build_holders(snap(), [cont(CA, "g", [cl(i) for i in range(4)], status="exited")], pid_mapper=mapper({}))
    assert m.conflicts == () and m.container(CA).holds_all


def test_process_conflicts():
    s = snap({0: [GpuProcess(1, 10, command="Xorg")], 2: [GpuProcess(2, 10), GpuProcess(3, 10)]})
    cs = [cont(CA, "a", [cl(0)])]
    table = {
        1: ContainerPid(1, (), (1,), None),  # host process
        2: ContainerPid(2, (CA,), (2, 5), "docker"),  # container a, on GPU 2 it was not given
        3: ContainerPid(3, (CX,), (3, 1), "cri-containerd"),  # unknown container
    }
    m = build_holders(s, cs, pid_mapper=mapper(table))
    kinds = sorted(c.kind for c in m.conflicts)
    assert kinds == ["foreign-container", "no-container", "unclaimed"]
    p2 = m.gpu(U(2)).processes[0]
    assert p2.claimed is False and p2.container_name == "a"
    p3 = m.gpu(U(2)).processes[1]
    assert p3.container_id == CX and p3.container_name is None and p3.claimed is None
    unc = next(c for c in m.conflicts if c.kind == "unclaimed")
    assert "was not given" in unc.message and unc.pid == 2
    assert m.conflicts_for_container(CA) == (unc,)
    assert {c.kind for c in m.conflicts_for_gpu(U(2))} == {"unclaimed", "foreign-container"}
    assert [c.kind for c in m.conflicts_for_gpu(U(0))] == ["no-container"]


def test_vanished_pid_is_unreadable_not_a_conflict():
    s = snap({0: [GpuProcess(999, 10)]})
    m = build_holders(s, [], pid_mapper=mapper({}))
    p = m.gpu(U(0)).processes[0]
    assert p.container_id is None and p.container_pid is None
    assert p.location == "unreadable"
    assert m.conflicts == ()


def test_process_locations():
    s = snap({0: [GpuProcess(1, 10), GpuProcess(2, 10), GpuProcess(3, 10)]})
    table = {1: ContainerPid(1, ()), 2: ContainerPid(2, (CA,), (2, 1)), 3: ContainerPid(3, (CX,), (3, 1))}
    m = build_holders(s, [cont(CA, "a", [cl(0)])], pid_mapper=mapper(table))
    assert [p.location for p in m.gpu(U(0)).processes] == ["host", "container", "foreign-container"]


def test_foreign_not_raised_while_docker_unavailable():
    class St:
        ok = False

        def to_json(self):
            return {"state": "unavailable"}

    s = snap({0: [GpuProcess(3, 10)]})
    m = build_holders(s, [], pid_mapper=mapper({3: ContainerPid(3, (CX,), (3, 1))}), docker_status=St())
    assert m.conflicts == ()
    assert m.to_json()["docker"] == {"state": "unavailable"}


def test_snapshot_container_ids_used_when_pid_unreadable():
    s = snap({0: [GpuProcess(999, 10, container_id=CA[:12], container_pid=4)]})
    m = build_holders(s, [cont(CA, "a", [cl(0)])], pid_mapper=mapper({}))
    p = m.gpu(U(0)).processes[0]
    assert (p.container_id, p.container_name, p.container_pid, p.claimed) == (CA, "a", 4, True)


def test_nested_container_matches_the_known_one():
    s = snap({0: [GpuProcess(50, 10)]})
    m = build_holders(s, [cont(CB, "inner", [cl(0)])],
                      pid_mapper=mapper({50: ContainerPid(50, (CA, CB), (50, 20, 3))}))
    p = m.gpu(U(0)).processes[0]
    assert p.container_id == CB and p.container_pid == 3 and p.claimed


def test_mig_process_claims():
    s = snap({0: [GpuProcess(7, 10, mig_uuid="MIG-b")]}, mig=True)
    cs = [cont(CA, "a", [cl(0, sel="0:0", mig="MIG-a")])]
    m = build_holders(s, cs, pid_mapper=mapper({7: ContainerPid(7, (CA,), (7, 1))}))
    assert m.gpu(U(0)).processes[0].claimed is False


def test_unresolved_claims():
    bad = Claim("runtime-env", "9", None, "index 9 does not exist on this host (4 GPUs)")
    stale = Claim("device", "/dev/nvidia1", "GPU-gone")
    cs = [cont(CA, "a", [bad, stale]), cont(CB, "b", [bad], status="exited")]
    m = build_holders(snap(), cs, pid_mapper=mapper({}))
    assert [c.kind for c in m.conflicts] == ["unresolved", "unresolved"]
    assert "index 9 does not exist" in m.conflicts[0].message
    assert m.container(CA).gpus == ()
    assert len(m.container(CA).unresolved) == 2
    assert m.container(CA).unresolved[1].error == "no GPU with UUID GPU-gone on this host"


def test_real_claims_end_to_end_and_fake_proc(tmp_path):
    s = snap({3: [GpuProcess(4242, 100)]})
    ins = {"HostConfig": {"Devices": [{"PathOnHost": "/dev/nvidia0", "PathInContainer": "/dev/nvidia0"}]}}
    c = cont(CA, "dev0", claims_from_inspect(ins, s.gpus))
    d = tmp_path / "proc" / "4242"
    d.mkdir(parents=True)
    (d / "cgroup").write_text(f"0::/system.slice/docker-{CA}.scope\n")
    (d / "status").write_text("Name:\tpython\nNSpid:\t4242\t1\n")
    m = build_holders(s, [c], proc_root=proc_root_for(str(tmp_path)))
    assert m.gpu(U(3)).holders[0].name == "dev0"  # minor 0 is index 3
    p = m.gpu(U(3)).processes[0]
    assert p.container_id == CA and p.container_pid == 1 and p.claimed
    assert m.conflicts == ()


def test_empty():
    m = build_holders(HostSnapshot(None, None, None), [])
    assert m.to_json() == {"docker": None, "gpus": [], "containers": [], "conflicts": []}
    assert proc_root_for("/") == "/proc" and proc_root_for(None) == "/proc"
