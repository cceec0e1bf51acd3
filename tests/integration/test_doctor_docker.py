"""The doctor's Docker-side findings against the real private engine (runtime "nvidia" registered,
the stand-in hook on its PATH). The systemd cgroup driver is not available here, so
cgroup-device-loss runs on inspect dicts of real running containers with CgroupDriver faked."""

from __future__ import annotations

import dataclasses

import docker

from gpudock.doctor import gather, run_checks
from gpudock.doctor.checks import docker as dchecks
from gpudock.doctor.checks import images as ichecks
from gpudock.host.nvml import NvmlSession
from gpudock.host.root import HostRoot
from gpudock.sim.libnvml import sim_library_loader
from gpudock.sim.scenario import builtin_scenario


def _start(eng, name, **kw):
    c = eng.client.containers.run(eng.image, ["sleep", "300"], detach=True, name=name, **kw)
    c.reload()
    assert c.status == "running", eng.log_tail()
    return c


def test_container_runtime_ok_on_real_engine(engine):
    facts = gather(HostRoot("/"), None, engine.client)
    assert facts.dockerd and facts.dockerd[0].pid == engine.pid  # the engine's dockerd, not another one
    assert facts.daemon_json.path == str(engine.daemon_json)
    f = dchecks.container_runtime(facts)
    # The test engine registers "nvidia" with --add-runtime pointing at plain runc (no toolkit
    # here) and has the stand-in hook on its PATH: --gpus works, --runtime=nvidia gives no GPU.
    assert facts.docker_info["Runtimes"]["nvidia"]["path"] == "/usr/sbin/runc"
    assert f.severity == "warning", f.summary
    assert f.data["gpus_flag"] is True and f.data["runtime"] is False
    assert f.data["hook"].endswith("/tests/helpers/bin/nvidia-container-runtime-hook")
    assert "'docker run --gpus' will work" in f.summary
    assert "runtime 'nvidia' runs /usr/sbin/runc, not nvidia-container-runtime" in f.summary
    assert [e.line for e in f.evidence if e.source == str(engine.daemon_json)] == ['"runtimes" has no NVIDIA runtime']


def test_container_runtime_ok_when_nvidia_runtime_is_the_toolkit(engine):
    facts = gather(HostRoot("/"), None, engine.client)
    info = dict(facts.docker_info)
    info["Runtimes"] = dict(info["Runtimes"], nvidia={"path": "/usr/bin/nvidia-container-runtime"})
    facts.docker_info = info
    f = dchecks.container_runtime(facts)
    assert f.severity == "ok", f.summary
    assert f.data["runtime"] and f.data["gpus_flag"] and f.data["runtimes"] == ["nvidia"]
    assert [e.value for e in f.evidence if e.source == "docker info"] == ["nvidia"]


def test_container_runtime_without_hook_on_path(engine):
    facts = gather(HostRoot("/"), None, engine.client)
    facts.hook_paths = ()
    facts.docker_info = dict(
        facts.docker_info, Runtimes=dict(facts.docker_info["Runtimes"], nvidia={"path": "nvidia-container-runtime"})
    )
    f = dchecks.container_runtime(facts)
    assert f.severity == "warning"
    assert f.data["gpus_flag"] is False and f.data["runtime"] is True
    assert "could not select device driver" in f.summary


