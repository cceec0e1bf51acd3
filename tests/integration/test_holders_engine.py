"""Which container holds each GPU, against the private Docker engine (no mocks of the Docker API).

Containers hold GPUs by each mechanism (device nodes made with mknod and mapped as
/dev/nvidia<minor>, the runtime registered as nvidia with NVIDIA_VISIBLE_DEVICES, --gpus with the
stand-in hook); the watcher follows events; a container is removed mid-refresh; the engine is
stopped and restarted during a session; real cgroup files of real containers map PIDs.
"""

from __future__ import annotations

import json
import os
import stat
import time

import docker
import pytest

from gpudock.cli import main
from gpudock.host.docker import DockerWatcher
from gpudock.host.holders import build_holders
from gpudock.host.procmap import container_of
from gpudock.model import Gpu, GpuProcess, HostSnapshot


def U(i: int) -> str:
    return f"GPU-{i:08x}-7777-4000-8000-0000000000{i:02x}"


# minors are NOT indices: index i has /dev/nvidia<7-i>
GPUS = tuple(Gpu(index=i, uuid=U(i), minor=7 - i, name="Fake H100") for i in range(8))


def gpus_req(**kw):
    return [docker.types.DeviceRequest(capabilities=[["gpu"]], **kw)]


def run(eng, name, **kw):
    return eng.client.containers.run(eng.image, ["sleep", "300"], name=name, detach=True, **kw)


def by_name(containers):
    return {c.name: c for c in containers}


def uuids(c):
    return [cl.gpu_uuid for cl in c.claims]


@pytest.fixture
def watcher(engine):
    w = DockerWatcher(engine.base_url, backoff=(0.1, 0.5))
    yield w
    w.stop()


