"""The simulated host's Docker side: the real docker SDK, DockerWatcher, procmap and build_holders
over gpudock.sim.dockerd (Engine API on a UNIX socket) and gpudock.sim.procfs (a /proc tree)."""

from __future__ import annotations

import datetime
import http.client
import json
import os
import queue
import socket
import subprocess
import sys
import threading
from pathlib import Path

import docker
import docker.errors
import pytest

from gpudock.host.docker import DockerWatcher
from gpudock.host.holders import build_holders
from gpudock.host.procmap import container_of
from gpudock.launch.run import holders_by_gpu, launch, preflight
from gpudock.launch.selection import parse_selection
from gpudock.launch.spec import LaunchError, build_spec
from gpudock.sim.host import SimHost
from gpudock.sim.scenario import ScenarioError, builtin_scenario, parse_scenario
from helpers.sim import frozen_demo, gpu, session

REPO = Path(__file__).resolve().parents[2]
DEMO = builtin_scenario("demo")
BY_NAME = {c.name: c for c in DEMO.containers}
UUID = [g.uuid for g in DEMO.gpus]
MIG0 = DEMO.gpus[6].mig[0].uuid


@pytest.fixture(scope="module")
def snap():
    s = session(frozen_demo())
    try:
        yield s.snapshot()
    finally:
        s.shutdown()


@pytest.fixture
def sim():
    with SimHost(DEMO) as h:
        yield h


@pytest.fixture
def client(sim):
    c = docker.DockerClient(base_url=sim.docker_base_url, version="auto", timeout=10)
    yield c
    c.close()


