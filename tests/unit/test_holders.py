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
        gpus.append(
            Gpu(index=i, uuid=U(i), minor=n - 1 - i, name="H100", mig_devices=migs, processes=tuple(procs.get(i, ())))
        )
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
    assert j["containers"][0]["gpus"][0] == {
        "uuid": U(1),
        "index": 1,
        "minor": 2,
        "mechanisms": ["device-request"],
        "mig_uuids": [],
    }
    assert j["docker"] is None and j["conflicts"] == []


def test_shared_gpu_conflict_only_for_running():
    cs = [
        cont(CA, "a", [cl(0)]),
        cont(CB, "b", [cl(0, "device", "/dev/nvidia3")], status="paused"),
        cont(CC, "c", [cl(0)], status="exited"),
    ]
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
    m = build_holders(s, [cont(CB, "inner", [cl(0)])], pid_mapper=mapper({50: ContainerPid(50, (CA, CB), (50, 20, 3))}))
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


def test_claims_on_a_gpu_nvml_cannot_read_are_the_lost_cards_own():
    # GPU 1 is lost (no UUID): the containers that asked for it, by index, by its node or through
    # CDI, are what its row names; a claim on a GPU that does not exist is nobody's row.
    s = snap()
    gpus = list(s.gpus)
    gpus[1] = Gpu(index=1, uuid=None, minor=2, error="GPU is lost")
    s = HostSnapshot("550.54", "12.4", "12.550", tuple(gpus))
    cs = [
        cont(
            CA,
            "by-index",
            claims_from_inspect(
                {"HostConfig": {"DeviceRequests": [{"DeviceIDs": ["1"], "Capabilities": [["gpu"]]}]}}, s.gpus
            ),
        ),
        cont(
            CB,
            "by-node",
            claims_from_inspect(
                {"HostConfig": {"Devices": [{"PathOnHost": "/dev/nvidia2", "PathInContainer": "/dev/nvidia2"}]}}, s.gpus
            ),
        ),
        cont(CC, "elsewhere", [Claim("runtime-env", "9", None, "index 9 does not exist on this host (4 GPUs)")]),
    ]
    m = build_holders(s, cs, pid_mapper=mapper({}))
    hit = m.conflicts_for_unreadable(1)
    assert [m.container_names(c.container_ids) for c in hit] == [["by-index"], ["by-node"]]
    assert "(--gpus): GPU 1 cannot be read by NVML (lost, or needs a reset)" in hit[0].message
    assert "(--device): GPU 1 (minor 2) cannot be read by NVML" in hit[1].message
    assert m.conflicts_for_unreadable(0) == ()


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


# ------------------------------------------------------------------ --privileged (reach, not hold)

CP = "d" * 64


def privileged(n=4, skip=()):
    return [Claim("privileged", "--privileged", U(i)) for i in range(n) if i not in skip]


def test_idle_privileged_container_is_not_a_holder():
    cs = [cont(CP, "priv", privileged()), cont(CB, "b", [cl(1)])]
    m = build_holders(snap(), cs, pid_mapper=mapper({}))
    # the holder column and the holders: only b, on GPU 1
    assert m.labels() == {U(0): "", U(1): "b", U(2): "", U(3): ""}
    assert [h.name for h in m.gpu(U(1)).holders] == ["b"]
    assert all(m.gpu(U(i)).holders == () for i in (0, 2, 3))
    # every GPU lists it as able to reach it
    for i in range(4):
        (r,) = m.gpu(U(i)).reachable_by
        assert (r.container_id, r.mechanisms, r.selectors) == (CP, ("privileged",), ("--privileged",))
    p = m.container(CP)
    assert p.privileged and p.gpus == () and p.label() == "" and not p.holds_all
    assert [g.index for g in p.reachable] == [0, 1, 2, 3]
    assert all(g.mechanisms == ("privileged",) for g in p.reachable)
    assert not m.container(CB).privileged and m.container(CB).reachable == ()
    # one warning, on the container; no GPU row is marked for it (it uses none)
    (c,) = m.conflicts
    assert (c.kind, c.container_ids, c.gpu_uuid, c.pid) == ("privileged", (CP,), None, None)
    assert "can open every GPU (4)" in c.message and "1 (b)" in c.message
    assert m.conflicts_for_container(CP) == (c,)
    assert all(m.conflicts_for_gpu(U(i)) == () for i in range(4))