def test_every_mechanism(engine, watcher):
    d = engine.dev_dir
    legacy = engine.make_image("gpudock-test/legacy-cuda:10.0", env={"CUDA_VERSION": "10.0.130"})
    cuda = engine.make_image(
        "gpudock-test/cuda:12.2",
        env={"CUDA_VERSION": "12.2.0", "NVIDIA_REQUIRE_CUDA": "cuda>=12.2", "NVIDIA_VISIBLE_DEVICES": "all"},
    )
    run(engine, "h-dev3", devices=[f"{d}/nvidia3:/dev/nvidia3:rwm", f"{d}/nvidiactl:/dev/nvidiactl:rwm"])
    run(
        engine,
        "h-ctl-only",
        devices=[
            f"{d}/nvidiactl:/dev/nvidiactl:rwm",
            f"{d}/nvidia-uvm:/dev/nvidia-uvm:rwm",
            f"{d}/nvidia-uvm-tools:/dev/nvidia-uvm-tools:rwm",
        ],
    )
    run(engine, "h-env", runtime="nvidia", environment={"NVIDIA_VISIBLE_DEVICES": f"1,{U(5)}"})
    run(engine, "h-env-none", runtime="nvidia", environment={"NVIDIA_VISIBLE_DEVICES": "none"})
    run(engine, "h-nvgpu", runtime="nvidia", environment={"NV_GPU": "0,1"})
    run(engine, "h-runc-env", environment={"NVIDIA_VISIBLE_DEVICES": "all"})
    run(engine, "h-bad", runtime="nvidia", environment={"NVIDIA_VISIBLE_DEVICES": "9"})
    engine.client.containers.run(legacy, ["sleep", "300"], name="h-legacy", runtime="nvidia", detach=True)
    run_img = engine.client.containers.run(cuda, ["sleep", "300"], name="h-cuda-image", runtime="nvidia", detach=True)
    run(engine, "h-gpus-ids", device_requests=gpus_req(device_ids=["2", U(4)]))
    run(engine, "h-gpus-count", device_requests=gpus_req(count=2))
    run(engine, "h-gpus-all", device_requests=gpus_req(count=-1))
    engine.client.containers.run(
        cuda,
        ["sleep", "300"],
        name="h-gpus-on-cuda",
        detach=True,
        runtime="nvidia",
        device_requests=gpus_req(device_ids=["6"]),
    )
    engine.client.containers.create(engine.image, ["true"], name="h-created", device_requests=gpus_req(count=1))
    assert run_img.status in ("created", "running")

    st = watcher.connect()
    assert st.ok, st.message
    assert "nvidia" in st.nvidia_runtimes
    cs = by_name(watcher.snapshot(GPUS))
    assert uuids(cs["h-dev3"]) == [U(4)]  # minor 3 is index 4
    assert cs["h-dev3"].claims[0].mechanism == "device"
    assert cs["h-dev3"].claims[0].selector == f"{d}/nvidia3:/dev/nvidia3"
    assert uuids(cs["h-ctl-only"]) == []
    assert uuids(cs["h-env"]) == [U(1), U(5)]
    assert {cl.mechanism for cl in cs["h-env"].claims} == {"runtime-env"}
    assert uuids(cs["h-env-none"]) == []
    assert uuids(cs["h-nvgpu"]) == []
    assert uuids(cs["h-runc-env"]) == []
    assert uuids(cs["h-bad"]) == [None]
    assert cs["h-bad"].claims[0].error == "index 9 does not exist on this host (8 GPUs)"
    assert uuids(cs["h-legacy"]) == [g.uuid for g in GPUS]
    assert uuids(cs["h-cuda-image"]) == [g.uuid for g in GPUS]
    assert uuids(cs["h-gpus-ids"]) == [U(2), U(4)]
    assert uuids(cs["h-gpus-count"]) == [U(0), U(1)]
    assert {cl.selector for cl in cs["h-gpus-count"].claims} == {"count=2"}
    assert uuids(cs["h-gpus-all"]) == [g.uuid for g in GPUS]
    # --gpus wins over the image's NVIDIA_VISIBLE_DEVICES=all (the engine's env comes last)
    assert uuids(cs["h-gpus-on-cuda"]) == [U(6)]
    assert "h-created" not in cs
    cs_all = by_name(watcher.snapshot(GPUS, all=True))
    assert cs_all["h-created"].status == "created" and uuids(cs_all["h-created"]) == [U(0)]

    # The join: GPU 4 is held by h-dev3 (device) and h-gpus-ids (--gpus) and the two all-holders.
    m = build_holders(HostSnapshot("x", "12", "12", GPUS), watcher.snapshot(GPUS), docker_status=st)
    g4 = {h.name: h for h in m.gpu(U(4)).holders}
    assert g4["h-dev3"].mechanisms == ("device",)
    assert g4["h-gpus-ids"].mechanisms == ("device-request",)
    kinds = {(c.kind, c.gpu_index) for c in m.conflicts}
    assert ("shared", 4) in kinds
    assert {c.container_ids[0] for c in m.conflicts if c.kind == "holds-all"} == {
        cs[n].id for n in ("h-legacy", "h-cuda-image", "h-gpus-all")
    }
    assert any(c.kind == "unresolved" and "index 9" in c.message for c in m.conflicts)


def test_gpus_container_really_started_with_the_hook(engine, watcher):
    c = run(engine, "h-hooked", device_requests=gpus_req(device_ids=["3"]))
    c.reload()
    assert c.status == "running"
    watcher.connect()
    (mine,) = [x for x in watcher.snapshot(GPUS) if x.id == c.id]
    assert uuids(mine) == [U(3)] and mine.pid == c.attrs["State"]["Pid"]


def test_engine_appends_gpus_env_after_the_image_env(engine):
    """The premise of "--gpus wins over the image's NVIDIA_VISIBLE_DEVICES": the engine appends its
    own value after the image's, and the toolkit's env map keeps the last one."""
    cuda = engine.make_image("gpudock-test/cuda-all:1", env={"NVIDIA_VISIBLE_DEVICES": "all"})
    c = engine.client.containers.run(cuda, ["env"], detach=True, device_requests=gpus_req(device_ids=["6"]))
    assert c.wait(timeout=60)["StatusCode"] == 0
    vals = [ln.split("=", 1)[1] for ln in c.logs().decode().splitlines() if ln.startswith("NVIDIA_VISIBLE_DEVICES=")]
    assert vals[-1] == "6", vals


