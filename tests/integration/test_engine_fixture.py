"""The test set-up's private Docker engine works as the other tests expect."""

from __future__ import annotations

import re
import time
from pathlib import Path

import docker
import pytest

from helpers.engine import IMAGE, NVIDIA_DEV_NODES

GPUS_ALL = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]


def _run(eng, cmd, **kw) -> str:
    c = eng.client.containers.run(eng.image, cmd, detach=True, **kw)
    rc = c.wait(timeout=60)["StatusCode"]
    out = c.logs().decode()
    assert rc == 0, f"{cmd} exited {rc}: {out}"
    return out


def _set_hook_debug(eng, path) -> str:
    """Uncomment (or set) `debug` in [nvidia-container-cli] of the stand-in hook's config."""
    text = eng.hook_config.read_text()
    head, sep, rest = text.partition("[nvidia-container-cli]\n")
    assert sep, "the default config.toml has an [nvidia-container-cli] table"
    table, nxt, tail = rest.partition("\n[")
    table = re.sub(r'(?m)^#?debug = ".*"$', f'debug = "{path}"', table)
    eng.hook_config.write_text(head + sep + table + nxt + tail)
    return text


def test_engine_attributes(docker_engine, fake_nvidia_devs):
    eng = docker_engine
    assert eng.base_url == f"unix://{eng.socket}"
    assert eng.image == IMAGE == "gpudock-test/busybox:latest"
    assert eng.dev_dir == fake_nvidia_devs
    assert eng.client.ping()
    assert eng.hook_config.is_file()
    assert "[nvidia-container-cli]" in eng.hook_config.read_text()
    info = eng.client.info()
    assert "nvidia" in info["Runtimes"]
    assert info["Driver"] == eng.storage_driver


def test_plain_container_runs_echo(engine):
    assert _run(engine, ["echo", "hello from busybox"]) == "hello from busybox\n"


def test_engine_fixture_removes_containers_of_a_test(engine):
    c = engine.client.containers.create(engine.image, ["true"], name="gpudock-test-leftover")
    assert c.id in {x.id for x in engine.client.containers.list(all=True)}


def test_previous_test_container_was_removed(engine):
    names = {x.name for x in engine.client.containers.list(all=True)}
    assert "gpudock-test-leftover" not in names


def test_gpus_container_starts_with_visible_devices(engine):
    out = _run(engine, ["env"], device_requests=GPUS_ALL)
    assert "NVIDIA_VISIBLE_DEVICES=all" in out.splitlines()


def test_gpus_device_ids_become_visible_devices(engine):
    req = [docker.types.DeviceRequest(device_ids=["1", "3"], capabilities=[["gpu"]])]
    out = _run(engine, ["env"], device_requests=req)
    assert "NVIDIA_VISIBLE_DEVICES=1,3" in out.splitlines()


def test_nvidia_runtime_container_starts(engine):
    c = engine.client.containers.run(
        engine.image, ["sleep", "300"], runtime="nvidia", environment={"NVIDIA_VISIBLE_DEVICES": "2"}, detach=True
    )
    c.reload()
    assert c.status == "running"
    assert c.attrs["HostConfig"]["Runtime"] == "nvidia"
    assert "NVIDIA_VISIBLE_DEVICES=2" in c.attrs["Config"]["Env"]
    t0 = time.monotonic()
    c.stop()  # the image's stop signal is SIGKILL: no 10 s wait
    assert time.monotonic() - t0 < 5


def test_fake_device_nodes(fake_nvidia_devs):
    import os
    import stat

    for name, (major, minor) in NVIDIA_DEV_NODES.items():
        st = os.stat(fake_nvidia_devs / name)
        assert stat.S_ISCHR(st.st_mode), name
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (major, minor), name


