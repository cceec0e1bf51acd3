"""CDI on a real engine: Debian 13's Docker 26 with CDI on (the `cdi_engine` fixture), beside the
20.10 engine, launching from an NVIDIA-style spec (tests/helpers/cdi.py) whose device nodes are the
fake /dev/nvidia* char nodes and whose library mounts are real files of a driver host root.

Every launch is checked inside the container: the card nodes the spec names (by minor, never by
index), the control nodes, the spec's env and the read-only library mounts. Also `--gpus` on
Docker 26 (the stand-in hook really runs as a prestart hook), which engine may run cdi mode, the
holders of CDI containers, and the doctor's CDI findings checked against what the engine then does
with a stale spec."""

from __future__ import annotations

import dataclasses
import json
import re

import docker
import docker.errors
import pytest

from gpudock.cli import main
from gpudock.doctor import gather, run_checks
from gpudock.host.docker import DockerWatcher
from gpudock.host.root import HostRoot
from gpudock.launch.engine import check_mode_supported
from gpudock.launch.run import launch
from gpudock.launch.selection import parse_selection
from gpudock.launch.spec import LaunchError, build_spec
from gpudock.model import Gpu, HostSnapshot
from helpers.cdi import LIB_DIR, SPEC_LIBS, demo_gpus, nvidia_spec, spec_libs, write_spec
from helpers.driverhost import CURRENT, driver_host
from helpers.gpus import UUIDS, shuffled_host
from helpers.inside import dev_listing, exec_out, process_env

SLEEP = ["sleep", "300"]


def cards(devs: dict) -> list[int]:
    return sorted(int(n[6:]) for n in devs if re.fullmatch(r"nvidia\d+", n))


@pytest.fixture(scope="module")
def driver_root(tmp_path_factory):
    """A host root with the 535.129.03 driver libraries (real ELF files)."""
    return driver_host(tmp_path_factory.mktemp("cdi-driver"))


@pytest.fixture
def cdi_host(cdi_engine, driver_root):
    """The four-card host (index 0 is /dev/nvidia3) and its spec in the engine's cdi-spec-dir."""
    snap = shuffled_host()
    write_spec(cdi_engine.cdi_dir, nvidia_spec(snap.gpus, cdi_engine.dev_dir, libs=spec_libs(driver_root, CURRENT)))
    return snap