def test_events_keep_the_cache_current(engine, watcher):
    watcher.start()
    assert watcher.wait_ready(30), watcher.status.message
    gen = watcher.generation
    c = run(engine, "ev-new", device_requests=gpus_req(count=1))
    assert watcher.wait_for(lambda w: "ev-new" in by_name(w.snapshot(GPUS)), 10)
    assert uuids(by_name(watcher.snapshot(GPUS))["ev-new"]) == [U(0)]
    assert watcher.generation > gen

    c.rename("ev-renamed")
    assert watcher.wait_for(lambda w: "ev-renamed" in by_name(w.snapshot(GPUS)), 10)

    c.pause()
    assert watcher.wait_for(lambda w: by_name(w.snapshot(GPUS))["ev-renamed"].status == "paused", 10)
    c.unpause()
    assert watcher.wait_for(lambda w: by_name(w.snapshot(GPUS))["ev-renamed"].status == "running", 10)

    c.kill()
    assert watcher.wait_for(lambda w: "ev-renamed" not in by_name(w.snapshot(GPUS)), 10)
    assert by_name(watcher.snapshot(GPUS, all=True))["ev-renamed"].status == "exited"

    c.remove()
    assert watcher.wait_for(lambda w: "ev-renamed" not in by_name(w.snapshot(GPUS, all=True)), 10)


def test_steady_snapshot_is_cached_and_gpu_change_re_resolves(engine, watcher):
    run(engine, "st-dev", devices=[f"{engine.dev_dir}/nvidia0:/dev/nvidia0:rwm"])
    watcher.connect()
    a = watcher.snapshot(GPUS)
    assert watcher.snapshot(GPUS) is a  # nothing changed: the same tuple
    # telemetry changes do not matter
    warm = tuple(Gpu(index=g.index, uuid=g.uuid, minor=g.minor, temperature_c=80) for g in GPUS)
    assert watcher.snapshot(warm) is a
    # the GPU at minor 0 changed (a GPU swapped): claims re-resolve
    swapped = tuple(Gpu(index=g.index, uuid=("GPU-new" if g.minor == 0 else g.uuid), minor=g.minor) for g in GPUS)
    b = by_name(watcher.snapshot(swapped))
    assert uuids(b["st-dev"]) == ["GPU-new"]


class _RemovingWatcher(DockerWatcher):
    """Removes a real container between the engine's list and the inspects of a cold build."""

    def __init__(self, *a, victim, client, **kw):
        super().__init__(*a, **kw)
        self.victim = victim
        self.client = client

    def _listed(self, ids):
        assert self.victim in ids
        self.client.api.remove_container(self.victim, force=True)


def test_container_removed_mid_refresh(engine):
    keep = run(engine, "mid-keep", device_requests=gpus_req(count=1))
    victim = run(engine, "mid-victim", device_requests=gpus_req(count=1))
    for workers in (1, 4):
        w = _RemovingWatcher(engine.base_url, victim=victim.id, client=engine.client, workers=workers)
        st = w.connect()
        assert st.ok, st.message
        names = by_name(w.snapshot(GPUS, all=True))
        assert "mid-keep" in names and "mid-victim" not in names
        victim = run(engine, "mid-victim", device_requests=gpus_req(count=1))
    assert keep.id


def test_removed_between_event_and_inspect(engine, watcher):
    watcher.start()
    assert watcher.wait_ready(30)
    # create and remove at once: the create event's re-inspect may find it gone
    for i in range(5):
        c = engine.client.containers.create(engine.image, ["true"], name=f"flash-{i}")
        c.remove()
    keep = engine.client.containers.create(engine.image, ["true"], name="flash-keep")
    assert watcher.wait_for(lambda w: "flash-keep" in by_name(w.snapshot(GPUS, all=True)), 10)
    names = by_name(watcher.snapshot(GPUS, all=True))
    assert not any(n.startswith("flash-") and n != "flash-keep" for n in names)
    assert watcher.status.ok
    assert keep.id


