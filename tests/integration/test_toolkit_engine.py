"""The toolkit core against the test set-up's real Docker engine and its stand-in hook.

Turning the hook's debug log on through gpudock (plan, apply) and launching a `--gpus` container
makes lines appear in a LogFollower; turning it off gives back the config byte for byte and the
log stops growing. The engine's runtimes are compared with a daemon.json.
"""

from __future__ import annotations

import json
import time

import docker

from gpudock.toolkit import config as tc
from gpudock.toolkit import daemon_json as dj
from gpudock.toolkit.logfollow import LogFollower

GPUS_ALL = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]


def _gpus_container(eng) -> str:
    c = eng.client.containers.run(eng.image, ["true"], device_requests=GPUS_ALL, detach=True)
    assert c.wait(timeout=60)["StatusCode"] == 0
    return c.id


def _poll_until(follower: LogFollower, needle: str, timeout: float = 10.0) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got += follower.poll()
        if any(needle in line for line in got):
            return got
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} never appeared in the followed log; got {got[-5:]}")


def test_debug_on_via_gpudock_makes_hook_lines_appear(engine):
    cfg_path = str(engine.hook_config)
    original = engine.hook_config.read_bytes()
    log = engine.hook_log
    if log.exists():
        log.unlink()
    try:
        status = tc.load_config(cfg_path).status().debug["hook"]
        assert not status.enabled and status.commented_path == str(log)

        plan = tc.plan_debug(tc.load_config(cfg_path), "hook", True)
        assert plan.action == "uncomment" and plan.new_line == f'debug = "{log}"'
        tc.apply_plan(plan)

        follower = LogFollower(str(log))
        assert follower.poll() == [] and not follower.exists
        cid = _gpus_container(engine)
        lines = _poll_until(follower, cid)
        assert any("NVIDIA_VISIBLE_DEVICES=all" in ln for ln in lines)
        # a second launch: only the new lines come, and they name the new container
        cid2 = _gpus_container(engine)
        more = _poll_until(follower, cid2)
        assert not any(cid in ln for ln in more if cid2 not in ln)

        tc.apply_plan(tc.plan_debug(tc.load_config(cfg_path), "hook", False))
        assert engine.hook_config.read_bytes() == original
        size = log.stat().st_size
        _gpus_container(engine)
        assert log.stat().st_size == size and follower.poll() == []
    finally:
        engine.hook_config.write_bytes(original)


def test_engine_knows_the_nvidia_runtime_and_daemon_json_comparison(engine, tmp_path):
    info = engine.client.info()
    e = dj.engine_runtimes(info)
    assert e.knows and e.default_runtime == info["DefaultRuntime"]
    p = tmp_path / "daemon.json"
    p.write_text(json.dumps({"log-level": "warn"}, indent=2) + "\n")
    dj.register(str(p), name="gpudock-test-nvidia")
    e = dj.engine_runtimes(info, daemon=dj.load_daemon_json(str(p)))
    assert e.restart_needed and "gpudock-test-nvidia" in e.reasons[0]


def test_cli_status_sees_the_engine(engine, tmp_path, capsys, monkeypatch):
    from gpudock.cli import main

    monkeypatch.setenv("DOCKER_HOST", engine.base_url)
    p = tmp_path / "daemon.json"
    p.write_text('{"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}')
    assert main(["toolkit", "status", "--json", "--config", str(engine.hook_config), "--daemon-json", str(p)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["engine"]["reachable"] is True and doc["engine"]["knows_runtime"] is True
    assert doc["daemon_json"]["nvidia_registered"] is True
    assert doc["config"]["debug"]["hook"]["enabled"] is False