def test_device_node_mapped_into_container(engine):
    dev = engine.dev_dir
    out = _run(
        engine,
        ["sh", "-c", "stat -c '%F %t %T' /dev/nvidia3 /dev/nvidiactl; ls -l /dev/nvidia3"],
        devices=[f"{dev}/nvidia3:/dev/nvidia3:rwm", f"{dev}/nvidiactl:/dev/nvidiactl:rwm"],
    )
    lines = out.splitlines()
    # stat prints major/minor in hex
    assert lines[0] == "character special file c3 3"
    assert lines[1] == "character special file c3 ff"
    assert re.match(r"^crw.* 195,\s+3 .*/dev/nvidia3$", lines[2]), lines[2]
    c = engine.client.containers.list(all=True)[0]
    devices = c.attrs["HostConfig"]["Devices"]
    assert {"PathOnHost": f"{dev}/nvidia3", "PathInContainer": "/dev/nvidia3", "CgroupPermissions": "rwm"} in devices


def test_hook_debug_logging_follows_config(engine):
    log = engine.hook_log
    original = engine.hook_config.read_text()
    if log.exists():
        log.unlink()
    try:
        # debug commented out (the shipped default): nothing is written
        _run(engine, ["true"], device_requests=GPUS_ALL)
        assert not log.exists()

        _set_hook_debug(engine, log)
        c = engine.client.containers.run(engine.image, ["true"], device_requests=GPUS_ALL, detach=True)
        assert c.wait(timeout=60)["StatusCode"] == 0
        text = log.read_text()
        assert c.id in text
        assert "NVIDIA_VISIBLE_DEVICES=all" in text
        assert "-- WARNING, the following logs are for debugging purposes only --" in text

        # a plain container does not run the hook
        size = log.stat().st_size
        _run(engine, ["true"])
        assert log.stat().st_size == size
    finally:
        engine.hook_config.write_text(original)

    # off again: no new lines
    size = log.stat().st_size
    _run(engine, ["true"], device_requests=GPUS_ALL)
    assert log.stat().st_size == size


def test_make_image_with_env_and_labels(engine):
    env = {"NVIDIA_VISIBLE_DEVICES": "all", "CUDA_VERSION": "12.2.0", "NVIDIA_REQUIRE_CUDA": "cuda>=12.2 brand=tesla"}
    env["GPUDOCK_ODD"] = 'a "quoted" $HOME \\ value'
    labels = {"com.nvidia.volumes.needed": "nvidia_driver", "com.nvidia.cuda.version": "12.2.0", "odd label": "$x 'y'"}
    engine.make_image("gpudock-test/cuda:12.2", env=env, labels=labels)
    img = engine.client.images.get("gpudock-test/cuda:12.2")
    for k, v in env.items():
        assert f"{k}={v}" in img.attrs["Config"]["Env"]
    for k, v in labels.items():
        assert img.labels[k] == v
    out = engine.client.containers.run("gpudock-test/cuda:12.2", ["env"], remove=True).decode()
    assert "NVIDIA_REQUIRE_CUDA=cuda>=12.2 brand=tesla" in out.splitlines()
    assert img.attrs["Config"]["StopSignal"] == "SIGKILL"
    assert img.labels["gpudock-test"] == "1"


def test_engine_restart_keeps_working(engine):
    keep = engine.client.containers.create(engine.image, ["true"], name="gpudock-test-survivor")
    socket = engine.socket
    engine.stop()
    assert not engine.running()
    with pytest.raises(docker.errors.DockerException):
        docker.DockerClient(base_url=engine.base_url, timeout=2).ping()
    engine.restart()
    assert engine.running()
    assert engine.socket == socket
    assert engine.client.ping()
    # same data root: the container and the image are still there
    assert engine.client.containers.get("gpudock-test-survivor").id == keep.id
    assert _run(engine, ["echo", "again"]) == "again\n"
    assert "NVIDIA_VISIBLE_DEVICES=all" in _run(engine, ["env"], device_requests=GPUS_ALL)


def test_old_client_object_reconnects_after_restart(docker_engine):
    client = docker.DockerClient(base_url=docker_engine.base_url)
    same = docker_engine.client
    assert client.ping() and same.ping()
    docker_engine.restart()
    assert client.ping()
    assert docker_engine.client is same
    assert same.ping()