def test_engine_stopped_and_restarted_during_a_session(engine, watcher):
    run(engine, "rs-held", device_requests=gpus_req(count=2), restart_policy={"Name": "always"})
    watcher.start()
    assert watcher.wait_ready(30)
    assert "rs-held" in by_name(watcher.snapshot(GPUS))

    engine.stop()
    assert watcher.wait_for(lambda w: w.status.state == "unavailable", 15)
    assert watcher.snapshot(GPUS) == ()
    msg = watcher.status.message
    assert "DOCKER_HOST" in msg or "systemctl start docker" in msg, msg
    m = build_holders(HostSnapshot("x", "12", "12", GPUS), watcher.snapshot(GPUS), docker_status=watcher.status)
    assert len(m.gpus) == 8 and m.to_json()["docker"]["state"] == "unavailable"

    engine.restart()
    assert watcher.wait_for(lambda w: w.status.ok, 60), watcher.status.message
    assert watcher.wait_for(lambda w: "rs-held" in by_name(w.snapshot(GPUS, all=True)), 30)
    # and events flow again after the reconnect
    run(engine, "rs-after", device_requests=gpus_req(device_ids=["7"]))
    assert watcher.wait_for(lambda w: "rs-after" in by_name(w.snapshot(GPUS)), 15)
    assert uuids(by_name(watcher.snapshot(GPUS))["rs-after"]) == [U(7)]


def test_no_engine_then_engine_appears(engine, tmp_path):
    engine.stop()
    w = DockerWatcher(engine.base_url, backoff=(0.1, 0.5))
    try:
        w.start()
        assert not w.wait_ready(15)
        assert w.status.state == "unavailable"
        assert "does not exist" in w.status.message or "refused" in w.status.message
        engine.restart()
        assert w.wait_for(lambda w: w.status.ok, 60), w.status.message
    finally:
        w.stop()


def test_process_to_container_from_real_cgroup(engine, watcher):
    c = run(engine, "pm-gpu", device_requests=gpus_req(device_ids=["2"]))
    other = run(engine, "pm-other", device_requests=gpus_req(device_ids=["5"]))
    c.reload()
    other.reload()
    pid = c.attrs["State"]["Pid"]
    where = container_of(pid)
    assert where is not None
    assert where.container_id == c.id
    assert where.container_pid() == 1  # sleep is PID 1 in its container

    # an exec'd process: a second PID in the same container
    ex = engine.client.api.exec_create(c.id, ["sleep", "200"])
    engine.client.api.exec_start(ex["Id"], detach=True)
    for _ in range(100):
        kids = [p for p in engine.client.api.top(c.id)["Processes"]]
        if len(kids) >= 2:
            break
        time.sleep(0.05)
    pid_col = engine.client.api.top(c.id)["Titles"].index("PID")
    exec_pid = int([p for p in engine.client.api.top(c.id)["Processes"] if int(p[pid_col]) != pid][0][pid_col])
    ew = container_of(exec_pid)
    assert ew.container_id == c.id and ew.container_pid() not in (None, 1, exec_pid)

    opid = other.attrs["State"]["Pid"]
    gpus = list(GPUS)
    gpus[2] = Gpu(
        index=2, uuid=U(2), minor=5, processes=(GpuProcess(pid, 100, command="sleep"), GpuProcess(exec_pid, 50))
    )
    gpus[3] = Gpu(index=3, uuid=U(3), minor=4, processes=(GpuProcess(opid, 10),))  # pm-other was given 5
    gpus[4] = Gpu(index=4, uuid=U(4), minor=3, processes=(GpuProcess(os.getpid(), 1),))  # this test: no container
    snap = HostSnapshot("x", "12", "12", tuple(gpus))
    watcher.connect()
    m = build_holders(snap, watcher.snapshot(snap.gpus))
    p0, p1 = m.gpu(U(2)).processes
    assert (p0.container_name, p0.container_pid, p0.claimed, p0.location) == ("pm-gpu", 1, True, "container")
    assert p1.container_name == "pm-gpu" and p1.claimed is True
    (po,) = m.gpu(U(3)).processes
    assert po.container_name == "pm-other" and po.claimed is False
    kinds = {c.kind for c in m.conflicts}
    assert "unclaimed" in kinds
    me = m.gpu(U(4)).processes[0]
    assert me.location in ("host", "foreign-container")  # the test runner may itself be containerised
    assert [g.index for g in m.container(c.id).gpus] == [2]
    assert len(m.container(c.id).processes) == 2


