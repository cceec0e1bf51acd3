"""`gpudock doctor --demo` examines the demo's simulated Docker engine, as the dashboard's doctor
screen does, so the CLI and the screen agree."""

from __future__ import annotations

import json

from gpudock.cli import main


def _doctor(capsys, *args) -> dict:
    main(["doctor", "--json", "--demo", *args])
    return {f["id"]: f for f in json.loads(capsys.readouterr().out)["findings"]}


def test_doctor_demo_asks_the_simulated_engine(capsys, monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    found = _doctor(capsys)
    # the demo's containers got their GPUs through the hook, and one image needs a newer CUDA
    assert found["cgroup-device-loss"]["severity"] in ("ok", "warning")
    assert "Could not check" not in found["cgroup-device-loss"]["title"]
    assert found["cuda-compat"]["severity"] == "warning", found["cuda-compat"]["summary"]
    assert "did not answer" not in found["container-runtime"]["summary"]


def test_no_docker_still_leaves_the_engine_out(capsys, monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    found = _doctor(capsys, "--no-docker")
    assert found["cuda-compat"]["severity"] == "info"