def test_privileged_processes_are_its_own_not_unclaimed():
    s = snap(
        {2: [GpuProcess(20, 10, command="python")], 1: [GpuProcess(21, 10, command="steal")], 3: [GpuProcess(22, 10)]}
    )
    table = {
        20: ContainerPid(20, (CP,), (20, 5)),
        21: ContainerPid(21, (CP,), (21, 6)),
        22: ContainerPid(22, (CB,), (22, 7)),
    }
    cs = [cont(CP, "priv", privileged() + [cl(3, "runtime-env")]), cont(CB, "b", [cl(1)])]
    m = build_holders(s, cs, pid_mapper=mapper(table))
    p20 = m.gpu(U(2)).processes[0]
    assert (p20.container_name, p20.container_pid, p20.claimed, p20.access) == ("priv", 5, True, "privileged")
    # b on GPU 3, which priv holds explicitly: b was not given it
    p22 = m.gpu(U(3)).processes[0]
    assert (p22.container_name, p22.claimed, p22.access) == ("b", False, None)
    assert [g.index for g in m.container(CP).gpus] == [3]  # explicit claim: held
    assert [g.index for g in m.container(CP).reachable] == [0, 1, 2]
    assert [h.name for h in m.gpu(U(3)).holders] == ["priv"] and m.gpu(U(3)).reachable_by == ()
    assert [p.pid for p in m.container(CP).processes] == [21, 20]
    kinds = sorted((c.kind, c.gpu_index, c.pid) for c in m.conflicts)
    assert kinds == [("privileged", None, None), ("shared", 1, 21), ("unclaimed", 3, 22)]
    shared = next(c for c in m.conflicts if c.kind == "shared")
    assert shared.container_ids == (CB, CP) and "through --privileged" in shared.message
    assert m.gpu(U(1)).conflicts == (shared,)
    # the GPUs it uses by privilege carry its warning; the one it does not use does not
    priv_c = next(c for c in m.conflicts if c.kind == "privileged")
    assert priv_c in m.conflicts_for_gpu(U(2)) and priv_c in m.conflicts_for_gpu(U(1))
    assert priv_c not in m.conflicts_for_gpu(U(0)) and priv_c not in m.conflicts_for_gpu(U(3))
    assert "not only the one it holds" in priv_c.message


def test_privileged_explicit_claim_covers_its_process():
    s = snap({3: [GpuProcess(30, 10)]})
    cs = [cont(CP, "priv", privileged() + [cl(3, "runtime-env")])]
    m = build_holders(s, cs, pid_mapper=mapper({30: ContainerPid(30, (CP,), (30, 1))}))
    p = m.gpu(U(3)).processes[0]
    assert (p.claimed, p.access) == (True, "claim")
    assert [c.kind for c in m.conflicts] == ["privileged"]


def test_privileged_use_of_a_mig_device_held_by_another():
    s = snap(
        {
            0: [
                GpuProcess(40, 10, mig_uuid="MIG-b"),
                GpuProcess(41, 10, mig_uuid="MIG-b"),
                GpuProcess(42, 10, mig_uuid="MIG-a"),
            ]
        },
        mig=True,
    )
    table = {pid: ContainerPid(pid, (CP,), (pid, 1)) for pid in (40, 41, 42)}
    cs = [
        cont(CP, "priv", privileged() + [cl(0, sel="0:1", mig="MIG-b")]),
        cont(CA, "a", [cl(0, sel="0:0", mig="MIG-a")]),
    ]
    m = build_holders(s, cs, pid_mapper=mapper(table))
    assert [(p.pid, p.access) for p in m.gpu(U(0)).processes] == [(40, "claim"), (41, "claim"), (42, "privileged")]
    shared = [c for c in m.conflicts if c.kind == "shared"]
    assert [(c.pid, c.container_ids) for c in shared] == [(42, (CA, CP))]
    # MIG-b only: a's MIG-a is not touched
    m = build_holders(
        snap({0: [GpuProcess(43, 10, mig_uuid="MIG-b")]}, mig=True),
        [cont(CP, "priv", privileged()), cont(CA, "a", [cl(0, sel="0:0", mig="MIG-a")])],
        pid_mapper=mapper({43: ContainerPid(43, (CP,), (43, 1))}),
    )
    assert [c.kind for c in m.conflicts] == ["privileged"]