def test_cli_holders_against_the_engine(engine, capsys):
    c = run(engine, "cli-holder", device_requests=gpus_req(count=1))
    run(engine, "cli-stopped", device_requests=gpus_req(count=1)).kill()
    rc = main(["holders", "--demo", "--json", "--docker-host", engine.base_url])
    out = json.loads(capsys.readouterr().out)
    assert rc in (0, 1)
    assert out["docker"]["state"] == "ok"
    g0 = out["gpus"][0]
    assert "cli-holder" in [h["name"] for h in g0["holders"]]
    h = next(h for h in g0["holders"] if h["name"] == "cli-holder")
    assert h["mechanisms"] == ["device-request"] and h["selectors"] == ["count=1"]
    assert h["container_id"] == c.id
    names = [x["name"] for x in out["containers"]]
    assert "cli-holder" in names and "cli-stopped" not in names

    rc = main(["holders", "--demo", "--all", "--docker-host", engine.base_url])
    text = capsys.readouterr().out
    assert "held by cli-holder" in text and "cli-stopped" in text


@pytest.mark.parametrize(
    "req",
    [
        dict(count=1),
        dict(count=3),
        dict(count=-1),
        dict(count=0),
        dict(device_ids=["5"]),
        dict(device_ids=["1", "7"]),
        dict(device_ids=[U(2), "6"]),
        dict(device_ids=["0,4"]),
    ],
    ids=lambda r: ",".join(f"{k}={v}" for k, v in r.items()),
)
def test_device_request_claims_match_what_the_engine_hands_the_hook(engine, req):
    """Our reading of DeviceRequests gives the same GPUs as the NVIDIA_VISIBLE_DEVICES value the
    engine itself puts into the container for the hook, resolved by the runtime-env rules."""
    from gpudock.host.claims import claims_from_inspect

    c = engine.client.containers.run(engine.image, ["env"], detach=True, device_requests=gpus_req(**req))
    assert c.wait(timeout=60)["StatusCode"] == 0
    env = [ln for ln in c.logs().decode().splitlines() if ln.startswith("NVIDIA_VISIBLE_DEVICES=")]
    c.reload()
    ours = [cl.gpu_uuid for cl in claims_from_inspect(c.attrs, GPUS)]
    as_env = {"Config": {"Env": env[-1:]}, "HostConfig": {"Runtime": "nvidia"}}
    engines = [cl.gpu_uuid for cl in claims_from_inspect(as_env, GPUS)]
    assert ours == engines, (env, ours, engines)
    assert all(ours)