def test_restart_from_a_worker_thread_survives_the_thread(docker_engine):
    import threading

    t = threading.Thread(target=docker_engine.restart)
    t.start()
    t.join()
    time.sleep(0.5)
    assert docker_engine.running()
    assert docker_engine.client.ping()


# --------------------------------------------------------------------------- the CI skip guard

_SKIPPING_TESTS = """
import pytest

@pytest.mark.skip(reason="marked")
def test_marked():
    pass

def test_skips_itself():
    pytest.skip("at run time")

@pytest.mark.xfail(reason="expected")
def test_xfail():
    assert False

def test_passes():
    pass
"""


def _guarded_pytester(pytester):
    """A pytester dir whose conftest is this suite's conftest (its hooks, not its fixtures' state)."""
    conftest = Path(__file__).resolve().parents[1] / "conftest.py"
    pytester.makeconftest(
        "import sys\n"
        f"sys.path.insert(0, {str(conftest.parent)!r})\n"
        f"exec(compile(open({str(conftest)!r}).read(), {str(conftest)!r}, 'exec'), globals())\n"
    )
    pytester.makepyfile(test_skipping=_SKIPPING_TESTS)
    pytester.makepyfile(test_module_skip="import pytest\npytest.importorskip('no_such_module_gpudock')\n")


def test_ci_turns_skips_into_failures(pytester, monkeypatch):
    _guarded_pytester(pytester)
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--continue-on-collection-errors")
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped", 0) == 0, result.stdout.str()
    assert outcomes.get("passed") == 1 and outcomes.get("xfailed") == 1
    # skip marker (setup: an error), pytest.skip() (call: a failure), module importorskip (collection: an error)
    assert outcomes.get("failed", 0) + outcomes.get("errors", 0) == 3, outcomes
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*skipped in CI (CI=true)*"])


def test_outside_ci_skips_stay_skips(pytester, monkeypatch):
    _guarded_pytester(pytester)
    monkeypatch.delenv("CI", raising=False)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped") == 3 and outcomes.get("passed") == 1, outcomes
    assert result.ret == 0


def test_a_hung_test_fails_instead_of_hanging_the_run(pytester, monkeypatch):
    _guarded_pytester(pytester)
    pytester.makepyfile(
        test_hangs="import asyncio\n"
        "async def test_event_loop_waits_for_ever():\n"
        "    await asyncio.Event().wait()\n"
        "def test_sleeps():\n"
        "    import time; time.sleep(60)\n"
        "def test_after():\n"
        "    pass\n"
    )
    monkeypatch.setenv("GPUDOCK_TEST_TIMEOUT", "2")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", "test_hangs.py", timeout=60
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed") == 2 and outcomes.get("passed") == 1, outcomes
    result.stdout.fnmatch_lines(["*HungTest*ran over 2 s*"])
    assert "test_event_loop_waits_for_ever" in result.stdout.str()
    # captured output (no real stderr file descriptor) must not break the report
    result2 = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", "-k", "sleeps", "test_hangs.py", timeout=60
    )
    result2.stdout.fnmatch_lines(["*HungTest*ran over 2 s*"])
    assert "fileno" not in result2.stdout.str()


@pytest.mark.parametrize("ci", ["true", ""])
def test_missing_dockerd_fails_the_tests_never_skips(pytester, monkeypatch, ci):
    _guarded_pytester(pytester)
    pytester.makepyfile(test_uses_engine="def test_needs_engine(docker_engine):\n    pass\n")
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("GPUDOCK_TEST_DOCKERD", "/nonexistent/dockerd")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_uses_engine.py")
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors") == 1 and "skipped" not in outcomes, outcomes
    result.stdout.fnmatch_lines(["*private Docker engine unavailable*dockerd not found*docker.io*"])


def test_a_test_may_change_daemon_json(engine):
    import json

    engine.daemon_json.write_text(json.dumps({"labels": ["gpudock-test=changed"]}))
    engine.restart()
    assert "gpudock-test=changed" in engine.client.info()["Labels"]


def test_daemon_json_was_put_back(engine):
    assert engine.daemon_json.read_text().strip() == "{}"
    assert "gpudock-test=changed" not in engine.client.info()["Labels"]
