"""`gpudock holders` without a Docker engine: the GPU part still prints, and the status says why."""

from __future__ import annotations

import json

from gpudock.cli import main


def test_holders_json_without_engine(tmp_path, capsys):
    rc = main(["holders", "--demo", "--json", "--docker-host", f"unix://{tmp_path}/none.sock"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 2
    assert out["docker"]["state"] == "unavailable"
    assert "does not exist" in out["docker"]["message"] and "DOCKER_HOST" in out["docker"]["message"]
    assert len(out["gpus"]) == 8 and out["containers"] == []
    assert set(out) >= {"docker", "gpus", "containers", "conflicts", "nvml_error", "source"}
    assert out["gpus"][0]["processes"][0]["location"] in ("unreadable", "host", "container")


def test_holders_text_without_permission(tmp_path, capsys):
    sock = tmp_path / "docker.sock"
    sock.write_text("")
    sock.chmod(0)
    rc = main(["holders", "--demo", "--docker-host", f"unix://{sock}"])
    out = capsys.readouterr().out
    assert rc == 2
    assert out.startswith("Docker unavailable: ")
    assert "GPU 0" in out


def test_holders_text_refused(tmp_path, capsys):
    import socket

    path = tmp_path / "d.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))  # bound, not listening: connect() is refused
    try:
        rc = main(["holders", "--demo", "--docker-host", f"unix://{path}"])
    finally:
        s.close()
    out = capsys.readouterr().out
    assert rc == 2
    assert "refused" in out or "Cannot talk" in out