# --privileged. The tests may run in a sandbox whose capability bounding set lacks a capability
# (CAP_SYS_RESOURCE, say), where runc cannot start a privileged container ("unable to apply caps")
# and dockerd 20.10 ignores --cap-drop with --privileged. The engine gets two runtimes that trim
# the OCI spec's capability lists to the bounding set they run with, then exec the real runc:
# nothing else changes (Docker still marks the container Privileged, hands it every host device
# and an allow-all device cgroup, which is what the claims rely on). On a host with every
# capability they change nothing. "nvidia-priv" is named like the toolkit's runtime so that the
# engine lists it as an NVIDIA runtime (its NVIDIA_VISIBLE_DEVICES counts); "runc-priv" is plain.
_CAPS_WRAPPER = """#!{python}
import json, os, sys
CAPS = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
        "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
        "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
        "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
        "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
        "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"]
bnd = next(int(ln.split()[1], 16) for ln in open("/proc/self/status") if ln.startswith("CapBnd:"))
ok = {{"CAP_" + n for i, n in enumerate(CAPS) if bnd >> i & 1}}
args = sys.argv[1:]
bundle = next((args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--bundle", "-b")), None)
if bundle and "create" in args:
    path = os.path.join(bundle, "config.json")
    spec = json.load(open(path))
    caps = spec.get("process", {{}}).get("capabilities") or {{}}
    for k, v in caps.items():
        caps[k] = [c for c in v if c in ok]
    json.dump(spec, open(path, "w"))
os.execv({runc!r}, [{runc!r}] + args)
"""


@pytest.fixture
def priv_engine(engine, tmp_path):
    """The engine with runtimes "runc-priv" and "nvidia-priv" (see _CAPS_WRAPPER); the engine
    fixture puts daemon.json back afterwards."""
    import sys

    runtimes = {}
    for name, exe in (("runc-priv", "runc-caps"), ("nvidia-priv", "nvidia-container-runtime")):
        d = tmp_path / name
        d.mkdir()
        (d / exe).write_text(_CAPS_WRAPPER.format(python=sys.executable, runc=engine.runc))
        (d / exe).chmod(0o755)
        runtimes[name] = {"path": str(d / exe)}
    engine.daemon_json.write_text(json.dumps({"runtimes": runtimes}))
    engine.restart()
    return engine


def test_privileged_container_can_open_any_gpu_node_an_unprivileged_one_cannot(priv_engine):
    """The premise of the "privileged" claim: Docker's device cgroup lets a --privileged container
    open a GPU node (char 195:N) it was never given; an unprivileged container is refused (EPERM).
    The node is made inside each container with mknod, so only the device cgroup decides."""
    script = "mknod /tmp/gpu6 c 195 6 && cat /tmp/gpu6 2>&1; echo rc=$?"
    out = {}
    for privileged in (True, False):
        c = priv_engine.client.containers.run(
            priv_engine.image, ["sh", "-c", script], detach=True, privileged=privileged, runtime="runc-priv"
        )
        assert c.wait(timeout=60)["StatusCode"] == 0
        out[privileged] = c.logs().decode()
    assert "Operation not permitted" in out[False], out[False]
    assert "rc=" in out[True] and "Operation not permitted" not in out[True], out[True]  # ENXIO without a driver