def test_one_shared_conflict_per_gpu_and_privileged_container():
    s = snap({1: [GpuProcess(50, 10), GpuProcess(51, 10)]})
    table = {50: ContainerPid(50, (CP,), (50, 1)), 51: ContainerPid(51, (CP,), (51, 2))}
    cs = [cont(CP, "priv", privileged()), cont(CB, "b", [cl(1)]), cont(CC, "c", [cl(1)], status="exited")]
    m = build_holders(s, cs, pid_mapper=mapper(table))
    shared = [c for c in m.conflicts if c.kind == "shared"]
    assert [(c.pid, c.container_ids) for c in shared] == [(50, (CB, CP))]  # c is stopped: not in it
    assert "held by b and used by privileged container priv" in shared[0].message


def test_stopped_privileged_container_is_listed_not_flagged():
    cs = [cont(CP, "priv", privileged(), status="exited")]
    m = build_holders(snap(), cs, pid_mapper=mapper({}))
    assert m.conflicts == ()
    assert m.container(CP).privileged and len(m.container(CP).reachable) == 4
    assert [h.status for h in m.gpu(U(0)).reachable_by] == ["exited"]
    assert m.gpu(U(0)).label() == ""


def test_privileged_does_not_make_holds_all_or_shared():
    # two privileged containers, one of them also holding everything explicitly
    cs = [cont(CP, "priv", privileged()), cont(CA, "all", privileged() + [cl(i, sel="all") for i in range(4)])]
    m = build_holders(snap(), cs, pid_mapper=mapper({}))
    assert sorted((c.kind, c.container_ids) for c in m.conflicts) == [
        ("holds-all", (CA,)),
        ("privileged", (CA,)),
        ("privileged", (CP,)),
    ]
    assert m.container(CA).holds_all and m.container(CA).reachable == ()
    assert not m.container(CP).holds_all
    assert [h.name for h in m.gpu(U(0)).holders] == ["all"]
    assert [h.name for h in m.gpu(U(0)).reachable_by] == ["priv"]


def test_privileged_json():
    s = snap({2: [GpuProcess(20, 10)]})
    cs = [cont(CP, "priv", privileged(skip=(3,)) + [cl(3, "device-request", "3")]), cont(CA, "a", [cl(0)])]
    m = build_holders(s, cs, pid_mapper=mapper({20: ContainerPid(20, (CP,), (20, 5))}))
    j = json.loads(json.dumps(m.to_json()))
    assert set(j) == {"docker", "gpus", "containers", "conflicts"}
    g2 = j["gpus"][2]
    assert g2["holders"] == []
    assert g2["reachable_by"] == [
        {
            "container_id": CP,
            "name": "priv",
            "status": "running",
            "mechanisms": ["privileged"],
            "selectors": ["--privileged"],
            "mig_uuids": [],
        }
    ]
    assert g2["processes"][0]["claimed"] is True and g2["processes"][0]["access"] == "privileged"
    assert [h["name"] for h in j["gpus"][3]["holders"]] == ["priv"] and j["gpus"][3]["reachable_by"] == []
    jp = next(c for c in j["containers"] if c["id"] == CP)
    assert jp["privileged"] is True and jp["holds_all"] is False
    assert [g["index"] for g in jp["gpus"]] == [3]
    assert jp["reachable_gpus"][0] == {
        "uuid": U(0),
        "index": 0,
        "minor": 3,
        "mechanisms": ["privileged"],
        "mig_uuids": [],
    }
    assert [g["index"] for g in jp["reachable_gpus"]] == [0, 1, 2]
    assert [c["mechanism"] for c in jp["claims"]] == ["privileged"] * 3 + ["device-request"]
    ja = next(c for c in j["containers"] if c["id"] == CA)
    assert ja["privileged"] is False and ja["reachable_gpus"] == []
    (jc,) = [c for c in j["conflicts"] if c["kind"] == "privileged"]
    assert jc["container_ids"] == [CP] and jc["gpu_uuid"] is None
    assert "GPUs held by other containers: 0 (a)" in jc["message"]


def test_privileged_from_real_inspect_end_to_end():
    s = snap({0: [GpuProcess(60, 10)]})
    ins = {"HostConfig": {"Privileged": True, "Runtime": "nvidia"}, "Config": {"Env": ["NVIDIA_VISIBLE_DEVICES=1"]}}
    c = cont(CP, "priv", claims_from_inspect(ins, s.gpus))
    m = build_holders(s, [c], pid_mapper=mapper({60: ContainerPid(60, (CP,), (60, 1))}))
    assert [h.name for h in m.gpu(U(1)).holders] == ["priv"]
    assert m.gpu(U(1)).holders[0].mechanisms == ("runtime-env",)
    assert (m.gpu(U(0)).processes[0].claimed, m.gpu(U(0)).processes[0].access) == (True, "privileged")
    assert [c.kind for c in m.conflicts] == ["privileged"]