def check_spec_edits(container) -> None:
    """What the spec's top-level containerEdits give every CDI container."""
    devs = dev_listing(container)
    assert devs["nvidiactl"] == ("c", 195, 255)
    assert devs["nvidia-uvm"] == ("c", 511, 0) and devs["nvidia-uvm-tools"] == ("c", 511, 1)
    assert process_env(container)["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert exec_out(container, ["ls", LIB_DIR]).split() == [f"{n}.so.{CURRENT}" for n in SPEC_LIBS]
    code, out = container.exec_run(["touch", f"{LIB_DIR}/libcuda.so.{CURRENT}"])
    assert code != 0 and b"Read-only file system" in out


def test_docker_26_with_cdi_runs_beside_the_20_10_engine(cdi_engine, engine):
    assert cdi_engine.server_version.startswith("26."), cdi_engine.server_version
    assert engine.client.info()["ServerVersion"].startswith("20.10.")
    assert cdi_engine.client.info()["CDISpecDirs"] == [str(cdi_engine.cdi_dir)]
    assert "CDISpecDirs" not in engine.client.info()  # 20.10 knows nothing of CDI
    assert cdi_engine.socket != engine.socket and cdi_engine.dev_dir == engine.dev_dir
    assert json.loads(cdi_engine.daemon_json.read_text()) == {
        "features": {"cdi": True},
        "cdi-spec-dirs": [str(cdi_engine.cdi_dir)],
    }


@pytest.mark.parametrize(
    "gpus, ids, names, minors",
    [
        ("2,0", "index", ["nvidia.com/gpu=2", "nvidia.com/gpu=0"], [1, 3]),
        ("1", "uuid", [f"nvidia.com/gpu={UUIDS[1]}"], [0]),
        ("3,2", "uuid", [f"nvidia.com/gpu={UUIDS[3]}", f"nvidia.com/gpu={UUIDS[2]}"], [2, 1]),
        ("all", "uuid", ["nvidia.com/gpu=all"], [3, 0, 1, 2]),
    ],
    ids=["by-index", "by-uuid", "two-by-uuid", "all"],
)
def test_cdi_launch_gives_the_cards_the_spec_names(cdi_engine, cdi_host, gpus, ids, names, minors):
    spec = build_spec(cdi_host, parse_selection(gpus, cdi_host), "cdi", ids=ids, image=cdi_engine.image, command=SLEEP)
    container, warnings = launch(cdi_engine.client, spec, cdi_host, holders={})
    assert warnings == ()
    container.reload()
    assert container.status == "running", cdi_engine.log_tail()
    (req,) = container.attrs["HostConfig"]["DeviceRequests"]
    assert req["Driver"] == "cdi" and req["DeviceIDs"] == names
    assert container.attrs["HostConfig"]["Devices"] in (None, [])  # CDI nodes come from the spec, not Devices
    devs = dev_listing(container)
    assert cards(devs) == sorted(minors)
    for m in minors:
        assert devs[f"nvidia{m}"] == ("c", 195, m)
    check_spec_edits(container)
    assert container.attrs["HostConfig"]["Privileged"] is False


def test_a_card_the_spec_does_not_name_is_refused_by_the_engine(cdi_engine, driver_root):
    snap = shuffled_host()
    write_spec(cdi_engine.cdi_dir, nvidia_spec(snap.gpus, cdi_engine.dev_dir, names=("index",)))
    spec = build_spec(snap, parse_selection("1", snap), "cdi", image=cdi_engine.image, command=SLEEP)  # by UUID
    with pytest.raises(LaunchError, match=rf"unresolvable CDI devices nvidia\.com/gpu={UUIDS[1]}"):
        launch(cdi_engine.client, spec, snap, holders={})


# -- the CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def demo_cdi(cdi_engine, driver_root, monkeypatch):
    """The demo host's eight cards in the CDI engine's spec; the commands name the CDI engine with
    --docker-host (the demo's own engine is simulated; DOCKER_HOST does not reach into it)."""
    gpus = demo_gpus()
    write_spec(cdi_engine.cdi_dir, nvidia_spec(gpus, cdi_engine.dev_dir, libs=spec_libs(driver_root, CURRENT)))
    monkeypatch.setenv("DOCKER_HOST", cdi_engine.base_url)
    monkeypatch.delenv("NV_GPU", raising=False)
    return {g.index: g for g in gpus}


SHOW = "ls /dev | grep -E '^nvidia[0-9]+$'; echo NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES"


@pytest.mark.parametrize(
    "argv, picked",
    [
        (["--gpu", "2,0", "--ids", "index"], [2, 0]),
        (["--gpu", "5"], [5]),
        (["--gpu", "all"], list(range(8))),
    ],
    ids=["index", "uuid", "all"],
)
def test_gpudock_run_mode_cdi(cdi_engine, demo_cdi, capsys, argv, picked):
    rc = main(
        ["--demo", "--docker-host", cdi_engine.base_url, "run", "--mode", "cdi", *argv, "--json", "--wait", "10"]
        + [cdi_engine.image, "sh", "-c", SHOW]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    result = json.loads(out)
    want = sorted(f"nvidia{demo_cdi[i].minor}" for i in picked)
    assert sorted(result["logs"][:-1]) == want
    assert result["logs"][-1] == "NVIDIA_VISIBLE_DEVICES=void"  # the spec's env, in the container
    attrs = cdi_engine.client.api.inspect_container(result["id"])
    (req,) = attrs["HostConfig"]["DeviceRequests"]
    if argv[1] == "all":
        assert req["DeviceIDs"] == ["nvidia.com/gpu=all"]
    elif "index" in argv:
        assert req["DeviceIDs"] == [f"nvidia.com/gpu={i}" for i in picked]
    else:
        assert req["DeviceIDs"] == [f"nvidia.com/gpu={demo_cdi[i].uuid}" for i in picked]
    assert "--device nvidia.com/gpu=" in result["docker_run"]


# -- which engine may run cdi mode ---------------------------------------------------------------


def test_mode_support_from_each_engines_docker_info(cdi_engine, engine):
    assert check_mode_supported("cdi", cdi_engine.client.info()) is None
    with pytest.raises(LaunchError, match=r"cdi mode needs Docker 25 or newer .*this engine is 20\.10"):
        check_mode_supported("cdi", engine.client.info())


def test_cdi_mode_refused_on_docker_26_with_cdi_off(cdi_engine, demo_cdi, capsys):
    cdi_engine.daemon_json.write_text("{}\n")  # the fixture puts CDI back on afterwards
    cdi_engine.restart()
    assert cdi_engine.client.info()["CDISpecDirs"] == []  # Docker 25+ with CDI off
    before = len(cdi_engine.client.api.containers(all=True))
    rc = main(
        ["--demo", "--docker-host", cdi_engine.base_url, "run", "--mode", "cdi", "--gpu", "0", cdi_engine.image, "true"]
    )
    _, err = capsys.readouterr()
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("gpudock: ")
    assert "CDI is not enabled in this Docker engine (26." in err and '"features": {"cdi": true}' in err
    assert err.rstrip().endswith("or use --mode gpus")
    assert len(cdi_engine.client.api.containers(all=True)) == before, "nothing may be created"
    # --gpus needs no CDI: the same engine launches it
    rc = main(
        ["--demo", "--docker-host", cdi_engine.base_url, "run", "--mode", "gpus", "--gpu", "0", "--ids", "index"]
        + [cdi_engine.image, "true"]
    )
    assert rc == 0, capsys.readouterr().err


# -- --gpus on Docker 26 -----------------------------------------------------------------------------


def _hook_debug_on(eng) -> None:
    """Uncomment `debug` in [nvidia-container-cli] of the stand-in hook's config (the fixture restores it)."""
    text = eng.hook_config.read_text()
    head, sep, rest = text.partition("[nvidia-container-cli]\n")
    assert sep
    table, nxt, tail = rest.partition("\n[")
    table = re.sub(r'(?m)^#?debug = ".*"$', f'debug = "{eng.hook_log}"', table)
    eng.hook_config.write_text(head + sep + table + nxt + tail)


@pytest.mark.parametrize("gpus, ids, visible", [("3,1", "index", "3,1"), ("all", "uuid", "all")])
def test_gpus_launch_on_docker_26(cdi_engine, gpus, ids, visible):
    _hook_debug_on(cdi_engine)
    cdi_engine.hook_log.unlink(missing_ok=True)
    snap = shuffled_host()
    spec = build_spec(snap, parse_selection(gpus, snap), "gpus", ids=ids, image=cdi_engine.image, command=SLEEP)
    container, _ = launch(cdi_engine.client, spec, snap, holders={})
    container.reload()
    assert container.status == "running", cdi_engine.log_tail()
    (req,) = container.attrs["HostConfig"]["DeviceRequests"]
    assert req["Driver"] == "" and req["Capabilities"] == [["gpu"]]
    assert (req["DeviceIDs"] or [], req["Count"]) == (([], -1) if gpus == "all" else (["3", "1"], 0))
    # Docker 26's NVIDIA device driver: the env in the OCI spec and the hook as a prestart hook
    assert process_env(container)["NVIDIA_VISIBLE_DEVICES"] == visible
    log = cdi_engine.hook_log.read_text()
    assert f"stand-in hook: container {container.id} prestart" in log
    assert f"requesting NVIDIA_VISIBLE_DEVICES={visible}" in log


# -- holders of CDI containers ---------------------------------------------------------------------


def test_holders_of_cdi_containers_on_docker_26(cdi_engine, demo_cdi, capsys):
    gpus = tuple(demo_cdi.values())
    snap = HostSnapshot("535.129.03", "12.2", None, gpus)
    U = {i: g.uuid for i, g in demo_cdi.items()}

    def cdi_launch(name, selection, ids="uuid"):
        spec = build_spec(
            snap, parse_selection(selection, snap), "cdi", ids=ids, image=cdi_engine.image, command=SLEEP, name=name
        )
        return launch(cdi_engine.client, spec, snap, holders={})[0]

    cdi_launch("cdi-idx", "2,0", ids="index")
    cdi_launch("cdi-uuid", "5")
    cdi_launch("cdi-all", "all")
    gpus_spec = build_spec(snap, parse_selection("6", snap), "gpus", ids="index", image=cdi_engine.image, command=SLEEP)
    launch(cdi_engine.client, dataclasses.replace(gpus_spec, name="gpus-26"), snap, holders={})
    # A CUDA image (NVIDIA_VISIBLE_DEVICES=all in its env) on the NVIDIA runtime, given one card by CDI:
    # the spec's NVIDIA_VISIBLE_DEVICES=void replaces the image's value in the OCI spec, so the runtime
    # hands out nothing more; it holds GPU 3 only.
    cuda = cdi_engine.make_image("gpudock-test/cuda-cdi:12.2", env={"NVIDIA_VISIBLE_DEVICES": "all"})
    on_runtime = cdi_engine.client.containers.run(
        cuda,
        SLEEP,
        name="cdi-on-runtime",
        detach=True,
        runtime="nvidia",
        device_requests=[docker.types.DeviceRequest(driver="cdi", device_ids=["nvidia.com/gpu=3"])],
    )
    assert process_env(on_runtime)["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert cards(dev_listing(on_runtime)) == [demo_cdi[3].minor]

    watcher = DockerWatcher(cdi_engine.base_url)
    try:
        st = watcher.connect()
        assert st.ok and st.engine_version.startswith("26."), st.message
        cs = {c.name: c for c in watcher.snapshot(gpus)}
    finally:
        watcher.stop()

    def claims(name):
        return [(cl.mechanism, cl.selector, cl.gpu_uuid, cl.error) for cl in cs[name].claims]

    assert claims("cdi-idx") == [
        ("cdi", "nvidia.com/gpu=2", U[2], None),
        ("cdi", "nvidia.com/gpu=0", U[0], None),
    ]
    assert claims("cdi-uuid") == [("cdi", f"nvidia.com/gpu={U[5]}", U[5], None)]
    assert claims("cdi-all") == [("cdi", "nvidia.com/gpu=all", U[i], None) for i in range(8)]
    assert claims("gpus-26") == [("device-request", "6", U[6], None)]
    assert claims("cdi-on-runtime") == [("cdi", "nvidia.com/gpu=3", U[3], None)]

    rc = main(["--demo", "holders", "--json", "--docker-host", cdi_engine.base_url])
    out, err = capsys.readouterr()
    assert rc == 1, err  # conflicts: cdi-all holds every card
    doc = json.loads(out)
    assert doc["docker"]["engine_version"].startswith("26.")
    held = {g["index"]: {h["name"]: (h["mechanisms"], h["selectors"]) for h in g["holders"]} for g in doc["gpus"]}
    assert held[2] == {"cdi-idx": (["cdi"], ["nvidia.com/gpu=2"]), "cdi-all": (["cdi"], ["nvidia.com/gpu=all"])}
    assert held[3] == {"cdi-on-runtime": (["cdi"], ["nvidia.com/gpu=3"]), "cdi-all": (["cdi"], ["nvidia.com/gpu=all"])}
    assert held[5]["cdi-uuid"] == (["cdi"], [f"nvidia.com/gpu={U[5]}"])
    assert held[6]["gpus-26"] == (["device-request"], ["6"])
    assert set(held[7]) == {"cdi-all"}
    holds_all = [c for c in doc["conflicts"] if c["kind"] == "holds-all"]
    assert [c["container_ids"] for c in holds_all] == [[cs["cdi-all"].id]]


# -- the doctor on the CDI engine ---------------------------------------------------------------------


def doctor(eng):
    facts = gather(HostRoot("/"), None, eng.client)
    return facts, {f.id: f for f in run_checks(facts)}


def test_doctor_reads_the_spec_dirs_docker_info_names(cdi_engine, cdi_host, engine):
    facts, found = doctor(cdi_engine)
    assert facts.engine_cdi_dirs == (str(cdi_engine.cdi_dir),)
    named = {d.path: d.named_by for d in facts.cdi_spec_dirs}
    assert named[str(cdi_engine.cdi_dir)] == ("docker info CDISpecDirs", f"{cdi_engine.daemon_json} cdi-spec-dirs")
    assert named["/etc/cdi"] == named["/var/run/cdi"] == ("CDI default",)
    f = found["cdi-spec-stale"]
    spec = str(cdi_engine.cdi_dir / "nvidia.yaml")
    assert f.severity == "ok", f.summary
    assert f.data["specs"] == [spec]
    assert [e.value for e in f.evidence if e.source == spec] == ["current"]
    assert [e.line for e in f.evidence if e.source == "docker info"] == [f"CDISpecDirs: {cdi_engine.cdi_dir}"]
    rt = found["container-runtime"]
    assert rt.data["cdi"] is True and rt.data["cdi_spec_dirs"] == [str(cdi_engine.cdi_dir)]
    assert f"'--device nvidia.com/gpu=...' (CDI) reads specs from {cdi_engine.cdi_dir}." in rt.summary
    # the 20.10 engine has no CDI: nothing said about it, and only the default dirs are read
    old_facts, old = doctor(engine)
    assert old_facts.engine_cdi_dirs is None and old["container-runtime"].data["cdi"] is None
    assert "CDI" not in old["container-runtime"].summary
    assert [d.path for d in old_facts.cdi_spec_dirs] == ["/etc/cdi", "/var/run/cdi"]


def test_doctor_on_docker_26_with_cdi_off(cdi_engine):
    cdi_engine.daemon_json.write_text('{"cdi-spec-dirs": ["/srv/cdi"]}\n')  # CDI not turned on
    cdi_engine.restart()
    facts, found = doctor(cdi_engine)
    assert facts.engine_cdi_dirs == ()
    rt = found["container-runtime"]
    assert rt.data["cdi"] is False
    assert "CDI is off in this engine" in rt.summary and '"features": {"cdi": true}' in rt.summary
    assert ("docker info", "CDISpecDirs: [] (CDI off)", "off") in [(e.source, e.line, e.value) for e in rt.evidence]
    # daemon.json's dirs are still read: the engine reads them once CDI is on
    assert {d.path: d.named_by for d in facts.cdi_spec_dirs}["/srv/cdi"] == (f"{cdi_engine.daemon_json} cdi-spec-dirs",)


def test_driver_upgrade_leaves_the_spec_mounting_libraries_that_are_gone(cdi_engine, tmp_path):
    root = driver_host(tmp_path)
    snap = shuffled_host()
    write_spec(cdi_engine.cdi_dir, nvidia_spec(snap.gpus, cdi_engine.dev_dir, libs=spec_libs(root, CURRENT)))
    spec = build_spec(snap, parse_selection("0", snap), "cdi", image=cdi_engine.image, command=SLEEP, name="train")
    running, _ = launch(cdi_engine.client, spec, snap, holders={})
    _, found = doctor(cdi_engine)
    assert found["cdi-spec-stale"].severity == "ok"

    # The driver is upgraded: its versioned libraries are replaced, the spec is not regenerated.
    gone = root / LIB_DIR.lstrip("/") / f"libcuda.so.{CURRENT}"
    gone.rename(gone.with_name("libcuda.so.550.54.15"))
    _, found = doctor(cdi_engine)
    f = found["cdi-spec-stale"]
    spec_path = str(cdi_engine.cdi_dir / "nvidia.yaml")
    assert f.severity == "error", f.summary  # a running container uses CDI: it cannot start again
    assert f"{spec_path} mounts 1 host path(s) that no longer exist (e.g. {gone})" in f.summary
    assert "(train)" in f.summary and f.data["containers"] == ["train"]
    assert (spec_path, f"hostPath: {gone}", "missing") in [(e.source, e.line, e.value) for e in f.evidence]
    assert "nvidia-ctk cdi generate" in f.fix
    # what the finding says, the engine does: a new CDI container does not start, nor does the old one
    again = dataclasses.replace(spec, name="train-2")
    with pytest.raises(LaunchError, match=rf"{re.escape(str(gone))}: no such file or directory"):
        launch(cdi_engine.client, again, snap, holders={})
    running.stop()
    with pytest.raises(docker.errors.APIError, match="no such file or directory"):
        running.start()


def test_spec_from_an_earlier_boot_gives_stale_device_nodes(cdi_engine, driver_root):
    snap = shuffled_host()
    # uvm had major 507 at the last boot (it is 511 now), and a fifth card (minor 9) was removed since
    removed = Gpu(index=4, uuid="GPU-00000000-dead-4000-8000-000000000009", minor=9)
    stale = nvidia_spec((*snap.gpus, removed), cdi_engine.dev_dir, libs=spec_libs(driver_root, CURRENT), uvm_major=507)
    write_spec(cdi_engine.cdi_dir, stale)
    _, found = doctor(cdi_engine)
    f = found["cdi-spec-stale"]
    spec_path = str(cdi_engine.cdi_dir / "nvidia.yaml")
    uvm = f"{cdi_engine.dev_dir}/nvidia-uvm"
    assert f.severity == "warning", f.summary  # no container uses CDI yet
    assert f"{spec_path} gives {uvm} as 507:0, the node is 511:0" in f.summary
    assert f"{spec_path} lists device {cdi_engine.dev_dir}/nvidia9, which does not exist" in f.summary
    lines = {(e.line, e.value) for e in f.evidence if e.source == spec_path}
    assert (f"deviceNodes: {uvm} 507:0", "511:0") in lines
    assert (f"deviceNodes: {cdi_engine.dev_dir}/nvidia9", "missing") in lines

    # The engine injects the spec's numbers: the container's nvidia-uvm is the old major (CUDA error 999)
    spec = build_spec(snap, parse_selection("0", snap), "cdi", image=cdi_engine.image, command=SLEEP, name="old-uvm")
    c, _ = launch(cdi_engine.client, spec, snap, holders={})
    assert dev_listing(c)["nvidia-uvm"] == ("c", 507, 0)
    _, found = doctor(cdi_engine)
    assert found["cdi-spec-stale"].severity == "error" and found["cdi-spec-stale"].data["containers"] == ["old-uvm"]
    # and the removed card's node cannot be injected at all
    with pytest.raises(docker.errors.APIError, match=r"nvidia9"):
        cdi_engine.client.containers.run(
            cdi_engine.image,
            SLEEP,
            detach=True,
            device_requests=[docker.types.DeviceRequest(driver="cdi", device_ids=["nvidia.com/gpu=4"])],
        )