def test_privileged_containers_in_the_holders_map(priv_engine, watcher):
    eng = priv_engine
    idle = run(eng, "pv-idle", privileged=True, runtime="runc-priv")
    run(eng, "pv-env", privileged=True, runtime="nvidia-priv", environment={"NVIDIA_VISIBLE_DEVICES": "1"})
    run(eng, "pv-gpus", privileged=True, runtime="runc-priv", device_requests=gpus_req(device_ids=["2"]))
    other = run(eng, "pv-other", device_requests=gpus_req(device_ids=["3"]))
    plain = run(eng, "pv-plain", device_requests=gpus_req(device_ids=["5"]))
    for c in (idle, other, plain):
        c.reload()
        assert c.status == "running"
    assert idle.attrs["HostConfig"]["Privileged"] is True

    st = watcher.connect()
    assert st.ok, st.message
    assert "nvidia-priv" in st.nvidia_runtimes and "runc-priv" not in st.nvidia_runtimes
    cs = by_name(watcher.snapshot(GPUS))
    assert cs["pv-idle"].privileged and cs["pv-idle"].gpu_uuids == ()
    assert [(cl.mechanism, cl.selector) for cl in cs["pv-idle"].claims] == [("privileged", "--privileged")] * 8
    assert uuids(cs["pv-idle"]) == [g.uuid for g in GPUS]
    assert cs["pv-env"].gpu_uuids == (U(1),) and cs["pv-gpus"].gpu_uuids == (U(2),)
    assert not cs["pv-other"].privileged and cs["pv-other"].gpu_uuids == (U(3),)

    # real PIDs: pv-idle's sleep on GPU 6 (nobody's) and GPU 3 (pv-other's); pv-plain's on GPU 6
    ipid, ppid = idle.attrs["State"]["Pid"], plain.attrs["State"]["Pid"]
    gpus = list(GPUS)
    gpus[3] = Gpu(index=3, uuid=U(3), minor=4, processes=(GpuProcess(ipid, 10, command="sleep"),))
    gpus[6] = Gpu(index=6, uuid=U(6), minor=1, processes=(GpuProcess(ipid, 20), GpuProcess(ppid, 30)))
    snap = HostSnapshot("x", "12", "12", tuple(gpus))
    m = build_holders(snap, watcher.snapshot(snap.gpus), docker_status=st)

    pi, pp = m.gpu(U(6)).processes
    assert (pi.container_name, pi.container_pid, pi.location, pi.claimed, pi.access) == (
        "pv-idle",
        1,
        "container",
        True,
        "privileged",
    )
    assert (pp.container_name, pp.claimed, pp.access) == ("pv-plain", False, None)
    # not holders: the holder column shows the real holders only
    assert m.gpu(U(6)).holders == () and m.gpu(U(6)).label() == ""
    assert m.gpu(U(3)).label() == "pv-other"
    assert [h.name for h in m.gpu(U(1)).holders] == ["pv-env"]
    assert [h.name for h in m.gpu(U(0)).reachable_by] == ["pv-env", "pv-gpus", "pv-idle"]
    assert [h.name for h in m.gpu(U(1)).reachable_by] == ["pv-gpus", "pv-idle"]
    assert len(m.container(idle.id).reachable) == 8 and m.container(idle.id).gpus == ()
    assert [g.index for g in m.container("pv-gpus").gpus] == [2]

    kinds = sorted((c.kind, c.gpu_index or -1, c.pid or -1) for c in m.conflicts)
    assert kinds == [("privileged", -1, -1)] * 3 + [("shared", 3, ipid), ("unclaimed", 6, ppid)]
    priv = {c.container_ids[0] for c in m.conflicts if c.kind == "privileged"}
    assert priv == {cs[n].id for n in ("pv-idle", "pv-env", "pv-gpus")}
    shared = next(c for c in m.conflicts if c.kind == "shared")
    assert shared.container_ids == (other.id, idle.id)


def test_cli_holders_json_with_a_privileged_container(priv_engine, capsys):
    c = run(priv_engine, "cli-priv", privileged=True, runtime="runc-priv")
    held = run(priv_engine, "cli-held", device_requests=gpus_req(device_ids=["0"]))
    rc = main(["holders", "--demo", "--json", "--docker-host", priv_engine.base_url])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1  # the privileged warning is a conflict
    g0, g1 = out["gpus"][0], out["gpus"][1]
    assert [h["name"] for h in g0["holders"]] == ["cli-held"]
    assert [h["name"] for h in g1["holders"]] == []
    for g in out["gpus"]:
        (r,) = [r for r in g["reachable_by"] if r["name"] == "cli-priv"]
        assert r["container_id"] == c.id and r["mechanisms"] == ["privileged"] and r["selectors"] == ["--privileged"]
    ctrs = {x["name"]: x for x in out["containers"]}
    assert ctrs["cli-priv"]["privileged"] is True and ctrs["cli-priv"]["gpus"] == []
    assert len(ctrs["cli-priv"]["reachable_gpus"]) == len(out["gpus"]) == 8
    assert ctrs["cli-held"]["privileged"] is False and ctrs["cli-held"]["reachable_gpus"] == []
    (conf,) = [x for x in out["conflicts"] if x["kind"] == "privileged"]
    assert conf["container_ids"] == [c.id] and f"0 ({held.name})" in conf["message"]