def test_daemon_json_edited_but_engine_not_restarted(engine):
    facts = gather(HostRoot("/"), None, engine.client)
    info = dict(facts.docker_info)
    info["Runtimes"] = {k: v for k, v in info["Runtimes"].items() if k != "nvidia"}
    facts.docker_info = info
    facts.daemon_json = dataclasses.replace(
        facts.daemon_json,
        text='{"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}',
        parsed={"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}},
    )
    facts.hook_paths = ()
    f = dchecks.container_runtime(facts)
    assert f.severity == "error"
    assert "the running engine does not know it" in f.summary
    assert "restart docker" in f.fix


def test_engine_unreachable(tmp_path):
    dead = docker.APIClient(base_url=f"unix://{tmp_path}/gone.sock", version="1.41", timeout=2)
    facts = gather(HostRoot("/"), None, dead)
    # operator words (what is missing and what to do), never docker-py's exception text
    said = f"No Docker engine: the socket {tmp_path}/gone.sock does not exist. Start Docker"
    assert facts.docker_info is None and facts.errors["docker"].startswith(said)
    assert "Connection aborted" not in facts.errors["docker"]
    fs = {f.id: f for f in run_checks(facts)}
    assert fs["cgroup-device-loss"].severity == "info"
    assert said in fs["cgroup-device-loss"].summary
    assert fs["cuda-compat"].severity == "info"
    (info_ev,) = [e for e in fs["container-runtime"].evidence if e.source == "docker info"]
    assert info_ev.value is None and said in info_ev.line
    assert said in fs["container-runtime"].summary and ".." not in fs["container-runtime"].summary


def test_the_session_says_why_its_engine_cannot_be_reached(tmp_path):
    from gpudock.session import Options, open_session

    opts = Options(root=str(tmp_path), docker_host=f"unix://{tmp_path}/gone.sock", nvml_lib=None)
    with open_session(opts) as host:
        facts, findings = host.diagnose()
    assert facts.errors["docker"].startswith(f"No Docker engine: the socket {tmp_path}/gone.sock does not exist")


def test_cgroup_device_loss_names_hook_only_containers(engine, fake_nvidia_devs):
    env_only = _start(engine, "gpd-doctor-envonly", runtime="nvidia", environment={"NVIDIA_VISIBLE_DEVICES": "0"})
    gpus = _start(
        engine, "gpd-doctor-gpus", device_requests=[docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    )
    explicit = _start(
        engine,
        "gpd-doctor-explicit",
        runtime="nvidia",
        environment={"NVIDIA_VISIBLE_DEVICES": "0"},
        devices=[f"{fake_nvidia_devs}/nvidia0:/dev/nvidia0:rwm", f"{fake_nvidia_devs}/nvidiactl:/dev/nvidiactl:rwm"],
    )
    plain = _start(engine, "gpd-doctor-plain")
    facts = gather(HostRoot("/"), None, engine.client)
    ids = {c["Id"] for c in facts.containers}
    assert {env_only.id, gpus.id, explicit.id, plain.id} <= ids

    # As the engine really is (cgroupfs): nothing is at risk.
    assert facts.docker_info["CgroupDriver"] == "cgroupfs"
    assert dchecks.cgroup_device_loss(facts).severity == "ok"

    facts.docker_info = dict(facts.docker_info, CgroupDriver="systemd")
    f = dchecks.cgroup_device_loss(facts)
    assert f.severity == "warning"
    assert set(f.data["containers"]) >= {"gpd-doctor-envonly", "gpd-doctor-gpus"}
    assert not {"gpd-doctor-explicit", "gpd-doctor-plain"} & set(f.data["containers"])
    assert [e.value for e in f.evidence if e.source == "docker inspect gpd-doctor-envonly"] == ["0"]
    assert [e.value for e in f.evidence if e.source == "docker inspect gpd-doctor-gpus"] == ["count=all"]
    assert "native.cgroupdriver=cgroupfs" in f.fix and "create-dev-char-symlinks" in f.fix
    assert "Failed to initialize NVML: Unknown Error" in f.summary
    assert f.evidence[0].value == "systemd"


def test_cuda_compat_on_real_images(engine):
    engine.make_image(
        "gpudock-test/cuda-new:1", env={"NVIDIA_REQUIRE_CUDA": "cuda>=12.9 brand=tesla,driver>=535,driver<536"}
    )
    engine.make_image("gpudock-test/cuda-old:1", env={"CUDA_VERSION": "11.8.0"})
    engine.make_image("gpudock-test/cuda-label:1", labels={"com.nvidia.cuda.version": "12.4"})
    session = NvmlSession(sim_library_loader(builtin_scenario("demo")), source="sim:demo")
    try:
        facts = gather(HostRoot("/"), session, engine.client)
    finally:
        session.shutdown()
    f = ichecks.cuda_compat(facts)
    assert f.severity == "warning"
    assert f.data["driver_cuda"] == "12.2"
    assert "gpudock-test/cuda-new:1" in f.data["images"] and "gpudock-test/cuda-label:1" in f.data["images"]
    assert "gpudock-test/cuda-old:1" not in f.data["images"]
    ev = {e.source: e for e in f.evidence}
    assert ev["NVML"].value == "12.2"
    assert ev["docker image inspect gpudock-test/cuda-new:1"].value == "12.9"
    assert ev["docker image inspect gpudock-test/cuda-label:1"].line == "label com.nvidia.cuda.version=12.4"


def test_unprivileged_envvar_names_unprivileged_gpu_containers(engine, tmp_path):
    # config.toml through the toolkit's override, as locate_config finds it for the toolkit screen too
    cfg = tmp_path / "ctk.toml"
    cfg.write_text("accept-nvidia-visible-devices-envvar-when-unprivileged = false\n")
    all_gpus = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    _start(engine, "gpd-unpriv-env", runtime="nvidia", environment={"NVIDIA_VISIBLE_DEVICES": "0"})
    _start(engine, "gpd-unpriv-gpus", device_requests=all_gpus)
    # CAP_SYS_ADMIN is what the hook calls privileged (--privileged itself is covered by the unit
    # tests: this sandbox may lack capabilities runc needs for it, see test_holders_engine.py)
    _start(engine, "gpd-unpriv-sysadmin", device_requests=all_gpus, cap_add=["SYS_ADMIN"])
    _start(engine, "gpd-unpriv-plain")
    facts = gather(HostRoot("/"), None, engine.client, environ={"NVIDIA_CTK_CONFIG_FILE_PATH": str(cfg)})
    assert facts.toolkit_config.path == str(cfg) and facts.toolkit_config_source == "NVIDIA_CTK_CONFIG_FILE_PATH"
    f = dchecks.unprivileged_envvar(facts)
    assert f.severity == "error", f.summary
    mine = sorted(n for n in f.data["containers"] if n.startswith("gpd-unpriv-"))
    assert mine == ["gpd-unpriv-env", "gpd-unpriv-gpus"]
    ev = {e.source: e for e in f.evidence}
    assert ev["docker inspect gpd-unpriv-gpus"].value == "count=all"
    assert ev["docker inspect gpd-unpriv-env"].line.startswith("Privileged=False CapAdd=[] DeviceRequests=0")
    assert ev[str(cfg)].value == "false"
    cfg.write_text("accept-nvidia-visible-devices-envvar-when-unprivileged = true\n")
    facts = gather(HostRoot("/"), None, engine.client, environ={"NVIDIA_CTK_CONFIG_FILE_PATH": str(cfg)})
    assert dchecks.unprivileged_envvar(facts).severity == "ok"