def _raw_get(sim: SimHost, path: str) -> tuple[int, dict]:
    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(sim.dockerd.socket_path)

    conn = Conn("localhost", timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


# ----------------------------------------------------------------------------- the SDK


def test_sdk_lists_and_inspects_the_demo_containers(client):
    assert client.ping() is True
    info = client.info()
    assert info["Runtimes"]["nvidia"]["path"] == "/usr/bin/nvidia-container-runtime"
    assert info["DefaultRuntime"] == "runc" and info["CgroupDriver"] == "systemd"
    running = {c.name for c in client.containers.list()}
    assert running == {"train-llama", "triton", "embedder", "burn-in", "mistral-mig", "eval-harness", "cache"}
    everything = {c.name: c.status for c in client.containers.list(all=True)}
    assert everything["old-job"] == "exited" and len(everything) == 8

    triton = client.api.inspect_container("triton")
    assert triton["Id"] == BY_NAME["triton"].id and triton["Name"] == "/triton"
    assert triton["HostConfig"]["Runtime"] == "nvidia" and triton["HostConfig"]["Privileged"] is False
    env = dict(e.split("=", 1) for e in triton["Config"]["Env"])
    assert env["NVIDIA_VISIBLE_DEVICES"] == UUID[2]  # the container's value replaces the image's "all"
    assert triton["State"]["Running"] is True and triton["State"]["Pid"] == 3911870

    emb = client.containers.get(BY_NAME["embedder"].id[:12]).attrs
    assert [d["PathOnHost"] for d in emb["HostConfig"]["Devices"]] == [
        "/dev/nvidiactl",
        "/dev/nvidia-uvm",
        "/dev/nvidia1",
    ]
    assert emb["HostConfig"]["Runtime"] == "runc"

    (req,) = client.api.inspect_container("train-llama")["HostConfig"]["DeviceRequests"]
    assert req == {"Driver": "", "Count": 0, "DeviceIDs": ["0", "1"], "Capabilities": [["gpu"]], "Options": {}}
    old = client.api.inspect_container("old-job")
    assert old["State"]["Status"] == "exited" and old["State"]["Pid"] == 0 and old["State"]["ExitCode"] == 137
    assert old["HostConfig"]["DeviceRequests"][0]["Count"] == -1


def test_missing_container_and_unknown_paths_are_404_with_a_message(client, sim):
    with pytest.raises(docker.errors.NotFound) as e:
        client.containers.get("no-such-thing")
    assert e.value.explanation == "No such container: no-such-thing"
    assert _raw_get(sim, "/v1.41/containers/nope/json") == (404, {"message": "No such container: nope"})
    assert _raw_get(sim, "/v1.43/swarm")[0] == 404
    status, doc = _raw_get(sim, "/v1.24/containers/triton/json")  # any API version prefix
    assert status == 200 and doc["Name"] == "/triton"
    status, doc = _raw_get(sim, "/version")
    assert status == 200 and doc["ApiVersion"] == "1.45"


def test_images_carry_their_cuda_requirements(client):
    tags = {t for im in client.images.list() for t in im.tags}
    assert {"nvidia/cuda:12.0.1-base-ubuntu22.04", "nvidia/cuda:12.4.1-base-ubuntu22.04"} <= tags
    env = client.images.get("nvidia/cuda:12.4.1-base-ubuntu22.04").attrs["Config"]["Env"]
    assert "NVIDIA_REQUIRE_CUDA=cuda>=12.4" in env
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("nvidia/cuda:99.0")


# ----------------------------------------------------------------------------- DockerWatcher


def _claims(containers) -> dict[str, set[tuple[str, int | None, str | None]]]:
    idx = {u: i for i, u in enumerate(UUID)}
    return {c.name: {(cl.mechanism, idx.get(cl.gpu_uuid), cl.mig_uuid) for cl in c.claims} for c in containers}


def test_watcher_gives_the_claims_of_every_mechanism(sim, snap):
    w = DockerWatcher(sim.docker_base_url)
    st = w.connect()
    assert st.ok, st.message
    assert st.nvidia_runtimes == ("nvidia",) and st.default_runtime == "runc" and st.engine_version == "26.1.5"
    assert st.containers == 8
    got = _claims(w.snapshot(snap.gpus, all=True))
    assert got["train-llama"] == {("device-request", 0, None), ("device-request", 1, None)}
    assert got["triton"] == {("runtime-env", 2, None)}
    assert got["embedder"] == {("device", 2, None)}  # /dev/nvidia1 is minor 1, i.e. NVML index 2
    assert got["burn-in"] == {("runtime-env", 4, None)}
    assert got["mistral-mig"] == {("runtime-env", 6, MIG0)}
    assert got["eval-harness"] == {("cdi", 7, None)}
    assert got["old-job"] == {("device-request", i, None) for i in range(8)}
    assert got["cache"] == set()
    assert "old-job" not in {c.name for c in w.snapshot(snap.gpus)}


# ----------------------------------------------------------------------------- /proc and holders


def test_simulated_proc_maps_pids_to_containers(sim):
    cp = container_of(3904121, sim.proc_root)
    assert cp.container_id == BY_NAME["train-llama"].id and cp.container_pid() == 17 and cp.runtime == "docker"
    cg = Path(sim.proc_root, "3904121", "cgroup").read_text()
    assert cg == f"0::/system.slice/docker-{BY_NAME['train-llama'].id}.scope\n"
    assert "NSpid:\t3904121\t17\n" in Path(sim.proc_root, "3904121", "status").read_text()
    host = container_of(3931544, sim.proc_root)
    assert host.ids == () and host.nspid == (3931544,)
    init = container_of(BY_NAME["train-llama"].pid, sim.proc_root)  # the container's PID 1
    assert init.container_id == BY_NAME["train-llama"].id and init.container_pid() == 1


def test_build_holders_for_the_demo(sim, snap):
    w = DockerWatcher(sim.docker_base_url)
    st = w.connect()
    hmap = build_holders(snap, w.snapshot(snap.gpus), proc_root=sim.proc_root, docker_status=st)

    g2 = hmap.gpu_at(2)
    assert g2.minor == 1
    assert {(h.name, h.mechanisms) for h in g2.holders} == {("triton", ("runtime-env",)), ("embedder", ("device",))}
    assert {h.name: h.selectors for h in g2.holders}["embedder"] == ("/dev/nvidia1",)
    shared = [c for c in hmap.conflicts if c.kind == "shared"]
    assert len(shared) == 1 and shared[0].gpu_index == 2
    assert set(shared[0].container_ids) == {BY_NAME["triton"].id, BY_NAME["embedder"].id}

    for i in (0, 1):
        assert [h.name for h in hmap.gpu_at(i).holders] == ["train-llama"]
    (p,) = hmap.gpu_at(0).processes
    assert (p.pid, p.location, p.container_name, p.container_pid, p.claimed) == (
        3904121,
        "container",
        "train-llama",
        17,
        True,
    )
    assert [h.name for h in hmap.gpu_at(4).holders] == ["burn-in"]
    assert hmap.gpu_at(3).holders == () and hmap.gpu_at(5).holders == ()

    g6 = hmap.gpu_at(6)
    (mistral,) = g6.holders
    assert mistral.name == "mistral-mig" and mistral.mig_uuids == (MIG0,) and not mistral.whole
    procs = {p.pid: p for p in g6.processes}
    assert procs[3931007].container_name == "mistral-mig" and procs[3931007].claimed is True
    assert procs[3931544].location == "host" and procs[3931544].container_id is None
    nc = [c for c in hmap.conflicts if c.kind == "no-container"]
    assert [(c.pid, c.gpu_index) for c in nc] == [(3931544, 6)]
    assert {c.kind for c in hmap.conflicts} == {"shared", "no-container"}  # old-job is exited: no holds-all


def _run_cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "gpudock.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_cli_holders_demo_json_reads_the_simulated_engine():
    r = _run_cli("holders", "--demo", "--json")
    assert r.returncode == 1, r.stderr  # conflicts found
    out = json.loads(r.stdout)
    assert out["docker"]["state"] == "ok" and out["docker"]["nvidia_runtimes"] == ["nvidia"]
    assert out["source"] == "sim:demo"
    gpus = {g["index"]: g for g in out["gpus"]}
    assert {h["name"] for h in gpus[2]["holders"]} == {"triton", "embedder"}
    assert gpus[2]["minor"] == 1
    (p0,) = gpus[0]["processes"]
    assert (p0["pid"], p0["container_name"], p0["container_pid"]) == (3904121, "train-llama", 17)
    kinds = {(c["kind"], c["gpu_index"]) for c in out["conflicts"]}
    assert kinds == {("shared", 2), ("no-container", 6)}
    names = {c["name"] for c in out["containers"]}
    assert "old-job" not in names and "train-llama" in names
    r = _run_cli("holders", "--demo", "--json", "--all")
    assert "old-job" in {c["name"] for c in json.loads(r.stdout)["containers"]}


def test_cli_holders_demo_text():
    r = _run_cli("holders", "--demo")
    assert r.returncode == 1, r.stderr
    assert "held by embedder" in r.stdout and "via --device: /dev/nvidia1" in r.stdout
    assert "process PID 3904121 in train-llama as PID 17" in r.stdout
    assert "[shared] GPU 2 is held by 2 running containers: embedder, triton" in r.stdout


def test_the_simulated_engine_is_the_simulated_hosts_own(tmp_path, monkeypatch):
    with SimHost(DEMO) as h:
        # where a real host has it: /var/run/docker.sock, a link to /run/docker.sock
        sock = h.dockerd.socket_path
        assert sock == h.root.real("/var/run/docker.sock") and h.docker_base_url == f"unix://{sock}"
        assert os.path.exists(sock) and os.path.isdir(h.proc_root)
        directory = h.directory
    assert not os.path.exists(sock) and not os.path.exists(directory)  # closed and cleaned up
    # the demo is whole: DOCKER_HOST does not reach into it; an engine named on the command line
    # takes the simulated one's place
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/elsewhere.sock")
    r = _run_cli("holders", "--demo", "--json")
    assert json.loads(r.stdout)["docker"]["state"] == "ok"
    r = _run_cli("holders", "--demo", "--json", "--docker-host", f"unix://{tmp_path}/none.sock")
    doc = json.loads(r.stdout)
    assert r.returncode == 2 and doc["docker"]["state"] == "unavailable" and "none.sock" in doc["docker"]["message"]
    # a scenario without containers runs no engine: its socket is absent, as on such a host
    f = tmp_path / "gpus-only.toml"
    f.write_text(
        '[driver]\nversion = "535.129.03"\n[[gpu]]\nuuid = "GPU-1"\nname = "x"\n'
        'pci_bus_id = "0000:05:00.0"\nmemory_total_mib = 1024\n'
    )
    r = _run_cli("holders", "--sim", str(f), "--json")
    doc = json.loads(r.stdout)
    assert doc["docker"]["state"] == "unavailable" and "docker.sock" in doc["docker"]["message"]


# ----------------------------------------------------------------------------- changes and events


def _reader(stream) -> queue.Queue:
    """The stream's events in a queue, read by a thread (a missing event fails in 10 s, not hangs)."""
    q: queue.Queue = queue.Queue()

    def run():
        try:
            for ev in stream:
                q.put(ev)
        except Exception as e:  # noqa: BLE001 - closed under us at the end of the test
            q.put(e)

    threading.Thread(target=run, daemon=True).start()
    return q


def test_events_carry_a_container_created_through_the_api_to_the_watcher(sim, client, snap):
    w = DockerWatcher(sim.docker_base_url)
    w.start()
    try:
        assert w.wait_ready(10) and w.status.containers == 8
        stream = client.api.events(decode=True, filters={"type": "container"})
        events = _reader(stream)

        def next_action():
            return events.get(timeout=10)["Action"]

        try:
            c = client.containers.create(
                "nvidia/cuda:12.0.1-base-ubuntu22.04",
                "sleep infinity",
                name="late",
                device_requests=[docker.types.DeviceRequest(device_ids=["5"], capabilities=[["gpu"]])],
            )
            c.start()
            assert [next_action(), next_action()] == ["create", "start"]

            def held(w):
                cs = {x.name: x for x in w.snapshot(snap.gpus)}
                return "late" in cs and cs["late"].gpu_uuids == (UUID[5],)

            assert w.wait_for(held, timeout=10)
            c.remove(force=True)
            actions = [next_action() for _ in range(3)]
            assert actions == ["kill", "die", "destroy"]
            assert w.wait_for(lambda w: "late" not in {x.name for x in w.snapshot(snap.gpus, all=True)}, timeout=10)
        finally:
            stream.close()
    finally:
        w.stop()


def test_stopping_the_engine_ends_the_stream_and_the_watcher_says_so(snap):
    h = SimHost(DEMO).start()
    w = DockerWatcher(h.docker_base_url, backoff=(0.05, 0.1))
    w.start()
    try:
        assert w.wait_ready(10)
        h.close()
        assert w.wait_for(lambda w: w.status.state == "unavailable", timeout=10), w.status
        assert w.snapshot(snap.gpus) == ()
    finally:
        w.stop()
        h.close()


def test_name_conflict_and_removing_a_running_container_are_refused(client):
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.create("redis:7", name="triton")
    assert e.value.status_code == 409 and 'name "/triton" is already in use' in e.value.explanation
    with pytest.raises(docker.errors.APIError) as e:
        client.api.remove_container("cache")
    assert e.value.status_code == 409
    with pytest.raises(docker.errors.ImageNotFound):
        client.api.create_container("nowhere/none:1")


# ----------------------------------------------------------------------------- the launcher on the demo


def test_launcher_preflight_and_launch_on_the_simulated_engine(client, snap, sim):
    spec = build_spec(snap, parse_selection("3", snap), "runtime", image="nvidia/cuda:12.4.1-base-ubuntu22.04")
    with pytest.raises(LaunchError) as e:
        preflight(client, spec, snap, holders={})
    assert "12.4" in str(e.value) and "12.2" in str(e.value)

    held = holders_by_gpu(snap, sim.docker_base_url)
    assert held[UUID[2]] == ("embedder", "triton")
    spec = build_spec(
        snap, parse_selection("2", snap), "gpus", image="nvidia/cuda:12.0.1-base-ubuntu22.04", name="demo-launch"
    )
    container, warnings = launch(client, spec, snap, holders=held)
    assert warnings == (f"GPU 2 ({UUID[2]}) is already held by embedder, triton",)
    container.reload()
    assert container.status == "running" and container.attrs["HostConfig"]["Privileged"] is False
    assert holders_by_gpu(snap, sim.docker_base_url)[UUID[2]] == ("demo-launch", "embedder", "triton")
    assert container.logs().decode().startswith("demo-launch: simulated by gpudock")


# ----------------------------------------------------------------------------- scenario format


def _sc(containers, **extra):
    return parse_scenario(
        {
            "driver": {"version": "535.129.03"},
            "gpu": [gpu(0, process=[{"pid": 100, "used_memory_mib": 10}]), gpu(1)],
            "container": containers,
            **extra,
        },
        "t.toml",
    )


@pytest.mark.parametrize(
    "container, message",
    [
        ({"image": "x"}, "missing required key 'name'"),
        ({"name": "a", "id": "abc"}, "expected 64 lowercase hex digits"),
        ({"name": "a", "state": "sleeping"}, "state: expected one of created, running"),
        ({"name": "a", "runtime": "kata"}, "'kata' is not a runtime of the engine"),
        ({"name": "a", "pids": [[999, 1]]}, "PID 999 is not the pid of any [[gpu.process]]"),
        ({"name": "a", "pids": [100]}, "pids[0]: expected [host PID, container PID]"),
        ({"name": "a", "state": "exited", "pids": [[100, 1]]}, "a exited container runs no processes"),
        ({"name": "a", "devices": [5]}, 'devices[0]: expected "host:container"'),
        ({"name": "a", "device_requests": [{"count": -2}]}, "count: expected an integer >= -1"),
        ({"name": "a", "device_requests": [{"ids": ["0"]}]}, "unknown key(s) ids"),
        ({"name": "a", "env": "A=1"}, "env: expected a list of strings"),
        ({"name": "a", "labels": {"k": 1}}, "labels: expected a table of strings"),
        ({"name": "a", "created": datetime.date(2026, 11, 20)}, "created: expected an RFC 3339 time"),
        ({"name": "a", "exit_code": "0"}, "exit_code: expected an integer"),
    ],
)
def test_bad_containers_are_refused_with_the_place(container, message):
    with pytest.raises(ScenarioError) as e:
        _sc([container])
    assert message in str(e.value) and "t.toml" in str(e.value)


def test_container_defaults_and_duplicates():
    sc = _sc(
        [
            {
                "name": "a",
                "pids": [[100, 1]],
                "devices": ["/dev/nvidia1:/dev/nvidia0", {"host": "/dev/nvidiactl"}],
                "device_requests": [{"count": 2, "capabilities": ["gpu", "compute"]}],
            }
        ]
    )
    (c,) = sc.containers
    assert len(c.id) == 64 and c.id == _sc([{"name": "a"}]).containers[0].id  # deterministic from the name
    assert c.pid == 100 and c.state == "running" and c.runtime is None and c.started == c.created
    assert [(d.host, d.container) for d in c.devices] == [
        ("/dev/nvidia1", "/dev/nvidia0"),
        ("/dev/nvidiactl", "/dev/nvidiactl"),
    ]
    assert c.device_requests[0].capabilities == (("gpu", "compute"),) and c.device_requests[0].count == 2
    assert sc.has_docker and sc.docker.default_runtime == "runc"
    with pytest.raises(ScenarioError, match="share a name"):
        _sc([{"name": "a"}, {"name": "a"}])
    with pytest.raises(ScenarioError, match="already runs in container 'a'"):
        _sc([{"name": "a", "pids": [[100, 1]]}, {"name": "b", "pids": [[100, 2]]}])
    with pytest.raises(ScenarioError, match="default_runtime 'nvidia' is not in runtimes"):
        _sc([], docker={"default_runtime": "nvidia", "runtimes": {"runc": "runc"}})
    tz = datetime.timezone(datetime.timedelta(hours=1))
    (t,) = _sc([{"name": "t", "created": datetime.datetime(2026, 11, 20, 8, 14, 3, tzinfo=tz)}]).containers
    assert t.created == t.started == "2026-11-20T07:14:03Z"  # TOML date-times become Docker's UTC form
    plain = parse_scenario({"driver": {"version": "535.129.03"}, "gpu": [gpu(0)]})
    assert plain.docker is None and plain.containers == () and not plain.has_docker


# ----------------------------------------------------------------------------- many containers, many clients


def _many(n: int):
    return parse_scenario(
        {
            "driver": {"version": "535.129.03"},
            "gpu": [gpu(i) for i in range(4)],
            "container": [{"name": f"job-{i:03d}", "devices": [f"/dev/nvidia{i % 4}"]} for i in range(n)],
        },
        "many.toml",
    )


def test_the_watcher_builds_a_cache_of_60_containers_with_parallel_inspects(snap):
    """The watcher inspects with 8 workers at once: a listen backlog of 5 refused some of their
    connects (BlockingIOError) and holders reported the engine unavailable from 16 containers."""
    from gpudock.sim.dockerd import SimDockerd

    for _ in range(3):  # each a fresh engine: the 8 first connects arrive together
        with SimDockerd.start(_many(60)) as d:
            w = DockerWatcher(d.base_url, workers=8)
            st = w.connect()
            assert st.ok, st.message
            assert st.containers == 60
            held = w.snapshot(snap.gpus)
            assert len(held) == 60 and all(c.claims for c in held)


def test_32_clients_at_once_each_inspect_every_container():
    from concurrent.futures import ThreadPoolExecutor

    from gpudock.sim.dockerd import SimDockerd

    with SimDockerd.start(_many(50)) as d:
        barrier = threading.Barrier(32)

        def client_run(_):
            c = docker.APIClient(base_url=d.base_url, version="1.43", timeout=10)
            try:
                barrier.wait(10)  # connect together: a burst, as a dashboard and 8 CLI calls make
                ids = [x["Id"] for x in c.containers(all=True)]
                return sum(1 for i in ids if c.inspect_container(i)["Id"] == i)
            finally:
                c.close()

        with ThreadPoolExecutor(32) as ex:
            counts = list(ex.map(client_run, range(32)))
    assert counts == [50] * 32