def test_a_device_is_held_by_its_host_nodes_number_not_its_names(engine, tmp_path, capsys):
    """--device=/tmp/x/gpu-a:/dev/nvidia0 where gpu-a is char 195:2: the container can open 195:2
    (its device cgroup says so: opening it gives ENXIO, no driver, not EPERM) and not 195:0, so it
    holds the GPU of minor 2. A node that is gone is mapped by its name, and the claim says so."""
    node_dir = tmp_path / "x"
    node_dir.mkdir()
    node = node_dir / "gpu-a"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(195, 2))
    # Docker's default rules let a container mknod any node ("c *:* m"); opening one is the rule
    script = "stat -c %t:%T /dev/nvidia0; cat /dev/nvidia0 2>&1; mknod /tmp/n0 c 195 0 && cat /tmp/n0 2>&1; echo done"
    c = engine.client.containers.run(
        engine.image,
        ["sh", "-c", script + "; sleep 300"],
        name="node-a",
        detach=True,
        devices=[f"{node}:/dev/nvidia0:rwm"],
    )
    deadline = time.monotonic() + 30
    while "done" not in c.logs().decode() and time.monotonic() < deadline:
        time.sleep(0.1)
    inside = c.logs().decode()
    assert inside.startswith("c3:2\n"), inside  # 195:2, in hex
    assert "No such device or address" in inside and inside.count("Operation not permitted") == 1, inside
    gone = engine.client.containers.create(
        engine.image, ["true"], name="node-gone", devices=[f"{node_dir}/nowhere/nvidia5:/dev/nvidia5:rwm"]
    )

    rc = main(["holders", "--demo", "--json", "--all", "--docker-host", engine.base_url])
    out = json.loads(capsys.readouterr().out)
    assert rc in (0, 1) and out["docker"]["state"] == "ok"
    by_minor = {g["minor"]: g for g in out["gpus"]}
    assert [h["name"] for h in by_minor[2]["holders"]] == ["node-a"]
    assert by_minor[2]["holders"][0]["selectors"] == [f"{node}:/dev/nvidia0"]
    assert "node-a" not in [h["name"] for h in by_minor[0]["holders"]]
    (claim,) = next(x for x in out["containers"] if x["id"] == gone.id)["claims"]
    assert claim["gpu_uuid"] == by_minor[5]["uuid"]
    assert claim["error"] == (
        f"the host node {node_dir}/nowhere/nvidia5 could not be read (No such file or directory): "
        "its GPU is taken from the name"
    )


def test_a_dockerd_stopped_with_sigstop_is_marked_stale_and_then_current_again(engine):
    """dockerd stopped (SIGSTOP, by the PID the fixture knows): nothing closes, the event stream is
    silent, requests wait. The watcher says the engine is not answering, keeps the containers it
    knew as the last known, and clears it all when dockerd runs again (SIGCONT, always)."""
    import signal

    run(engine, "stop-holder", devices=[f"{engine.dev_dir}/nvidia3:/dev/nvidia3:rwm"])
    w = DockerWatcher(engine.base_url, heartbeat=0.2, stale_after=0.5, timeout=60, backoff=(0.1, 0.5))
    w.start()
    try:
        assert w.wait_for(lambda w: "stop-holder" in by_name(w.snapshot(GPUS)), timeout=30)
        assert not w.status.stale
        before = time.time()
        os.kill(engine.pid, signal.SIGSTOP)
        try:
            assert w.wait_for(lambda w: w.status.stale, timeout=30), w.status
            st = w.status
            assert st.state == "ok" and st.stale_since >= before and "has not answered since" in st.message
            assert uuids(by_name(w.snapshot(GPUS))["stop-holder"]) == [U(4)]  # minor 3: the last known holder
        finally:
            os.kill(engine.pid, signal.SIGCONT)
        assert w.wait_for(lambda w: w.status.ok and not w.status.stale, timeout=60), w.status
        assert "stop-holder" in by_name(w.snapshot(GPUS))
    finally:
        w.stop()
